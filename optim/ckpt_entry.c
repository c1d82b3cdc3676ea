/* Checkpoint entries (see vn_ckpt_entry.h) and small string helpers of the optim layer. */
#include "optim/vn_ckpt_entry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim_impl.h"

size_t vn_ckpt_entry_nbytes(const vn_ckpt_entry *e)
{
    return (size_t)e->numel * vn_dtype_size(e->dtype);
}

int vn_ckpt_entry_check(const vn_ckpt_entry *e, vn_dtype dtype, int ndim,
                        const int64_t *shape, const void *data, size_t nbytes, vn_error *err)
{
    if (!e || !e->data) return vn_error_set(err, VN_ERR_INVALID, "state entry without data");
    if (dtype != e->dtype)
        return vn_error_set(err, VN_ERR_FORMAT, "state '%s': saved as %s, expected %s",
                            e->name, vn_dtype_name(dtype), vn_dtype_name(e->dtype));
    if (ndim < 0 || (ndim > 0 && !shape))
        return vn_error_set(err, VN_ERR_INVALID, "state '%s': invalid saved shape", e->name);
    bool same = true;
    if (e->ndim == 0) {
        /* A scalar may be saved as [] or [1]. */
        same = ndim == 0 || (ndim == 1 && shape[0] == 1);
    } else {
        same = ndim == e->ndim;
        for (int i = 0; same && i < ndim; i++) same = shape[i] == e->shape[i];
    }
    if (!same) {
        char want[96], got[96];
        vn_shape_str(e->ndim, e->shape, want, sizeof want);
        vn_shape_str(ndim, shape, got, sizeof got);
        return vn_error_set(err, VN_ERR_SHAPE, "state '%s': saved shape %s, expected %s",
                            e->name, got, want);
    }
    size_t want_bytes = vn_ckpt_entry_nbytes(e);
    if (nbytes != want_bytes || (nbytes && !data))
        return vn_error_set(err, VN_ERR_FORMAT, "state '%s': %zu bytes of data, expected %zu",
                            e->name, nbytes, want_bytes);
    return VN_OK;
}

int vn_ckpt_entry_load(const vn_ckpt_entry *e, vn_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, size_t nbytes, vn_error *err)
{
    int rc = vn_ckpt_entry_check(e, dtype, ndim, shape, data, nbytes, err);
    if (rc == VN_OK && nbytes) memcpy(e->data, data, nbytes);
    return rc;
}

char *vn__concat(const char *a, const char *b, const char *c)
{
    size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0, lc = c ? strlen(c) : 0;
    char *s = malloc(la + lb + lc + 1);
    if (!s) return NULL;
    if (la) memcpy(s, a, la);
    if (lb) memcpy(s + la, b, lb);
    if (lc) memcpy(s + la + lb, c, lc);
    s[la + lb + lc] = '\0';
    return s;
}

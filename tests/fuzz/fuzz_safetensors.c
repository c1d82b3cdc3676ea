/* libFuzzer target: the safetensors reader (header JSON, dtypes, shapes, offsets, metadata,
 * CRC) on arbitrary bytes. A file that opens must describe tensors that lie inside it: every
 * byte of every tensor is read, and each entry is found again by name. */
#include "io/vn_safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vn_error err = {0};
    vn_st_file *f = NULL;
    if (vn_st_open_memory(data, size, "fuzz.safetensors", &f, &err) != VN_OK) {
        if (f || err.msg[0] == '\0') abort(); /* a failure leaves *out NULL and says why */
        return 0;
    }
    unsigned sum = 0;
    for (int i = 0; i < vn_st_count(f); i++) {
        const vn_st_entry *e = vn_st_at(f, i);
        if (e->nbytes != (size_t)e->numel * vn_dtype_size(e->dtype)) abort();
        for (size_t b = 0; b < e->nbytes; b++) sum += ((const uint8_t *)e->data)[b];
        if (vn_st_find(f, e->name) != e) abort();
    }
    for (int i = 0; i < vn_st_meta_count(f); i++) {
        const char *v = vn_st_meta(f, vn_st_meta_key(f, i));
        if (!v) abort();
        sum += (unsigned)strlen(v);
    }
    vn_st_close(f);
    return (int)(sum & 0);
}

/* Named state: how optimizers and model EMAs expose every piece of their state for
 * checkpoints. The owner hands out entries (name, dtype, shape, writable data); a checkpoint
 * writer saves each entry under its name, and a reader restores an entry by copying the saved
 * bytes back into it (vn_state_entry_load checks dtype and shape first). After restoring, call
 * the owner's validation function (vn_optim_state_loaded) before the next step. */
#ifndef VN_STATE_H
#define VN_STATE_H

#include "autograd/vn_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_state_dtype {
    VN_STATE_F32 = 0,
    VN_STATE_I64 = 1
} vn_state_dtype;

typedef struct vn_state_entry {
    const char *name;    /* valid while the owner lives, e.g. "optim.exp_avg.stem1.0.weight" */
    vn_state_dtype dtype;
    int ndim;            /* 0 for a scalar */
    int64_t shape[VN_MAX_DIMS];
    int64_t numel;
    /* Flags of the tensor this entry shadows: VN_TENSOR_OHWI says a moment buffer is laid
     * out like its OHWI conv weight, so a writer converting weights to OIHW can convert the
     * buffer the same way. 0 for scalars. */
    uint32_t flags;
    void *data;          /* numel elements of dtype; restore by writing into it */
} vn_state_entry;

/* "F32" / "I64", as the safetensors format spells them. */
const char *vn_state_dtype_name(vn_state_dtype dt);
size_t vn_state_dtype_size(vn_state_dtype dt);
size_t vn_state_entry_nbytes(const vn_state_entry *e);

/* Copies saved data into e after checking that dtype, shape and byte count match (a saved
 * scalar may be shape [] or [1]). On mismatch nothing is written and err names the entry and
 * both shapes. */
int vn_state_entry_load(const vn_state_entry *e, vn_state_dtype dtype, int ndim,
                        const int64_t *shape, const void *data, size_t nbytes, vn_error *err);
/* The checks of vn_state_entry_load alone; nothing is written. */
int vn_state_entry_check(const vn_state_entry *e, vn_state_dtype dtype, int ndim,
                         const int64_t *shape, const void *data, size_t nbytes, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

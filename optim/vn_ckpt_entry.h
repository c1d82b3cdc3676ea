/* Checkpoint entries: how optimizers and model EMAs expose every piece of their state for
 * checkpoints (not to be confused with a model's named state list, layers/vn_layers.h). The owner hands out entries (name, dtype, shape, writable data); a checkpoint
 * writer saves each entry under its name, and a reader restores an entry by copying the saved
 * bytes back into it (vn_ckpt_entry_load checks dtype and shape first). After restoring, call
 * the owner's validation function (vn_optim_state_loaded) before the next step. */
#ifndef VN_CKPT_ENTRY_H
#define VN_CKPT_ENTRY_H

#include "autograd/vn_tensor.h"
#include "io/vn_safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vn_ckpt_entry {
    const char *name;    /* valid while the owner lives, e.g. "optim.exp_avg.stem1.0.weight" */
    vn_dtype dtype;      /* VN_DTYPE_F32 or VN_DTYPE_I64 */
    int ndim;            /* 0 for a scalar */
    int64_t shape[VN_MAX_DIMS];
    int64_t numel;
    void *data;          /* numel elements of dtype in memory layout (a moment buffer of a
                          * conv weight is OHWI, as the weight); restore by writing into it */
} vn_ckpt_entry;

size_t vn_ckpt_entry_nbytes(const vn_ckpt_entry *e);

/* Copies saved data into e after checking that dtype, shape and byte count match (a saved
 * scalar may be shape [] or [1]). On mismatch nothing is written and err names the entry and
 * both shapes. */
int vn_ckpt_entry_load(const vn_ckpt_entry *e, vn_dtype dtype, int ndim,
                        const int64_t *shape, const void *data, size_t nbytes, vn_error *err);
/* The checks of vn_ckpt_entry_load alone; nothing is written. */
int vn_ckpt_entry_check(const vn_ckpt_entry *e, vn_dtype dtype, int ndim,
                        const int64_t *shape, const void *data, size_t nbytes, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

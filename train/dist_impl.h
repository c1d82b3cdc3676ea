/* Internals of data-parallel training shared by train/trainer.c and train/dist_grads.c:
 * the fused gradient buffer reduced in buckets, and the BatchNorm hooks. Not installed. */
#ifndef VN_DIST_IMPL_H
#define VN_DIST_IMPL_H

#include "autograd/vn_ctx.h"
#include "train/vn_config.h"
#include "train/vn_dist.h"

/* Compute threads of this rank: train.threads when set; else the cores this process may run
 * on, divided by the ranks on this machine when the process is not bound to fewer cores than
 * the machine has (mpirun --bind-to none), at least 1. */
int vn__dist_threads(const vn_config *cfg, const vn_dist *d);
/* Every rank learns whether every rank got here with VN_OK: returns rc, or when another rank
 * failed an error saying so (its own message is on that rank's stderr). */
int vn__dist_agree(vn_dist *d, int rc, const char *what, vn_error *err);

typedef struct vn__dp vn__dp;

/* Gradient buckets over params (reverse order: the classifier's gradients are final first
 * in backward) of about bucket_bytes each, one flat float buffer; the context's grad-ready
 * hook (armed with vn__dp_arm) starts each bucket's allreduce as soon as all of its
 * parameters are final. sync_bn: BatchNorm statistics over all ranks; otherwise the
 * per-micro-batch statistics are recorded and replayed by vn__dp_replay_bn. */
int vn__dp_create(vn_dist *d, vn_ctx *ctx, vn_tensor **params, int n_params, double bucket_bytes,
                  bool sync_bn, vn__dp **out, vn_error *err);
void vn__dp_destroy(vn__dp *dp);
int vn__dp_buckets(const vn__dp *dp);
/* Before the micro-batches of a step. */
void vn__dp_begin_step(vn__dp *dp);
/* Arms the grad-ready hook for the next backward (the step's last micro-batch) or not. */
void vn__dp_arm(vn__dp *dp, bool on);
/* Starts the buckets the hook did not, waits for all of them and writes the sums back into
 * the parameters' gradients. *started_early receives the buckets started during backward. */
int vn__dp_finish_grads(vn__dp *dp, int *started_early, vn_error *err);
/* Gathers every rank's recorded BatchNorm statistics of this step's micro_batches and
 * replays the running-statistics updates in the global micro-batch order (rank r's k-th
 * micro-batch is global micro-batch k * ranks + r): the running statistics are then the
 * bytes one process would have computed. No-op with sync_bn. */
int vn__dp_replay_bn(vn__dp *dp, int micro_batches, vn_error *err);
/* After vn__dp_create on every rank (collective): sums the gradients on the device with NCCL
 * when the parameters live on a device whose backend has collectives (vn_device_comm_*),
 * every rank has a GPU of its own and VN_NCCL is not 0; otherwise through host memory with
 * MPI. VN_OK either way (an error only when a collective fails); vn__dp_path says which and
 * why. Every rank takes the same path. */
int vn__dp_use_nccl(vn__dp *dp, vn_error *err);
const char *vn__dp_path(const vn__dp *dp);
/* The first error a hook met (for messages), "" if none. */
const char *vn__dp_hook_error(const vn__dp *dp);

#endif

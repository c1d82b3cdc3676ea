/* Private interface between the context (tape, memory) and the op implementations. */
#ifndef VN_OPS_IMPL_H
#define VN_OPS_IMPL_H

#include "autograd/vn_ops.h"
#include "base/vn_parallel.h"

#define VN_NODE_MAX_IN 6
#define VN_NODE_MAX_BUFS 4

/* The kernels of one op on one device (a cell of the op table, autograd/dispatch.c).
 * forward fills node->out (allocated by the front) from node->in and node->state, and keeps
 * in node->bufs what backward reads when node->recording; it returns VN_OK or sets the
 * context error. backward accumulates into the inputs' gradients from node->out->grad.
 * recompute (optional) rebuilds node->out->data, bit for bit, from the saved inputs. */
typedef int (*vn__forward_fn)(vn_ctx *ctx, vn_node *node);
typedef void (*vn__backward_fn)(vn_ctx *ctx, vn_node *node);

/* The op profile (vn_profile.h): a start time when profiling is on (else 0), and the add of
 * one call of op (with the node's variant label, or NULL) in direction dir (a
 * vn_profile_dir) that started at t0. */
double vn__profile_start(void);
void vn__profile_add(int op, const char *variant, int dir, double t0);

typedef struct vn__op_kernels {
    vn__forward_fn forward;
    vn__backward_fn backward;
    vn__backward_fn recompute;
} vn__op_kernels;

/* One op application: made by the op's front with vn__node_new, run by vn__run. The state
 * points at the op's own typed struct (allocated with the node, zeroed); bufs are pool
 * buffers the forward kept for backward, released right after it runs. */
struct vn_node {
    vn_op op;
    vn_device device;
    bool recording;    /* goes on the tape: forward keeps what backward needs */
    bool recomputable; /* released copies of out may be rebuilt by the recompute kernel */
    int n_in;
    vn_tensor *in[VN_NODE_MAX_IN];
    vn_tensor *out;
    void *state;
    int n_bufs;
    void *bufs[VN_NODE_MAX_BUFS];
    unsigned saved;    /* bit i: in[i] is read by backward or recompute; VN_SAVE_OUT */
    const char *variant; /* a static label the op profile shows with the op's name, or NULL */
};

#define VN_SAVE_OUT (1u << 15)

/* The context's BatchNorm hooks (vn_ctx_set_bn_hooks), or NULL. */
const vn_bn_hooks *vn__ctx_bn_hooks(const vn_ctx *ctx);

/* Step-lifetime scratch from the bump arena, 64-byte aligned, not zeroed. */
void *vn__arena_alloc(vn_ctx *ctx, size_t bytes);
/* Pooled step buffer, 64-byte aligned, not zeroed; lives until vn__pool_free or reset. */
void *vn__pool_alloc(vn_ctx *ctx, size_t bytes);
void vn__pool_free(vn_ctx *ctx, void *p);

/* True when grad mode is on and any of the given (non-NULL) inputs requires grad. */
bool vn__needs_grad(vn_ctx *ctx, int n_in, vn_tensor *const *in);
/* A node for applying op to in (NULL entries allowed: optional inputs keep their position)
 * with output out and a zeroed state of state_bytes; node->recording is set when grad mode
 * is on and an input requires grad. Not on the tape yet. NULL (sticky error) on failure. */
vn_node *vn__node_new(vn_ctx *ctx, vn_op op, int n_in, vn_tensor *const *in, vn_tensor *out,
                      size_t state_bytes);
/* Runs the node's forward kernel for its device and, when recording, puts the node on the
 * tape (out then requires grad). Returns node->out, or NULL with the sticky error. Buffers
 * kept by a forward that is not recording are released here. */
vn_tensor *vn__run(vn_ctx *ctx, vn_node *node);
/* Hands a pool buffer to the node: released after the node's backward (or at reset). */
void vn__node_keep(vn_node *node, void *pool_buf);

/* The dispatch functions, one per direction: the kernels of (node->op, node->device). */
int vn__dispatch_forward(vn_ctx *ctx, vn_node *node);
void vn__dispatch_backward(vn_ctx *ctx, vn_node *node);
void vn__dispatch_recompute(vn_ctx *ctx, vn_node *node);
bool vn__has_recompute(vn_op op, vn_device device);

/* Marks in[i] (or the output, with i == -1) as read by the node's backward or recompute: its
 * data stays available (kept, or recomputed) until the node's backward has run. */
void vn__save(vn_node *node, int i);
/* Lets released copies of the node's output be freed in forward and rebuilt in backward by
 * the op's recompute kernel, which reads only saved inputs (through vn__data) and the
 * node's state and buffers, and gives the same bytes as the forward. */
void vn__set_recompute(vn_node *node);
/* True when saving t costs no memory beyond what exists anyway: t is not a step tensor, or
 * it is itself recomputable. Ops that read an input only to recompute their output save it
 * (and enable recompute) only then, so recompute never pins a larger tensor in memory. */
bool vn__cheap_to_save(const vn_tensor *t);
/* The data of a saved tensor in backward, recomputing it if it was dropped. NULL (and the
 * sticky error) if it is not available. */
const float *vn__data(vn_ctx *ctx, vn_tensor *t);

/* The gradient buffer of t for accumulation, allocated and zero-filled on first use. */
float *vn__grad(vn_ctx *ctx, vn_tensor *t);
/* As vn__grad, but a buffer allocated now is left uninitialised and *fresh is set to true:
 * the caller must then write every element instead of accumulating. */
float *vn__grad_uninit(vn_ctx *ctx, vn_tensor *t, bool *fresh);
/* For backward kernels: NULL when the input t does not require grad (nothing to do) or its
 * buffer cannot be had (the sticky error is set), else as vn__grad_uninit. */
float *vn__input_grad(vn_ctx *ctx, vn_tensor *t, bool *fresh);

/* For element-wise backward kernels: when t has no gradient yet and is the same size as the
 * node's output, hands the output's gradient buffer (freed after this backward anyway) to t
 * and sets *fresh: the kernel then computes dx in place over dy (reading dy[i] before writing
 * dx[i]). Otherwise as vn__grad_uninit. */
float *vn__grad_over_out(vn_ctx *ctx, vn_node *node, vn_tensor *t, bool *fresh);

/* What an element-wise backward of in[0] reads and writes: the data of the saved tensor src
 * (the input or the output), dy (taken before its buffer may be handed to in[0]) and dx as
 * vn__grad_over_out gives it. */
typedef struct vn__ew_grad {
    const float *src, *dy;
    float *dx;
    bool fresh;
} vn__ew_grad;
/* Fills *a; false when src's data or dx is not available (the sticky error says why). */
bool vn__ew_grad_begin(vn_ctx *ctx, vn_node *node, vn_tensor *src, vn__ew_grad *a);

/* NHWC kernels whose threads must each own the input-gradient elements they write (pooling)
 * split the work over tiles: one image and one block of channels [c0, c0 + cn).
 * vn__tile_at gives tile t of images of c channels, images outer. */
typedef struct vn__tile {
    int64_t n, c0, cn;
} vn__tile;
static inline vn__tile vn__tile_at(int64_t t, int64_t c, int64_t block)
{
    const int64_t nblk = vn_chunk_count(c, block);
    vn__tile tile = {t / nblk, (t % nblk) * block, 0};
    tile.cn = c - tile.c0 < block ? c - tile.c0 : block;
    return tile;
}

/* Runs fn(arg, t) for the tiles t of n images of c channels, on vn_par_for's threads when
 * `parallel`. fn starts with vn__tile_at(t, c, block), inlined, so that the compiler sees
 * cn <= block where it vectorises. One call per tile: the per-element work stays in fn. */
typedef void (*vn__tile_fn)(const void *arg, int64_t t);
typedef struct {
    vn__tile_fn fn;
    const void *arg;
} vn__tile_job;
static inline void vn__tile_range(void *job, int64_t t0, int64_t t1, int tid)
{
    (void)tid;
    const vn__tile_job *J = job;
    for (int64_t t = t0; t < t1; t++) J->fn(J->arg, t);
}
static inline void vn__for_each_tile(int64_t n, int64_t c, int64_t block, bool parallel,
                                     vn__tile_fn fn, const void *arg)
{
    vn__tile_job J = {fn, arg};
    vn_par_for(n * vn_chunk_count(c, block), parallel, vn__tile_range, &J);
}

/* Checks shared by every op: returns false (and sets the error) on NULL input or a sticky
 * error already present. */
bool vn__ok(vn_ctx *ctx, int n, vn_tensor *const *in);


#endif

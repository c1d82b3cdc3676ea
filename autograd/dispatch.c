/* The op table (one row per op of VN_OP_LIST, one column per device) and the dispatch
 * functions of the three directions: forward, backward and recompute. */
#include "autograd/backend.h"
#include "autograd/ops_impl.h"
#include "autograd/vn_profile.h"

static const char *const op_names[] = {
#define VN_X_NAME(name, text, kernels, recompute) text,
    VN_OP_LIST(VN_X_NAME)
#undef VN_X_NAME
};
_Static_assert(sizeof op_names / sizeof op_names[0] == VN_OP_COUNT,
               "every op in VN_OP_LIST needs a name");

const char *vn_op_name(vn_op op)
{
    return (unsigned)op < VN_OP_COUNT ? op_names[op] : "unknown-op";
}

const char *vn_device_name(vn_device d)
{
    switch (d) {
    case VN_DEVICE_CPU: return "cpu";
    case VN_DEVICE_CUDA: return "cuda";
    default: return "unknown-device";
    }
}

/* The CPU column: every op's kernels, declared from the list and defined in ops_*.c. */
#define VN_X_DECLARE(name, text, kernels, recompute)                  \
    int vn__##kernels##_forward_cpu(vn_ctx *ctx, vn_node *node);      \
    void vn__##kernels##_backward_cpu(vn_ctx *ctx, vn_node *node);    \
    void vn__##kernels##_recompute_cpu(vn_ctx *ctx, vn_node *node);
VN_OP_LIST(VN_X_DECLARE)
#undef VN_X_DECLARE

#define VN_RECOMPUTE_0(kernels, device) NULL
#define VN_RECOMPUTE_1(kernels, device) vn__##kernels##_recompute_##device
#define VN_X_CELL(name, text, kernels, recompute)                                          \
    [VN_OP_##name] = {vn__##kernels##_forward_cpu, vn__##kernels##_backward_cpu,            \
                      VN_RECOMPUTE_##recompute(kernels, cpu)},

/* The CPU column is built in; the column of another device is its backend module's table
 * (backend.h), loaded by vn_device_check before any tensor can be placed there. */
static const vn__op_kernels op_table[VN_OP_COUNT] = {VN_OP_LIST(VN_X_CELL)};
#undef VN_X_CELL

const vn__op_kernels *vn__cpu_op_table(void) { return op_table; }

static const vn__op_kernels *cell(vn_op op, vn_device device)
{
    if ((unsigned)op >= VN_OP_COUNT || (unsigned)device >= VN_DEVICE_COUNT) return NULL;
    const vn__op_kernels *k = &op_table[op];
    if (device != VN_DEVICE_CPU) {
        const vn__backend *b = vn__backend_of(device);
        k = b ? &b->ops[op] : NULL;
    }
    return k && k->forward ? k : NULL;
}

/* While the profile is on, an op on a device is timed from an idle device to the end of its
 * own work there (a sync on each side), so its row holds device time, not the launch. */
static double profile_start(const vn_node *node)
{
    if (vn_profile_enabled() && node->device != VN_DEVICE_CPU) vn_device_sync(node->device);
    return vn__profile_start();
}

static void profile_add(const vn_node *node, int dir, double t0)
{
    if (t0 != 0.0 && node->device != VN_DEVICE_CPU) vn_device_sync(node->device);
    vn__profile_add(node->op, node->variant, dir, t0);
}

int vn__dispatch_forward(vn_ctx *ctx, vn_node *node)
{
    const vn__op_kernels *k = cell(node->op, node->device);
    if (!k) {
        vn_ctx_fail(ctx, VN_ERR_UNSUPPORTED, "%s has no kernel for device %s in this build",
                    vn_op_name(node->op), vn_device_name(node->device));
        return VN_ERR_UNSUPPORTED;
    }
    double t0 = profile_start(node);
    int rc = k->forward(ctx, node);
    profile_add(node, VN_PROFILE_FORWARD, t0);
    if (rc != VN_OK && vn_ctx_status(ctx) == VN_OK)
        vn_ctx_fail(ctx, rc, "%s: %s", vn_op_name(node->op), vn_status_str(rc));
    return rc != VN_OK ? rc : vn_ctx_status(ctx);
}

void vn__dispatch_backward(vn_ctx *ctx, vn_node *node)
{
    const vn__op_kernels *k = cell(node->op, node->device);
    VN_ASSERT(k, "a node of %s on %s was recorded without kernels", vn_op_name(node->op),
              vn_device_name(node->device));
    double t0 = profile_start(node);
    k->backward(ctx, node);
    profile_add(node, VN_PROFILE_BACKWARD, t0);
}

void vn__dispatch_recompute(vn_ctx *ctx, vn_node *node)
{
    const vn__op_kernels *k = cell(node->op, node->device);
    VN_ASSERT(k && k->recompute, "%s on %s has no recompute kernel (VN_OP_LIST's last column)",
              vn_op_name(node->op), vn_device_name(node->device));
    double t0 = profile_start(node);
    k->recompute(ctx, node);
    profile_add(node, VN_PROFILE_RECOMPUTE, t0);
}

bool vn__has_recompute(vn_op op, vn_device device)
{
    const vn__op_kernels *k = cell(op, device);
    return k && k->recompute;
}

#include "autograd/vn_ops.h"

static const char *const op_names[] = {
#define VN_X_NAME(name, text) text,
    VN_OP_LIST(VN_X_NAME)
#undef VN_X_NAME
};
_Static_assert(sizeof op_names / sizeof op_names[0] == VN_OP_COUNT,
               "every op in VN_OP_LIST needs a name");

const char *vn_op_name(vn_op op)
{
    return (unsigned)op < VN_OP_COUNT ? op_names[op] : "unknown-op";
}

/* A model's tensors to another device. */
#include "layers/vn_layers.h"

int vn_state_to_device(const vn_state_list *l, vn_device d, vn_error *err)
{
    char why[200];
    if (vn_device_check(d, why, sizeof why) != VN_OK)
        return vn_error_set(err, VN_ERR_UNSUPPORTED, "%s", why);
    for (int i = 0; i < l->n; i++) {
        vn_tensor *t = l->items[i].tensor;
        if (l->items[i].kind == VN_STATE_COUNT || !t) continue;
        int rc = vn_tensor_to_device(t, d);
        if (rc != VN_OK)
            return vn_error_set(err, rc, "moving '%s' to %s: %s", l->items[i].name,
                                vn_device_name(d), vn_status_str(rc));
    }
    return VN_OK;
}

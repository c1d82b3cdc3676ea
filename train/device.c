/* train.device: the check made before a run starts. */
#include "train/vn_trainer.h"

int vn_train_device_refuse(const vn_config *cfg, vn_error *err)
{
    vn_device d = cfg->train.device == VN_CONFIG_DEVICE_CUDA ? VN_DEVICE_CUDA : VN_DEVICE_CPU;
    if (d == VN_DEVICE_CPU) return VN_OK;
    char why[200];
    int rc = vn_device_check(d, why, sizeof why);
    if (rc != VN_OK) return vn_error_set(err, rc, "train.device: %s: %s", vn_device_name(d), why);
    return vn_error_set(err, VN_ERR_UNSUPPORTED,
                        "train.device: %s: the trainer does not place runs on %s yet (its ops, "
                        "optimizers and EMA run there: bench/bench_train --device %s)",
                        vn_device_name(d), vn_device_name(d), vn_device_name(d));
}

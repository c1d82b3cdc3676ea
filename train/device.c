/* train.device, train.tf32, train.precision and train.deterministic: the device a run is
 * placed on, checked and set up before anything else happens. */
#include "train/vn_trainer.h"

int vn_train_device_open(const vn_config *cfg, int ranks, int local_rank, vn_device *out,
                         int *index, vn_error *err)
{
    vn_device d = cfg->train.device == VN_CONFIG_DEVICE_CUDA ? VN_DEVICE_CUDA : VN_DEVICE_CPU;
    *out = VN_DEVICE_CPU;
    if (index) *index = 0;
    if (d == VN_DEVICE_CPU && cfg->train.precision == VN_CONFIG_PRECISION_BF16)
        return vn_error_set(err, VN_ERR_UNSUPPORTED, "train.precision: bf16 needs train.device: "
                            "cuda (the cpu kernels are FP32 only)");
    if (d == VN_DEVICE_CPU) return VN_OK;
    char why[200];
    /* One rank per device: the ranks of a machine take its devices in turn. */
    int chosen = 0, rc = vn_device_select(d, local_rank > 0 ? local_rank : 0, &chosen, why,
                                          sizeof why);
    if (rc == VN_OK) rc = vn_device_check(d, why, sizeof why);
    if (rc != VN_OK) return vn_error_set(err, rc, "train.device: %s: %s", vn_device_name(d), why);
    if (cfg->model.task == VN_CONFIG_TASK_DETECT)
        return vn_error_set(err, VN_ERR_UNSUPPORTED, "train.device: %s: the detector's trainer "
                            "(model.task: detect) runs on the cpu only", vn_device_name(d));
    if (ranks > 1 && cfg->model.sync_bn)
        return vn_error_set(err, VN_ERR_UNSUPPORTED, "train.device: %s: model.sync_bn across %d "
                            "ranks runs on the cpu only for now (the device's BatchNorm keeps its "
                            "statistics per rank; set model.sync_bn: false)", vn_device_name(d),
                            ranks);
    rc = vn_device_set_tf32(d, cfg->train.tf32);
    if (rc == VN_OK) rc = vn_device_set_bf16(d, cfg->train.precision == VN_CONFIG_PRECISION_BF16);
    if (rc == VN_OK) rc = vn_device_set_deterministic(d, cfg->train.deterministic);
    if (rc != VN_OK)
        return vn_error_set(err, rc, "train.device: %s: setting train.tf32 / train.deterministic "
                            "/ train.precision failed: %s", vn_device_name(d), vn_status_str(rc));
    *out = d;
    if (index) *index = chosen;
    return VN_OK;
}

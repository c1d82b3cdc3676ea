/* Training step of YOLO11-VanillaNet (issue 17): forward, assignment + loss, backward, timed
 * per step, with the step pool's peak and the process's peak RSS.
 *
 *   bench_detect [imgsz 320] [batch 8] [steps 3]
 *
 * The model is the default configuration (vanillanet_5 backbone, yolo11n scaling, 80
 * classes, act_learn 0.5) on a synthetic input with two boxes per image. The PyTorch side of
 * the comparison is bench/torch_detect.py; bench/compare_detect.sh runs both.
 * Where OpenBLAS falls back to its generic kernels on a CPU newer than it knows,
 * vn_runtime_setup picks its AVX-512 or AVX2 ones, as `vanilla` does (OPENBLAS_VERBOSE=2
 * prints the core in use; OPENBLAS_CORETYPE or VN_BLAS_AUTO=0 keep a choice). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "base/vn_base.h"
#include "base/vn_fs.h"
#include "models/vn_yolo.h"

static void one_step(vn_ctx *ctx, vn_yolo *m, vn_tensor *x, const vn_yolo_gt *gts, int n_gt,
                     int step)
{
    const vn_yolo_config *cfg = vn_yolo_get_config(m);
    const vn_state_list *l = vn_yolo_state(m);
    vn_yolo_loss_params lp;
    vn_yolo_loss_params_default(&lp);
    vn_ctx_reset(ctx);
    for (int i = 0; i < l->n; i++)
        if (l->items[i].kind == VN_STATE_PARAM) vn_tensor_zero_grad(l->items[i].tensor);
    double t0 = vn_monotonic();
    vn_tensor *y[VN_YOLO_LEVELS];
    vn_yolo_forward(ctx, m, x, y);
    double t1 = vn_monotonic();
    vn_tensor *loss = vn_yolo_loss(ctx, y, cfg->nc, cfg->reg_max, gts, n_gt, &lp, NULL);
    double t2 = vn_monotonic();
    if (loss) vn_backward(ctx, loss);
    double t3 = vn_monotonic();
    vn_mem_stats ms;
    vn_ctx_mem_stats(ctx, &ms);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("step %d: forward %.2f s, loss %.2f s, backward %.2f s, %.3f img/s, loss %.4f, "
           "step pool peak %.0f MB, peak RSS %.0f MB%s%s\n", step, t1 - t0, t2 - t1, t3 - t2,
           (double)x->shape[0] / (t3 - t0), loss ? loss->data[0] : -1.0,
           (double)ms.pool_peak / 1e6, (double)ru.ru_maxrss / 1e3,
           vn_ctx_status(ctx) ? ", error: " : "", vn_ctx_status(ctx) ? vn_ctx_error(ctx) : "");
}

int main(int argc, char **argv)
{
    vn_runtime_setup(argv); /* before any OpenMP or BLAS work; may exec again */
    int imgsz = argc > 1 ? atoi(argv[1]) : 320, batch = argc > 2 ? atoi(argv[2]) : 8;
    int steps = argc > 3 ? atoi(argv[3]) : 3;
    if (imgsz < 32 || imgsz % 32 || batch < 1 || batch > 64 || steps < 1) {
        fprintf(stderr, "usage: bench_detect [imgsz (multiple of 32)] [batch 1..64] [steps]\n");
        return 2;
    }
    vn_yolo_config cfg;
    vn_yolo_config_default(&cfg);
    vn_yolo *m;
    vn_error err = {0};
    if (vn_yolo_create(&cfg, &m, &err) != VN_OK) {
        fprintf(stderr, "bench_detect: %s\n", err.msg);
        return 1;
    }
    vn_yolo_init(m, 1);
    vn_yolo_change_act(m, 0.5f);
    vn_tensor *x = vn_tensor_new4(batch, imgsz, imgsz, 3, false);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = (float)((i * 7919) % 255) / 255.0f - 0.5f;
    vn_yolo_gt *gts = malloc((size_t)batch * 2 * sizeof *gts);
    for (int i = 0; i < batch * 2; i++)
        gts[i] = (vn_yolo_gt){i / 2, i % cfg.nc, 0.1f * imgsz + i, 0.1f * imgsz,
                              0.5f * imgsz + i, 0.6f * imgsz};
    printf("YOLO11-VanillaNet (vanillanet_5, yolo11n scaling, %d classes, %lld parameters), "
           "imgsz %d, batch %d\n", cfg.nc, (long long)vn_state_numel(vn_yolo_state(m), VN_STATE_PARAM),
           imgsz, batch);
    vn_ctx *ctx = vn_ctx_create();
    for (int s = 0; s < steps; s++) one_step(ctx, m, x, gts, batch * 2, s);
    vn_ctx_destroy(ctx);
    free(gts);
    vn_tensor_free(x);
    vn_yolo_destroy(m);
    return 0;
}

/* Helpers for tests/detect/test_detect_cli.sh:
 *   detecttool fmd OUT N_TRAIN N_VAL CANVAS   a small Fashion-MNIST-style detection set made
 *                                             by the importer from synthetic IDX files (items
 *                                             are filled squares, class i % 10)
 *   detecttool same A B                       every tensor of A is in B with the same bytes
 *                                             (0 same, 1 differ)
 *   detecttool emasame F                      every F32 tensor "ema.X" of F has the bytes of "X"
 *                                             (0 same, 1 differ, 3 no "ema." tensor)
 *   detecttool close A B TOL                  largest |A - B| over the F32 model weights
 *                                             ("model.*", "ema.model.*") but BatchNorm running_*,
 *                                             printed; 0 when <= TOL, 1 otherwise
 *   detecttool mkdet OUT NC IMGSZ SEED        a tiny detector weight file (training form, nc
 *                                             classes "c0".., imgsz), random weights and
 *                                             BatchNorm statistics (for the ONNX test)
 *   detecttool decode F IN OUT [merge]        F's decoded Detect output on IN's "images"
 *                                             [N, 3, H, W] (NCHW floats), eval mode (merged
 *                                             first with "merge"): OUT gets "boxes" [N, A, 4]
 *                                             (x1, y1, x2, y2 pixels) and "scores" [N, A, nc] */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/vn_fs.h"
#include "data/vn_detect_data.h"
#include "io/vn_safetensors.h"
#include "train/vn_detect.h"

static int write_idx(const char *path, int ndim, int n)
{
    gzFile g = gzopen(path, "wb");
    if (!g) return 1;
    uint8_t head[16] = {0, 0, 8, (uint8_t)ndim, 0, 0, (uint8_t)(n >> 8), (uint8_t)n, 0, 0, 0, 28, 0, 0, 0, 28};
    gzwrite(g, head, ndim == 3 ? 16 : 8);
    for (int i = 0; i < n; i++) {
        if (ndim == 1) {
            uint8_t l = (uint8_t)(i % 10);
            gzwrite(g, &l, 1);
            continue;
        }
        uint8_t px[28 * 28] = {0};
        int side = 10 + i % 14;
        for (int y = 2; y < 2 + side; y++)
            for (int x = 3; x < 3 + side; x++) px[y * 28 + x] = (uint8_t)(120 + 12 * (i % 10));
        gzwrite(g, px, sizeof px);
    }
    return gzclose(g) == Z_OK ? 0 : 1;
}

static int fmd(const char *out, int n_train, int n_val, int canvas)
{
    char src[4096], p[4200];
    snprintf(src, sizeof src, "%s-src", out);
    vn_error err = {0};
    if (vn_mkdirs(src, &err) != VN_OK) return fprintf(stderr, "%s\n", err.msg), 1;
    const char *files[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", src, files[i]);
        if (write_idx(p, i % 2 ? 1 : 3, 60)) return fprintf(stderr, "cannot write %s\n", p), 1;
    }
    vn_fmd_config cfg;
    vn_fmd_config_default(&cfg);
    cfg.n_train = n_train;
    cfg.n_val = n_val;
    cfg.canvas = canvas;
    cfg.min_size = canvas / 4;
    cfg.max_size = canvas / 2;
    cfg.max_items = 2;
    if (vn_import_fashion_mnist_detect(src, out, &cfg, NULL, &err) != VN_OK)
        return fprintf(stderr, "%s\n", err.msg), 1;
    return 0;
}

/* Opens both files; 0, or prints the error and returns 2 with nothing left open. */
static int open_pair(const char *a, const char *b, vn_st_file **fa, vn_st_file **fb)
{
    vn_error err = {0};
    if (vn_st_open(a, fa, &err) != VN_OK || vn_st_open(b, fb, &err) != VN_OK) {
        fprintf(stderr, "%s\n", err.msg);
        vn_st_close(*fa);
        *fa = NULL;
        return 2;
    }
    return 0;
}

static int same(const char *a, const char *b)
{
    vn_st_file *fa = NULL, *fb = NULL;
    if (open_pair(a, b, &fa, &fb) != 0) return 2;
    int rc = vn_st_count(fa) == vn_st_count(fb) ? 0 : 1;
    for (int i = 0; rc == 0 && i < vn_st_count(fa); i++) {
        const vn_st_entry *ea = vn_st_at(fa, i), *eb = vn_st_find(fb, ea->name);
        if (!eb || ea->nbytes != eb->nbytes || memcmp(ea->data, eb->data, ea->nbytes) != 0) {
            fprintf(stderr, "tensor %s differs\n", ea->name);
            rc = 1;
        }
    }
    vn_st_close(fa);
    vn_st_close(fb);
    return rc;
}

static int emasame(const char *a)
{
    vn_st_file *f = NULL;
    vn_error err = {0};
    if (vn_st_open(a, &f, &err) != VN_OK) return fprintf(stderr, "%s\n", err.msg), 2;
    int rc = 3;
    for (int i = 0; i < vn_st_count(f); i++) {
        const vn_st_entry *e = vn_st_at(f, i), *m;
        if (strncmp(e->name, "ema.", 4) != 0 || e->dtype != VN_DTYPE_F32) continue;
        if (rc == 3) rc = 0;
        m = vn_st_find(f, e->name + 4);
        if (!m || m->nbytes != e->nbytes || memcmp(m->data, e->data, e->nbytes) != 0) {
            fprintf(stderr, "%s differs from %s\n", e->name, e->name + 4);
            rc = 1;
        }
    }
    vn_st_close(f);
    return rc;
}

static bool is_weight(const vn_st_entry *e)
{
    bool model = strncmp(e->name, "model.", 6) == 0 || strncmp(e->name, "ema.model.", 10) == 0;
    return model && e->dtype == VN_DTYPE_F32 && !strstr(e->name, "running_");
}

static int close_to(const char *a, const char *b, double tol)
{
    vn_st_file *fa = NULL, *fb = NULL;
    if (open_pair(a, b, &fa, &fb) != 0) return 2;
    double worst = 0;
    int rc = 0, n = 0;
    for (int i = 0; i < vn_st_count(fa); i++) {
        const vn_st_entry *ea = vn_st_at(fa, i), *eb = vn_st_find(fb, ea->name);
        if (!is_weight(ea)) continue;
        if (!eb || eb->nbytes != ea->nbytes) {
            fprintf(stderr, "tensor %s missing or of another size\n", ea->name);
            rc = 1;
            continue;
        }
        const float *x = (const float *)ea->data, *y = (const float *)eb->data;
        for (size_t k = 0; k < ea->nbytes / 4; k++) {
            double d = fabs((double)x[k] - (double)y[k]);
            if (!(d <= worst)) worst = d;
        }
        n++;
    }
    printf("%d tensors, largest difference %.3g\n", n, worst);
    vn_st_close(fa);
    vn_st_close(fb);
    return rc == 0 && n > 0 && worst <= tol ? 0 : 1;
}

/* Conv weights N(0, 1.25^2 / fan_in) (outputs neither vanish nor blow up through the ~60
 * convs), biases and BatchNorm shifts U(-0.2, 0.2), BatchNorm scales
 * U(0.5, 1.5) and variances U(0.5, 2): every fold and merge has something to do. */
static void randomize(const vn_state_list *st, uint64_t seed)
{
    vn_rng rng;
    vn_rng_seed(&rng, seed, 0x0a11, 0);
    for (int i = 0; i < st->n; i++) {
        const vn_state_item *it = &st->items[i];
        vn_tensor *t = it->tensor;
        if (!t) continue;
        size_t len = strlen(it->name);
        bool var = len > 12 && !strcmp(it->name + len - 12, ".running_var");
        bool scale = t->ndim == 1 && len > 7 && !strcmp(it->name + len - 7, ".weight");
        double fan_in = t->ndim == 4 ? (double)(t->numel / t->shape[0]) : 1.0;
        for (int64_t k = 0; k < t->numel; k++) {
            double u = vn_rng_uniform_double(&rng);
            t->data[k] = (float)(t->ndim == 4 ? 1.25 * vn_rng_normal(&rng) / sqrt(fan_in)
                                 : var     ? 0.5 + 1.5 * u
                                 : scale   ? 0.5 + u
                                           : 0.4 * u - 0.2);
        }
    }
}

static int mkdet(const char *out, int nc, int imgsz, uint64_t seed)
{
    vn_yolo_config c;
    vn_yolo_config_default(&c);
    const int dims[4] = {8, 16, 16, 16};
    c.backbone.n_stages = 3;
    for (int i = 0; i < 4; i++) c.backbone.dims[i] = dims[i];
    for (int i = 0; i < 3; i++) c.backbone.strides[i] = 2;
    c.backbone.act_num = 1;
    c.nc = nc;
    c.width_multiple = 0.25f; /* C2PSA: 256 channels, two heads of 64 */
    c.depth_multiple = 1.0f;   /* two blocks in each C3k2 and C2PSA */
    c.reg_max = 8;
    vn_yolo *m = NULL;
    vn_error err = {0};
    char **names = calloc((size_t)nc, sizeof *names);
    int rc = names ? vn_yolo_create(&c, &m, &err) : vn_error_set(&err, VN_ERR_NOMEM, "out of memory");
    for (int i = 0; rc == VN_OK && i < nc; i++)
        if (!(names[i] = malloc(16))) rc = vn_error_set(&err, VN_ERR_NOMEM, "out of memory");
        else snprintf(names[i], 16, i == 1 ? "it's %d" : "c%d", i);
    if (rc == VN_OK) {
        randomize(vn_yolo_state(m), seed);
        vn_detect_ckpt k = {m, NULL, NULL, NULL, (const char *const *)names, nc, imgsz, NULL, false};
        rc = vn_detect_ckpt_save(out, &k, &err);
    }
    for (int i = 0; names && i < nc; i++) free(names[i]);
    free(names);
    vn_yolo_destroy(m);
    if (rc != VN_OK) fprintf(stderr, "%s\n", err.msg);
    return rc == VN_OK ? 0 : 1;
}

/* The NHWC input tensor of IN's "images" [N, C, H, W]. */
static vn_tensor *images_of(const char *in, vn_error *err)
{
    vn_st_file *f = NULL;
    if (vn_st_open(in, &f, err) != VN_OK) return NULL;
    const vn_st_entry *e = vn_st_find(f, "images");
    vn_tensor *x = NULL;
    if (!e || e->dtype != VN_DTYPE_F32 || e->ndim != 4) {
        vn_error_set(err, VN_ERR_FORMAT, "%s: no F32 tensor images [N, C, H, W]", in);
    } else {
        int64_t n = e->shape[0], c = e->shape[1], h = e->shape[2], w = e->shape[3];
        x = vn_tensor_new4(n, h, w, c, false);
        const float *src = (const float *)e->data;
        for (int64_t i = 0; x && i < n * c * h * w; i++) {
            int64_t b = i / (c * h * w), ch = i / (h * w) % c, p = i % (h * w);
            x->data[(b * h * w + p) * c + ch] = src[i];
        }
    }
    vn_st_close(f);
    return x;
}

static int decode_run(vn_yolo *m, const vn_detect_info *info, vn_tensor *x, const char *out, vn_error *err)
{
    vn_ctx *ctx = vn_ctx_create();
    if (!ctx) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    vn_ctx_set_grad(ctx, false);
    vn_tensor *y[VN_YOLO_LEVELS];
    int rc = vn_yolo_forward(ctx, m, x, y);
    if (rc != VN_OK) vn_error_set(err, rc, "forward: %s", vn_ctx_error(ctx));
    int64_t n = x->shape[0], a = 0, nc = info->nc;
    for (int l = 0; rc == VN_OK && l < VN_YOLO_LEVELS; l++) a += y[l]->shape[1] * y[l]->shape[2];
    float *boxes = malloc((size_t)(n * a * 4) * sizeof *boxes), *scores = malloc((size_t)(n * a * nc) * sizeof *scores);
    if (rc == VN_OK && (!boxes || !scores)) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; rc == VN_OK && i < n; i++)
        vn_yolo_decode(y, info->nc, vn_yolo_get_config(m)->reg_max, i, boxes + i * a * 4, scores + i * a * nc);
    vn_st_writer *w = rc == VN_OK ? vn_st_writer_new() : NULL;
    if (rc == VN_OK && !w) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    if (rc == VN_OK) rc = vn_st_add(w, "boxes", VN_DTYPE_F32, 3, (const int64_t[]){n, a, 4}, boxes, err);
    if (rc == VN_OK) rc = vn_st_add(w, "scores", VN_DTYPE_F32, 3, (const int64_t[]){n, a, nc}, scores, err);
    if (rc == VN_OK) rc = vn_st_write(w, out, 0, err);
    vn_st_writer_free(w);
    free(boxes);
    free(scores);
    vn_ctx_destroy(ctx);
    return rc;
}

static int decode(const char *file, const char *in, const char *out, bool merge)
{
    vn_error err = {0};
    vn_detect_info info;
    vn_yolo *m = NULL;
    vn_tensor *x = NULL;
    int rc = vn_detect_open(file, &m, &info, &err);
    if (rc == VN_OK && merge && !info.deploy) rc = vn_yolo_switch_to_deploy(m, false, &err);
    if (rc == VN_OK && !(x = images_of(in, &err))) rc = VN_ERR_FORMAT;
    if (rc == VN_OK) rc = decode_run(m, &info, x, out, &err);
    if (rc != VN_OK) fprintf(stderr, "%s\n", err.msg);
    vn_tensor_free(x);
    if (m) vn_detect_info_free(&info);
    vn_yolo_destroy(m);
    return rc == VN_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "fmd") == 0)
        return fmd(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 4 && strcmp(argv[1], "same") == 0) return same(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "emasame") == 0) return emasame(argv[2]);
    if (argc == 5 && strcmp(argv[1], "close") == 0) return close_to(argv[2], argv[3], atof(argv[4]));
    if (argc == 6 && strcmp(argv[1], "mkdet") == 0)
        return mkdet(argv[2], atoi(argv[3]), atoi(argv[4]), strtoull(argv[5], NULL, 10));
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "decode") == 0)
        return decode(argv[2], argv[3], argv[4], argc == 6 && strcmp(argv[5], "merge") == 0);
    fprintf(stderr, "usage: detecttool fmd OUT N_TRAIN N_VAL CANVAS | same A B | emasame F | "
            "close A B TOL | mkdet OUT NC IMGSZ SEED | decode F IN OUT [merge]\n");
    return 2;
}

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
 *                                             printed; 0 when <= TOL, 1 otherwise */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/vn_fs.h"
#include "data/vn_detect_data.h"
#include "io/vn_safetensors.h"

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
    int64_t boxes = 0;
    if (vn_import_fashion_mnist_detect(src, out, &cfg, &boxes, &err) != VN_OK)
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

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "fmd") == 0)
        return fmd(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 4 && strcmp(argv[1], "same") == 0) return same(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "emasame") == 0) return emasame(argv[2]);
    if (argc == 5 && strcmp(argv[1], "close") == 0) return close_to(argv[2], argv[3], atof(argv[4]));
    fprintf(stderr, "usage: detecttool fmd OUT N_TRAIN N_VAL CANVAS | same A B | emasame F | "
            "close A B TOL\n");
    return 2;
}

/* `vanilla data import --format fashion-mnist-detect`: a YOLO detection set composed from
 * Fashion-MNIST items (see data/vn_detect_data.h). */
#include "data/vn_detect_data.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "base/vn_fs.h"
#include "data/vn_dataset.h"
#include "data/vn_image.h"
#include "data/vn_transform.h"

#define ITEM 28
#define MAX_ITEMS 16

void vn_fmd_config_default(vn_fmd_config *c)
{
    *c = (vn_fmd_config){.canvas = 96, .n_train = 8000, .n_val = 1000, .min_items = 1, .max_items = 4,
                         .min_size = 28, .max_size = 48, .seed = 0, .threads = 2, .max_cover = 0.1};
}

/* A whole IDX file of unsigned bytes (gzip or plain): ndim dims, then the data. */
static int read_idx(const char *path, int ndim, uint32_t *dims, uint8_t **data, vn_error *err)
{
    *data = NULL;
    gzFile g = gzopen(path, "rb");
    if (!g) return vn_error_set(err, VN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[16];
    int want = 4 + 4 * ndim, rc = VN_OK;
    if (gzread(g, head, (unsigned)want) != want || head[0] || head[1] || head[2] != 8 ||
        head[3] != ndim) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: not an IDX file of %d-D unsigned bytes",
                          path, ndim);
    } else {
        size_t n = 1;
        for (int i = 0; i < ndim; i++) {
            const uint8_t *p = head + 4 + 4 * i;
            dims[i] = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
            n *= dims[i];
        }
        *data = malloc(n ? n : 1);
        size_t got = 0;
        while (*data && got < n) {
            int r = gzread(g, *data + got, (unsigned)(n - got > (1u << 30) ? (1u << 30) : n - got));
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (!*data) rc = vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
        else if (got != n)
            rc = vn_error_set(err, VN_ERR_FORMAT, "%s: truncated (%zu of %zu bytes)", path, got, n);
    }
    gzclose(g);
    if (rc != VN_OK) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

/* A smooth background: three random low-frequency waves per channel plus fine noise. */
static void background(uint8_t *pix, int s, vn_rng *rng)
{
    double fx[3][3], fy[3][3], ph[3][3], base[3];
    for (int c = 0; c < 3; c++) {
        base[c] = 30 + 50 * vn_rng_uniform_double(rng);
        for (int k = 0; k < 3; k++) {
            fx[c][k] = (vn_rng_uniform_double(rng) - 0.5) * 0.3;
            fy[c][k] = (vn_rng_uniform_double(rng) - 0.5) * 0.3;
            ph[c][k] = vn_rng_uniform_double(rng) * 6.283185307179586;
        }
    }
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++)
            for (int c = 0; c < 3; c++) {
                double v = base[c] + 12 * vn_rng_uniform_double(rng);
                for (int k = 0; k < 3; k++) v += 15 * sin(fx[c][k] * x + fy[c][k] * y + ph[c][k]);
                pix[(y * s + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

/* The larger of the two shares of a box that the other covers: intersection over the smaller
 * area. (IoU would let a small item sit inside a large one.) */
static double cover_box(const int *a, const int *b)
{
    int iw = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
    int ih = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
    if (iw <= 0 || ih <= 0) return 0;
    double aa = (double)(a[2] - a[0]) * (a[3] - a[1]), ab = (double)(b[2] - b[0]) * (b[3] - b[1]);
    return (double)iw * ih / (aa < ab ? aa : ab);
}

typedef struct fmd_src {
    const uint8_t *images, *labels;
    int64_t n;
} fmd_src;

/* Composes canvas pix and its boxes (cls, x1, y1, x2, y2 with x2, y2 exclusive); returns
 * the number of boxes. */
static int compose(const vn_fmd_config *c, const fmd_src *src, vn_rng *rng, uint8_t *pix,
                   int boxes[MAX_ITEMS][5])
{
    const int s = c->canvas;
    background(pix, s, rng);
    int want = c->min_items + (int)vn_rng_below(rng, (uint64_t)(c->max_items - c->min_items + 1));
    int n = 0;
    uint8_t scaled[256 * 256];
    for (int k = 0; k < want; k++) {
        int64_t idx = (int64_t)vn_rng_below(rng, (uint64_t)src->n);
        int size = c->min_size + (int)vn_rng_below(rng, (uint64_t)(c->max_size - c->min_size + 1));
        double tint[3];
        for (int ch = 0; ch < 3; ch++) tint[ch] = 150 + 105 * vn_rng_uniform_double(rng);
        if (vn_resize(src->images + idx * ITEM * ITEM, ITEM, ITEM, 1, NULL, size, size, NULL,
                      VN_INTERP_BILINEAR, scaled, NULL, NULL) != VN_OK)
            continue;
        int x0 = size, y0 = size, x1 = -1, y1 = -1;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
                if (scaled[y * size + x] > 10) {
                    x0 = x < x0 ? x : x0;
                    y0 = y < y0 ? y : y0;
                    x1 = x > x1 ? x : x1;
                    y1 = y > y1 ? y : y1;
                }
        if (x1 < 0) continue;
        int placed = -1, box[4];
        for (int t = 0; t < 10 && placed < 0; t++) {
            int px = (int)vn_rng_below(rng, (uint64_t)(s - size + 1));
            int py = (int)vn_rng_below(rng, (uint64_t)(s - size + 1));
            int b[4] = {px + x0, py + y0, px + x1 + 1, py + y1 + 1};
            double worst = 0;
            for (int j = 0; j < n; j++) worst = fmax(worst, cover_box(b, &boxes[j][1]));
            if (worst <= c->max_cover) {
                placed = py * s + px;
                memcpy(box, b, sizeof box);
            }
        }
        if (placed < 0) continue;
        int px = placed % s, py = placed / s;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++) {
                double a = scaled[y * size + x] / 255.0;
                uint8_t *o = pix + ((size_t)(py + y) * s + px + x) * 3;
                for (int ch = 0; ch < 3; ch++) o[ch] = (uint8_t)lround(o[ch] * (1 - a) + tint[ch] * a);
            }
        boxes[n][0] = src->labels[idx];
        memcpy(&boxes[n][1], box, sizeof box);
        n++;
    }
    return n;
}

static int write_canvas(const char *out_dir, const char *split, int64_t k, const uint8_t *pix,
                        int s, int boxes[MAX_ITEMS][5], int n, vn_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/images/%s/%06lld.png", out_dir, split, (long long)k);
    int rc = vn_png_write(path, pix, s, s, 3, 1, err);
    if (rc != VN_OK) return rc;
    snprintf(path, sizeof path, "%s/labels/%s/%06lld.txt", out_dir, split, (long long)k);
    FILE *f = fopen(path, "w");
    if (!f) return vn_error_set(err, VN_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) {
        const int *b = &boxes[i][1];
        fprintf(f, "%d %.6f %.6f %.6f %.6f\n", boxes[i][0], (b[0] + b[2]) / 2.0 / s,
                (b[1] + b[3]) / 2.0 / s, (double)(b[2] - b[0]) / s, (double)(b[3] - b[1]) / s);
    }
    if (fclose(f) != 0) return vn_error_set(err, VN_ERR_IO, "%s: write failed", path);
    return VN_OK;
}

/* All canvases of one split, in parallel; each canvas from its own RNG stream. */
static int make_split(const char *out_dir, const char *split, int split_id, int64_t count,
                      const fmd_src *src, const vn_fmd_config *c, int64_t *n_boxes, vn_error *err)
{
    int rc = VN_OK;
    int64_t total = 0;
#pragma omp parallel num_threads(c->threads > 0 ? c->threads : 1) reduction(+ : total)
    {
        uint8_t *pix = malloc((size_t)c->canvas * c->canvas * 3);
        vn_error lerr = {0};
#pragma omp for schedule(dynamic, 16)
        for (int64_t k = 0; k < count; k++) {
            int boxes[MAX_ITEMS][5], lrc;
            if (!pix) {
                lrc = vn_error_set(&lerr, VN_ERR_NOMEM, "out of memory");
            } else {
                vn_rng rng;
                vn_rng_seed(&rng, c->seed, (uint64_t)split_id, (uint64_t)k);
                int n = compose(c, src, &rng, pix, boxes);
                total += n;
                lrc = write_canvas(out_dir, split, k, pix, c->canvas, boxes, n, &lerr);
            }
            if (lrc != VN_OK) {
#pragma omp critical
                if (rc == VN_OK) {
                    rc = lrc;
                    if (err) *err = lerr;
                }
            }
        }
        free(pix);
    }
    *n_boxes += total;
    return rc;
}

static int load_split(const char *dir, const char *prefix, fmd_src *src, uint8_t **img,
                      uint8_t **lab, vn_error *err)
{
    char ip[4096], lp[4096];
    uint32_t di[3] = {0, 0, 0}, dl[1] = {0};
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    int rc = read_idx(ip, 3, di, img, err);
    if (rc == VN_OK) rc = read_idx(lp, 1, dl, lab, err);
    if (rc == VN_OK && (di[1] != ITEM || di[2] != ITEM || dl[0] != di[0] || di[0] == 0))
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: %u images of %ux%u for %u labels (expected "
                          "28x28 items, one label each)", ip, di[0], di[1], di[2], dl[0]);
    for (uint32_t i = 0; rc == VN_OK && i < dl[0]; i++)
        if ((*lab)[i] > 9) rc = vn_error_set(err, VN_ERR_FORMAT, "%s: label %u of item %u is not 0..9",
                                              lp, (*lab)[i], i);
    src->images = *img;
    src->labels = *lab;
    src->n = rc == VN_OK ? di[0] : 0;
    return rc;
}

/* The first line of every data.yaml this importer writes. */
#define FMD_HEADER "# Fashion-MNIST detection set (vanilla data import --format fashion-mnist-detect)\n"

/* out_dir may be written when its data.yaml is this importer's (a set it made, or one whose
 * import did not finish) or when it holds no images or labels yet: files of another dataset
 * are never overwritten or removed. */
static int check_owner(const char *out_dir, const char *yaml, vn_error *err)
{
    char path[4096];
    if (yaml && strncmp(yaml, FMD_HEADER, strlen(FMD_HEADER)) == 0) return VN_OK;
    static const char *const sub[] = {"images/train", "images/val", "labels/train", "labels/val"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, sub[i]);
        if (vn_fs_dir_has_entries(path))
            return vn_error_set(err, VN_ERR_INVALID, "%s holds files and no data.yaml made by this "
                                "importer: not overwriting another dataset (choose a new or empty "
                                "folder; nothing was written)", path);
    }
    return VN_OK;
}

/* data.yaml while a set is being written: the header and no keys, so that nothing trains on a
 * half-written set (the dataset loader refuses it) and a new import may finish it. */
static int mark_incomplete(const char *out_dir, vn_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/data.yaml", out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return vn_error_set(err, VN_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "%s# incomplete: an import is writing this folder, or was interrupted (run it again)\n",
            FMD_HEADER);
    return fclose(f) == 0 ? VN_OK : vn_error_set(err, VN_ERR_IO, "%s: write failed", path);
}

/* The comment that ends data.yaml: the options, then the box count. */
static void manifest(const vn_fmd_config *c, char *buf, size_t len)
{
    snprintf(buf, len, "# made by vanilla data import: canvas %d, train %lld, val %lld, items %d-%d, "
             "sizes %d-%d, max cover %g, seed %llu, boxes ", c->canvas, (long long)c->n_train,
             (long long)c->n_val, c->min_items, c->max_items, c->min_size, c->max_size, c->max_cover,
             (unsigned long long)c->seed);
}

static int write_yaml(const char *out_dir, const vn_fmd_config *c, int64_t boxes, vn_error *err)
{
    char path[4096], tmp[4200], m[256];
    snprintf(path, sizeof path, "%s/data.yaml", out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return vn_error_set(err, VN_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    fprintf(f, "%spath: .\ntrain: images/train\nval: images/val\nnames:\n", FMD_HEADER);
    const char *const *names = vn_mnist_class_names(VN_MNIST_FASHION);
    for (int i = 0; i < 10; i++) fprintf(f, "  %d: %s\n", i, names[i]);
    manifest(c, m, sizeof m);
    fprintf(f, "%s%lld\n", m, (long long)boxes);
    if (fclose(f) != 0) return vn_error_set(err, VN_ERR_IO, "%s: write failed", tmp);
    if (rename(tmp, path) != 0)
        return vn_error_set(err, VN_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    return VN_OK;
}

/* out_dir's data.yaml as a string (NULL: none, or unreadable). */
static char *read_yaml(const char *out_dir)
{
    char path[4096];
    uint8_t *d = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/data.yaml", out_dir);
    if (vn_read_file(path, &d, &len, NULL) != VN_OK) return NULL;
    char *text = realloc(d, len + 1);
    if (!text) {
        free(d);
        return NULL;
    }
    text[len] = 0;
    return text;
}

/* Whether out_dir, whose data.yaml is yaml, holds the set c describes (its box count in
 * *boxes). */
static bool already_made(const char *out_dir, const char *yaml, const vn_fmd_config *c, int64_t *boxes)
{
    char path[4096], m[256];
    manifest(c, m, sizeof m);
    const char *at = yaml ? strstr(yaml, m) : NULL;
    bool ok = at && sscanf(at + strlen(m), "%lld", (long long *)boxes) == 1;
    const char *splits[2] = {"train", "val"};
    const int64_t n[2] = {c->n_train, c->n_val};
    for (int i = 0; ok && i < 2; i++) {
        if (n[i] == 0) continue;
        snprintf(path, sizeof path, "%s/images/%s/%06lld.png", out_dir, splits[i], (long long)n[i] - 1);
        ok = access(path, R_OK) == 0;
        snprintf(path, sizeof path, "%s/labels/%s/%06lld.txt", out_dir, splits[i], (long long)n[i] - 1);
        ok = ok && access(path, R_OK) == 0;
    }
    return ok;
}

/* Removes dir's files named as this importer names them (6+ digits, then ext) whose number is
 * count or more; *removed counts them. */
static int remove_stale(const char *dir, const char *ext, int64_t count, int64_t *removed, vn_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return vn_error_set(err, VN_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    int rc = VN_OK;
    for (struct dirent *e; rc == VN_OK && (e = readdir(d));) {
        const char *p = e->d_name;
        size_t digits = strspn(p, "0123456789");
        if (digits < 6 || strcmp(p + digits, ext) != 0) continue;
        if (strtoll(p, NULL, 10) < count) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, p);
        if (unlink(path) != 0) rc = vn_error_set(err, VN_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        else ++*removed;
    }
    closedir(d);
    return rc;
}

static int check_config(const vn_fmd_config *c, vn_error *err)
{
    if (c->canvas < 32 || c->canvas > 4096 || c->min_items < 0 || c->max_items < c->min_items ||
        c->max_items > MAX_ITEMS || c->min_size < 8 || c->max_size < c->min_size ||
        c->max_size > c->canvas || c->max_size > 256 || c->n_train < 0 || c->n_val < 0 ||
        !(c->max_cover >= 0 && c->max_cover <= 1))
        return vn_error_set(err, VN_ERR_INVALID, "fashion-mnist-detect: canvas %d (32..4096), "
                            "items %d..%d (at most %d), sizes %d..%d (8..min(canvas, 256)), "
                            "%lld train and %lld val canvases (>= 0), max cover %g (0..1)", c->canvas,
                            c->min_items, c->max_items, MAX_ITEMS, c->min_size, c->max_size,
                            (long long)c->n_train, (long long)c->n_val, c->max_cover);
    return VN_OK;
}

int vn_import_fashion_mnist_detect(const char *src_dir, const char *out_dir,
                                   const vn_fmd_config *c, vn_fmd_result *res, vn_error *err)
{
    vn_fmd_result r0 = {0}, *r = res ? res : &r0;
    *r = r0;
    int rc = check_config(c, err);
    if (rc != VN_OK) return rc;
    char *yaml = read_yaml(out_dir);
    if (already_made(out_dir, yaml, c, &r->boxes)) {
        free(yaml);
        r->reused = true;
        return VN_OK;
    }
    r->boxes = 0;
    static const char *const dirs[] = {"", "/images", "/images/train", "/images/val", "/labels",
                                       "/labels/train", "/labels/val"};
    char path[4096];
    rc = check_owner(out_dir, yaml, err);
    free(yaml);
    for (size_t i = 0; rc == VN_OK && i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s%s", out_dir, dirs[i]);
        rc = vn_mkdirs(path, err);
    }
    if (rc == VN_OK) rc = mark_incomplete(out_dir, err);
    fmd_src src;
    uint8_t *img = NULL, *lab = NULL;
    if (rc == VN_OK) rc = load_split(src_dir, "train", &src, &img, &lab, err);
    if (rc == VN_OK) rc = make_split(out_dir, "train", 0, c->n_train, &src, c, &r->boxes, err);
    free(img);
    free(lab);
    img = lab = NULL;
    if (rc == VN_OK) rc = load_split(src_dir, "t10k", &src, &img, &lab, err);
    if (rc == VN_OK) rc = make_split(out_dir, "val", 1, c->n_val, &src, c, &r->boxes, err);
    free(img);
    free(lab);
    const char *splits[2] = {"train", "val"};
    const int64_t n[2] = {c->n_train, c->n_val};
    for (int i = 0; rc == VN_OK && i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", out_dir, i % 2 ? "labels" : "images", splits[i / 2]);
        rc = remove_stale(path, i % 2 ? ".txt" : ".png", n[i / 2], &r->stale_removed, err);
    }
    if (rc == VN_OK) rc = write_yaml(out_dir, c, r->boxes, err);
    return rc;
}

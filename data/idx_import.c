/* IDX (MNIST / Fashion-MNIST) files into ImageNet-format PNG folders. */
#include "base/vn_fs.h"
#include "data/vn_dataset.h"
#include "data/vn_image.h"
#include "data/workers_impl.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

static const char *const digit_names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
/* Fashion-MNIST's labels, made folder-safe ("T-shirt/top" has a slash). */
static const char *const fashion_names[10] = {"T-shirt_top", "Trouser", "Pullover", "Dress",
                                              "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                                              "Ankle_boot"};

const char *const *vn_mnist_class_names(vn_mnist_kind kind)
{
    return kind == VN_MNIST_FASHION ? fashion_names : digit_names;
}

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Reads exactly len bytes; a short read is a truncated file (or a gzip error). */
static int read_exact(gzFile g, const char *path, void *buf, size_t len, const char *what,
                      vn_error *err)
{
    size_t got = 0;
    while (got < len) {
        unsigned chunk = len - got > (1u << 30) ? (1u << 30) : (unsigned)(len - got);
        int r = gzread(g, (uint8_t *)buf + got, chunk);
        if (r < 0) {
            int zerr;
            const char *m = gzerror(g, &zerr);
            return vn_error_set(err, VN_ERR_FORMAT, "%s: corrupt gzip data reading %s: %s", path,
                                what, m);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got != len)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: truncated: %s: %zu bytes expected, the file has %zu",
                            path, what, len, got);
    return VN_OK;
}

/* Checks the magic of an IDX header of unsigned bytes with ndim dimensions (00 00 08 ndim)
 * and reads its sizes; hdr holds 4 + 4 * ndim bytes. */
static int idx_header(const uint8_t *hdr, int ndim, const char *path, uint32_t *dims,
                      vn_error *err)
{
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != ndim)
        return vn_error_set(err, VN_ERR_FORMAT,
                            "%s: not an IDX file of unsigned bytes with %d dimensions (magic "
                            "%02x %02x %02x %02x, expected 00 00 08 %02x)",
                            path, ndim, hdr[0], hdr[1], hdr[2], hdr[3], ndim);
    for (int i = 0; i < ndim; i++) dims[i] = be32(hdr + 4 + 4 * i);
    return VN_OK;
}

/* Opens an IDX file and checks its magic. */
static int idx_open(const char *path, int ndim, uint32_t *dims, gzFile *out, vn_error *err)
{
    gzFile g = gzopen(path, "rb");
    if (!g) return vn_error_set(err, VN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t hdr[16];
    size_t hlen = 4 + 4 * (size_t)ndim;
    int rc = read_exact(g, path, hdr, hlen, "the IDX header", err);
    if (!rc) rc = idx_header(hdr, ndim, path, dims, err);
    if (rc) {
        gzclose(g);
        return rc;
    }
    *out = g;
    return VN_OK;
}

/* The sizes of an image file and its label file agree and are plausible. */
static int idx_check_dims(const uint32_t *idims, const uint32_t *ldims, const char *images_path,
                          const char *labels_path, vn_error *err)
{
    if (idims[0] == 0 || idims[1] == 0 || idims[2] == 0 || idims[1] > 4096 || idims[2] > 4096)
        return vn_error_set(err, VN_ERR_FORMAT,
                            "%s: implausible dimensions %u x %u x %u (count, rows, columns)",
                            images_path, idims[0], idims[1], idims[2]);
    if (idims[0] != ldims[0])
        return vn_error_set(err, VN_ERR_FORMAT, "%s has %u images but %s has %u labels",
                            images_path, idims[0], labels_path, ldims[0]);
    return VN_OK;
}

static int idx_check_labels(const uint8_t *labels, int64_t n, int n_classes,
                            const char *labels_path, vn_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (labels[i] >= n_classes)
            return vn_error_set(err, VN_ERR_FORMAT, "%s: label %u of item %lld is not below %d",
                                labels_path, labels[i], (long long)i, n_classes);
    return VN_OK;
}

/* One IDX file in memory: the header is there and its magic right. */
static int idx_memory(const uint8_t *buf, size_t len, int ndim, const char *path, uint32_t *dims,
                      vn_error *err)
{
    size_t hlen = 4 + 4 * (size_t)ndim;
    if (len < hlen)
        return vn_error_set(err, VN_ERR_FORMAT,
                            "%s: truncated: the IDX header needs %zu bytes, file has %zu", path,
                            hlen, len);
    return idx_header(buf, ndim, path, dims, err);
}

int vn_idx_parse_memory(const void *images, size_t images_len, const char *images_label,
                        const void *labels, size_t labels_len, const char *labels_label,
                        int n_classes, vn_idx_set *set, vn_error *err)
{
    memset(set, 0, sizeof *set);
    if (n_classes <= 0 || n_classes > 256)
        return vn_error_set(err, VN_ERR_INVALID, "IDX parsing needs 1..256 classes, not %d",
                            n_classes);
    uint32_t idims[3], ldims[1];
    int rc = idx_memory(images, images_len, 3, images_label, idims, err);
    if (!rc) rc = idx_memory(labels, labels_len, 1, labels_label, ldims, err);
    if (!rc) rc = idx_check_dims(idims, ldims, images_label, labels_label, err);
    if (rc) return rc;
    size_t n = idims[0], img = (size_t)idims[1] * idims[2];
    if ((images_len - 16) / img < n)
        return vn_error_set(err, VN_ERR_FORMAT,
                            "%s: truncated: the pixel data needs %zu bytes, file has %zu",
                            images_label, img * n, images_len - 16);
    if (labels_len - 8 < n)
        return vn_error_set(err, VN_ERR_FORMAT,
                            "%s: truncated: the labels need %zu bytes, file has %zu",
                            labels_label, n, labels_len - 8);
    const uint8_t *lab = (const uint8_t *)labels + 8;
    rc = idx_check_labels(lab, (int64_t)n, n_classes, labels_label, err);
    if (rc) return rc;
    *set = (vn_idx_set){.n = (int64_t)n, .rows = (int)idims[1], .cols = (int)idims[2],
                        .pixels = (const uint8_t *)images + 16, .labels = lab};
    return VN_OK;
}

int vn_idx_read_header(const char *path, int ndim, uint32_t *dims, vn_error *err)
{
    if (ndim < 1 || ndim > 3)
        return vn_error_set(err, VN_ERR_INVALID, "IDX files here have 1 to 3 dimensions, not %d",
                            ndim);
    gzFile g = NULL;
    int rc = idx_open(path, ndim, dims, &g, err);
    if (g) gzclose(g);
    return rc;
}

static int mkdir_p(const char *path, vn_error *err)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return vn_error_set(err, VN_ERR_INVALID, "path too long: %s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
            return vn_error_set(err, VN_ERR_IO, "%s: cannot create folder: %s", tmp,
                                strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
        return vn_error_set(err, VN_ERR_IO, "%s: cannot create folder: %s", tmp, strerror(errno));
    return VN_OK;
}

typedef struct write_job {
    const uint8_t *pixels;
    const uint8_t *labels;
    int64_t n;
    int rows, cols, digits, level;
    const char *dir;
    const char *const *names;
    atomic_llong next;
    atomic_int failed;
    vn_error err; /* first failure */
    pthread_mutex_t mu;
} write_job;

static void *write_worker(void *arg)
{
    write_job *j = arg;
    size_t img = (size_t)j->rows * j->cols;
    for (;;) {
        int64_t i = atomic_fetch_add(&j->next, 64);
        if (i >= j->n || atomic_load(&j->failed)) break;
        int64_t end = i + 64 < j->n ? i + 64 : j->n;
        for (; i < end; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s/%0*lld.png", j->dir, j->names[j->labels[i]],
                     j->digits, (long long)i);
            vn_error e = {0};
            if (vn_png_write(path, j->pixels + (size_t)i * img, j->cols, j->rows, 1, j->level,
                             &e)) {
                pthread_mutex_lock(&j->mu);
                if (!atomic_load(&j->failed)) j->err = e;
                atomic_store(&j->failed, 1);
                pthread_mutex_unlock(&j->mu);
                return NULL;
            }
        }
    }
    return NULL;
}

int vn_import_idx(const char *images_path, const char *labels_path, const char *split_dir,
                  const char *const *class_names, int n_classes, int compression_level,
                  int threads, int64_t *n_written, vn_error *err)
{
    if (n_written) *n_written = 0;
    if (n_classes <= 0 || n_classes > 256 || !class_names)
        return vn_error_set(err, VN_ERR_INVALID, "IDX import needs 1..256 class names");
    uint32_t idims[3], ldims[1];
    gzFile gi = NULL, gl = NULL;
    uint8_t *pixels = NULL, *labels = NULL;
    int rc = idx_open(images_path, 3, idims, &gi, err);
    if (!rc) rc = idx_open(labels_path, 1, ldims, &gl, err);
    if (rc) goto done;
    rc = idx_check_dims(idims, ldims, images_path, labels_path, err);
    if (rc) goto done;
    int64_t n = idims[0];
    size_t img = (size_t)idims[1] * idims[2];
    pixels = malloc(img * (size_t)n);
    labels = malloc((size_t)n);
    if (!pixels || !labels) {
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory: %zu bytes for the images of %s",
                          img * (size_t)n, images_path);
        goto done;
    }
    rc = read_exact(gi, images_path, pixels, img * (size_t)n, "the pixel data", err);
    if (!rc) rc = read_exact(gl, labels_path, labels, (size_t)n, "the labels", err);
    if (rc) goto done;
    uint8_t extra;
    if (gzread(gi, &extra, 1) > 0 || gzread(gl, &extra, 1) > 0)
        vn_log(VN_LOG_WARN, "%s / %s: data after the last item ignored", images_path,
               labels_path);
    rc = idx_check_labels(labels, n, n_classes, labels_path, err);
    if (rc) goto done;
    rc = mkdir_p(split_dir, err);
    int swept = 0;
    for (int c = 0; !rc && c < n_classes; c++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", split_dir, class_names[c]);
        rc = mkdir_p(path, err);
        if (!rc) swept += vn_fs_sweep_stale_tmps(path); /* an earlier import killed part way */
    }
    if (swept) vn_log(VN_LOG_INFO, "%s: removed %d temporary file(s) of an interrupted import",
                      split_dir, swept);
    if (rc) goto done;
    int digits = 5;
    for (int64_t m = n - 1; m >= 100000; m /= 10) digits++;
    write_job job = {.pixels = pixels, .labels = labels, .n = n, .rows = (int)idims[1],
                     .cols = (int)idims[2], .digits = digits, .level = compression_level,
                     .dir = split_dir, .names = class_names};
    atomic_init(&job.next, 0);
    atomic_init(&job.failed, 0);
    pthread_mutex_init(&job.mu, NULL);
    vn__run_job(write_worker, &job, threads);
    pthread_mutex_destroy(&job.mu);
    if (atomic_load(&job.failed)) {
        rc = vn_error_set(err, job.err.code ? job.err.code : VN_ERR_IO, "%s", job.err.msg);
        goto done;
    }
    if (n_written) *n_written = n;
done:
    if (gi) gzclose(gi);
    if (gl) gzclose(gl);
    free(pixels);
    free(labels);
    return rc;
}

/* The first existing spelling of an IDX file in dir: "train-images-idx3-ubyte[.gz]" or
 * the original site's "train-images.idx3-ubyte[.gz]". */
static int find_idx(const char *dir, const char *prefix, const char *what, const char *idx,
                    char *out, size_t len, vn_error *err)
{
    static const char *const forms[4] = {"%s/%s-%s-%s-ubyte.gz", "%s/%s-%s-%s-ubyte",
                                         "%s/%s-%s.%s-ubyte.gz", "%s/%s-%s.%s-ubyte"};
    for (int f = 0; f < 4; f++) {
        struct stat st;
        snprintf(out, len, forms[f], dir, prefix, what, idx);
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) return VN_OK;
    }
    return vn_error_set(err, VN_ERR_NOT_FOUND,
                        "%s: no %s-%s-%s-ubyte[.gz] (MNIST-style IDX file) found", dir, prefix,
                        what, idx);
}

static const char marker_name[] = ".vn_import_done", started_name[] = ".vn_import_started";

/* The done marker: "vanilla idx import 1", kind, counts, then (since the source is recorded)
 * "source <absolute path>". */
static bool read_marker(const char *path, char *kind, size_t kind_len, char *source,
                        size_t source_len, int64_t *n_train, int64_t *n_val)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    long long a = -1, b = -1;
    char k[64];
    int ok = fscanf(f, "vanilla idx import 1\nkind %63s\ntrain %lld\nval %lld\n", k, &a, &b);
    source[0] = 0;
    char line[4200];
    if (ok == 3 && fgets(line, sizeof line, f) && strncmp(line, "source ", 7) == 0) {
        line[strcspn(line, "\n")] = 0;
        snprintf(source, source_len, "%s", line + 7);
    }
    fclose(f);
    if (ok != 3 || a < 0 || b < 0) return false;
    snprintf(kind, kind_len, "%s", k);
    *n_train = a;
    *n_val = b;
    return true;
}

int vn_import_mnist(const char *src_dir, const char *out_dir, vn_mnist_kind kind, int threads,
                    vn_import_result *res, vn_error *err)
{
    vn_import_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const char *kind_name = kind == VN_MNIST_FASHION ? "fashion-mnist" : "mnist";
    char source[4096];
    if (!realpath(src_dir, source)) snprintf(source, sizeof source, "%s", src_dir);
    char marker[4096], tmp_marker[4200], started[4200];
    snprintf(marker, sizeof marker, "%s/%s", out_dir, marker_name);
    snprintf(started, sizeof started, "%s/%s", out_dir, started_name);
    char had_kind[64], had_source[4096];
    if (read_marker(marker, had_kind, sizeof had_kind, had_source, sizeof had_source,
                    &res->n_train, &res->n_val)) {
        if (strcmp(had_kind, kind_name) != 0 || (had_source[0] && strcmp(had_source, source) != 0))
            return vn_error_set(err, VN_ERR_STATE, "%s already holds an import of %s from %s (%lld "
                                "train, %lld val images), not of %s from %s: delete the folder or "
                                "import into another one", out_dir, had_kind,
                                had_source[0] ? had_source : "an unrecorded source",
                                (long long)res->n_train, (long long)res->n_val, kind_name, source);
        res->skipped = true;
        vn_log(VN_LOG_INFO, "%s: already imported (%lld train, %lld val images); delete %s to "
                            "import again", out_dir, (long long)res->n_train,
               (long long)res->n_val, marker);
        return VN_OK;
    }
    /* No finished import: a folder of other images is not written into (that would mix them
     * into the classes); the traces of an interrupted import (its started marker) are. */
    char split_dir[4200];
    struct stat st;
    for (int k = 0; k < 2; k++) {
        snprintf(split_dir, sizeof split_dir, "%s/%s", out_dir, k ? "val" : "train");
        if (stat(started, &st) != 0 && vn_fs_dir_has_entries(split_dir))
            return vn_error_set(err, VN_ERR_STATE, "%s already holds files that no import of "
                                "vanilla wrote: not mixing the imported images into them; import "
                                "into an empty or new folder", split_dir);
    }
    char ti[4096], tl[4096], vi[4096], vl[4096];
    int rc = find_idx(src_dir, "train", "images", "idx3", ti, sizeof ti, err);
    if (!rc) rc = find_idx(src_dir, "train", "labels", "idx1", tl, sizeof tl, err);
    if (!rc) rc = find_idx(src_dir, "t10k", "images", "idx3", vi, sizeof vi, err);
    if (!rc) rc = find_idx(src_dir, "t10k", "labels", "idx1", vl, sizeof vl, err);
    if (rc) return rc;
    int mrc = vn_mkdirs(out_dir, err);
    if (mrc != VN_OK) return mrc;
    FILE *sf = fopen(started, "w");
    if (!sf)
        return vn_error_set(err, VN_ERR_IO, "%s: cannot create: %s", started, strerror(errno));
    fprintf(sf, "kind %s\nsource %s\n", kind_name, source);
    fclose(sf);

    const char *const *names = vn_mnist_class_names(kind);
    char split[4096];
    snprintf(split, sizeof split, "%s/train", out_dir);
    rc = vn_import_idx(ti, tl, split, names, 10, 1, threads, &res->n_train, err);
    snprintf(split, sizeof split, "%s/val", out_dir);
    if (!rc) rc = vn_import_idx(vi, vl, split, names, 10, 1, threads, &res->n_val, err);
    if (rc) return rc;
    /* The marker goes last, written to a temporary name and renamed, so that an interrupted
     * import is redone rather than taken as finished. */
    snprintf(tmp_marker, sizeof tmp_marker, "%s.tmp", marker);
    FILE *f = fopen(tmp_marker, "w");
    if (!f)
        return vn_error_set(err, VN_ERR_IO, "%s: cannot create: %s", tmp_marker,
                            strerror(errno));
    fprintf(f, "vanilla idx import 1\nkind %s\ntrain %lld\nval %lld\nsource %s\n", kind_name,
            (long long)res->n_train, (long long)res->n_val, source);
    if (fclose(f) != 0 || rename(tmp_marker, marker) != 0)
        return vn_error_set(err, VN_ERR_IO, "%s: cannot write the import marker: %s", marker,
                            strerror(errno));
    unlink(started);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    res->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return VN_OK;
}

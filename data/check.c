/* Dataset check: decode every image of a folder once and report what would go wrong. */
#include "data/vn_dataset.h"
#include "data/vn_image.h"
#include "data/workers_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct file_result {
    bool ok;
    vn_image_info info;
    char *reason; /* error, or NULL */
} file_result;

typedef struct check_job {
    const vn_dataset *ds;
    int64_t max_pixels;
    file_result *res;
    atomic_llong next;
} check_job;

static void *check_worker(void *arg)
{
    check_job *job = arg;
    vn_decoder *dec = NULL;
    vn_image img = {0};
    vn_error err = {0};
    if (vn_decoder_create(&dec, &err)) return NULL; /* other workers carry on */
    int64_t n = vn_dataset_size(job->ds);
    for (;;) {
        int64_t i = atomic_fetch_add(&job->next, 1);
        if (i >= n) break;
        char path[4096];
        file_result *r = &job->res[i];
        if (!vn_dataset_path(job->ds, i, path, sizeof path)) {
            r->reason = strdup("path too long");
            continue;
        }
        vn_error_clear(&err);
        /* Decoding to RGB exercises every conversion the loader may need. */
        int rc = vn_image_decode_file(dec, path, 3, job->max_pixels, &img, &r->info, &err);
        if (rc == VN_OK) {
            r->ok = true;
        } else {
            /* Drop the "<path>: " prefix; the report prints the relative path itself. */
            size_t pl = strlen(path);
            const char *m = err.msg;
            if (!strncmp(m, path, pl) && m[pl] == ':') m += pl + (m[pl + 1] == ' ' ? 2 : 1);
            r->reason = strdup(m);
        }
    }
    vn_image_free(&img);
    vn_decoder_destroy(dec);
    return NULL;
}

/* Unusual but readable: what a user may want to know before training. */
static void odd_reason(const char *rel, const vn_image_info *in, char *buf, size_t len)
{
    buf[0] = '\0';
    size_t o = 0;
    const char *dot = strrchr(rel, '.');
    bool ext_png = dot && !strcasecmp(dot, ".png");
    if ((ext_png && in->format != VN_IMAGE_PNG) || (!ext_png && in->format != VN_IMAGE_JPEG))
        o += (size_t)snprintf(buf + o, len - o, "%s data with extension %s; ",
                              vn_image_format_name(in->format), dot ? dot : "");
    if (in->cmyk && o < len) o += (size_t)snprintf(buf + o, len - o, "CMYK JPEG; ");
    if (in->bit_depth == 16 && o < len) o += (size_t)snprintf(buf + o, len - o, "16-bit PNG; ");
    if (in->palette && o < len) o += (size_t)snprintf(buf + o, len - o, "palette PNG; ");
    if (!in->cmyk && (in->file_channels == 2 || in->file_channels == 4) && o < len)
        o += (size_t)snprintf(buf + o, len - o, "alpha channel (dropped); ");
    if (o >= 2 && o < len) buf[o - 2] = '\0';
}

static int push_item(vn_check_item **items, int64_t *n, const char *path, const char *reason)
{
    /* Capacity doubles at 16, 32, 64, ... (a folder can have a million odd files). */
    if (*n == 0 || (*n >= 16 && (*n & (*n - 1)) == 0)) {
        int64_t cap = *n ? *n * 2 : 16;
        vn_check_item *p = realloc(*items, (size_t)cap * sizeof **items);
        if (!p) return VN_ERR_NOMEM;
        *items = p;
    }
    vn_check_item *p = *items;
    p[*n].path = strdup(path);
    p[*n].reason = strdup(reason);
    if (!p[*n].path || !p[*n].reason) {
        free(p[*n].path);
        free(p[*n].reason);
        return VN_ERR_NOMEM;
    }
    (*n)++;
    return VN_OK;
}

int vn_dataset_check(const char *root, int threads, int64_t max_pixels, vn_check_report *rep,
                     vn_error *err)
{
    memset(rep, 0, sizeof *rep);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    vn_dataset *ds = NULL;
    int rc = vn_dataset_scan(root, NULL, 0, &ds, err);
    if (rc) return rc;
    int64_t n = vn_dataset_size(ds);
    check_job job = {.ds = ds, .max_pixels = max_pixels};
    atomic_init(&job.next, 0);
    job.res = calloc((size_t)n, sizeof *job.res);
    int nc = vn_dataset_num_classes(ds);
    rep->n_classes = nc;
    rep->class_names = calloc((size_t)nc + 1, sizeof *rep->class_names);
    rep->class_images = calloc((size_t)nc + 1, sizeof *rep->class_images);
    rep->class_ok = calloc((size_t)nc + 1, sizeof *rep->class_ok);
    if (!job.res || !rep->class_names || !rep->class_images || !rep->class_ok) {
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory checking %s", root);
        goto done;
    }
    for (int c = 0; c < nc; c++)
        if (!(rep->class_names[c] = strdup(vn_dataset_class_names(ds)[c]))) {
            rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
            goto done;
        }
    vn__run_job(check_worker, &job, threads);

    rep->min_width = rep->min_height = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        file_result *r = &job.res[i];
        const char *rel = vn_dataset_relpath(ds, i);
        int label = vn_dataset_label(ds, i);
        rep->n_images++;
        rep->class_images[label]++;
        if (!r->ok) {
            rc = push_item(&rep->bad, &rep->n_bad, rel, r->reason ? r->reason : "out of memory");
            continue;
        }
        rep->n_ok++;
        rep->class_ok[label]++;
        if (r->info.format == VN_IMAGE_PNG) rep->n_png++;
        else rep->n_jpeg++;
        if (r->info.file_channels <= 2) rep->n_gray++;
        if (rep->n_ok == 1 || r->info.width < rep->min_width) rep->min_width = r->info.width;
        if (rep->n_ok == 1 || r->info.height < rep->min_height) rep->min_height = r->info.height;
        if (r->info.width > rep->max_width) rep->max_width = r->info.width;
        if (r->info.height > rep->max_height) rep->max_height = r->info.height;
        char why[256];
        odd_reason(rel, &r->info, why, sizeof why);
        if (why[0]) rc = push_item(&rep->odd, &rep->n_odd, rel, why);
    }
    for (int64_t i = 0; i < vn_dataset_skipped_count(ds) && !rc; i++)
        rc = push_item(&rep->skipped, &rep->n_skipped, vn_dataset_skipped(ds, i),
                       "not a .png/.jpg/.jpeg file");
    if (rc) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory checking %s", root);
done:
    if (job.res)
        for (int64_t i = 0; i < n; i++) free(job.res[i].reason);
    free(job.res);
    vn_dataset_free(ds);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rep->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc) vn_check_report_free(rep);
    return rc;
}

static void print_items(FILE *f, const char *title, const vn_check_item *it, int64_t n,
                        int max_list)
{
    if (n == 0) return;
    fprintf(f, "%s (%lld):\n", title, (long long)n);
    int64_t shown = max_list > 0 && n > max_list ? max_list : n;
    for (int64_t i = 0; i < shown; i++) fprintf(f, "  %s: %s\n", it[i].path, it[i].reason);
    if (shown < n) fprintf(f, "  ... and %lld more\n", (long long)(n - shown));
}

void vn_check_report_print(const vn_check_report *rep, FILE *f, int max_list)
{
    fprintf(f, "%lld images in %d class%s: %lld readable (%lld PNG, %lld JPEG, %lld gray), "
               "%lld unreadable, %lld odd, %lld other files skipped (%.2f s)\n",
            (long long)rep->n_images, rep->n_classes, rep->n_classes == 1 ? "" : "es",
            (long long)rep->n_ok,
            (long long)rep->n_png, (long long)rep->n_jpeg, (long long)rep->n_gray,
            (long long)rep->n_bad, (long long)rep->n_odd, (long long)rep->n_skipped,
            rep->seconds);
    if (rep->n_ok)
        fprintf(f, "sizes: %dx%d to %dx%d\n", rep->min_width, rep->min_height, rep->max_width,
                rep->max_height);
    fprintf(f, "images per class:\n");
    for (int c = 0; c < rep->n_classes; c++) {
        const char *name = rep->class_names[c]; /* padded to 24 characters on screen */
        int cols = vn_utf8_columns(name);
        fprintf(f, "  %4d %s%*s %lld", c, name, cols < 24 ? 24 - cols : 0, "",
                (long long)rep->class_ok[c]);
        if (rep->class_images[c] != rep->class_ok[c])
            fprintf(f, " (+%lld unreadable)", (long long)(rep->class_images[c] - rep->class_ok[c]));
        if (rep->class_images[c] == 0) fprintf(f, "  EMPTY");
        fputc('\n', f);
    }
    print_items(f, "unreadable", rep->bad, rep->n_bad, max_list);
    print_items(f, "odd formats", rep->odd, rep->n_odd, max_list);
    print_items(f, "skipped files", rep->skipped, rep->n_skipped, max_list);
}

static void free_items(vn_check_item *it, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        free(it[i].path);
        free(it[i].reason);
    }
    free(it);
}

void vn_check_report_free(vn_check_report *rep)
{
    if (!rep) return;
    if (rep->class_names)
        for (int c = 0; c < rep->n_classes; c++) free(rep->class_names[c]);
    free(rep->class_names);
    free(rep->class_images);
    free(rep->class_ok);
    free_items(rep->bad, rep->n_bad);
    free_items(rep->odd, rep->n_odd);
    free_items(rep->skipped, rep->n_skipped);
    memset(rep, 0, sizeof *rep);
}

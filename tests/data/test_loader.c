/* The loader on synthetic folders whose pixels encode the file's dataset index: order,
 * coverage, determinism across 0/1/2/4 workers (memcmp), resume, drop_last, bad files,
 * mixup/cutmix, the prefetch bound. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/vn_image.h"
#include "data/vn_loader.h"
#include "data_util.h"

#define SIDE 12 /* index images are SIDE x SIDE */

/* n_classes folders "cNN", per_class files each; file k of class c has dataset index
 * c * per_class + k, which its pixels encode. */
static void make_index_folder(const char *root, int n_classes, int per_class)
{
    char path[4200];
    for (int c = 0; c < n_classes; c++) {
        snprintf(path, sizeof path, "%s/c%02d", root, c);
        dt_mkdirs(path);
        for (int k = 0; k < per_class; k++) {
            snprintf(path, sizeof path, "%s/c%02d/%04d.png", root, c, k);
            dt_write_index_png(path, c * per_class + k, SIDE, SIDE, 3);
        }
    }
}

/* Identity pipeline: no crop, no resize, no flip, mean 0 std 1 -> pixel / 255. */
static void identity_config(vn_loader_config *cfg, const char *root, int batch)
{
    vn_loader_config_init(cfg);
    vn_loader_config_eval(cfg);
    cfg->root = root;
    cfg->input_size = SIDE;
    cfg->crop_pct = 1.0;
    for (int c = 0; c < 3; c++) {
        cfg->mean[c] = 0;
        cfg->std[c] = 1;
    }
    cfg->batch_size = batch;
    cfg->workers = 2;
    cfg->prefetch = 3;
    cfg->seed = 1234;
}

static int64_t index_in_batch(const vn_batch *b, int j)
{
    const float *img = b->images->data + (size_t)j * SIDE * SIDE * 3;
    uint8_t px[3];
    for (int c = 0; c < 3; c++) px[c] = (uint8_t)lrintf(img[c] * 255.0f);
    return dt_index_of_pixels(px);
}

static vn_loader *open_ok(const vn_loader_config *cfg)
{
    vn_loader *ld = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_loader_open(cfg, &ld, &err) == VN_OK, "%s", err.msg);
    return ld;
}

static void start_ok(vn_loader *ld, int64_t epoch, int64_t pos)
{
    vn_error err = {0};
    ck_assert_msg(vn_loader_start_epoch(ld, epoch, pos, &err) == VN_OK, "%s", err.msg);
}

static int next_ok(vn_loader *ld, vn_batch *b)
{
    vn_error err = {0};
    ck_assert_msg(vn_loader_next(ld, b, &err) == VN_OK, "%s", err.msg);
    return b->size;
}

/* Order: each epoch a permutation (every sample once), different per epoch, rebuilt by a new
 * loader from (seed, epoch); pixels agree with indices and labels. */
START_TEST(order_is_a_reproducible_permutation)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_index_folder(root, 3, 9); /* 27 samples */
    vn_loader_config cfg;
    identity_config(&cfg, root, 4);
    cfg.shuffle = true;
    int64_t order[2][27];
    for (int e = 0; e < 2; e++) {
        vn_loader *ld = open_ok(&cfg);
        ck_assert_int_eq(vn_loader_batches_per_epoch(ld), 7);
        start_ok(ld, e, 0);
        int seen[27] = {0}, pos = 0;
        vn_batch b;
        while (next_ok(ld, &b) > 0) {
            ck_assert_int_eq(b.position, pos);
            for (int j = 0; j < b.size; j++) {
                int64_t idx = b.indices[j];
                ck_assert_int_eq(index_in_batch(&b, j), idx);
                ck_assert_int_eq(b.labels[j], idx / 9);
                ck_assert_ptr_null(b.soft_targets);
                seen[idx]++;
                order[e][pos + j] = idx;
            }
            pos += b.size;
            ck_assert_int_eq(b.next_position, pos);
            vn_loader_release(ld, &b);
        }
        ck_assert_int_eq(pos, 27);
        for (int i = 0; i < 27; i++) ck_assert_int_eq(seen[i], 1);
        /* A second loader rebuilds the same order. */
        vn_loader *ld2 = open_ok(&cfg);
        start_ok(ld2, e, 0);
        pos = 0;
        while (next_ok(ld2, &b) > 0) {
            for (int j = 0; j < b.size; j++) ck_assert_int_eq(b.indices[j], order[e][pos + j]);
            pos += b.size;
            vn_loader_release(ld2, &b);
        }
        vn_loader_close(ld2);
        vn_loader_close(ld);
    }
    ck_assert_msg(memcmp(order[0], order[1], sizeof order[0]) != 0, "epochs share an order");
    /* Without shuffle the order is the folder order. */
    cfg.shuffle = false;
    vn_loader *ld = open_ok(&cfg);
    start_ok(ld, 5, 0);
    vn_batch b;
    int pos = 0;
    while (next_ok(ld, &b) > 0) {
        for (int j = 0; j < b.size; j++) ck_assert_int_eq(b.indices[j], pos + j);
        pos += b.size;
        vn_loader_release(ld, &b);
    }
    vn_loader_close(ld);
    vn_test_rmtree(root);
}
END_TEST

/* A mixed folder: JPEGs and PNGs of several sizes, one corrupt file. */
static void make_mixed_folder(const char *root)
{
    char path[4200];
    vn_error err = {0};
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/k%d", root, c);
        dt_mkdirs(path);
        for (int k = 0; k < 7; k++) {
            int w = 20 + 7 * k + c, h = 16 + 5 * ((k + c) % 4);
            uint8_t *px = malloc((size_t)w * h * 3);
            for (int i = 0; i < w * h * 3; i++)
                px[i] = (uint8_t)((i * (k + 3) + c * 50 + (i / (w * 3)) * 9) & 0xFF);
            snprintf(path, sizeof path, "%s/k%d/%d.%s", root, c, k, k % 2 ? "jpg" : "png");
            int rc = k % 2 ? vn_jpeg_write(path, px, w, h, 3, 90, &err)
                           : vn_png_write(path, px, w, h, 3, 1, &err);
            ck_assert_msg(rc == VN_OK, "%s", err.msg);
            free(px);
        }
    }
    snprintf(path, sizeof path, "%s/k1/zz_corrupt.png", root);
    dt_write_file(path, "\x89PNG\r\n\x1a\nnot really", 18);
}

typedef struct run_out {
    uint8_t *bytes; /* images, labels, indices, soft targets of every batch, concatenated */
    size_t len, cap;
    int batches;
} run_out;

static void put(run_out *o, const void *p, size_t n)
{
    if (o->len + n > o->cap) {
        o->cap = (o->len + n) * 2;
        o->bytes = realloc(o->bytes, o->cap);
        ck_assert(o->bytes != NULL);
    }
    memcpy(o->bytes + o->len, p, n);
    o->len += n;
}

static void run_epochs(const vn_loader_config *cfg, int epochs, run_out *o)
{
    memset(o, 0, sizeof *o);
    dt_log log;
    dt_capture_warnings(&log);
    vn_loader *ld = open_ok(cfg);
    for (int e = 0; e < epochs; e++) {
        start_ok(ld, e, 0);
        vn_batch b;
        while (next_ok(ld, &b) > 0) {
            put(o, b.images->data, (size_t)b.images->numel * sizeof(float));
            put(o, b.labels, (size_t)b.size * sizeof(int32_t));
            put(o, b.indices, (size_t)b.size * sizeof(int64_t));
            if (b.soft_targets)
                put(o, b.soft_targets,
                    (size_t)b.size * vn_loader_num_classes(ld) * sizeof(float));
            put(o, &b.mix_lam, sizeof b.mix_lam);
            o->batches++;
            vn_loader_release(ld, &b);
        }
    }
    ck_assert_int_eq(vn_loader_bad_files(ld), 1);
    ck_assert_int_eq(log.warnings, 1);
    ck_assert_msg(strstr(log.last, "zz_corrupt.png"), "warning: %s", log.last);
    vn_log_set(NULL, NULL);
    vn_loader_close(ld);
}

/* Full training augmentation (bicubic RRC, flip, mixup + cutmix, a bad file): the same
 * bytes for 0, 1, 2 and 4 workers and any prefetch depth. */
START_TEST(same_bytes_for_any_worker_count)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_mixed_folder(root);
    vn_loader_config cfg;
    vn_loader_config_init(&cfg);
    cfg.root = root;
    cfg.input_size = 16;
    cfg.interpolation = VN_INTERP_BICUBIC;
    cfg.batch_size = 4;
    cfg.mixup_alpha = 0.8f;
    cfg.cutmix_alpha = 1.0f;
    cfg.seed = 99;
    cfg.max_bad_fraction = 0.1;
    const int workers[5] = {0, 1, 2, 4, 4}, prefetch[5] = {1, 1, 2, 3, 1};
    run_out ref;
    cfg.workers = workers[0];
    cfg.prefetch = prefetch[0];
    run_epochs(&cfg, 2, &ref);
    ck_assert_int_eq(ref.batches, 2 * (22 / 4));
    for (int k = 1; k < 5; k++) {
        cfg.workers = workers[k];
        cfg.prefetch = prefetch[k];
        run_out o;
        run_epochs(&cfg, 2, &o);
        ck_assert_int_eq(o.len, ref.len);
        ck_assert_msg(memcmp(o.bytes, ref.bytes, ref.len) == 0,
                      "%d workers (prefetch %d) give different batches than 0 workers",
                      workers[k], prefetch[k]);
        free(o.bytes);
    }
    /* A different seed changes the augmentation. */
    cfg.seed = 100;
    cfg.workers = 2;
    run_out other;
    run_epochs(&cfg, 2, &other);
    ck_assert(other.len != ref.len || memcmp(other.bytes, ref.bytes, ref.len) != 0);
    free(other.bytes);
    free(ref.bytes);
    vn_test_rmtree(root);
}
END_TEST

/* The official recipe's full train pipeline (bicubic RRC, flip, RandAugment m9, random
 * erasing with 2 boxes in pixel mode, mixup + cutmix): the same bytes for 0, 1, 2 and 4
 * workers, and a mid-epoch resume in a fresh loader gives the uninterrupted batches. */
START_TEST(full_recipe_same_bytes_and_resume)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_mixed_folder(root);
    vn_loader_config cfg;
    vn_loader_config_init(&cfg);
    cfg.root = root;
    cfg.input_size = 16;
    cfg.interpolation = VN_INTERP_BICUBIC;
    cfg.batch_size = 4;
    cfg.mixup_alpha = 0.1f;
    cfg.cutmix_alpha = 1.0f;
    cfg.auto_augment = "rand-m9-mstd0.5-inc1";
    cfg.reprob = 0.9f;
    cfg.recount = 2;
    cfg.seed = 7;
    cfg.max_bad_fraction = 0.1;
    dt_log log;
    dt_capture_warnings(&log);
    const int workers[4] = {0, 1, 2, 4};
    run_out ref;
    cfg.workers = 0;
    run_epochs(&cfg, 2, &ref);
    for (int k = 1; k < 4; k++) {
        cfg.workers = workers[k];
        run_out o;
        run_epochs(&cfg, 2, &o);
        ck_assert_int_eq(o.len, ref.len);
        ck_assert_msg(memcmp(o.bytes, ref.bytes, ref.len) == 0,
                      "full recipe: %d workers give different batches than 0", workers[k]);
        free(o.bytes);
    }
    /* The augmentations change the batches. */
    cfg.auto_augment = "";
    cfg.reprob = 0;
    run_out plain;
    run_epochs(&cfg, 2, &plain);
    ck_assert(plain.len == ref.len && memcmp(plain.bytes, ref.bytes, ref.len) != 0);
    /* Color jitter (timm's choice when RandAugment is off): also worker-independent. */
    cfg.color_jitter = 0.4f;
    run_out cj0, cj4;
    cfg.workers = 0;
    run_epochs(&cfg, 1, &cj0);
    cfg.workers = 4;
    run_epochs(&cfg, 1, &cj4);
    ck_assert(cj0.len == cj4.len && memcmp(cj0.bytes, cj4.bytes, cj0.len) == 0);
    ck_assert(memcmp(cj0.bytes, plain.bytes, cj0.len) != 0);
    cfg.color_jitter = 0;
    free(cj0.bytes);
    free(cj4.bytes);
    free(plain.bytes);
    free(ref.bytes);
    /* Resume at the cursor of batch 2 with another worker count. */
    cfg.auto_augment = "rand-m9-mstd0.5-inc1";
    cfg.reprob = 0.9f;
    size_t img_bytes = (size_t)4 * 16 * 16 * 3 * sizeof(float);
    float *all = malloc(img_bytes * 5);
    int64_t cursor[6];
    cfg.workers = 2;
    vn_loader *ld = open_ok(&cfg);
    start_ok(ld, 1, 0);
    vn_batch b;
    int nb = 0;
    while (next_ok(ld, &b) > 0) {
        memcpy((char *)all + (size_t)nb * img_bytes, b.images->data, img_bytes);
        cursor[nb++] = b.next_position;
        vn_loader_release(ld, &b);
    }
    vn_loader_close(ld);
    ck_assert_int_eq(nb, 5);
    cfg.workers = 4;
    ld = open_ok(&cfg);
    start_ok(ld, 1, cursor[1]);
    for (int k = 2; k < 5; k++) {
        ck_assert_int_eq(next_ok(ld, &b), 4);
        ck_assert_msg(!memcmp(b.images->data, (char *)all + (size_t)k * img_bytes, img_bytes),
                      "full recipe: batch %d differs after resume", k);
        vn_loader_release(ld, &b);
    }
    vn_loader_close(ld);
    /* A bad RandAugment string is refused at open, naming the key. */
    cfg.auto_augment = "rand-m99";
    vn_error err = {0};
    ck_assert_int_eq(vn_loader_open(&cfg, &ld, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "data.auto_augment"), "%s", err.msg);
    vn_log_set(NULL, NULL);
    free(all);
    vn_test_rmtree(root);
}
END_TEST

/* Resume: starting at a saved cursor gives the same batches as the uninterrupted epoch, in
 * a fresh loader or after restarting a loader with work in flight. */
START_TEST(resume_from_cursor)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_mixed_folder(root);
    vn_loader_config cfg;
    vn_loader_config_init(&cfg);
    cfg.root = root;
    cfg.input_size = 16;
    cfg.batch_size = 4;
    cfg.workers = 2;
    cfg.prefetch = 3;
    cfg.cutmix_alpha = 1.0f;
    cfg.max_bad_fraction = 0.1;
    dt_log log;
    dt_capture_warnings(&log);
    size_t img_bytes = (size_t)4 * 16 * 16 * 3 * sizeof(float);
    vn_loader *ld = open_ok(&cfg);
    start_ok(ld, 3, 0);
    float *all = malloc(img_bytes * 5);
    int64_t cursor[6];
    vn_batch b;
    int nb = 0;
    while (next_ok(ld, &b) > 0) {
        memcpy(all + (size_t)nb * img_bytes / sizeof(float), b.images->data, img_bytes);
        cursor[nb++] = b.next_position;
        vn_loader_release(ld, &b);
    }
    ck_assert_int_eq(nb, 5);
    ck_assert_int_eq(b.size, 0);
    /* Mid-epoch restart on the same loader while workers are ahead. */
    start_ok(ld, 3, 0);
    ck_assert_int_gt(next_ok(ld, &b), 0);
    vn_loader_release(ld, &b);
    start_ok(ld, 3, cursor[1]);
    for (int k = 2; k < 5; k++) {
        ck_assert_int_eq(next_ok(ld, &b), 4);
        ck_assert_int_eq(b.position, cursor[k - 1]);
        ck_assert_msg(!memcmp(b.images->data, all + (size_t)k * img_bytes / sizeof(float),
                              img_bytes), "batch %d differs after resume", k);
        vn_loader_release(ld, &b);
    }
    ck_assert_int_eq(next_ok(ld, &b), 0);
    vn_loader_close(ld);
    /* A fresh loader (with a different worker count) resumed at the cursor of batch 2. */
    cfg.workers = 1;
    ld = open_ok(&cfg);
    start_ok(ld, 3, cursor[2]);
    for (int k = 3; k < 5; k++) {
        ck_assert_int_eq(next_ok(ld, &b), 4);
        ck_assert(!memcmp(b.images->data, all + (size_t)k * img_bytes / sizeof(float), img_bytes));
        vn_loader_release(ld, &b);
    }
    vn_loader_close(ld);
    vn_log_set(NULL, NULL);
    free(all);
    vn_test_rmtree(root);
}
END_TEST

START_TEST(drop_last_and_partial_batches)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_index_folder(root, 1, 23);
    vn_loader_config cfg;
    identity_config(&cfg, root, 5);
    cfg.drop_last = true;
    cfg.shuffle = true;
    vn_loader *ld = open_ok(&cfg);
    ck_assert_int_eq(vn_loader_batches_per_epoch(ld), 4);
    start_ok(ld, 0, 0);
    vn_batch b;
    int n = 0, sizes = 0;
    while (next_ok(ld, &b) > 0) {
        ck_assert_int_eq(b.size, 5);
        ck_assert_int_eq(b.images->shape[0], 5);
        n++;
        sizes += b.size;
        vn_loader_release(ld, &b);
    }
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(b.next_position, 20);
    vn_loader_close(ld);
    cfg.drop_last = false;
    ld = open_ok(&cfg);
    ck_assert_int_eq(vn_loader_batches_per_epoch(ld), 5);
    start_ok(ld, 0, 0);
    int last = 0;
    n = 0;
    while (next_ok(ld, &b) > 0) {
        last = b.size;
        ck_assert_int_eq(b.images->shape[0], b.size);
        ck_assert_int_eq(b.images->numel, (int64_t)b.size * SIDE * SIDE * 3);
        n++;
        vn_loader_release(ld, &b);
    }
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(last, 3);
    /* Bad arguments. */
    vn_error err = {0};
    ck_assert_int_eq(vn_loader_start_epoch(ld, 0, 24, &err), VN_ERR_INVALID);
    vn_loader_close(ld);
    vn_test_rmtree(root);
}
END_TEST

/* Data-parallel shards: shard r of K hands out exactly the unsharded batches r, r + K, ...
 * (same positions, samples and bytes), from the start or from a mid-epoch cursor, with or
 * without workers, the last short batch included. */
START_TEST(shards_take_every_kth_batch)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_index_folder(root, 1, 23);
    vn_loader_config cfg;
    identity_config(&cfg, root, 5);
    cfg.drop_last = false;
    cfg.shuffle = true;
    size_t bytes = (size_t)5 * SIDE * SIDE * 3 * sizeof(float);
    for (int64_t start = 0; start <= 5; start += 5) {
        vn_loader *ld = open_ok(&cfg);
        start_ok(ld, 1, start);
        float *all = malloc(bytes * 5);
        int64_t pos[5], idx[5][5];
        int size[5], nb = 0;
        vn_batch b;
        while (next_ok(ld, &b) > 0) {
            memcpy((char *)all + (size_t)nb * bytes, b.images->data, (size_t)b.size * bytes / 5);
            pos[nb] = b.position;
            size[nb] = b.size;
            memcpy(idx[nb], b.indices, (size_t)b.size * sizeof(int64_t));
            nb++;
            vn_loader_release(ld, &b);
        }
        vn_loader_close(ld);
        for (int K = 2; K <= 3; K++)
            for (int r = 0; r < K; r++)
                for (int workers = 0; workers <= 2; workers += 2) {
                    vn_loader_config sc = cfg;
                    sc.shard_count = K;
                    sc.shard_index = r;
                    sc.workers = workers;
                    ld = open_ok(&sc);
                    start_ok(ld, 1, start);
                    int g = r, got = 0;
                    while (next_ok(ld, &b) > 0) {
                        ck_assert_int_lt(g, nb);
                        ck_assert_int_eq(b.position, pos[g]);
                        ck_assert_int_eq(b.size, size[g]);
                        ck_assert(!memcmp(b.indices, idx[g], (size_t)b.size * sizeof(int64_t)));
                        ck_assert_msg(!memcmp(b.images->data, (char *)all + (size_t)g * bytes,
                                              (size_t)b.size * bytes / 5),
                                      "shard %d/%d batch %d differs", r, K, g);
                        vn_loader_release(ld, &b);
                        g += K;
                        got++;
                    }
                    ck_assert_int_eq(got, nb > r ? (nb - r + K - 1) / K : 0);
                    vn_loader_close(ld);
                }
        free(all);
    }
    vn_loader_config bad = cfg;
    bad.shard_count = 2;
    bad.shard_index = 2;
    vn_loader *ld = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_loader_open(&bad, &ld, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "shard_index"), "message: %s", err.msg);
    vn_test_rmtree(root);
}
END_TEST

/* The list of awkward files in one folder, handled with nothing else lost. */
static void make_awkward_folder(const char *root, char *corrupt, char *truncated)
{
    char path[4200];
    make_index_folder(root, 2, 10); /* indices 0..19 in c00, c01 */
    snprintf(path, sizeof path, "%s/c02_odd", root);
    dt_mkdirs(path);
    size_t len;
    uint8_t *d = dt_read_file(vn_test_fixture_path("data/cmyk.jpg"), &len);
    snprintf(path, sizeof path, "%s/c02_odd/a_cmyk.jpg", root);
    dt_write_file(path, d, len);
    free(d);
    d = dt_read_file(vn_test_fixture_path("data/palette.png"), &len);
    snprintf(path, sizeof path, "%s/c02_odd/b_palette.png", root);
    dt_write_file(path, d, len);
    free(d);
    uint8_t raw[SIDE * SIDE * 6];
    for (int i = 0; i < (int)sizeof raw; i++) raw[i] = (uint8_t)(i * 3);
    snprintf(path, sizeof path, "%s/c02_odd/c_16bit.png", root);
    dt_write_png_raw(path, SIDE, SIDE, 2 /* RGB */, 16, raw, NULL, 0, NULL, 0, 0);
    d = dt_read_file(vn_test_fixture_path("data/rgb.jpg"), &len);
    snprintf(truncated, 4200, "%s/c02_odd/d_truncated.jpg", root);
    dt_write_file(truncated, d, len * 2 / 3);
    free(d);
    snprintf(corrupt, 4200, "%s/c00/0003b_corrupt.png", root); /* sorts after 0003.png */
    dt_write_file(corrupt, "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDRjunkjunkjunk", 29);
    snprintf(path, sizeof path, "%s/c03_empty", root);
    dt_mkdirs(path);
    snprintf(path, sizeof path, "%s/c01/notes.txt", root);
    dt_write_file(path, "stray text\n", 11);
}

START_TEST(bad_and_odd_files)
{
    char root[4096], corrupt[4200], truncated[4200];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_awkward_folder(root, corrupt, truncated);
    vn_loader_config cfg;
    identity_config(&cfg, root, 4);
    cfg.max_bad_fraction = 0.1; /* 2 of 25 = 8% */
    dt_log log;
    dt_capture_warnings(&log);
    vn_loader *ld = open_ok(&cfg);
    /* The empty class is a class (its label stays reserved); the text file is no sample. */
    ck_assert_int_eq(vn_loader_num_classes(ld), 4);
    ck_assert_str_eq(vn_loader_class_names(ld)[3], "c03_empty");
    ck_assert_int_eq(vn_loader_num_samples(ld), 25);
    ck_assert_int_eq(log.warnings, 1); /* the empty class */
    int counts[25] = {0};
    for (int e = 0; e < 2; e++) {
        start_ok(ld, e, 0);
        vn_batch b;
        int total = 0;
        while (next_ok(ld, &b) > 0) {
            for (int j = 0; j < b.size; j++) {
                int64_t idx = b.indices[j];
                const char *rel = vn_dataset_relpath(vn_loader_dataset(ld), idx);
                ck_assert_msg(!strstr(rel, "corrupt") && !strstr(rel, "truncated"),
                              "bad file %s delivered", rel);
                counts[idx] += e == 0;
                if (idx < 24 && strncmp(rel, "c02", 3) != 0) {
                    /* Index images: the pixels are the file's (after the corrupt file at
                     * dataset position 4, indices shift by one). */
                    int64_t enc = index_in_batch(&b, j);
                    ck_assert_int_eq(enc, idx < 4 ? idx : idx - 1);
                }
                if (!strncmp(rel, "c02", 3)) {
                    /* Odd formats decode as a single-image load would. */
                    char path[4200];
                    snprintf(path, sizeof path, "%s/%s", root, rel);
                    float *want = malloc(SIDE * SIDE * 3 * sizeof(float));
                    vn_error err = {0};
                    vn_loader_config one = cfg;
                    one.input_size = SIDE;
                    ck_assert_msg(vn_load_eval_image(path, &one, want, &err) == VN_OK, "%s",
                                  err.msg);
                    ck_assert(!memcmp(want, b.images->data + (size_t)j * SIDE * SIDE * 3,
                                      SIDE * SIDE * 3 * sizeof(float)));
                    ck_assert_int_eq(b.labels[j], 2);
                    free(want);
                }
            }
            total += b.size;
            vn_loader_release(ld, &b);
        }
        ck_assert_int_eq(total, 25); /* eval keeps every slot */
    }
    /* Each bad file reported once (not again in epoch 2), with its path and reason. */
    ck_assert_int_eq(vn_loader_bad_files(ld), 2);
    ck_assert_int_eq(log.warnings, 3);
    vn_log_set(NULL, NULL);
    /* Every readable file was delivered; the two stand-ins are the files after the bad ones. */
    int doubled = 0;
    for (int i = 0; i < 25; i++) {
        const char *rel = vn_dataset_relpath(vn_loader_dataset(ld), i);
        bool bad = strstr(rel, "corrupt") || strstr(rel, "truncated");
        ck_assert_int_eq(counts[i] == 0, bad);
        doubled += counts[i] == 2;
    }
    ck_assert_int_eq(doubled, 2);
    vn_loader_close(ld);
    vn_test_rmtree(root);
}
END_TEST

/* Files that vanish or change after the folder was scanned (issue 18): one deleted and one
 * overwritten with garbage between epoch 1 and epoch 2 are bad files of epoch 2, reported
 * with their paths; every other slot is still filled. */
START_TEST(files_vanish_or_change_mid_run)
{
    char root[4096], gone[4200], changed[4200];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_mixed_folder(root);
    vn_loader_config cfg;
    identity_config(&cfg, root, 4);
    cfg.input_size = 16;
    cfg.max_bad_fraction = 0.2;
    dt_log log;
    dt_capture_warnings(&log);
    vn_loader *ld = open_ok(&cfg);
    int64_t n = vn_loader_num_samples(ld);
    for (int e = 0; e < 2; e++) {
        if (e == 1) {
            snprintf(gone, sizeof gone, "%s/k0/2.png", root);
            snprintf(changed, sizeof changed, "%s/k2/3.jpg", root);
            ck_assert_int_eq(unlink(gone), 0);
            static const char junk[] = "\xff\xd8\xff\xe0 changed under our feet";
            dt_write_file(changed, junk, sizeof junk - 1);
        }
        start_ok(ld, e, 0);
        vn_batch b;
        int64_t total = 0;
        while (next_ok(ld, &b) > 0) {
            total += b.size;
            vn_loader_release(ld, &b);
        }
        ck_assert_int_eq(total, n);
    }
    ck_assert_int_eq(vn_loader_bad_files(ld), 3); /* zz_corrupt.png, then the two */
    ck_assert_int_eq(log.warnings, 3);
    vn_log_set(NULL, NULL);
    vn_loader_close(ld);
    vn_test_rmtree(root);
}
END_TEST

START_TEST(fail_fast_names_the_file)
{
    char root[4096], corrupt[4200], truncated[4200];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_awkward_folder(root, corrupt, truncated);
    vn_loader_config cfg;
    identity_config(&cfg, root, 4);
    cfg.fail_fast = true;
    dt_log log;
    dt_capture_warnings(&log);
    vn_loader *ld = open_ok(&cfg);
    start_ok(ld, 0, 0);
    vn_batch b;
    vn_error err = {0};
    ck_assert_int_eq(next_ok(ld, &b), 4); /* positions 0..3 are fine */
    vn_loader_release(ld, &b);
    ck_assert_int_eq(vn_loader_next(ld, &b, &err), VN_ERR_FORMAT); /* position 4 is not */
    ck_assert_msg(strstr(err.msg, corrupt) && strstr(err.msg, "fail_fast"), "%s", err.msg);
    ck_assert_int_eq(b.size, 0);
    /* The loader stays stopped until the next start_epoch. */
    ck_assert_int_ne(vn_loader_next(ld, &b, &err), VN_OK);
    /* Restarted, it stops at the same place although the file is now known to be bad. */
    start_ok(ld, 0, 0);
    ck_assert_int_eq(next_ok(ld, &b), 4);
    vn_loader_release(ld, &b);
    ck_assert_int_eq(vn_loader_next(ld, &b, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, corrupt), "%s", err.msg);
    ck_assert_int_eq(vn_loader_bad_files(ld), 1);
    vn_loader_close(ld);
    vn_log_set(NULL, NULL);
    vn_test_rmtree(root);
}
END_TEST

START_TEST(too_many_bad_files_stop_the_run)
{
    char root[4096], corrupt[4200], truncated[4200];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_awkward_folder(root, corrupt, truncated);
    vn_loader_config cfg;
    identity_config(&cfg, root, 4);
    cfg.max_bad_fraction = 0.05; /* 1 bad of 25 is 4%: fine; the second passes 5% */
    cfg.workers = 4;
    dt_log log;
    dt_capture_warnings(&log);
    vn_loader *ld = open_ok(&cfg);
    start_ok(ld, 0, 0);
    vn_batch b;
    vn_error err = {0};
    int rc, delivered = 0;
    while ((rc = vn_loader_next(ld, &b, &err)) == VN_OK && b.size > 0) {
        delivered++;
        vn_loader_release(ld, &b);
    }
    ck_assert_int_eq(rc, VN_ERR_FORMAT);
    /* The truncated JPEG is the last file (position 24): batch 6 trips the limit. */
    ck_assert_int_eq(delivered, 6);
    ck_assert_msg(strstr(err.msg, "2 of 25 images could not be used") &&
                      strstr(err.msg, "max_bad_fraction") && strstr(err.msg, truncated),
                  "%s", err.msg);
    vn_loader_close(ld);
    /* Default threshold (1%): the very first bad file stops a 25-image run. */
    cfg.max_bad_fraction = 0.01;
    ld = open_ok(&cfg);
    start_ok(ld, 0, 0);
    ck_assert_int_eq(next_ok(ld, &b), 4);
    vn_loader_release(ld, &b);
    ck_assert_int_eq(vn_loader_next(ld, &b, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "1 of 25") && strstr(err.msg, corrupt), "%s", err.msg);
    vn_loader_close(ld);
    vn_log_set(NULL, NULL);
    vn_test_rmtree(root);
}
END_TEST

/* Cutmix and mixup in the loader: same per-sample images as an unmixed run with the same
 * seed, mixed exactly as the batch's parameters say; soft targets as timm's. */
START_TEST(mixing_in_the_loader)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_index_folder(root, 4, 5);
    vn_loader_config cfg;
    identity_config(&cfg, root, 6);
    cfg.augment = VN_AUGMENT_RRC;
    cfg.hflip = 0.5f;
    cfg.shuffle = true;
    cfg.drop_last = true;
    cfg.input_size = 10;
    vn_loader_config mixed = cfg;
    mixed.mixup_alpha = 0.4f;
    mixed.cutmix_alpha = 1.0f;
    mixed.label_smoothing = 0.1f;
    vn_loader *a = open_ok(&cfg), *m = open_ok(&mixed);
    start_ok(a, 1, 0);
    start_ok(m, 1, 0);
    vn_batch ba, bm;
    const int S = 10, C = 3, B = 6, K = 4;
    const size_t img = (size_t)S * S * C;
    int n_cut = 0, n_mix = 0;
    for (int e = 0; e < 6; e++) {
        start_ok(a, e, 0);
        start_ok(m, e, 0);
        while (next_ok(a, &ba) > 0) {
            ck_assert_int_eq(next_ok(m, &bm), B);
            ck_assert_ptr_nonnull(bm.soft_targets);
            for (int i = 0; i < B; i++) {
                ck_assert_int_eq(ba.indices[i], bm.indices[i]);
                const float *x = ba.images->data + i * img;
                const float *y = ba.images->data + (B - 1 - i) * img;
                const float *got = bm.images->data + i * img;
                for (int h = 0; h < S; h++)
                    for (int w = 0; w < S; w++)
                        for (int c = 0; c < C; c++) {
                            size_t o = ((size_t)h * S + w) * C + c;
                            float want;
                            if (bm.mix_cutmix) {
                                bool in = h >= bm.mix_box[0] && h < bm.mix_box[1] &&
                                          w >= bm.mix_box[2] && w < bm.mix_box[3];
                                want = in ? y[o] : x[o];
                            } else {
                                float l = (float)bm.mix_lam, r = (float)(1.0 - bm.mix_lam);
                                float p1 = x[o] * l, p2 = y[o] * r;
                                want = p1 + p2;
                            }
                            ck_assert_msg(got[o] == want, "batch %lld sample %d (%d,%d,%d)",
                                          (long long)bm.position, i, h, w, c);
                        }
                float sum = 0;
                for (int k = 0; k < K; k++) sum += bm.soft_targets[i * K + k];
                ck_assert_float_eq_tol(sum, 1.0f, 1e-5f);
                int32_t la = bm.labels[i], lb = bm.labels[B - 1 - i];
                float want_a = (float)(0.9 + 0.1 / K) * (float)bm.mix_lam +
                               (la == lb ? (float)(0.9 + 0.1 / K) * (float)(1 - bm.mix_lam)
                                         : (float)(0.1 / K) * (float)(1 - bm.mix_lam));
                ck_assert_float_eq_tol(bm.soft_targets[i * K + la], want_a, 1e-6f);
            }
            if (bm.mix_cutmix) n_cut++;
            else if (bm.mix_lam < 1) n_mix++;
            vn_loader_release(a, &ba);
            vn_loader_release(m, &bm);
        }
    }
    ck_assert_int_gt(n_cut, 0);
    ck_assert_int_gt(n_mix, 0);
    vn_loader_close(a);
    vn_loader_close(m);
    /* Mixing needs an even batch and drop_last. */
    mixed.batch_size = 5;
    vn_loader *bad = NULL;
    vn_error err = {0};
    ck_assert_int_eq(vn_loader_open(&mixed, &bad, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "even batch_size"), "%s", err.msg);
    vn_test_rmtree(root);
}
END_TEST

START_TEST(prefetch_bound_and_wait_time)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_index_folder(root, 1, 12);
    vn_loader_config cfg;
    identity_config(&cfg, root, 2);
    cfg.prefetch = 2;
    cfg.workers = 1;
    vn_loader *ld = open_ok(&cfg);
    vn_batch b1, b2, b3;
    vn_error err = {0};
    ck_assert_int_eq(vn_loader_next(ld, &b1, &err), VN_ERR_STATE); /* no epoch started */
    ck_assert_msg(strstr(err.msg, "start_epoch"), "%s", err.msg);
    start_ok(ld, 0, 0);
    ck_assert_int_eq(next_ok(ld, &b1), 2);
    ck_assert_int_eq(next_ok(ld, &b2), 2);
    ck_assert_int_eq(vn_loader_next(ld, &b3, &err), VN_ERR_STATE);
    ck_assert_msg(strstr(err.msg, "release"), "%s", err.msg);
    /* Both held batches are intact. */
    ck_assert_int_eq(index_in_batch(&b1, 0), 0);
    ck_assert_int_eq(index_in_batch(&b2, 1), 3);
    vn_loader_release(ld, &b1);
    ck_assert_int_eq(next_ok(ld, &b3), 2);
    ck_assert_int_eq(index_in_batch(&b3, 0), 4);
    vn_loader_release(ld, &b2);
    vn_loader_release(ld, &b3);
    ck_assert(vn_loader_wait_seconds(ld) >= 0);
    vn_loader_close(ld);
    /* Without workers all decoding happens inside next(): it shows as waiting. */
    cfg.workers = 0;
    ld = open_ok(&cfg);
    start_ok(ld, 0, 0);
    while (next_ok(ld, &b1) > 0) vn_loader_release(ld, &b1);
    ck_assert(vn_loader_wait_seconds(ld) > 0);
    vn_loader_close(ld);
    /* Config errors are reported, not asserted. */
    cfg.batch_size = 0;
    ck_assert_int_eq(vn_loader_open(&cfg, &ld, &err), VN_ERR_INVALID);
    cfg.batch_size = 2;
    cfg.crop_pct = 1.2;
    ck_assert_int_eq(vn_loader_open(&cfg, &ld, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "crop_pct"), "%s", err.msg);
    cfg.crop_pct = 1;
    cfg.root = "/nonexistent";
    ck_assert_int_eq(vn_loader_open(&cfg, &ld, &err), VN_ERR_NOT_FOUND);
    vn_test_rmtree(root);
}
END_TEST

/* Grayscale loading (channels 1) of RGB files uses PIL's luma. */
START_TEST(gray_channel)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    make_index_folder(root, 1, 3);
    vn_loader_config cfg;
    identity_config(&cfg, root, 3);
    cfg.channels = 1;
    cfg.workers = 0;
    vn_loader *ld = open_ok(&cfg);
    start_ok(ld, 0, 0);
    vn_batch b;
    ck_assert_int_eq(next_ok(ld, &b), 3);
    ck_assert_int_eq(b.images->shape[3], 1);
    char path[4200];
    snprintf(path, sizeof path, "%s/c00/0002.png", root);
    vn_image img = {0};
    vn_error err = {0};
    ck_assert_int_eq(vn_image_decode_file(NULL, path, 3, 0, &img, NULL, &err), VN_OK);
    const float *g = b.images->data + 2 * SIDE * SIDE;
    for (int p = 0; p < SIDE * SIDE; p++) {
        uint32_t v = (img.data[3 * p] * 19595u + img.data[3 * p + 1] * 38470u +
                      img.data[3 * p + 2] * 7471u + 0x8000u) >> 16;
        ck_assert_float_eq(g[p], (float)v / 255.0f);
    }
    vn_image_free(&img);
    vn_loader_release(ld, &b);
    vn_loader_close(ld);
    vn_test_rmtree(root);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data_loader");
    TCase *tc = tcase_create("loader");
    tcase_add_test(tc, order_is_a_reproducible_permutation);
    tcase_add_test(tc, same_bytes_for_any_worker_count);
    tcase_add_test(tc, resume_from_cursor);
    tcase_add_test(tc, full_recipe_same_bytes_and_resume);
    tcase_add_test(tc, drop_last_and_partial_batches);
    tcase_add_test(tc, shards_take_every_kth_batch);
    tcase_add_test(tc, bad_and_odd_files);
    tcase_add_test(tc, files_vanish_or_change_mid_run);
    tcase_add_test(tc, fail_fast_names_the_file);
    tcase_add_test(tc, too_many_bad_files_stop_the_run);
    tcase_add_test(tc, mixing_in_the_loader);
    tcase_add_test(tc, prefetch_bound_and_wait_time);
    tcase_add_test(tc, gray_channel);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}

/* YOLO-format detection data (data/vn_detect_data.h): the dataset YAML, image and label
 * listing, bad label lines reported with file and line, the bad-fraction rule, letterbox
 * geometry, and per-sample augmentation that depends only on (seed, epoch, index). */
#include "vn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/vn_fs.h"
#include "data/vn_detect_data.h"
#include "data/vn_image.h"

/* A w x h RGB image whose pixel (x, y) is (x, y, 200). */
static void write_png(const char *path, int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            p[(y * w + x) * 3] = (uint8_t)(x * 4);
            p[(y * w + x) * 3 + 1] = (uint8_t)(y * 4);
            p[(y * w + x) * 3 + 2] = 200;
        }
    ck_assert_int_eq(vn_png_write(path, p, w, h, 3, 1, NULL), VN_OK);
    free(p);
}

/* root/{data.yaml, images/train/{a,b}.png, images/train/sub/c.png, labels/train/...}. */
static void make_dataset(const char *root)
{
    char p[512];
    const char *dirs[] = {"images", "images/train", "images/train/sub", "labels", "labels/train",
                          "labels/train/sub"};
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        ck_assert_int_eq(mkdir(p, 0755), 0);
    }
    snprintf(p, sizeof p, "%s/images/train/a.png", root);
    write_png(p, 40, 20);
    snprintf(p, sizeof p, "%s/images/train/b.png", root);
    write_png(p, 16, 32);
    snprintf(p, sizeof p, "%s/images/train/sub/c.png", root);
    write_png(p, 8, 8);
    snprintf(p, sizeof p, "%s/labels/train/a.txt", root);
    vn_test_write_text(p, "0 0.5 0.5 0.5 0.5\n\n2 0.25 0.75 0.1 0.2\n");
    snprintf(p, sizeof p, "%s/labels/train/sub/c.txt", root);
    vn_test_write_text(p, "1 0.5 0.5 0.2 0.2\n9 0.5 0.5 0.2 0.2\n");
    snprintf(p, sizeof p, "%s/data.yaml", root);
    vn_test_write_text(p, "path: .\ntrain: images/train\nval: images/train\nnames:\n  0: shirt\n"
                  "  2: bag\n  1: shoe\n");
}

START_TEST(test_yaml_scan_and_labels)
{
    char root[256], p[512];
    vn_test_mkdtemp(root, sizeof root, "detdata");
    make_dataset(root);
    snprintf(p, sizeof p, "%s/data.yaml", root);
    vn_det_data_cfg cfg;
    vn_error err = {0};
    ck_assert_msg(vn_det_data_cfg_load(p, &cfg, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(cfg.nc, 3);
    ck_assert_str_eq(cfg.names[0], "shirt");
    ck_assert_str_eq(cfg.names[1], "shoe");
    ck_assert_str_eq(cfg.names[2], "bag");
    ck_assert_msg(strstr(cfg.train, "/images/train") != NULL, "%s", cfg.train);

    vn_det_dataset *ds;
    ck_assert_msg(vn_det_dataset_scan(cfg.train, cfg.nc, 0.5, &ds, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_det_dataset_size(ds), 2); /* sub/c.png skipped for its bad line */
    ck_assert_int_eq(vn_det_dataset_skipped_count(ds), 1);
    const char *why = vn_det_dataset_skipped(ds, 0);
    ck_assert_msg(strstr(why, "labels/train/sub/c.txt:2: class 9 is not one of 0..2"), "%s", why);
    ck_assert_msg(strstr(vn_det_dataset_image(ds, 0), "train/a.png"), "%s", vn_det_dataset_image(ds, 0));
    int n;
    const vn_det_box *b = vn_det_dataset_boxes(ds, 0, &n);
    ck_assert_int_eq(n, 2);
    ck_assert(b[1].cls == 2 && b[1].cx == 0.25f && b[1].h == 0.2f);
    vn_det_dataset_boxes(ds, 1, &n); /* b.png has no label file: background */
    ck_assert_int_eq(n, 0);
    vn_det_dataset_free(ds);

    /* One bad image of three is more than 10%. */
    ck_assert_int_ne(vn_det_dataset_scan(cfg.train, cfg.nc, 0.1, &ds, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "1 of 3 images have bad labels") && strstr(err.msg, "c.txt:2"),
                  "%s", err.msg);
    vn_det_data_cfg_free(&cfg);
    vn_test_rmtree(root);
}
END_TEST

START_TEST(test_bad_lines)
{
    static const char *const lines[][2] = {
        {"0 0.5 0.5 0.5\n", "4 fields, expected 5"},
        {"0 0.5 0.5 0.5 0.5 0.1\n", "6 fields"},
        {"0 0.5 x 0.5 0.5\n", "'x' is not a number"},
        {"0 0.5 1.5 0.5 0.5\n", "coordinate 1.5 is outside [0, 1]"},
        {"0 -0.1 0.5 0.5 0.5\n", "coordinate -0.1"},
        {"1.5 0.5 0.5 0.5 0.5\n", "class 1.5"},
        {"-1 0.5 0.5 0.5 0.5\n", "class -1"},
        /* found by fuzz_yolo: a class too large for an integer was cast before the range check */
        {"1e30 0.5 0.5 0.5 0.5\n", "class 1e+30 is not one of 0..2"},
        {"nan 0.5 0.5 0.5 0.5\n", "'nan' is not a number"},
        /* a value just past 1 is shown as it is, not rounded to 1 */
        {"0 0.5 0.5 1.0000001 0.5\n", "coordinate 1.0000001 is outside [0, 1]"},
        /* a segment needs 3 points or more, in pairs */
        {"0 0.1 0.1 0.5 0.1 0.5\n", "6 fields, expected 5 (class cx cy w h) or a segment"},
        {"0 0.1 0.1 0.5 0.1 0.5 0.6 0.1\n", "8 fields"},
        {"0 0.1 0.1 0.5 0.1 1.5 0.6\n", "coordinate 1.5"},
    };
    for (size_t k = 0; k < sizeof lines / sizeof lines[0]; k++) {
        char root[256], p[512];
        vn_test_mkdtemp(root, sizeof root, "detbad");
        make_dataset(root);
        snprintf(p, sizeof p, "%s/labels/train/a.txt", root);
        vn_test_write_text(p, lines[k][0]);
        snprintf(p, sizeof p, "%s/images/train", root);
        vn_det_dataset *ds;
        vn_error err = {0};
        ck_assert_int_eq(vn_det_dataset_scan(p, 3, 1.0, &ds, &err), VN_OK);
        ck_assert_int_eq(vn_det_dataset_skipped_count(ds), 2);
        const char *why = vn_det_dataset_skipped(ds, 0);
        ck_assert_msg(strstr(why, "a.txt:1: ") && strstr(why, lines[k][1]), "'%s' for '%s'", why,
                      lines[k][0]);
        vn_det_dataset_free(ds);
        vn_test_rmtree(root);
    }
}
END_TEST

/* Ultralytics' segment labels (class x1 y1 x2 y2 ...) become the box of their points, as its
 * segments2boxes; a long segment line is read whole. */
START_TEST(test_segment_lines)
{
    char root[256], p[512];
    vn_test_mkdtemp(root, sizeof root, "detseg");
    make_dataset(root);
    snprintf(p, sizeof p, "%s/labels/train/a.txt", root);
    /* a 2000-point segment (36 kB of text) on an ellipse inside x 0.2..0.6, y 0.3..0.9 */
    FILE *f = fopen(p, "w");
    fprintf(f, "1 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n2");
    for (int k = 0; k < 2000; k++)
        fprintf(f, " %.6f %.6f", 0.4 + 0.2 * cos(2 * M_PI * k / 2000), 0.6 + 0.3 * sin(2 * M_PI * k / 2000));
    fprintf(f, "\n0 0.5 0.5 0.2 0.2\n");
    fclose(f);
    snprintf(p, sizeof p, "%s/images/train", root);
    vn_det_dataset *ds;
    vn_error err = {0};
    ck_assert_msg(vn_det_dataset_scan(p, 3, 1.0, &ds, &err) == VN_OK, "%s", err.msg);
    int n = 0;
    const vn_det_box *b = vn_det_dataset_boxes(ds, 0, &n); /* a.png */
    ck_assert_int_eq(n, 3);
    ck_assert(b[0].cls == 1 && fabsf(b[0].cx - 0.3f) < 1e-6f && fabsf(b[0].cy - 0.4f) < 1e-6f &&
              fabsf(b[0].w - 0.4f) < 1e-6f && fabsf(b[0].h - 0.4f) < 1e-6f);
    ck_assert(b[1].cls == 2 && fabsf(b[1].cx - 0.4f) < 1e-5f && fabsf(b[1].cy - 0.6f) < 1e-5f &&
              fabsf(b[1].w - 0.4f) < 1e-5f && fabsf(b[1].h - 0.6f) < 1e-5f);
    ck_assert(b[2].cls == 0 && b[2].w == 0.2f);
    vn_det_dataset_free(ds);
    vn_test_rmtree(root);
}
END_TEST

/* Regression (found by tests/fuzz/fuzz_yolo.c): a set in which no image has a box asked for
 * the boxes of an image at an offset into a NULL array (UBSan: zero offset to null pointer). */
START_TEST(test_no_boxes_anywhere)
{
    char root[256], p[512];
    vn_test_mkdtemp(root, sizeof root, "detnone");
    make_dataset(root);
    snprintf(p, sizeof p, "%s/labels/train/a.txt", root);
    vn_test_write_text(p, "\n  \n");
    snprintf(p, sizeof p, "%s/labels/train/sub/c.txt", root);
    ck_assert_int_eq(remove(p), 0);
    snprintf(p, sizeof p, "%s/images/train", root);
    vn_det_dataset *ds;
    vn_error err = {0};
    ck_assert_msg(vn_det_dataset_scan(p, 3, 0.0, &ds, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_det_dataset_size(ds), 3);
    for (int64_t i = 0; i < 3; i++) {
        int n = -1;
        ck_assert_ptr_null(vn_det_dataset_boxes(ds, i, &n));
        ck_assert_int_eq(n, 0);
    }
    vn_det_dataset_free(ds);
    /* Not one label file (a wrong labels path): refused, naming where the first would be. */
    snprintf(p, sizeof p, "%s/labels/train/a.txt", root);
    ck_assert_int_eq(remove(p), 0);
    snprintf(p, sizeof p, "%s/images/train", root);
    ck_assert_int_eq(vn_det_dataset_scan(p, 3, 1.0, &ds, &err), VN_ERR_NOT_FOUND);
    ck_assert_msg(strstr(err.msg, "none of the 3 images has a label file") &&
                  strstr(err.msg, "/labels/train/"), "%s", err.msg);
    vn_test_rmtree(root);
}
END_TEST

START_TEST(test_yaml_errors)
{
    char root[256], p[512];
    vn_test_mkdtemp(root, sizeof root, "detyaml");
    snprintf(p, sizeof p, "%s/d.yaml", root);
    vn_det_data_cfg cfg;
    vn_error err = {0};
    vn_test_write_text(p, "train: a\nnames: [x]\n");
    ck_assert_int_ne(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "missing val"), "%s", err.msg);
    vn_test_write_text(p, "train: a\nval: b\nnames:\n  0: x\n  5: y\n");
    ck_assert_int_ne(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "key '5' is not a class index"), "%s", err.msg);
    vn_test_write_text(p, "train: [a\n");
    ck_assert_int_ne(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "d.yaml:"), "%s", err.msg);
    vn_test_write_text(p, "train: a\nval: b\nnames: [x, y]\n");
    ck_assert_int_eq(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert_int_eq(cfg.nc, 2);
    ck_assert_str_eq(cfg.names[1], "y");
    vn_det_data_cfg_free(&cfg);
    /* Found by fuzz_yolo: names given twice leaked the first list; the last wins (PyYAML). */
    vn_test_write_text(p, "train: a\nval: b\nnames: [x, y]\nnames:\n  0: u\n  1: v\n  2: w\n");
    ck_assert_int_eq(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert_int_eq(cfg.nc, 3);
    ck_assert_str_eq(cfg.names[2], "w");
    vn_det_data_cfg_free(&cfg);
    /* nc, as Ultralytics' check_det_dataset: it must agree with names, and alone it names the
     * classes class_0, class_1, ... */
    vn_test_write_text(p, "train: a\nval: b\nnc: 3\nnames: [x, y]\n");
    ck_assert_int_ne(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "names has 2 entries and nc is 3"), "%s", err.msg);
    vn_test_write_text(p, "train: a\nval: b\nnc: 2\n");
    ck_assert_int_eq(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert_int_eq(cfg.nc, 2);
    ck_assert_str_eq(cfg.names[1], "class_1");
    vn_det_data_cfg_free(&cfg);
    vn_test_write_text(p, "train: a\nval: []\nnames: [x]\n");
    ck_assert_int_ne(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "val must be a folder or .txt list"), "%s", err.msg);
    vn_test_rmtree(root);
}
END_TEST

/* The last warning of vn_log, and how many. */
static char last_warning[1024];
static int n_warnings;
static void on_log(vn_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level < VN_LOG_WARN) return;
    n_warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", msg);
}

/* The other split forms Ultralytics reads: a .txt list of images ("./x" relative to the list's
 * folder) and a list of folders; files of formats vanilla does not read are counted, not
 * silently dropped. */
START_TEST(test_split_lists)
{
    char root[256], p[512];
    vn_test_mkdtemp(root, sizeof root, "detlist");
    make_dataset(root);
    snprintf(p, sizeof p, "%s/train.txt", root);
    /* listed out of order (b before a), CRLF, blanks, a file of no image format */
    vn_test_write_text(p, "./images/train/b.png\r\n  ./images/train/a.png\n\n./notes.md\n"
                          "./images/train/d.webp\n");
    snprintf(p, sizeof p, "%s/images/train/d.webp", root);
    vn_test_write_text(p, "not read");
    snprintf(p, sizeof p, "%s/data.yaml", root);
    vn_test_write_text(p, "path: .\ntrain: train.txt\nval: [images/train/sub, images/train]\n"
                          "names: [shirt, shoe, bag]\n");
    vn_det_data_cfg cfg;
    vn_error err = {0};
    ck_assert_msg(vn_det_data_cfg_load(p, &cfg, &err) == VN_OK, "%s", err.msg);
    ck_assert(vn_det_split_exists(cfg.train) && vn_det_split_exists(cfg.val));
    vn_det_dataset *ds;
    /* the list: its two images, sorted (a.png, then b.png, a background image); the .webp
     * counted in a warning */
    n_warnings = 0;
    vn_log_set(on_log, NULL);
    ck_assert_msg(vn_det_dataset_scan(cfg.train, 3, 1.0, &ds, &err) == VN_OK, "%s", err.msg);
    vn_log_set(NULL, NULL);
    ck_assert_int_eq(vn_det_dataset_size(ds), 2);
    ck_assert_ptr_nonnull(strstr(vn_det_dataset_image(ds, 0), "/images/train/a.png"));
    ck_assert_ptr_nonnull(strstr(vn_det_dataset_image(ds, 1), "/images/train/b.png"));
    ck_assert_int_eq(n_warnings, 1);
    ck_assert_msg(strstr(last_warning, "1 image files of formats vanilla does not read") &&
                  strstr(last_warning, "d.webp"), "%s", last_warning);
    vn_det_dataset_free(ds);
    /* two folders, [sub, train]: one sorted list (a, b, sub/c, sub/c again), not sub's first */
    ck_assert_msg(vn_det_dataset_scan(cfg.val, 3, 1.0, &ds, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_det_dataset_size(ds) + vn_det_dataset_skipped_count(ds), 4);
    ck_assert_ptr_nonnull(strstr(vn_det_dataset_image(ds, 0), "/images/train/a.png"));
    vn_det_dataset_free(ds);
    vn_det_data_cfg_free(&cfg);
    vn_test_write_text(p, "train: [images/train, nowhere]\nval: images/train\nnames: [a, b, c]\n");
    ck_assert_int_eq(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert(!vn_det_split_exists(cfg.train));
    vn_det_data_cfg_free(&cfg);
    vn_test_write_text(p, "path: [a, b]\ntrain: t\nval: v\nnames: [a]\n");
    ck_assert_int_ne(vn_det_data_cfg_load(p, &cfg, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "path must be one folder"), "%s", err.msg);
    /* a label file far larger than labels get (a sparse 65 MB file): its image skipped, the
     * file not read into memory */
    snprintf(p, sizeof p, "%s/labels/train/b.txt", root);
    FILE *big = fopen(p, "w");
    ck_assert_int_eq(ftruncate(fileno(big), (off_t)65 << 20), 0);
    fclose(big);
    snprintf(p, sizeof p, "%s/images/train", root);
    ck_assert_int_eq(vn_det_dataset_scan(p, 3, 1.0, &ds, &err), VN_OK);
    bool said = false;
    for (int64_t k = 0; k < vn_det_dataset_skipped_count(ds); k++)
        said |= strstr(vn_det_dataset_skipped(ds, k), "b.txt: 68157440 bytes, more than a label file holds") != NULL;
    ck_assert(said);
    vn_det_dataset_free(ds);
    vn_test_rmtree(root);
}
END_TEST

START_TEST(test_letterbox_and_augment)
{
    char root[256], p[512];
    vn_test_mkdtemp(root, sizeof root, "detaug");
    make_dataset(root);
    snprintf(p, sizeof p, "%s/images/train", root);
    vn_det_dataset *ds;
    ck_assert_int_eq(vn_det_dataset_scan(p, 3, 1.0, &ds, NULL), VN_OK);
    vn_det_sample s = {0}, t = {0};
    vn_error err = {0};
    /* a.png, 40 x 20 -> 64 x 32 at rows 16..47. */
    ck_assert_msg(vn_det_load_sample(ds, 0, 64, NULL, 0, 0, &s, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(s.n_boxes, 2);
    const float want[4] = {16, 24, 48, 40};
    for (int k = 0; k < 4; k++) ck_assert_float_eq_tol(s.xyxy[k], want[k], 1e-4);
    for (int x = 0; x < 64 * 3; x++) ck_assert_int_eq(s.pix[15 * 64 * 3 + x], 114);
    for (int x = 0; x < 64 * 3; x++) ck_assert_int_eq(s.pix[48 * 64 * 3 + x], 114);
    ck_assert_int_eq(s.pix[16 * 64 * 3 + 2], 200); /* blue channel of the image */
    /* where the picture lies (evaluation clips boxes to it) */
    const float pic_a[4] = {0, 16, 64, 48}, pic_b[4] = {16, 0, 48, 64};
    for (int k = 0; k < 4; k++) ck_assert_float_eq(s.image_xyxy[k], pic_a[k]);
    /* b.png, 16 x 32 -> 32 x 64 at columns 16..47. */
    ck_assert_int_eq(vn_det_load_sample(ds, 1, 64, NULL, 0, 0, &t, NULL), VN_OK);
    ck_assert_int_eq(t.pix[(10 * 64 + 15) * 3], 114);
    ck_assert_int_eq(t.pix[(10 * 64 + 16) * 3 + 2], 200);
    ck_assert_int_eq(t.n_boxes, 0);
    for (int k = 0; k < 4; k++) ck_assert_float_eq(t.image_xyxy[k], pic_b[k]);

    /* Flip only: an exact mirror, boxes x -> 64 - x. */
    vn_det_augment flip = {1.0f, 0, 0, 0, 0, 0, 0};
    ck_assert_int_eq(vn_det_load_sample(ds, 0, 64, &flip, 7, 3, &t, NULL), VN_OK);
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            ck_assert(!memcmp(t.pix + (y * 64 + x) * 3, s.pix + (y * 64 + 63 - x) * 3, 3));
    ck_assert_float_eq_tol(t.xyxy[0], 64 - want[2], 1e-4);
    ck_assert_float_eq_tol(t.xyxy[2], 64 - want[0], 1e-4);

    /* Default augmentation: same (seed, epoch, index), same bytes; the flip is drawn per
     * epoch; HSV keeps grey padding grey. */
    vn_det_augment aug;
    vn_det_augment_default(&aug);
    aug.mosaic = aug.scale = aug.translate = 0; /* letterbox geometry, flip and HSV only */
    int flipped = 0;
    for (int64_t epoch = 0; epoch < 16; epoch++) {
        ck_assert_int_eq(vn_det_load_sample(ds, 0, 64, &aug, 11, epoch, &s, NULL), VN_OK);
        ck_assert_int_eq(vn_det_load_sample(ds, 0, 64, &aug, 11, epoch, &t, NULL), VN_OK);
        ck_assert(!memcmp(s.pix, t.pix, 64 * 64 * 3) && !memcmp(s.xyxy, t.xyxy, 8 * sizeof(float)));
        flipped += s.xyxy[4] > 32; /* box 1 (x1 12.8) lies left of the centre */
        const uint8_t *pad = s.pix + 5 * 64 * 3;
        ck_assert(pad[0] == pad[1] && pad[1] == pad[2]);
    }
    ck_assert_msg(flipped > 0 && flipped < 16, "flipped %d of 16 epochs", flipped);

    /* Mosaic and affine (the defaults): reproducible per (seed, epoch, index), boxes inside
     * the canvas and at least 2 px wide and tall, and some epochs keep boxes. */
    vn_det_augment_default(&aug);
    int with_boxes = 0;
    for (int64_t epoch = 0; epoch < 12; epoch++) {
        ck_assert_int_eq(vn_det_load_sample(ds, 0, 64, &aug, 5, epoch, &s, NULL), VN_OK);
        ck_assert_int_eq(vn_det_load_sample(ds, 0, 64, &aug, 5, epoch, &t, NULL), VN_OK);
        ck_assert(!memcmp(s.pix, t.pix, 64 * 64 * 3) && s.n_boxes == t.n_boxes);
        with_boxes += s.n_boxes > 0;
        for (int k = 0; k < s.n_boxes; k++) {
            const float *b = s.xyxy + 4 * k;
            ck_assert(b[0] >= 0 && b[1] >= 0 && b[2] <= 64 && b[3] <= 64);
            ck_assert(b[2] - b[0] > 2 && b[3] - b[1] > 2);
            ck_assert(s.cls[k] == 0 || s.cls[k] == 2);
        }
    }
    ck_assert_msg(with_boxes > 0, "no mosaic kept a box in 12 epochs");
    ck_assert_int_eq(vn_det_load_sample(ds, 0, 64, &aug, 5, 100, &t, NULL), VN_OK);
    ck_assert_msg(memcmp(s.pix, t.pix, 64 * 64 * 3) != 0, "two epochs gave the same mosaic");
    vn_det_sample_free(&s);
    vn_det_sample_free(&t);
    vn_det_dataset_free(ds);
    vn_test_rmtree(root);
}
END_TEST

/* ---- fashion-mnist-detect --------------------------------------------------------------- */

#include <zlib.h>

/* A gzip IDX file: n items of 28x28 (ndim 3) whose pixels draw a filled square of side
 * 8 + i % 12, or n labels i % 10 (ndim 1). */
static void write_idx(const char *path, int ndim, int n)
{
    gzFile g = gzopen(path, "wb");
    ck_assert_ptr_nonnull(g);
    uint8_t head[16] = {0, 0, 8, (uint8_t)ndim, 0, 0, (uint8_t)(n >> 8), (uint8_t)n};
    int hl = 8;
    if (ndim == 3) {
        uint8_t dims[8] = {0, 0, 0, 28, 0, 0, 0, 28};
        memcpy(head + 8, dims, 8);
        hl = 16;
    }
    gzwrite(g, head, (unsigned)hl);
    for (int i = 0; i < n; i++) {
        if (ndim == 1) {
            uint8_t l = (uint8_t)(i % 10);
            gzwrite(g, &l, 1);
            continue;
        }
        uint8_t px[28 * 28] = {0};
        int side = 8 + i % 12;
        for (int y = 2; y < 2 + side; y++)
            for (int x = 3; x < 3 + side; x++) px[y * 28 + x] = 255;
        gzwrite(g, px, sizeof px);
    }
    gzclose(g);
}

static uint32_t tree_crc(const char *root, int64_t n, const char *split)
{
    uLong crc = crc32(0, NULL, 0);
    for (int64_t k = 0; k < n; k++) {
        char p[512];
        for (int kind = 0; kind < 2; kind++) {
            snprintf(p, sizeof p, kind ? "%s/labels/%s/%06lld.txt" : "%s/images/%s/%06lld.png", root,
                     split, (long long)k);
            uint8_t *d;
            size_t len;
            ck_assert_int_eq(vn_read_file(p, &d, &len, NULL), VN_OK);
            crc = crc32(crc, d, (uInt)len);
            free(d);
        }
    }
    return (uint32_t)crc;
}

START_TEST(test_fashion_mnist_detect_import)
{
    char src[256], out[2][300], p[512];
    vn_test_mkdtemp(src, sizeof src, "fmdsrc");
    const char *files[4][2] = {{"train-images-idx3-ubyte.gz", "3"}, {"train-labels-idx1-ubyte.gz", "1"},
                               {"t10k-images-idx3-ubyte.gz", "3"}, {"t10k-labels-idx1-ubyte.gz", "1"}};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", src, files[i][0]);
        write_idx(p, atoi(files[i][1]), 50);
    }
    vn_fmd_config cfg;
    vn_fmd_config_default(&cfg);
    cfg.n_train = 24;
    cfg.n_val = 6;
    cfg.canvas = 64;
    cfg.max_size = 32;
    uint32_t crc[2];
    for (int t = 0; t < 2; t++) {
        snprintf(out[t], sizeof out[t], "%s/out%d", src, t);
        cfg.threads = 1 + t;
        vn_fmd_result res;
        vn_error err = {0};
        ck_assert_msg(vn_import_fashion_mnist_detect(src, out[t], &cfg, &res, &err) == VN_OK, "%s",
                      err.msg);
        ck_assert(res.boxes >= 24 && res.boxes <= 30 * 4 && !res.reused && res.stale_removed == 0);
        crc[t] = tree_crc(out[t], cfg.n_train, "train") ^ tree_crc(out[t], cfg.n_val, "val");
    }
    ck_assert_msg(crc[0] == crc[1], "output differs between 1 and 2 threads");
    /* The result is a valid dataset whose boxes enclose exactly the drawn squares. */
    snprintf(p, sizeof p, "%s/data.yaml", out[0]);
    vn_det_data_cfg dc;
    vn_error err = {0};
    ck_assert_msg(vn_det_data_cfg_load(p, &dc, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(dc.nc, 10);
    ck_assert_str_eq(dc.names[9], "Ankle_boot");
    vn_det_dataset *ds;
    ck_assert_msg(vn_det_dataset_scan(dc.val, 10, 0.0, &ds, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_det_dataset_size(ds), 6);
    ck_assert_int_eq(vn_det_dataset_skipped_count(ds), 0);
    for (int64_t i = 0; i < 6; i++) {
        int n;
        const vn_det_box *b = vn_det_dataset_boxes(ds, i, &n);
        for (int k = 0; k < n; k++) {
            /* squares stay squares: the item is scaled uniformly */
            ck_assert_msg(fabsf(b[k].w - b[k].h) <= 1.5f / 64, "box %g x %g", b[k].w, b[k].h);
            ck_assert(b[k].cx - b[k].w / 2 >= -1e-6 && b[k].cx + b[k].w / 2 <= 1 + 1e-6);
            /* no box covers more than max_cover (0.1) of another (labels are rounded to 1e-6) */
            for (int j = 0; j < k; j++) {
                float iw = fminf(b[k].cx + b[k].w / 2, b[j].cx + b[j].w / 2) -
                           fmaxf(b[k].cx - b[k].w / 2, b[j].cx - b[j].w / 2);
                float ih = fminf(b[k].cy + b[k].h / 2, b[j].cy + b[j].h / 2) -
                           fmaxf(b[k].cy - b[k].h / 2, b[j].cy - b[j].h / 2);
                float small = fminf(b[k].w * b[k].h, b[j].w * b[j].h);
                if (iw > 0 && ih > 0) ck_assert_msg(iw * ih / small <= 0.1f + 1e-4f, "cover %g", iw * ih / small);
            }
        }
    }
    vn_det_dataset_free(ds);
    vn_det_data_cfg_free(&dc);
    /* The same options again: nothing written, the same box count; a canvas removed: made
     * again, the same bytes. */
    vn_fmd_result r1, r2;
    ck_assert_int_eq(vn_import_fashion_mnist_detect(src, out[0], &cfg, &r1, &err), VN_OK);
    ck_assert(r1.reused && r1.boxes > 0);
    snprintf(p, sizeof p, "%s/images/train/000023.png", out[0]);
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_int_eq(vn_import_fashion_mnist_detect(src, out[0], &cfg, &r2, &err), VN_OK);
    ck_assert_msg(!r2.reused && r2.boxes == r1.boxes, "reused %d boxes %lld %lld", r2.reused, (long long)r2.boxes, (long long)r1.boxes);
    ck_assert(tree_crc(out[0], cfg.n_train, "train") == (tree_crc(out[1], cfg.n_train, "train")));
    /* Fewer training canvases into the same folder: the 4 extra images and labels go, a file
     * not named as the importer names its own stays, the validation split is the same. */
    snprintf(p, sizeof p, "%s/images/train/notes.png", out[0]);
    vn_test_write_text(p, "x");
    cfg.n_train = 20;
    ck_assert_int_eq(vn_import_fashion_mnist_detect(src, out[0], &cfg, &r2, &err), VN_OK);
    ck_assert(!r2.reused);
    ck_assert_int_eq(r2.stale_removed, 8);
    ck_assert_int_eq(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/images/train/000020.png", out[0]);
    ck_assert_int_ne(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/labels/train/000019.txt", out[0]);
    ck_assert_int_eq(access(p, F_OK), 0);
    ck_assert(tree_crc(out[0], cfg.n_val, "val") == tree_crc(out[1], cfg.n_val, "val"));
    /* A folder with another dataset's files and no data.yaml of ours is not written into. */
    char other[400];
    snprintf(other, sizeof other, "%s/other/images/train", src);
    ck_assert_int_eq(vn_mkdirs(other, &err), VN_OK);
    snprintf(p, sizeof p, "%s/000000.png", other);
    vn_test_write_text(p, "theirs");
    snprintf(other, sizeof other, "%s/other", src);
    ck_assert_int_eq(vn_import_fashion_mnist_detect(src, other, &cfg, NULL, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "not overwriting another dataset"), "%s", err.msg);
    snprintf(p, sizeof p, "%s/data.yaml", other);
    ck_assert_int_ne(access(p, F_OK), 0);
    /* An import that fails half-way leaves a data.yaml that the loader refuses and that a new
     * import finishes: here the source's test images are missing. */
    char src2[400], half[400];
    snprintf(src2, sizeof src2, "%s/src2", src);
    ck_assert_int_eq(vn_mkdirs(src2, &err), VN_OK);
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", src2, files[i][0]);
        write_idx(p, atoi(files[i][1]), 50);
    }
    snprintf(half, sizeof half, "%s/half", src);
    ck_assert_int_ne(vn_import_fashion_mnist_detect(src2, half, &cfg, NULL, &err), VN_OK);
    snprintf(p, sizeof p, "%s/data.yaml", half);
    vn_det_data_cfg hc;
    ck_assert_int_ne(vn_det_data_cfg_load(p, &hc, &err), VN_OK);
    ck_assert_msg(vn_import_fashion_mnist_detect(src, half, &cfg, NULL, &err) == VN_OK, "%s", err.msg);
    ck_assert_msg(vn_det_data_cfg_load(p, &hc, &err) == VN_OK, "%s", err.msg);
    vn_det_data_cfg_free(&hc);
    /* Bad options are refused, naming them. */
    cfg.min_size = 40;
    cfg.max_size = 30;
    ck_assert_int_eq(vn_import_fashion_mnist_detect(src, out[0], &cfg, NULL, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "sizes 40..30"), "%s", err.msg);
    vn_test_rmtree(src);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("detect_data");
    TCase *tc = tcase_create("data");
    tcase_add_test(tc, test_yaml_scan_and_labels);
    tcase_add_test(tc, test_bad_lines);
    tcase_add_test(tc, test_segment_lines);
    tcase_add_test(tc, test_no_boxes_anywhere);
    tcase_add_test(tc, test_yaml_errors);
    tcase_add_test(tc, test_split_lists);
    tcase_add_test(tc, test_letterbox_and_augment);
    tcase_add_test(tc, test_fashion_mnist_detect_import);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return vn_test_run(suite(), true); }

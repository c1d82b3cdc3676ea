/* Image folders (order, classes, stray files, empty classes), the checker, IDX import. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "data/vn_dataset.h"
#include "data/vn_image.h"
#include "data_util.h"

static void touch_png(const char *dir, const char *rel, int64_t index)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    dt_mkdirs(path);
    *slash = '/';
    dt_write_index_png(path, index, 4, 3, 3);
}

/* torchvision's order (checked against torchvision 0.14's make_dataset on this tree):
 * classes sorted by bytes (upper case first), files sorted within a folder, folders visited
 * in sorted path order ("bird/sub" before "bird/sub-x"), all extensions in any case;
 * everything else skipped. */
START_TEST(scan_order_like_torchvision)
{
    char root[4096], path[4200];
    vn_test_mkdtemp(root, sizeof root, "data");
    touch_png(root, "bird/b.PNG", 1);
    touch_png(root, "bird/a.jpeg", 2);
    touch_png(root, "bird/sub/z.jpg", 3);
    touch_png(root, "bird/sub-x/c.png", 4);
    touch_png(root, "bird/c10.png", 5);
    touch_png(root, "bird/c9.png", 6);
    touch_png(root, "Zebra/q.JPG", 7);
    touch_png(root, "cat/only.png", 8);
    dt_mkdirs(strcat(strcpy(path, root), "/empty_class"));
    dt_mkdirs(strcat(strcpy(path, root), "/.hidden"));
    dt_write_file(strcat(strcpy(path, root), "/bird/notes.txt"), "hello", 5);
    dt_write_file(strcat(strcpy(path, root), "/README"), "x", 1);
    dt_write_file(strcat(strcpy(path, root), "/cat/image.gif"), "GIF89a", 6);

    dt_log log;
    dt_capture_warnings(&log);
    vn_dataset *ds = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_dataset_scan(root, NULL, 0, &ds, &err) == VN_OK, "%s", err.msg);
    vn_log_set(NULL, NULL);
    ck_assert_int_eq(vn_dataset_num_classes(ds), 4);
    const char *const *cls = vn_dataset_class_names(ds);
    ck_assert_str_eq(cls[0], "Zebra");
    ck_assert_str_eq(cls[1], "bird");
    ck_assert_str_eq(cls[2], "cat");
    ck_assert_str_eq(cls[3], "empty_class");
    const char *want[] = {"Zebra/q.JPG", "bird/a.jpeg", "bird/b.PNG", "bird/c10.png",
                          "bird/c9.png", "bird/sub/z.jpg", "bird/sub-x/c.png", "cat/only.png"};
    const int labels[] = {0, 1, 1, 1, 1, 1, 1, 2};
    ck_assert_int_eq(vn_dataset_size(ds), 8);
    for (int i = 0; i < 8; i++) {
        ck_assert_str_eq(vn_dataset_relpath(ds, i), want[i]);
        ck_assert_int_eq(vn_dataset_label(ds, i), labels[i]);
    }
    ck_assert_int_eq(vn_dataset_class_count(ds, 1), 6);
    ck_assert_int_eq(vn_dataset_class_count(ds, 3), 0);
    /* The empty class is kept (labels stay aligned with other splits) and named in a warning. */
    ck_assert_int_eq(log.warnings, 1);
    ck_assert_msg(strstr(log.last, "empty_class"), "warning: %s", log.last);
    ck_assert_int_eq(vn_dataset_skipped_count(ds), 3);
    char full[4096];
    ck_assert_ptr_nonnull(vn_dataset_path(ds, 7, full, sizeof full));
    ck_assert_str_eq(full, strcat(strcpy(path, root), "/cat/only.png"));
    vn_dataset_free(ds);
    vn_test_rmtree(root);
}
END_TEST

/* Symbolic links are followed (as os.walk(followlinks=True) and the loader's open do): a
 * linked file is an image, a linked folder a class or a subfolder, a dangling link a sample
 * (that the loader reports as unreadable, by path, instead of dropping it unsaid).
 * Each folder is listed once; the directory entry's type is trusted except for links. */
START_TEST(scan_follows_links)
{
    char root[4096], a[4200], b[4200];
    vn_test_mkdtemp(root, sizeof root, "links");
    touch_png(root, "cls/a.png", 1);
    touch_png(root, "elsewhere/deep/x.png", 2);
    snprintf(a, sizeof a, "%s/cls/a.png", root);
    snprintf(b, sizeof b, "%s/cls/b.png", root);
    ck_assert_int_eq(symlink(a, b), 0);
    snprintf(b, sizeof b, "%s/cls/dangling.png", root);
    ck_assert_int_eq(symlink("/nonexistent/vn_nothing.png", b), 0);
    snprintf(a, sizeof a, "%s/elsewhere", root);
    snprintf(b, sizeof b, "%s/cls/sub", root);
    ck_assert_int_eq(symlink(a, b), 0);
    snprintf(a, sizeof a, "%s/cls", root);
    snprintf(b, sizeof b, "%s/linked", root);
    ck_assert_int_eq(symlink(a, b), 0);
    vn_dataset *ds = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_dataset_scan(root, NULL, 0, &ds, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_dataset_num_classes(ds), 3);
    const char *want[] = {"cls/a.png",         "cls/b.png",    "cls/dangling.png",
                          "cls/sub/deep/x.png", "elsewhere/deep/x.png", "linked/a.png",
                          "linked/b.png",      "linked/dangling.png", "linked/sub/deep/x.png"};
    const int labels[] = {0, 0, 0, 0, 1, 2, 2, 2, 2};
    ck_assert_int_eq(vn_dataset_size(ds), 9);
    for (int i = 0; i < 9; i++) {
        ck_assert_str_eq(vn_dataset_relpath(ds, i), want[i]);
        ck_assert_int_eq(vn_dataset_label(ds, i), labels[i]);
    }
    ck_assert_int_eq(vn_dataset_skipped_count(ds), 0);
    vn_dataset_free(ds);
    vn_test_rmtree(root);
}
END_TEST

START_TEST(scan_with_class_list)
{
    char root[4096];
    vn_test_mkdtemp(root, sizeof root, "data");
    touch_png(root, "b/1.png", 1);
    touch_png(root, "c/1.png", 2);
    const char *names[] = {"a", "b", "c"};
    vn_dataset *ds = NULL;
    vn_error err = {0};
    dt_log log;
    dt_capture_warnings(&log);
    ck_assert_msg(vn_dataset_scan(root, names, 3, &ds, &err) == VN_OK, "%s", err.msg);
    vn_log_set(NULL, NULL);
    ck_assert_int_eq(log.warnings, 1); /* class 'a' has no folder, hence no images */
    ck_assert_msg(strstr(log.last, "'a'"), "%s", log.last);
    ck_assert_int_eq(vn_dataset_num_classes(ds), 3);
    ck_assert_int_eq(vn_dataset_label(ds, 0), 1);
    ck_assert_int_eq(vn_dataset_label(ds, 1), 2);
    vn_dataset_free(ds);
    const char *wrong[] = {"a", "b"};
    ck_assert_int_eq(vn_dataset_scan(root, wrong, 2, &ds, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "'c'"), "%s", err.msg);
    vn_test_rmtree(root);
}
END_TEST

START_TEST(scan_errors)
{
    char root[4096], path[4200];
    vn_test_mkdtemp(root, sizeof root, "data");
    vn_dataset *ds = NULL;
    vn_error err = {0};
    dt_mkdirs(strcat(strcpy(path, root), "/a"));
    dt_write_file(strcat(strcpy(path, root), "/a/x.txt"), "x", 1);
    dt_log log;
    dt_capture_warnings(&log);
    ck_assert_int_eq(vn_dataset_scan(root, NULL, 0, &ds, &err), VN_ERR_NOT_FOUND);
    vn_log_set(NULL, NULL);
    ck_assert_msg(strstr(err.msg, "no images found"), "%s", err.msg);
    ck_assert_int_eq(vn_dataset_scan("/nonexistent/folder", NULL, 0, &ds, &err), VN_ERR_NOT_FOUND);
    ck_assert_msg(strstr(err.msg, "/nonexistent/folder"), "%s", err.msg);
    ck_assert_int_eq(vn_dataset_scan(path, NULL, 0, &ds, &err), VN_ERR_INVALID);
    ck_assert_ptr_null(ds);
    vn_test_rmtree(root);
}
END_TEST

/* check: counts per class, unreadable files with reasons, odd formats, stray files. */
START_TEST(check_reports)
{
    char root[4096], path[4200];
    vn_test_mkdtemp(root, sizeof root, "data");
    touch_png(root, "a/1.png", 1);
    touch_png(root, "a/2.png", 2);
    touch_png(root, "b/1.png", 3);
    dt_mkdirs(strcat(strcpy(path, root), "/c"));
    dt_write_file(strcat(strcpy(path, root), "/b/broken.jpg"), "\xff\xd8\xff\xe0garbage", 11);
    dt_write_file(strcat(strcpy(path, root), "/b/notes.txt"), "x", 1);
    size_t len;
    uint8_t *png = dt_read_file(strcat(strcpy(path, root), "/a/1.png"), &len);
    dt_write_file(strcat(strcpy(path, root), "/b/png_inside.jpg"), png, len);
    free(png);
    uint8_t *cmyk = dt_read_file(vn_test_fixture_path("data/cmyk.jpg"), &len);
    dt_write_file(strcat(strcpy(path, root), "/a/cmyk.jpg"), cmyk, len);
    free(cmyk);
    vn_check_report rep;
    vn_error err = {0};
    dt_log log;
    dt_capture_warnings(&log);
    ck_assert_msg(vn_dataset_check(root, 2, 0, &rep, &err) == VN_OK, "%s", err.msg);
    vn_log_set(NULL, NULL);
    ck_assert_int_eq(rep.n_classes, 3);
    ck_assert_int_eq(rep.n_images, 6);
    ck_assert_int_eq(rep.n_ok, 5);
    ck_assert_int_eq(rep.class_ok[0], 3);
    ck_assert_int_eq(rep.class_ok[1], 2);
    ck_assert_int_eq(rep.class_images[1], 3);
    ck_assert_int_eq(rep.class_images[2], 0);
    ck_assert_int_eq(rep.n_bad, 1);
    ck_assert_str_eq(rep.bad[0].path, "b/broken.jpg");
    ck_assert_msg(strstr(rep.bad[0].reason, "JPEG"), "%s", rep.bad[0].reason);
    ck_assert_int_eq(rep.n_odd, 2);
    ck_assert_str_eq(rep.odd[0].path, "a/cmyk.jpg");
    ck_assert_msg(strstr(rep.odd[0].reason, "CMYK"), "%s", rep.odd[0].reason);
    ck_assert_str_eq(rep.odd[1].path, "b/png_inside.jpg");
    ck_assert_msg(strstr(rep.odd[1].reason, "PNG data with extension .jpg"), "%s",
                  rep.odd[1].reason);
    ck_assert_int_eq(rep.n_skipped, 1);
    ck_assert_str_eq(rep.skipped[0].path, "b/notes.txt");
    ck_assert_int_eq(rep.min_width, 4);
    ck_assert_int_eq(rep.max_width, 48);
    char *txt = NULL;
    size_t tl = 0;
    FILE *mf = open_memstream(&txt, &tl);
    vn_check_report_print(&rep, mf, 10);
    fclose(mf);
    ck_assert_msg(strstr(txt, "EMPTY") && strstr(txt, "b/broken.jpg"), "%s", txt);
    free(txt);
    vn_check_report_free(&rep);
    vn_test_rmtree(root);
}
END_TEST

/* IDX files written here: 2x3 images, labels below 10. */
static void write_idx(const char *path, bool gz, const uint8_t *hdr, size_t hl, const uint8_t *d,
                      size_t dl)
{
    if (gz) {
        gzFile g = gzopen(path, "wb");
        ck_assert(g != NULL);
        ck_assert_int_eq(gzwrite(g, hdr, (unsigned)hl), (int)hl);
        if (dl) ck_assert_int_eq(gzwrite(g, d, (unsigned)dl), (int)dl);
        gzclose(g);
    } else {
        uint8_t *all = malloc(hl + dl + 1);
        memcpy(all, hdr, hl);
        if (dl) memcpy(all + hl, d, dl);
        dt_write_file(path, all, hl + dl);
        free(all);
    }
}

static void make_idx_pair(const char *dir, const char *prefix, int n, bool gz)
{
    char ip[4096], lp[4096];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");
    uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, 3, 0, 0, 0, 2};
    uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, (uint8_t)n};
    uint8_t px[256 * 6], lb[256];
    for (int i = 0; i < n * 6; i++) px[i] = (uint8_t)(i * 5 + 1);
    for (int i = 0; i < n; i++) lb[i] = (uint8_t)((i * 3) % 10);
    write_idx(ip, gz, ih, 16, px, (size_t)n * 6);
    write_idx(lp, gz, lh, 8, lb, (size_t)n);
}

/* An import killed part way leaves "<image>.png.tmp.<pid>" files of writers that are gone; the
 * next import removes them (a file of a live writer stays). */
START_TEST(idx_import_sweeps_stale_tmps)
{
    char src[4096], out[4096], path[4200], dead[4200], live[4200];
    vn_test_mkdtemp(src, sizeof src, "data");
    vn_test_mkdtemp(out, sizeof out, "data");
    make_idx_pair(src, "train", 12, true);
    make_idx_pair(src, "t10k", 5, false);
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0); /* a pid that is gone */
    pid_t running = fork();  /* a writer that still runs */
    if (running == 0) {
        pause();
        _exit(0);
    }
    snprintf(path, sizeof path, "%s/.vn_import_started", out);
    vn_test_write_text(path, "kind fashion-mnist\n");
    snprintf(path, sizeof path, "%s/train", out);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/train/Trouser", out);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(dead, sizeof dead, "%s/train/Trouser/00007.png.tmp.%ld", out, (long)child);
    snprintf(live, sizeof live, "%s/train/Trouser/00010.png.tmp.%ld", out, (long)running);
    vn_test_write_text(dead, "");
    vn_test_write_text(live, "");
    vn_import_result res;
    vn_error err = {0};
    ck_assert_msg(vn_import_mnist(src, out, VN_MNIST_FASHION, 1, &res, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_ne(access(dead, F_OK), 0);
    ck_assert_int_eq(access(live, F_OK), 0);
    kill(running, SIGKILL);
    waitpid(running, NULL, 0);
    vn_test_rmtree(src);
    vn_test_rmtree(out);
}
END_TEST

START_TEST(idx_import_tiny)
{
    char src[4096], out[4096], path[4200];
    vn_test_mkdtemp(src, sizeof src, "data");
    vn_test_mkdtemp(out, sizeof out, "data");
    make_idx_pair(src, "train", 12, true);
    make_idx_pair(src, "t10k", 5, false); /* plain files work too */
    vn_import_result res;
    vn_error err = {0};
    ck_assert_msg(vn_import_mnist(src, out, VN_MNIST_FASHION, 2, &res, &err) == VN_OK, "%s",
                  err.msg);
    ck_assert_int_eq(res.n_train, 12);
    ck_assert_int_eq(res.n_val, 5);
    ck_assert(!res.skipped);
    /* Item 7 has label 21 % 10 = 1 (Trouser); pixels i * 5 + 1 from i = 42. */
    snprintf(path, sizeof path, "%s/train/Trouser/00007.png", out);
    vn_image img = {0};
    ck_assert_msg(vn_image_decode_file(NULL, path, 1, 0, &img, NULL, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(img.width, 2);
    ck_assert_int_eq(img.height, 3);
    for (int k = 0; k < 6; k++) ck_assert_int_eq(img.data[k], (uint8_t)((42 + k) * 5 + 1));
    vn_image_free(&img);
    /* The folders load as an image folder with all ten classes. */
    snprintf(path, sizeof path, "%s/val", out);
    dt_log log;
    dt_capture_warnings(&log);
    vn_dataset *ds = NULL;
    ck_assert_int_eq(vn_dataset_scan(path, NULL, 0, &ds, &err), VN_OK);
    vn_log_set(NULL, NULL);
    ck_assert_int_eq(vn_dataset_num_classes(ds), 10);
    ck_assert_str_eq(vn_dataset_class_names(ds)[0], "Ankle_boot"); /* byte order */
    ck_assert_int_eq(vn_dataset_size(ds), 5);
    vn_dataset_free(ds);
    /* Idempotent: a second run finds the marker and does nothing. */
    snprintf(path, sizeof path, "%s/train/Trouser/00007.png", out);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(vn_import_mnist(src, out, VN_MNIST_FASHION, 1, &res, &err), VN_OK);
    ck_assert(res.skipped);
    ck_assert_int_eq(res.n_train, 12);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* Another kind (or source) into the same folder: refused, not "nothing to do". */
    ck_assert_int_eq(vn_import_mnist(src, out, VN_MNIST_DIGITS, 1, &res, &err), VN_ERR_STATE);
    ck_assert_msg(strstr(err.msg, "already holds an import of fashion-mnist") &&
                  strstr(err.msg, "not of mnist"), "%s", err.msg);
    /* A folder that holds other images is not written into. */
    char other[4096];
    vn_test_mkdtemp(other, sizeof other, "data");
    snprintf(path, sizeof path, "%s/train", other);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/train/mine.png", other);
    vn_test_write_text(path, "x");
    ck_assert_int_eq(vn_import_mnist(src, other, VN_MNIST_FASHION, 1, &res, &err), VN_ERR_STATE);
    ck_assert_msg(strstr(err.msg, "already holds files that no import of vanilla wrote"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/val", other);
    ck_assert_int_ne(access(path, F_OK), 0); /* nothing written */
    vn_test_rmtree(other);
    vn_test_rmtree(src);
    vn_test_rmtree(out);
}
END_TEST

START_TEST(idx_import_errors)
{
    char src[4096], out[4096], ip[4200], lp[4200];
    vn_test_mkdtemp(src, sizeof src, "data");
    vn_test_mkdtemp(out, sizeof out, "data");
    snprintf(ip, sizeof ip, "%s/i", src);
    snprintf(lp, sizeof lp, "%s/l", src);
    const char *const *names = vn_mnist_class_names(VN_MNIST_DIGITS);
    vn_error err = {0};
    uint8_t px[60] = {0}, lb[10] = {0};
    uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 3, 0, 0, 0, 2};
    uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, 10};
    /* Bad magic. */
    uint8_t bad[16];
    memcpy(bad, ih, 16);
    bad[3] = 1;
    write_idx(ip, false, bad, 16, px, 60);
    write_idx(lp, false, lh, 8, lb, 10);
    ck_assert_int_eq(vn_import_idx(ip, lp, out, names, 10, 1, 1, NULL, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "magic") && strstr(err.msg, ip), "%s", err.msg);
    /* Truncated pixels (gzip). */
    write_idx(ip, true, ih, 16, px, 59);
    ck_assert_int_eq(vn_import_idx(ip, lp, out, names, 10, 1, 1, NULL, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "truncated"), "%s", err.msg);
    /* Count mismatch. */
    write_idx(ip, true, ih, 16, px, 60);
    uint8_t lh9[8] = {0, 0, 8, 1, 0, 0, 0, 9};
    write_idx(lp, false, lh9, 8, lb, 9);
    ck_assert_int_eq(vn_import_idx(ip, lp, out, names, 10, 1, 1, NULL, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "10 images") && strstr(err.msg, "9 labels"), "%s", err.msg);
    /* Label out of range. */
    lb[4] = 10;
    write_idx(lp, false, lh, 8, lb, 10);
    ck_assert_int_eq(vn_import_idx(ip, lp, out, names, 10, 1, 1, NULL, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "label 10 of item 4"), "%s", err.msg);
    /* Missing files. */
    ck_assert_int_eq(vn_import_mnist(out, src, VN_MNIST_DIGITS, 1, NULL, &err), VN_ERR_NOT_FOUND);
    ck_assert_msg(strstr(err.msg, "train-images-idx3-ubyte"), "%s", err.msg);
    /* Nothing was written by the failed imports. */
    char p[4200];
    snprintf(p, sizeof p, "%s/0", out);
    ck_assert_int_ne(access(p, F_OK), 0);
    vn_test_rmtree(src);
    vn_test_rmtree(out);
}
END_TEST

/* The in-memory IDX parser (the fuzz target's entry point) applies the import's checks;
 * sizes from the header never overflow a length computation. */
START_TEST(idx_parse_memory_checks)
{
    uint8_t images[16 + 12] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
    uint8_t labels[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 7, 9};
    for (int i = 0; i < 12; i++) images[16 + i] = (uint8_t)i;
    vn_idx_set set;
    vn_error err = {0};
    ck_assert_int_eq(vn_idx_parse_memory(images, sizeof images, "i", labels, sizeof labels, "l",
                                         10, &set, &err), VN_OK);
    ck_assert(set.n == 2 && set.rows == 2 && set.cols == 3 && set.labels[1] == 9);
    ck_assert_int_eq(set.pixels[11], 11);
    /* Too few pixels, too few labels, a label out of range, a header alone. */
    ck_assert_int_eq(vn_idx_parse_memory(images, sizeof images - 1, "i", labels, sizeof labels,
                                         "l", 10, &set, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "i: truncated: the pixel data needs 12 bytes"), "%s", err.msg);
    ck_assert_int_eq(vn_idx_parse_memory(images, sizeof images, "i", labels, 9, "l", 10, &set,
                                         &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "l: truncated"), "%s", err.msg);
    ck_assert_int_eq(vn_idx_parse_memory(images, sizeof images, "i", labels, sizeof labels, "l",
                                         9, &set, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "label 9 of item 1"), "%s", err.msg);
    ck_assert_int_eq(vn_idx_parse_memory(images, 10, "i", labels, sizeof labels, "l", 10, &set,
                                         &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "the IDX header needs 16 bytes"), "%s", err.msg);
    /* 2^32 - 1 images of 4096 x 4096 announced in a 28-byte buffer: truncated, no overflow. */
    uint8_t huge[16 + 12] = {0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x10, 0, 0, 0, 0x10, 0};
    uint8_t hl[8] = {0, 0, 8, 1, 0xff, 0xff, 0xff, 0xff};
    ck_assert_int_eq(vn_idx_parse_memory(huge, sizeof huge, "i", hl, sizeof hl, "l", 10, &set,
                                         &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "truncated"), "%s", err.msg);
    ck_assert_ptr_null(set.pixels);
    /* A labels file given as images: wrong magic. */
    images[3] = 1;
    ck_assert_int_eq(vn_idx_parse_memory(images, sizeof images, "i", labels, sizeof labels, "l",
                                         10, &set, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "expected 00 00 08 03"), "%s", err.msg);
}
END_TEST

/* Smoke check on Debian's dataset-fashion-mnist when installed: the real headers parse.
 * (Importing all 70k images takes minutes on a slow disk; bench_data --import times it.) */
START_TEST(real_fashion_mnist_header)
{
    const char *dir = "/usr/share/datasets/fashion-mnist";
    const char *files[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, files[0]);
    if (access(path, R_OK) != 0) {
        printf("SKIP: %s not installed (Debian package dataset-fashion-mnist)\n", path);
        return;
    }
    for (int f = 0; f < 4; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        uint32_t dims[3] = {0, 0, 0};
        vn_error err = {0};
        int nd = f % 2 ? 1 : 3;
        ck_assert_msg(vn_idx_read_header(path, nd, dims, &err) == VN_OK, "%s", err.msg);
        ck_assert_int_eq(dims[0], f < 2 ? 60000 : 10000);
        if (nd == 3) ck_assert(dims[1] == 28 && dims[2] == 28);
        /* Asking for the wrong kind of file is a clear error. */
        ck_assert_int_eq(vn_idx_read_header(path, 4 - nd, dims, &err), VN_ERR_FORMAT);
        ck_assert_msg(strstr(err.msg, "magic"), "%s", err.msg);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("data_dataset");
    TCase *tc = tcase_create("dataset");
    tcase_add_test(tc, scan_order_like_torchvision);
    tcase_add_test(tc, scan_follows_links);
    tcase_add_test(tc, scan_with_class_list);
    tcase_add_test(tc, scan_errors);
    tcase_add_test(tc, check_reports);
    tcase_add_test(tc, idx_import_tiny);
    tcase_add_test(tc, idx_import_sweeps_stale_tmps);
    tcase_add_test(tc, idx_import_errors);
    tcase_add_test(tc, idx_parse_memory_checks);
    tcase_add_test(tc, real_fashion_mnist_header);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}

/* The detector's ONNX export under allocation failure: every injected failure while building
 * and writing the graph ends in VN_ERR_NOMEM with a message and no file at the path (no
 * crash, no leak under ASan), or in the same bytes as an undisturbed export; after disarming,
 * the same call writes the file. jansson's allocations are spared: its dump ignores the result
 * of writing an object's key (dump.c, do_dump: dump_string(key, ...) unchecked), so a failure
 * there yields malformed JSON reported as a success, which no caller can detect. No ck_* call
 * runs while the hook is armed (Check's own allocations are counted too). The graph's numbers
 * are checked by tests/reference/check_onnx_detect.py. */
#include "vn_failalloc.h"
#include "vn_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/vn_detect.h"

/* A tiny merged detector (as detecttool mkdet, default weights): the sweep covers the export,
 * not the merge. */
static vn_yolo *tiny_detector(void)
{
    vn_yolo_config c;
    vn_yolo_config_default(&c);
    const int dims[4] = {8, 16, 16, 16};
    c.backbone.n_stages = 3;
    for (int i = 0; i < 4; i++) c.backbone.dims[i] = dims[i];
    for (int i = 0; i < 3; i++) c.backbone.strides[i] = 2;
    c.backbone.act_num = 1;
    c.nc = 2;
    c.width_multiple = 0.25f;
    c.depth_multiple = 1.0f;
    vn_yolo *m = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_yolo_create(&c, &m, &err) == VN_OK, "%s", err.msg);
    vn_yolo_init(m, 3);
    vn_yolo_change_act(m, 1.0f);
    vn_yolo_set_training(m, false);
    ck_assert_msg(vn_yolo_switch_to_deploy(m, false, &err) == VN_OK, "%s", err.msg);
    return m;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = n > 0 ? malloc((size_t)n) : NULL;
    *len = buf && fread(buf, 1, (size_t)n, f) == (size_t)n ? (size_t)n : 0;
    fclose(f);
    return buf;
}

/* The export is deterministic: a success must write the same bytes as the first run. */
static bool same_file(const char *path, const char *ref, size_t ref_len)
{
    size_t len = 0;
    char *buf = slurp(path, &len);
    bool same = buf && len == ref_len && memcmp(buf, ref, len) == 0;
    free(buf);
    return same;
}

START_TEST(test_sweep_export_onnx)
{
    char dir[4096], path[4200];
    vn_test_mkdtemp(dir, sizeof dir, "det_onnx_fa");
    snprintf(path, sizeof path, "%s/det.onnx", dir);
    vn_yolo *m = tiny_detector();
    char *names[2] = {"a", "b"};
    vn_detect_info info = {.deploy = true, .imgsz = 64, .nc = 2, .names = names};
    info.model = *vn_yolo_get_config(m);
    vn_error err = {0};
    ck_assert_msg(vn_detect_export_onnx(m, &info, 0, false, path, &err) == VN_OK, "%s", err.msg);
    size_t ref_len = 0;
    char *ref = slurp(path, &ref_len);
    ck_assert(ref != NULL && ref_len > 1000);
    long n = 1, failed = 0;
    vn_failalloc_spare_json(true);
    for (;; n++) {
        vn_error e = {0};
        remove(path);
        vn_failalloc_arm(n, false);
        int rc = vn_detect_export_onnx(m, &info, 0, false, path, &e);
        bool fired = vn_failalloc_disarm();
        if (!fired) {
            ck_assert_int_eq(rc, VN_OK);
            break;
        }
        if (rc != VN_OK) {
            failed++;
            ck_assert_msg(rc == VN_ERR_NOMEM && e.msg[0], "allocation %ld: rc %d, \"%s\"", n, rc, e.msg);
            ck_assert_msg(access(path, F_OK) != 0, "allocation %ld: a file after an error", n);
        } else {
            ck_assert_msg(same_file(path, ref, ref_len), "allocation %ld: a success with another file", n);
        }
    }
    printf("detector ONNX export: %ld allocations swept, %ld ended in an out-of-memory error\n", n - 1,
           failed);
    ck_assert_int_gt(n, 500);
    ck_assert_int_gt(failed, 0);
    ck_assert(same_file(path, ref, ref_len));
    free(ref);
    vn_yolo_destroy(m);
    vn_test_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("detect_onnx_failalloc");
    TCase *tc = tcase_create("sweep");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_sweep_export_onnx);
    suite_add_tcase(s, tc);
    return vn_test_run(s, true);
}

/* safetensors writer: argument checks, many names, atomic replacement (the old file survives
 * every failure, no temporary file is left behind). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io_util.h"

/* Each rejected call returns VN_ERR_INVALID with its message, and leaves the writer as it was. */
START_TEST(test_writer_rejects_each)
{
    vn_st_writer *w = vn_st_writer_new();
    vn_error err = {0};
    float x[4] = {1, 2, 3, 4};
    int64_t s1[1] = {4}, neg[1] = {-1}, big[3] = {INT64_MAX, 2, 1};
    ck_assert_int_eq(vn_st_add(w, "x", VN_DTYPE_F32, 1, s1, x, &err), VN_OK);
#define REJECT(call, text)                                                                \
    do {                                                                                  \
        vn_error_clear(&err);                                                             \
        int rc_ = (call);                                                                 \
        ck_assert_msg(rc_ == VN_ERR_INVALID, "%s: rc %d", #call, rc_);                   \
        ck_assert_msg(strstr(err.msg, text) != NULL, "%s: '%s' lacks '%s'", #call, err.msg, \
                      text);                                                              \
    } while (0)
    REJECT(vn_st_add(w, "x", VN_DTYPE_F32, 1, s1, x, &err), "duplicate tensor name 'x'");
    REJECT(vn_st_add(w, "", VN_DTYPE_F32, 1, s1, x, &err), "empty tensor name");
    REJECT(vn_st_add(w, NULL, VN_DTYPE_F32, 1, s1, x, &err), "empty tensor name");
    REJECT(vn_st_add(w, "__metadata__", VN_DTYPE_F32, 1, s1, x, &err), "reserved");
    REJECT(vn_st_add(w, "y", VN_DTYPE_COUNT, 1, s1, x, &err), "tensor 'y': bad dtype");
    REJECT(vn_st_add(w, "y", VN_DTYPE_F32, VN_ST_MAX_DIMS + 1, s1, x, &err), "bad ndim 9");
    REJECT(vn_st_add(w, "y", VN_DTYPE_F32, -1, s1, x, &err), "bad ndim -1");
    REJECT(vn_st_add(w, "y", VN_DTYPE_F32, 1, NULL, x, &err), "bad ndim 1");
    REJECT(vn_st_add(w, "y", VN_DTYPE_F32, 1, neg, x, &err), "negative dim -1");
    REJECT(vn_st_add(w, "y", VN_DTYPE_F32, 3, big, x, &err), "tensor 'y': too large");
    REJECT(vn_st_add(w, "y", VN_DTYPE_F32, 1, s1, NULL, &err), "tensor 'y': NULL data");
    REJECT(vn_st_add(w, "bad\xff", VN_DTYPE_F32, 1, s1, x, &err), "not valid UTF-8");
    REJECT(vn_st_set_meta(w, "crc32", "00000000", &err), "reserved for the checksum");
    REJECT(vn_st_set_meta(w, "file_crc32", "00000000", &err), "key 'file_crc32' is reserved");
    REJECT(vn_st_set_meta(w, "k", "\xc3", &err), "metadata 'k' is not valid UTF-8");
    REJECT(vn_st_set_meta(w, NULL, "v", &err), "NULL metadata key");
    void *buf = NULL;
    size_t len = 0;
    REJECT(vn_st_serialize(w, 0x80, &buf, &len, &err), "unknown flags");
#undef REJECT
    /* Still one tensor, no metadata; a zero-size tensor may pass NULL data. */
    int64_t z[1] = {0};
    ck_assert_int_eq(vn_st_add(w, "z", VN_DTYPE_F32, 1, z, NULL, &err), VN_OK);
    ck_assert_int_eq(vn_st_serialize(w, 0, &buf, &len, &err), VN_OK);
    vn_st_file *f = NULL;
    ck_assert_int_eq(vn_st_open_memory(buf, len, "w", &f, &err), VN_OK);
    ck_assert_int_eq(vn_st_count(f), 2);
    ck_assert_int_eq(vn_st_meta_count(f), 0);
    ck_assert_str_eq(vn_st_at(f, 0)->name, "x");
    ck_assert_str_eq(vn_st_at(f, 1)->name, "z");
    vn_st_close(f);
    free(buf);
    vn_st_writer_free(w);
}
END_TEST

/* Many names: the duplicate check must still see every earlier name after the index grows. */
START_TEST(test_writer_many_names)
{
    vn_st_writer *w = vn_st_writer_new();
    vn_error err = {0};
    char name[32];
    for (int i = 0; i < 3000; i++) {
        int32_t v = i;
        snprintf(name, sizeof name, "layer%d.weight", i);
        ck_assert_int_eq(vn_st_add(w, name, VN_DTYPE_I32, 0, NULL, &v, &err), VN_OK);
    }
    for (int i = 0; i < 3000; i += 7) {
        int32_t v = 0;
        snprintf(name, sizeof name, "layer%d.weight", i);
        ck_assert_int_eq(vn_st_add(w, name, VN_DTYPE_I32, 0, NULL, &v, &err), VN_ERR_INVALID);
    }
    void *buf = NULL;
    size_t len = 0;
    ck_assert_int_eq(vn_st_serialize(w, VN_ST_CRC32, &buf, &len, &err), VN_OK);
    vn_st_file *f = NULL;
    ck_assert_msg(vn_st_open_memory(buf, len, "many", &f, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_st_count(f), 3000);
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "layer%d.weight", i);
        const vn_st_entry *e = vn_st_find(f, name);
        ck_assert_msg(e != NULL, "%s missing", name);
        ck_assert_ptr_eq(e, vn_st_at(f, i));
        int32_t v;
        memcpy(&v, e->data, 4);
        ck_assert_int_eq(v, i);
    }
    vn_st_close(f);
    free(buf);
    vn_st_writer_free(w);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Atomic writes                                                                            */

static vn_st_writer *small_writer(float v, int64_t n)
{
    vn_st_writer *w = vn_st_writer_new();
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = v + (float)i;
    vn_error err = {0};
    ck_assert_int_eq(vn_st_add(w, "x", VN_DTYPE_F32, 1, &n, x, &err), VN_OK);
    free(x);
    return w;
}

/* Writes "old" content to path and returns its bytes. */
static unsigned char *write_old(const char *path, size_t *len)
{
    vn_st_writer *w = small_writer(1.0f, 8);
    vn_error err = {0};
    ck_assert_msg(vn_st_write(w, path, VN_ST_CRC32, &err) == VN_OK, "%s", err.msg);
    vn_st_writer_free(w);
    return read_all(path, len);
}

static void assert_unchanged(const char *path, const unsigned char *old, size_t old_len)
{
    size_t len = 0;
    unsigned char *now = read_all(path, &len);
    ck_assert_msg(len == old_len && memcmp(now, old, len) == 0, "%s was modified", path);
    free(now);
    vn_st_file *f = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_st_open(path, &f, &err) == VN_OK, "%s", err.msg);
    vn_st_close(f);
}

START_TEST(test_write_missing_folder)
{
    tmp_setup();
    char p[8192];
    snprintf(p, sizeof p, "%s", tmp_path("no/such/dir/model.safetensors"));
    vn_st_writer *w = small_writer(2.0f, 4);
    vn_error err = {0};
    ck_assert_int_eq(vn_st_write(w, p, 0, &err), VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, strerror(ENOENT)), "%s", err.msg);
    ck_assert_int_eq(count_other_files(tmp_root, NULL), 0);
    vn_st_writer_free(w);
    tmp_teardown();
}
END_TEST

/* The temporary file cannot be created (its name is taken by a folder): old file intact. */
START_TEST(test_write_tmp_blocked)
{
    tmp_setup();
    char p[8192], tmp[8300];
    snprintf(p, sizeof p, "%s", tmp_path("model.safetensors"));
    size_t old_len = 0;
    unsigned char *old = write_old(p, &old_len);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    ck_assert_int_eq(mkdir(tmp, 0700), 0);
    vn_st_writer *w = small_writer(5.0f, 4);
    vn_error err = {0};
    ck_assert_int_eq(vn_st_write(w, p, 0, &err), VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "cannot create temporary file"), "%s",
                  err.msg);
    assert_unchanged(p, old, old_len);
    struct stat st;
    ck_assert_int_eq(stat(tmp, &st), 0); /* not ours to remove */
    ck_assert(S_ISDIR(st.st_mode));
    free(old);
    vn_st_writer_free(w);
    tmp_teardown();
}
END_TEST

/* Writing fails half way (file size limit, which binds root too): the temporary file is
 * removed and the old file is untouched. */
START_TEST(test_write_fails_midway)
{
    tmp_setup();
    char p[8192];
    snprintf(p, sizeof p, "%s", tmp_path("model.safetensors"));
    size_t old_len = 0;
    unsigned char *old = write_old(p, &old_len);
    vn_st_writer *w = small_writer(7.0f, 64 * 1024); /* 256 KiB */

    struct rlimit saved, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = 64 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    vn_error err = {0};
    int rc = vn_st_write(w, p, VN_ST_CRC32, &err);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old_handler);

    ck_assert_int_eq(rc, VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, strerror(EFBIG)), "%s", err.msg);
    assert_unchanged(p, old, old_len);
    ck_assert_int_eq(count_other_files(tmp_root, "model.safetensors"), 0);

    /* Without the limit the same writer replaces the file. */
    ck_assert_msg(vn_st_write(w, p, VN_ST_CRC32, &err) == VN_OK, "%s", err.msg);
    vn_st_file *f = NULL;
    ck_assert_int_eq(vn_st_open(p, &f, &err), VN_OK);
    ck_assert_int_eq(vn_st_at(f, 0)->numel, 64 * 1024);
    vn_st_close(f);
    ck_assert_int_eq(count_other_files(tmp_root, "model.safetensors"), 0);
    free(old);
    vn_st_writer_free(w);
    tmp_teardown();
}
END_TEST

/* rename fails (the target is a non-empty folder): the temporary file is removed. */
START_TEST(test_write_rename_fails)
{
    tmp_setup();
    char p[8192], inner[8300];
    snprintf(p, sizeof p, "%s", tmp_path("taken"));
    ck_assert_int_eq(mkdir(p, 0700), 0);
    snprintf(inner, sizeof inner, "%s/keep", p);
    write_all(inner, "keep", 4);
    vn_st_writer *w = small_writer(3.0f, 4);
    vn_error err = {0};
    ck_assert_int_eq(vn_st_write(w, p, 0, &err), VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "cannot rename"), "%s", err.msg);
    ck_assert_int_eq(count_other_files(tmp_root, "taken"), 0);
    ck_assert_int_eq(count_other_files(p, "keep"), 0);
    vn_st_writer_free(w);
    tmp_teardown();
}
END_TEST

START_TEST(test_write_replaces)
{
    tmp_setup();
    char p[8192];
    snprintf(p, sizeof p, "%s", tmp_path("model.safetensors"));
    size_t old_len = 0;
    unsigned char *old = write_old(p, &old_len);
    vn_st_writer *w = small_writer(-4.0f, 3);
    ck_assert_int_eq(vn_st_set_meta(w, "generation", "2", NULL), VN_OK);
    vn_error err = {0};
    ck_assert_msg(vn_st_write(w, p, 0, &err) == VN_OK, "%s", err.msg);
    vn_st_file *f = NULL;
    ck_assert_int_eq(vn_st_open(p, &f, &err), VN_OK);
    ck_assert_str_eq(vn_st_meta(f, "generation"), "2");
    ck_assert_ptr_null(vn_st_meta(f, "crc32"));
    float got[3];
    memcpy(got, vn_st_at(f, 0)->data, sizeof got);
    const float want[3] = {-4.0f, -3.0f, -2.0f};
    ck_assert(vn_test_close("replaced", got, want, 3, 0, 0));
    vn_st_close(f);
    ck_assert_int_eq(count_other_files(tmp_root, "model.safetensors"), 0);
    ck_assert_int_eq(vn_st_write(w, "", 0, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_st_write(w, p, 0x40, &err), VN_ERR_INVALID);
    free(old);
    vn_st_writer_free(w);
    tmp_teardown();
}
END_TEST

TCase *io_writer_tcase(void)
{
    TCase *t = tcase_create("writer");
    tcase_add_test(t, test_writer_rejects_each);
    tcase_add_test(t, test_writer_many_names);
    tcase_add_test(t, test_write_missing_folder);
    tcase_add_test(t, test_write_tmp_blocked);
    tcase_add_test(t, test_write_fails_midway);
    tcase_add_test(t, test_write_rename_fails);
    tcase_add_test(t, test_write_replaces);
    return t;
}

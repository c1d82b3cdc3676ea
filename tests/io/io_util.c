/* Helpers shared by the io test files. */

#include "io_util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char tmp_root[4096];

void tmp_setup(void) { vn_test_mkdtemp(tmp_root, sizeof tmp_root, "io"); }

void tmp_teardown(void)
{
    vn_test_rmtree(tmp_root);
    tmp_root[0] = '\0';
}

const char *tmp_path(const char *name)
{
    static char p[8192];
    snprintf(p, sizeof p, "%s/%s", tmp_root, name);
    return p;
}

unsigned char *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

void write_all(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_msg(fp != NULL, "cannot create %s: %s", path, strerror(errno));
    ck_assert_uint_eq(fwrite(buf, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
}

/* Names in the folder other than `keep` (temporary files left behind). */
int count_other_files(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (keep && !strcmp(de->d_name, keep)) continue;
        fprintf(stderr, "  found in %s: %s\n", dir, de->d_name);
        n++;
    }
    closedir(d);
    return n;
}

uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A file from header text and data_len bytes of data (i * 7 + 1). */
unsigned char *make_file(const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    unsigned char *b = malloc(*len + 1);
    ck_assert_ptr_nonnull(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (unsigned char)(i * 7 + 1);
    return b;
}

/* Opening must fail with `code` and a message naming the label and containing `want`. */
void expect_fail(const void *buf, size_t len, const char *label, int code,
                        const char *want)
{
    vn_st_file *f = (vn_st_file *)1;
    vn_error err = {0};
    int rc = vn_st_open_memory(buf, len, label, &f, &err);
    ck_assert_msg(rc == code, "%s: expected %s, got %d (%s) '%s'", label, vn_status_str(code), rc,
                  vn_status_str(rc), err.msg);
    ck_assert_int_eq(err.code, code);
    ck_assert_msg(f == NULL, "%s: *out not NULL on failure", label);
    ck_assert_msg(strstr(err.msg, label) != NULL, "%s: message does not name the file: '%s'",
                  label, err.msg);
    ck_assert_msg(strstr(err.msg, want) != NULL, "%s: message '%s' lacks '%s'", label, err.msg,
                  want);
}

float f16_to_float(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}


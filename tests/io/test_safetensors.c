/* safetensors reader: round trips, metadata, CRC, a Python-written file, every class of
 * corruption (each error must name the file and the problem). The writer's own tests are in
 * test_safetensors_write.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "io_util.h"

/* ---------------------------------------------------------------------------------------- */
/* dtypes                                                                                   */

START_TEST(test_dtypes)
{
    static const struct {
        vn_dtype dt;
        const char *name;
        size_t size;
    } want[] = {
        {VN_DTYPE_F32, "F32", 4}, {VN_DTYPE_F64, "F64", 8},   {VN_DTYPE_F16, "F16", 2},
        {VN_DTYPE_BF16, "BF16", 2}, {VN_DTYPE_I64, "I64", 8}, {VN_DTYPE_I32, "I32", 4},
        {VN_DTYPE_I16, "I16", 2}, {VN_DTYPE_I8, "I8", 1},     {VN_DTYPE_U8, "U8", 1},
        {VN_DTYPE_BOOL, "BOOL", 1},
    };
    ck_assert_int_eq((int)(sizeof want / sizeof want[0]), VN_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ck_assert_str_eq(vn_dtype_name(want[i].dt), want[i].name);
        ck_assert_uint_eq(vn_dtype_size(want[i].dt), want[i].size);
    }
    ck_assert_ptr_null(vn_dtype_name(VN_DTYPE_COUNT));
    ck_assert_uint_eq(vn_dtype_size(VN_DTYPE_COUNT), 0);
    ck_assert_ptr_null(vn_dtype_name((vn_dtype)-1));
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Round trips                                                                              */

typedef struct spec {
    const char *name;
    vn_dtype dt;
    int ndim;
    int64_t shape[VN_ST_MAX_DIMS];
} spec;

/* Every dtype, a scalar, 8 dims, odd byte counts (unaligned later entries), zero sizes. */
static const spec specs[] = {
    {"w", VN_DTYPE_F32, 3, {2, 3, 4}},
    {"d", VN_DTYPE_F64, 1, {5}},
    {"h", VN_DTYPE_F16, 1, {3}},
    {"bf", VN_DTYPE_BF16, 2, {2, 2}},
    {"step", VN_DTYPE_I64, 0, {0}},
    {"idx", VN_DTYPE_I32, 1, {4}},
    {"s", VN_DTYPE_I16, 1, {3}},
    {"c", VN_DTYPE_I8, 2, {1, 3}},
    {"u8.eight_dims", VN_DTYPE_U8, 8, {1, 2, 1, 2, 1, 1, 2, 1}},
    {"mask", VN_DTYPE_BOOL, 1, {3}},
    {"empty", VN_DTYPE_F32, 2, {0, 5}},
    {"empty2", VN_DTYPE_I64, 2, {3, 0}},
    {"after.empty", VN_DTYPE_F32, 1, {2}},
};
#define N_SPECS ((int)(sizeof specs / sizeof specs[0]))

static size_t spec_bytes(const spec *s)
{
    size_t n = vn_dtype_size(s->dt);
    for (int i = 0; i < s->ndim; i++) n *= (size_t)s->shape[i];
    return n;
}

/* Deterministic, distinct bytes per tensor. */
static void spec_data(int k, unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(k * 31 + i * 13 + 5);
}

static vn_st_writer *spec_writer(void)
{
    vn_st_writer *w = vn_st_writer_new();
    ck_assert_ptr_nonnull(w);
    for (int k = 0; k < N_SPECS; k++) {
        unsigned char buf[256];
        size_t n = spec_bytes(&specs[k]);
        ck_assert_uint_le(n, sizeof buf);
        spec_data(k, buf, n);
        vn_error err = {0};
        /* The scalar passes shape NULL, as the header allows. */
        int rc = vn_st_add(w, specs[k].name, specs[k].dt, specs[k].ndim,
                           specs[k].ndim ? specs[k].shape : NULL, n ? buf : NULL, &err);
        ck_assert_msg(rc == VN_OK, "add %s: %s", specs[k].name, err.msg);
        memset(buf, 0xEE, sizeof buf); /* the writer must have copied the data */
    }
    return w;
}

static void check_specs(const vn_st_file *f)
{
    ck_assert_int_eq(vn_st_count(f), N_SPECS);
    for (int k = 0; k < N_SPECS; k++) {
        const spec *s = &specs[k];
        /* Our writer lays data out in insertion order, so offset order is insertion order
         * (zero-size tensors included). */
        const vn_st_entry *e = vn_st_at(f, k);
        ck_assert_ptr_nonnull(e);
        ck_assert_str_eq(e->name, s->name);
        ck_assert_ptr_eq(vn_st_find(f, s->name), e);
        ck_assert_int_eq(e->dtype, s->dt);
        ck_assert_int_eq(e->ndim, s->ndim);
        int64_t numel = 1;
        for (int i = 0; i < s->ndim; i++) {
            ck_assert_int_eq(e->shape[i], s->shape[i]);
            numel *= s->shape[i];
        }
        ck_assert_int_eq(e->numel, numel);
        ck_assert_uint_eq(e->nbytes, spec_bytes(s));
        unsigned char want[256];
        spec_data(k, want, e->nbytes);
        ck_assert_msg(e->nbytes == 0 || memcmp(e->data, want, e->nbytes) == 0,
                      "%s: data differs", s->name);
    }
    ck_assert_ptr_null(vn_st_at(f, N_SPECS));
    ck_assert_ptr_null(vn_st_at(f, -1));
    ck_assert_ptr_null(vn_st_find(f, "nope"));
    ck_assert_ptr_null(vn_st_find(f, ""));
    /* The first tensor starts the data section, which is 64-byte aligned in memory. */
    ck_assert_uint_eq((uintptr_t)vn_st_at(f, 0)->data % 64, 0);
}

START_TEST(test_roundtrip_memory)
{
    vn_st_writer *w = spec_writer();
    void *buf = NULL;
    size_t len = 0;
    vn_error err = {0};
    ck_assert_int_eq(vn_st_serialize(w, 0, &buf, &len, &err), VN_OK);

    /* Layout: length field, header padded with spaces to a multiple of 8, then the data. */
    const unsigned char *b = buf;
    uint64_t h = le64(b);
    ck_assert_uint_eq(h % 8, 0);
    size_t total = 0;
    for (int k = 0; k < N_SPECS; k++) total += spec_bytes(&specs[k]);
    ck_assert_uint_eq(len, 8 + h + total);
    ck_assert_int_eq(b[8], '{');
    size_t end = h;
    while (end > 0 && b[8 + end - 1] == ' ') end--;
    ck_assert_int_eq(b[8 + end - 1], '}');
    ck_assert_uint_lt(h - end, 8);
    char *text = strndup((const char *)b + 8, h);
    ck_assert_ptr_null(strstr(text, "__metadata__")); /* none set, no CRC asked for */
    ck_assert_ptr_nonnull(strstr(text, "\"step\":{\"dtype\":\"I64\",\"shape\":[],"));
    ck_assert_ptr_nonnull(strstr(text, "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3,4],"
                                       "\"data_offsets\":[0,96]}"));
    free(text);

    vn_st_file *f = NULL;
    int rc = vn_st_open_memory(buf, len, "mem.safetensors", &f, &err);
    ck_assert_msg(rc == VN_OK, "%s", err.msg);
    ck_assert_str_eq(vn_st_path(f), "mem.safetensors");
    check_specs(f);
    ck_assert_int_eq(vn_st_meta_count(f), 0);
    ck_assert_ptr_null(vn_st_meta(f, "crc32"));
    /* The buffer was copied: the file does not depend on it. */
    memset(buf, 0, len);
    check_specs(f);
    vn_st_close(f);
    free(buf);
    vn_st_writer_free(w);
}
END_TEST

START_TEST(test_roundtrip_disk)
{
    tmp_setup();
    vn_st_writer *w = spec_writer();
    const char *path = tmp_path("model.safetensors");
    char p[8192];
    snprintf(p, sizeof p, "%s", path);
    vn_error err = {0};
    ck_assert_msg(vn_st_write(w, p, 0, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(count_other_files(tmp_root, "model.safetensors"), 0);

    /* The file holds exactly what vn_st_serialize produces. */
    void *mem = NULL;
    size_t mlen = 0, flen = 0;
    ck_assert_int_eq(vn_st_serialize(w, 0, &mem, &mlen, &err), VN_OK);
    unsigned char *disk = read_all(p, &flen);
    ck_assert_uint_eq(flen, mlen);
    ck_assert_int_eq(memcmp(disk, mem, mlen), 0);

    vn_st_file *f = NULL;
    ck_assert_msg(vn_st_open(p, &f, &err) == VN_OK, "%s", err.msg);
    ck_assert_str_eq(vn_st_path(f), p);
    check_specs(f);
    vn_st_close(f);

    /* A path without a folder (the folder synced is "."). */
    ck_assert_int_eq(chdir(tmp_root), 0);
    ck_assert_msg(vn_st_write(w, "relative.safetensors", VN_ST_CRC32, &err) == VN_OK, "%s",
                  err.msg);
    ck_assert_msg(vn_st_open("relative.safetensors", &f, &err) == VN_OK, "%s", err.msg);
    check_specs(f);
    vn_st_close(f);

    free(disk);
    free(mem);
    vn_st_writer_free(w);
    tmp_teardown();
}
END_TEST

START_TEST(test_empty_file_roundtrip)
{
    vn_st_writer *w = vn_st_writer_new();
    void *buf = NULL;
    size_t len = 0;
    vn_error err = {0};
    ck_assert_int_eq(vn_st_serialize(w, 0, &buf, &len, &err), VN_OK);
    ck_assert_uint_eq(len, 16); /* "{}" padded to 8 */
    ck_assert_int_eq(memcmp((char *)buf + 8, "{}      ", 8), 0);
    vn_st_file *f = NULL;
    ck_assert_msg(vn_st_open_memory(buf, len, "empty", &f, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_st_count(f), 0);
    ck_assert_ptr_null(vn_st_at(f, 0));
    ck_assert_ptr_null(vn_st_find(f, "x"));
    vn_st_close(f);
    free(buf);
    vn_st_writer_free(w);
}
END_TEST

START_TEST(test_metadata_roundtrip)
{
    vn_st_writer *w = vn_st_writer_new();
    vn_error err = {0};
    float x[2] = {1.5f, -2.0f};
    int64_t shape[1] = {2};
    ck_assert_int_eq(vn_st_add(w, "x", VN_DTYPE_F32, 1, shape, x, &err), VN_OK);
    const char *note = "h\xc3\xa9llo \xe2\x9c\x93 \"quoted\" back\\slash\nnewline";
    ck_assert_int_eq(vn_st_set_meta(w, "format", "pt", &err), VN_OK);
    ck_assert_int_eq(vn_st_set_meta(w, "epoch", "3", &err), VN_OK);
    ck_assert_int_eq(vn_st_set_meta(w, "note", note, &err), VN_OK);
    ck_assert_int_eq(vn_st_set_meta(w, "epoch", "4", &err), VN_OK); /* replaces, keeps place */
    ck_assert_int_eq(vn_st_set_meta(w, "", "empty key is a valid JSON key", &err), VN_OK);

    for (int crc = 0; crc <= 1; crc++) {
        void *buf = NULL;
        size_t len = 0;
        ck_assert_int_eq(vn_st_serialize(w, crc ? VN_ST_CRC32 : 0, &buf, &len, &err), VN_OK);
        vn_st_file *f = NULL;
        ck_assert_msg(vn_st_open_memory(buf, len, "meta", &f, &err) == VN_OK, "%s", err.msg);
        ck_assert_int_eq(vn_st_meta_count(f), 4 + crc);
        /* The checksum opens the metadata; the others keep their order. */
        const char *keys[] = {"file_crc32", "format", "epoch", "note", ""};
        for (int i = 0; i < 4 + crc; i++) ck_assert_str_eq(vn_st_meta_key(f, i), keys[i + 1 - crc]);
        ck_assert_ptr_null(vn_st_meta_key(f, 4 + crc));
        ck_assert_ptr_null(vn_st_meta_key(f, -1));
        ck_assert_str_eq(vn_st_meta(f, "format"), "pt");
        ck_assert_str_eq(vn_st_meta(f, "epoch"), "4");
        ck_assert_str_eq(vn_st_meta(f, "note"), note);
        ck_assert_str_eq(vn_st_meta(f, ""), "empty key is a valid JSON key");
        ck_assert_ptr_null(vn_st_meta(f, "missing"));
        ck_assert_ptr_null(vn_st_meta(f, "crc32"));
        if (!crc) ck_assert_ptr_null(vn_st_meta(f, "file_crc32"));
        const vn_st_entry *e = vn_st_find(f, "x");
        ck_assert_ptr_nonnull(e);
        float got[2];
        memcpy(got, e->data, sizeof got);
        ck_assert(got[0] == 1.5f && got[1] == -2.0f);
        vn_st_close(f);
        free(buf);
    }
    vn_st_writer_free(w);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* CRC                                                                                      */

#define SUM_PREFIX "{\"__metadata__\":{\"file_crc32\":\""
enum { SUM_AT = 8 + sizeof SUM_PREFIX - 1 };

/* The checksum as vn_safetensors.h defines it, computed here on a copy: zlib's CRC-32 of the
 * whole file with the 8 stored digits read as "00000000". */
static void expected_sum(const unsigned char *b, size_t len, char out[9])
{
    unsigned char *c = malloc(len);
    memcpy(c, b, len);
    memcpy(c + SUM_AT, "00000000", 8);
    snprintf(out, 9, "%08lx", crc32(0, c, (uInt)len));
    free(c);
}

START_TEST(test_crc_written_and_verified)
{
    vn_st_writer *w = spec_writer();
    void *buf = NULL;
    size_t len = 0;
    vn_error err = {0};
    ck_assert_int_eq(vn_st_serialize(w, VN_ST_CRC32, &buf, &len, &err), VN_OK);
    unsigned char *b = buf;
    uint64_t h = le64(b);
    ck_assert_int_eq(memcmp(b + 8, SUM_PREFIX, sizeof SUM_PREFIX - 1), 0);
    char want[9];
    expected_sum(b, len, want);
    ck_assert_int_eq(memcmp(b + SUM_AT, want, 8), 0);

    vn_st_file *f = NULL;
    ck_assert_msg(vn_st_open_memory(buf, len, "crc.safetensors", &f, &err) == VN_OK, "%s",
                  err.msg);
    ck_assert_str_eq(vn_st_meta(f, "file_crc32"), want);
    ck_assert_ptr_null(vn_st_meta(f, "crc32"));
    check_specs(f);
    vn_st_close(f);

    /* Any flipped data bit is corruption; the message gives both checksums. */
    char says[128];
    snprintf(says, sizeof says, "checksum mismatch: the header says file_crc32 %s, the file's "
             "%zu bytes give ", want, len);
    for (size_t i = 8 + h; i < len; i++) {
        b[i] ^= 0x10;
        expect_fail(buf, len, "crc.safetensors", VN_ERR_FORMAT, says);
        b[i] ^= 0x10;
    }

    /* The same through a file on disk. */
    tmp_setup();
    char p[8192];
    snprintf(p, sizeof p, "%s", tmp_path("crc.safetensors"));
    ck_assert_int_eq(vn_st_write(w, p, VN_ST_CRC32, &err), VN_OK);
    size_t flen = 0;
    unsigned char *disk = read_all(p, &flen);
    ck_assert_uint_eq(flen, len);
    ck_assert_int_eq(memcmp(disk, buf, len), 0);
    disk[len - 1] ^= 1;
    write_all(p, disk, flen);
    ck_assert_int_eq(vn_st_open(p, &f, &err), VN_ERR_FORMAT);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, says), "%s", err.msg);
    /* Truncated on disk: a checksum mismatch, with what the structure says. */
    write_all(p, disk, flen - 3);
    ck_assert_int_eq(vn_st_open(p, &f, &err), VN_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, "checksum mismatch") &&
                  strstr(err.msg, "truncated?"), "%s", err.msg);
    free(disk);
    tmp_teardown();

    free(buf);
    vn_st_writer_free(w);
}
END_TEST

/* Change every byte of a small checksummed file to each of its 255 other values, the header
 * (length field, names, shapes, offsets, metadata, padding) as well as the data: every change
 * is refused as a checksum mismatch naming the file, before the header is parsed. */
START_TEST(test_change_every_byte)
{
    vn_st_writer *w = vn_st_writer_new();
    vn_error err = {0};
    int64_t s2[2] = {2, 2};
    float a[4] = {1, 2, 3, 4};
    int64_t step = 7;
    ck_assert_int_eq(vn_st_add(w, "a", VN_DTYPE_F32, 2, s2, a, &err), VN_OK);
    ck_assert_int_eq(vn_st_add(w, "step", VN_DTYPE_I64, 0, NULL, &step, &err), VN_OK);
    ck_assert_int_eq(vn_st_set_meta(w, "mean", "[0.485,0.456,0.406]", &err), VN_OK);
    void *buf = NULL;
    size_t len = 0;
    ck_assert_int_eq(vn_st_serialize(w, VN_ST_CRC32, &buf, &len, &err), VN_OK);
    unsigned char *b = buf;
    for (size_t i = 0; i < len; i++) {
        unsigned char orig = b[i];
        for (int v = 0; v < 256; v++) {
            if (v == orig) continue;
            b[i] = (unsigned char)v;
            vn_st_file *f = NULL;
            vn_error e2 = {0};
            int rc = vn_st_open_memory(buf, len, "flip.safetensors", &f, &e2);
            ck_assert_msg(rc == VN_ERR_FORMAT, "byte %zu = 0x%02x accepted", i, v);
            ck_assert_msg(strncmp(e2.msg, "flip.safetensors: checksum mismatch: ", 37) == 0,
                          "byte %zu = 0x%02x: %s", i, v, e2.msg);
            ck_assert_ptr_null(f);
        }
        b[i] = orig;
    }
    /* Cut at any length past the checksum: refused the same way. */
    for (size_t n = SUM_AT + 9; n < len; n++) {
        unsigned char *cut = malloc(n);
        memcpy(cut, buf, n);
        expect_fail(cut, n, "cut.safetensors", VN_ERR_FORMAT, "checksum mismatch");
        free(cut);
    }
    vn_st_file *f = NULL;
    ck_assert_int_eq(vn_st_open_memory(buf, len, "intact", &f, &err), VN_OK);
    vn_st_close(f);
    free(buf);
    vn_st_writer_free(w);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* A file written by Python (tests/reference/gen_io.py)                                     */

/* A PyTorch state_dict written without any checksum (tests/reference/gen_models.py) loads
 * unchecked: the whole-file checksum is only required of files that carry it. */
START_TEST(test_file_without_checksum)
{
    vn_st_file *f = vn_test_fixture("models/small_deploy.safetensors");
    ck_assert_int_gt(vn_st_count(f), 0);
    ck_assert_ptr_null(vn_st_meta(f, "file_crc32"));
    ck_assert_ptr_null(vn_st_meta(f, "crc32"));
    ck_assert_ptr_nonnull(vn_st_find(f, "stem.0.weight"));
    vn_st_close(f);
}
END_TEST

START_TEST(test_python_fixture)
{
    vn_st_file *f = vn_test_fixture("io/python_small.safetensors");
    ck_assert_int_eq(vn_st_count(f), 11);
    const char *order[] = {"f32", "f64", "f16", "i64", "i32", "i16", "i8", "u8", "bool",
                           "empty", "odd.name/with spaces \xc3\xa9"};
    for (int i = 0; i < 11; i++) ck_assert_str_eq(vn_st_at(f, i)->name, order[i]);

    const vn_st_entry *e = vn_st_find(f, "f32");
    ck_assert(e && e->dtype == VN_DTYPE_F32 && e->ndim == 2 && e->shape[0] == 2 &&
              e->shape[1] == 3);
    float f32[6], want32[6];
    memcpy(f32, e->data, sizeof f32);
    for (int i = 0; i < 6; i++) want32[i] = (float)i * 0.25f - 0.5f;
    ck_assert(vn_test_close("f32", f32, want32, 6, 0, 0));
    ck_assert_ptr_eq(vn_test_f32(f, "f32", 6), e->data);

    e = vn_st_find(f, "f64");
    ck_assert(e && e->dtype == VN_DTYPE_F64 && e->numel == 3);
    double f64[3];
    memcpy(f64, e->data, sizeof f64);
    ck_assert(f64[0] == M_PI && f64[1] == -M_E && f64[2] == 1e-300);

    e = vn_st_find(f, "f16");
    ck_assert(e && e->dtype == VN_DTYPE_F16 && e->ndim == 2 && e->numel == 4);
    uint16_t f16[4];
    memcpy(f16, e->data, sizeof f16);
    const float want16[4] = {1.0f, -2.5f, 0.5f, 65504.0f};
    for (int i = 0; i < 4; i++) ck_assert_float_eq(f16_to_float(f16[i]), want16[i]);

    e = vn_st_find(f, "i64");
    ck_assert(e && e->dtype == VN_DTYPE_I64 && e->ndim == 1 && e->numel == 1);
    int64_t i64;
    memcpy(&i64, e->data, 8);
    ck_assert_int_eq(i64, -1234567890123LL);

    e = vn_st_find(f, "i32");
    ck_assert(e && e->dtype == VN_DTYPE_I32 && e->numel == 4);
    int32_t i32[4];
    memcpy(i32, e->data, sizeof i32);
    ck_assert(i32[0] == INT32_MIN && i32[1] == INT32_MAX && i32[2] == 0 && i32[3] == 7);

    e = vn_st_find(f, "i16");
    ck_assert(e && e->dtype == VN_DTYPE_I16 && e->numel == 3);
    int16_t i16[3];
    memcpy(i16, e->data, sizeof i16);
    ck_assert(i16[0] == INT16_MIN && i16[1] == INT16_MAX && i16[2] == -1);

    e = vn_st_find(f, "i8");
    ck_assert(e && e->dtype == VN_DTYPE_I8 && e->numel == 3);
    const int8_t *i8 = e->data;
    ck_assert(i8[0] == INT8_MIN && i8[1] == INT8_MAX && i8[2] == 0);

    e = vn_st_find(f, "u8");
    ck_assert(e && e->dtype == VN_DTYPE_U8 && e->ndim == 3 && e->shape[2] == 3);
    for (int i = 0; i < 6; i++) ck_assert_uint_eq(((const uint8_t *)e->data)[i], i * 51);

    e = vn_st_find(f, "bool");
    ck_assert(e && e->dtype == VN_DTYPE_BOOL && e->numel == 3);
    const uint8_t *bl = e->data;
    ck_assert(bl[0] == 1 && bl[1] == 0 && bl[2] == 1);

    e = vn_st_find(f, "empty");
    ck_assert(e && e->numel == 0 && e->nbytes == 0 && e->ndim == 2 && e->shape[0] == 0 &&
              e->shape[1] == 3);

    e = vn_st_find(f, "odd.name/with spaces \xc3\xa9"); /* "\u00e9" in the JSON */
    ck_assert(e && e->numel == 1);
    float odd;
    memcpy(&odd, e->data, 4);
    ck_assert_float_eq(odd, 3.0f);

    ck_assert_int_eq(vn_st_meta_count(f), 3);
    ck_assert_str_eq(vn_st_meta(f, "format"), "pt");
    ck_assert_str_eq(vn_st_meta(f, "note"), "h\xc3\xa9llo \xe2\x9c\x93");
    /* Python's zlib.crc32 of the data section; opening already verified it, so recompute it
     * here to make sure the check compared against real data. */
    const vn_st_entry *first = vn_st_at(f, 0), *last = vn_st_at(f, 10);
    const unsigned char *d0 = first->data, *d1 = (const unsigned char *)last->data + last->nbytes;
    char crc[16];
    snprintf(crc, sizeof crc, "%08lx", crc32(0, d0, (uInt)(d1 - d0)));
    ck_assert_str_eq(vn_st_meta(f, "crc32"), crc);
    vn_st_close(f);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Corruption                                                                               */

START_TEST(test_length_field)
{
    unsigned char b[64];
    memset(b, ' ', sizeof b);
    for (size_t n = 0; n < 8; n++) expect_fail(b, n, "short.st", VN_ERR_FORMAT, "too short");
    expect_fail(NULL, 0, "null.st", VN_ERR_FORMAT, "file is 0 bytes");

    memset(b, 0, 8);
    expect_fail(b, 16, "zero.st", VN_ERR_FORMAT, "header length is 0");

    memset(b, 0xff, 8);
    expect_fail(b, 16, "huge.st", VN_ERR_FORMAT, "header length 18446744073709551615 exceeds "
                "the limit of 104857600 bytes");
    uint64_t h = (uint64_t)VN_ST_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
    expect_fail(b, 16, "limit.st", VN_ERR_FORMAT, "header length 104857601 exceeds the limit");

    memset(b, 0, 8);
    b[0] = 11;
    memcpy(b + 8, "{}        ", 10);
    expect_fail(b, 18, "past.st", VN_ERR_FORMAT, "header length 11 exceeds the 10 bytes after "
                "the length field");
}
END_TEST

/* Truncating a valid file at every length gives an error, never a crash or a success. */
START_TEST(test_truncate_everywhere)
{
    vn_st_writer *w = vn_st_writer_new();
    vn_error err = {0};
    int64_t s[2] = {2, 3};
    double d[6] = {1, 2, 3, 4, 5, 6};
    uint8_t u[3] = {9, 8, 7};
    int64_t scalar = -5;
    ck_assert_int_eq(vn_st_add(w, "d", VN_DTYPE_F64, 2, s, d, &err), VN_OK);
    ck_assert_int_eq(vn_st_add(w, "u", VN_DTYPE_U8, 1, &s[1], u, &err), VN_OK);
    ck_assert_int_eq(vn_st_add(w, "n", VN_DTYPE_I64, 0, NULL, &scalar, &err), VN_OK);
    ck_assert_int_eq(vn_st_set_meta(w, "a", "b", &err), VN_OK);
    void *buf = NULL;
    size_t len = 0;
    ck_assert_int_eq(vn_st_serialize(w, 0, &buf, &len, &err), VN_OK);
    uint64_t h = le64(buf);
    for (size_t n = 0; n < len; n++) {
        /* A fresh allocation of exactly n bytes, so ASan sees any read past it. */
        unsigned char *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        const char *want = n < 8 ? "too short" : n < 8 + h ? "exceeds the" : "run past the end";
        expect_fail(cut, n, "cut.safetensors", VN_ERR_FORMAT, want);
        free(cut);
    }
    vn_st_file *f = NULL;
    ck_assert_int_eq(vn_st_open_memory(buf, len, "whole", &f, &err), VN_OK);
    vn_st_close(f);

    /* On disk as well, for a few lengths (including the empty file). */
    tmp_setup();
    char p[8192];
    snprintf(p, sizeof p, "%s", tmp_path("cut.safetensors"));
    size_t cuts[] = {0, 5, 8, 8 + (size_t)h / 2, 8 + (size_t)h, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_all(p, buf, cuts[i]);
        ck_assert_int_eq(vn_st_open(p, &f, &err), VN_ERR_FORMAT);
        ck_assert_ptr_null(f);
        ck_assert_msg(strstr(err.msg, p) != NULL, "%s", err.msg);
    }
    tmp_teardown();
    free(buf);
    vn_st_writer_free(w);
}
END_TEST

typedef struct bad_case {
    const char *header;
    size_t data_len;
    const char *want;
} bad_case;

#define ENT(name, dt, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static const bad_case bad_cases[] = {
    /* JSON itself */
    {"{\"a\": ", 0, "invalid JSON header at line 1, column"},
    {"{} x", 0, "invalid JSON header"},
    {"{\"\xff\":{}}", 0, "invalid JSON header"},
    {"{\"a\\u0000b\":{}}", 0, "invalid JSON header"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 4,
     "invalid JSON header"},
    {"[1]", 0, "header is an array, not a JSON object"},
    {"\"str\"", 0, "invalid JSON header"}, /* jansson rejects non-container roots */
    {"{" ENT("a", "F32", "[1]", 0, 4) "," ENT("a", "F32", "[1]", 4, 8) "}", 8,
     "invalid JSON header at line 1, column"},
    {"{" ENT("a", "F32", "[1]", 0, 4) "," ENT("a", "F32", "[1]", 4, 8) "}", 8, "duplicate"},
    /* entries */
    {"{\"a\":[1,2]}", 0, "tensor 'a': entry is an array, not an object"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4,
     "tensor 'a': unknown key 'extra'"},
    {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': missing \"dtype\""},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a': missing \"shape\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a': missing \"data_offsets\""},
    {"{" ENT("a", "F8_E4M3", "[1]", 0, 1) "}", 1, "tensor 'a': unknown dtype 'F8_E4M3'"},
    {"{" ENT("a", "f32", "[1]", 0, 4) "}", 4, "tensor 'a': unknown dtype 'f32'"},
    {"{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'a': dtype is an integer, not a string"},
    {"{" ENT("a", "F32", "3", 0, 12) "}", 12, "tensor 'a': shape is an integer, not an array"},
    {"{" ENT("a", "F32", "[2,-2]", 0, 0) "}", 0,
     "tensor 'a': shape[1] is -2, not a non-negative integer"},
    {"{" ENT("a", "F32", "[2.0]", 0, 8) "}", 8,
     "tensor 'a': shape[0] is a real number, not a non-negative integer"},
    {"{" ENT("a", "F32", "[true]", 0, 4) "}", 4, "tensor 'a': shape[0] is a boolean"},
    {"{" ENT("a", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", 1,
     "tensor 'a': shape has 9 dims, more than the 8 supported"},
    {"{" ENT("a", "F32", "[4294967296,4294967296,4294967296]", 0, 4) "}", 4,
     "tensor 'a': shape [4294967296, 4294967296, 4294967296] of F32 is too large"},
    {"{" ENT("a", "F64", "[1152921504606846976,8]", 0, 8) "}", 8, /* numel ok, bytes overflow */
     "tensor 'a': shape [1152921504606846976, 8] of F64 is too large"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
     "tensor 'a': data_offsets must be [begin, end]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
     "tensor 'a': data_offsets must be [begin, end]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
     "tensor 'a': data_offsets must be [begin, end]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0-4\"}}", 4,
     "tensor 'a': data_offsets must be [begin, end]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
     "tensor 'a': data_offsets must be [begin, end]"},
    {"{" ENT("a", "F32", "[0]", 8, 4) "}", 8, "tensor 'a': data_offsets [8, 4] begin after"},
    {"{" ENT("a", "F32", "[2,2]", 0, 12) "}", 12,
     "tensor 'a': data_offsets [0, 12] do not match shape [2, 2] of F32 (16 bytes)"},
    {"{" ENT("s", "I64", "[]", 0, 4) "}", 4,
     "tensor 's': data_offsets [0, 4] do not match shape [] of I64 (8 bytes)"},
    /* the first problem in header order is the one reported */
    {"{" ENT("ok", "F32", "[1]", 0, 4) "," ENT("b1", "F32", "[3]", 4, 8) ","
     ENT("b2", "Q4", "[1]", 8, 9) "}", 9, "tensor 'b1': data_offsets [4, 8] do not match"},
    /* metadata */
    {"{\"__metadata__\":[1]}", 0, "__metadata__ is an array, not an object of strings"},
    {"{\"__metadata__\":null}", 0, "__metadata__ is null, not an object of strings"},
    {"{\"__metadata__\":{\"k\":1}}", 0,
     "__metadata__ value of 'k' is an integer, not a string"},
    {"{\"__metadata__\":{\"crc32\":\"ABCDEF01\"}}", 0,
     "__metadata__ 'crc32' is 'ABCDEF01', not 8 lowercase hex digits"},
    {"{\"__metadata__\":{\"crc32\":\"0\"}}", 0, "not 8 lowercase hex digits"},
    {"{\"__metadata__\":{\"crc32\":\"12345678\"}}", 0,
     "checksum mismatch: file says 12345678, data gives 00000000"},
    /* the whole-file checksum: placed as vanilla writes it, or not at all */
    {"{\"__metadata__\":{\"file_crc32\":\"12345678\"}}", 0,
     "checksum mismatch: the header says file_crc32 12345678, the file's 50 bytes give fde6bf5e"},
    {"{\"__metadata__\":{\"file_crc32\":\"1234567X\"}}", 0,
     "checksum mismatch: the stored file_crc32 is not 8 lowercase hex digits"},
    {"{\"__metadata__\":{\"file_crc99\":\"12345678\"}}", 0,
     "checksum mismatch: the checksum entry that opens the header is damaged (2 bytes differ"},
    {"{\"__metadata__\":{\"k\":\"v\",\"file_crc32\":\"00000000\"}}", 0,
     "__metadata__ 'file_crc32' is not at the start of the header"},
    {"{\"__metadata__\" : {\"file_crc32\":\"00000000\"}}", 0,
     "__metadata__ 'file_crc32' is not at the start of the header"},
    /* tiling of the data section */
    {"{" ENT("a", "F32", "[1]", 4, 8) "}", 8,
     "tensor 'a': data_offsets [4, 8] leave a hole: the first tensor must begin at 0"},
    {"{" ENT("a", "F32", "[1]", 0, 4) "," ENT("b", "F32", "[1]", 8, 12) "}", 12,
     "tensor 'b': data_offsets [8, 12] leave a hole of 4 bytes after tensor 'a', which ends at 4"},
    {"{" ENT("b", "F32", "[1]", 8, 12) "," ENT("a", "F32", "[1]", 0, 4) "}", 12,
     "tensor 'b': data_offsets [8, 12] leave a hole of 4 bytes after tensor 'a'"},
    {"{" ENT("a", "F32", "[2]", 0, 8) "," ENT("b", "F32", "[2]", 4, 12) "}", 12,
     "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
    {"{" ENT("a", "F32", "[2]", 0, 8) "," ENT("b", "F32", "[2]", 0, 8) "}", 8,
     "data_offsets [0, 8] overlap tensor"},
    {"{" ENT("a", "F32", "[3]", 0, 12) "," ENT("z", "F32", "[0]", 4, 4) "}", 12,
     "tensor 'z': data_offsets [4, 4] overlap tensor 'a' [0, 12]"},
    {"{" ENT("a", "F32", "[1]", 0, 4) "}", 6,
     "2 trailing bytes after the last tensor (data section is 6 bytes, tensors end at 4)"},
    {"{}", 3, "3 trailing bytes after the last tensor"},
    {"{" ENT("a", "F32", "[2]", 0, 8) "}", 4,
     "tensor 'a': data_offsets [0, 8] run past the end of the data section (4 bytes"},
    {"{" ENT("a", "F32", "[1]", 0, 4) "," ENT("z", "F32", "[0]", 9, 9) "}", 4,
     "tensor 'z': data_offsets [9, 9] leave a hole of 5 bytes after tensor 'a'"},
};

START_TEST(test_bad_headers)
{
    const bad_case *c = &bad_cases[_i];
    size_t len = 0;
    unsigned char *b = make_file(c->header, c->data_len, &len);
    char label[64];
    snprintf(label, sizeof label, "case%02d.safetensors", _i);
    expect_fail(b, len, label, VN_ERR_FORMAT, c->want);
    free(b);
}
END_TEST

/* The same header padded with trailing spaces (as writers do) is still valid, and the edge
 * cases that are allowed stay allowed. */
START_TEST(test_good_headers)
{
    static const bad_case good[] = {
        {"{" ENT("a", "F32", "[1]", 0, 4) "}   ", 4, NULL},
        {"  \n{" ENT("a", "F32", "[1]", 0, 4) "}\t\r\n ", 4, NULL},
        {"{\"z\":{\"data_offsets\":[0,0],\"shape\":[0],\"dtype\":\"BF16\"}}", 0, NULL},
        {"{" ENT("z", "F32", "[4294967296,4294967296,4294967296,0]", 0, 0) "}", 0, NULL},
        {"{" ENT("b", "U8", "[1]", 4, 5) "," ENT("a", "F32", "[1]", 0, 4) "}", 5, NULL},
        {"{" ENT("a", "F32", "[1]", 0, 4) "," ENT("z", "F32", "[0]", 4, 4) "}", 4, NULL},
        {"{\"__metadata__\":{}}", 0, NULL},
        {"{\"__metadata__\":{\"crc32\":\"00000000\"}}", 0, NULL},
        {"{\"\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[0,1]}}", 1, NULL},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t len = 0;
        unsigned char *b = make_file(good[i].header, good[i].data_len, &len);
        vn_st_file *f = NULL;
        vn_error err = {0};
        int rc = vn_st_open_memory(b, len, "good", &f, &err);
        ck_assert_msg(rc == VN_OK, "good[%zu]: %s", i, err.msg);
        vn_st_close(f);
        free(b);
    }
    /* Entries come back in offset order, whatever the header order. */
    size_t len = 0;
    unsigned char *b = make_file(good[4].header, good[4].data_len, &len);
    vn_st_file *f = NULL;
    ck_assert_int_eq(vn_st_open_memory(b, len, "order", &f, NULL), VN_OK);
    ck_assert_str_eq(vn_st_at(f, 0)->name, "a");
    ck_assert_str_eq(vn_st_at(f, 1)->name, "b");
    ck_assert_uint_eq(*(const uint8_t *)vn_st_at(f, 1)->data, 4 * 7 + 1);
    vn_st_close(f);
    free(b);
}
END_TEST

START_TEST(test_open_io_errors)
{
    tmp_setup();
    vn_st_file *f = (vn_st_file *)1;
    vn_error err = {0};
    char p[8192];
    snprintf(p, sizeof p, "%s", tmp_path("missing.safetensors"));
    ck_assert_int_eq(vn_st_open(p, &f, &err), VN_ERR_IO);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(err.msg, p) && strstr(err.msg, strerror(ENOENT)), "%s", err.msg);

    ck_assert_int_eq(vn_st_open(tmp_root, &f, &err), VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, tmp_root) && strstr(err.msg, "not a regular file"), "%s",
                  err.msg);
    /* err may be NULL when only the code matters. */
    ck_assert_int_eq(vn_st_open(p, &f, NULL), VN_ERR_IO);
    tmp_teardown();
}
END_TEST

static Suite *io_suite(void)
{
    Suite *s = suite_create("io");
    TCase *t = tcase_create("dtypes");
    tcase_add_test(t, test_dtypes);
    suite_add_tcase(s, t);

    t = tcase_create("roundtrip");
    tcase_add_test(t, test_roundtrip_memory);
    tcase_add_test(t, test_roundtrip_disk);
    tcase_add_test(t, test_empty_file_roundtrip);
    tcase_add_test(t, test_metadata_roundtrip);
    tcase_add_test(t, test_python_fixture);
    tcase_add_test(t, test_file_without_checksum);
    suite_add_tcase(s, t);

    t = tcase_create("crc");
    tcase_add_test(t, test_crc_written_and_verified);
    tcase_add_test(t, test_change_every_byte);
    suite_add_tcase(s, t);

    t = tcase_create("corrupt");
    tcase_add_test(t, test_length_field);
    tcase_add_test(t, test_truncate_everywhere);
    tcase_add_loop_test(t, test_bad_headers, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(t, test_good_headers);
    tcase_add_test(t, test_open_io_errors);
    suite_add_tcase(s, t);

    suite_add_tcase(s, io_writer_tcase());
    return s;
}

int main(void)
{
    return vn_test_run(io_suite(), true);
}

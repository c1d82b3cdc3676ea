/* Metrics sinks: CRC-32C, TensorBoard event files (read back by an independent decoder here
 * and by tests/reference/check_tfevents.py), metrics.jsonl, epochs.csv, resume truncation,
 * write errors. The progress display is tested in test_metrics_progress.c. */
#define _XOPEN_SOURCE 700 /* posix_openpt, grantpt */
#include "vn_test.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "train/vn_metrics.h"
#include "train/vn_tbwriter.h"

/* ------------------------------------------------------------------------ file helpers */

static char *make_tmpdir(void)
{
    char d[4096];
    vn_test_mkdtemp(d, sizeof d, "metrics");
    return strdup(d);
}

static void rm_rf(char *dir)
{
    vn_test_rmtree(dir);
    free(dir);
}

/* dir/name in one of 8 rotating buffers: copy a result that must outlive 8 more calls. */
static char *path_in(const char *dir, const char *name)
{
    static char buf[8][1024];
    static int next;
    char d[1024];
    snprintf(d, sizeof d, "%s", dir);
    char *p = buf[next++ % 8];
    snprintf(p, 1024, "%s/%s", d, name);
    return p;
}

/* Whole file, NUL-terminated; *len its size. NULL when it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) b = realloc(b, cap *= 2);
    }
    fclose(f);
    b[n] = '\0';
    if (len) *len = n;
    return b;
}

static void assert_file_eq(const char *path, const char *want)
{
    char *got = slurp(path, NULL);
    ck_assert_msg(got != NULL, "cannot read %s", path);
    ck_assert_msg(!strcmp(got, want), "%s differs.\n--- got:\n%s--- want:\n%s", path, got, want);
    free(got);
}

/* The only events file in dir (fails when there is not exactly `expect` of them); returns
 * the name of the newest by name order in a static buffer. */
static const char *events_file(const char *dir, int expect)
{
    static char found[1024];
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -1 '%s' | grep -c '^events.out.tfevents\\.'", dir);
    FILE *p = popen(cmd, "r");
    int count = -1;
    ck_assert(p != NULL);
    ck_assert_int_eq(fscanf(p, "%d", &count), 1);
    pclose(p);
    ck_assert_msg(count == expect, "%s: %d events files, expected %d", dir, count, expect);
    snprintf(cmd, sizeof cmd, "ls -1 -t '%s' | grep '^events.out.tfevents\\.' | head -n 1", dir);
    p = popen(cmd, "r");
    ck_assert(p != NULL);
    ck_assert(fgets(found, sizeof found, p) != NULL);
    pclose(p);
    found[strcspn(found, "\n")] = '\0';
    static char full[2048];
    snprintf(full, sizeof full, "%s/%s", dir, found);
    return full;
}

/* ------------------------------------------- independent CRC-32C and event decoder */

/* Bit by bit, unlike the library's table: the two must agree. */
static uint32_t ref_crc32c(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ ((c & 1u) ? 0x82F63B78u : 0u);
    }
    return c ^ 0xFFFFFFFFu;
}

static uint32_t ref_mask(uint32_t c)
{
    uint64_t rot = ((uint64_t)(c >> 15) | ((uint64_t)c << 17)) & 0xFFFFFFFFu;
    return (uint32_t)((rot + 0xa282ead8u) & 0xFFFFFFFFu);
}

#define MAX_VALUES 8
typedef struct tb_value {
    char tag[128];
    uint32_t bits;
} tb_value;
typedef struct tb_event {
    double wall_time;
    int64_t step;
    char file_version[32];
    int n_values;
    tb_value values[MAX_VALUES];
    int session_log; /* -1 none */
} tb_event;

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Reads a varint at *pos < end; fails the test on truncation. */
static uint64_t rd_varint(const uint8_t *b, size_t *pos, size_t end)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        ck_assert_msg(*pos < end, "truncated varint");
        uint8_t c = b[(*pos)++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
    }
    ck_abort_msg("varint too long");
    return 0;
}

static void decode_value(const uint8_t *b, size_t pos, size_t end, tb_value *v)
{
    bool has_tag = false, has_val = false;
    while (pos < end) {
        uint64_t key = rd_varint(b, &pos, end);
        if (key == ((1 << 3) | 2)) {
            uint64_t n = rd_varint(b, &pos, end);
            ck_assert(pos + n <= end && n < sizeof v->tag);
            memcpy(v->tag, b + pos, n);
            v->tag[n] = '\0';
            pos += n;
            has_tag = true;
        } else if (key == ((2 << 3) | 5)) {
            ck_assert(pos + 4 <= end);
            v->bits = (uint32_t)rd_le(b + pos, 4);
            pos += 4;
            has_val = true;
        } else {
            ck_abort_msg("unexpected Value key %llu", (unsigned long long)key);
        }
    }
    ck_assert_msg(has_tag && has_val, "Value lacks tag or simple_value");
}

static void decode_event(const uint8_t *b, size_t n, tb_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->session_log = -1;
    size_t pos = 0;
    while (pos < n) {
        uint64_t key = rd_varint(b, &pos, n);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field == 1 && wire == 1) {
            ck_assert(pos + 8 <= n);
            uint64_t u = rd_le(b + pos, 8);
            memcpy(&ev->wall_time, &u, 8);
            pos += 8;
        } else if (field == 2 && wire == 0) {
            ev->step = (int64_t)rd_varint(b, &pos, n);
        } else if (wire == 2 && (field == 3 || field == 5 || field == 6)) {
            uint64_t len = rd_varint(b, &pos, n);
            ck_assert(pos + len <= n);
            size_t end = pos + len;
            if (field == 3) {
                ck_assert(len < sizeof ev->file_version);
                memcpy(ev->file_version, b + pos, len);
            } else if (field == 5) {
                while (pos < end) {
                    ck_assert_uint_eq(rd_varint(b, &pos, end), (1 << 3) | 2);
                    uint64_t vl = rd_varint(b, &pos, end);
                    ck_assert(pos + vl <= end && ev->n_values < MAX_VALUES);
                    decode_value(b, pos, pos + vl, &ev->values[ev->n_values++]);
                    pos += vl;
                }
            } else {
                ck_assert_uint_eq(rd_varint(b, &pos, end), (1 << 3) | 0);
                ev->session_log = (int)rd_varint(b, &pos, end);
            }
            pos = end;
        } else {
            ck_abort_msg("unexpected Event field %d wire %d", field, wire);
        }
    }
}

/* All events of a file; checks framing and both CRCs of every record and that the first
 * record is the file_version. Returns the count of events after it. */
static int read_events(const char *path, tb_event *evs, int max)
{
    size_t len;
    uint8_t *raw = (uint8_t *)slurp(path, &len);
    ck_assert_msg(raw != NULL, "cannot read %s", path);
    size_t pos = 0;
    int n = 0;
    tb_event first;
    while (pos < len) {
        ck_assert_msg(pos + 12 <= len, "record %d: truncated header", n);
        uint64_t dlen = rd_le(raw + pos, 8);
        ck_assert_msg((uint32_t)rd_le(raw + pos + 8, 4) == ref_mask(ref_crc32c(raw + pos, 8)),
                      "record %d: bad length CRC", n);
        ck_assert_msg(pos + 16 + dlen <= len, "record %d: truncated data", n);
        const uint8_t *data = raw + pos + 12;
        ck_assert_msg((uint32_t)rd_le(data + dlen, 4) == ref_mask(ref_crc32c(data, dlen)),
                      "record %d: bad data CRC", n);
        if (n == 0) {
            decode_event(data, dlen, &first);
            ck_assert_str_eq(first.file_version, "brain.Event:2");
            ck_assert_int_eq(first.step, 0);
            ck_assert_int_eq(first.n_values, 0);
        } else {
            ck_assert_msg(n - 1 < max, "more events than expected");
            decode_event(data, dlen, &evs[n - 1]);
        }
        pos += 16 + dlen;
        n++;
    }
    free(raw);
    ck_assert_msg(n >= 1, "%s has no records", path);
    return n - 1;
}

static uint32_t fbits(double v)
{
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Runs the Python checker on path when /usr/bin/python3 exists and compares its reading
 * with the C decoder's. Returns false when skipped. */
static bool python_agrees(const char *path, const tb_event *evs, int n)
{
    const char *fixtures = getenv("VN_FIXTURES");
    if (access("/usr/bin/python3", X_OK) != 0 || !fixtures) {
        fprintf(stderr, "note: /usr/bin/python3 or VN_FIXTURES missing; Python check skipped\n");
        return false;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/../check_tfevents.py' '%s'", fixtures, path);
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    char *out = malloc(1 << 20);
    size_t len = fread(out, 1, (1 << 20) - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    ck_assert_msg(st == 0, "check_tfevents.py failed (status %d) on %s", st, path);
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je);
    ck_assert_msg(doc != NULL, "checker output is not JSON: %s", je.text);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "file_version")), "brain.Event:2");
    json_t *events = json_object_get(doc, "events");
    ck_assert_int_eq((int)json_array_size(events), n);
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(events, (size_t)i);
        ck_assert_msg(json_real_value(json_object_get(e, "wall_time")) == evs[i].wall_time,
                      "event %d wall_time", i);
        ck_assert_int_eq(json_integer_value(json_object_get(e, "step")), evs[i].step);
        json_t *sl = json_object_get(e, "session_log");
        ck_assert_int_eq(json_is_null(sl) ? -1 : (int)json_integer_value(sl), evs[i].session_log);
        json_t *vals = json_object_get(e, "values");
        ck_assert_int_eq((int)json_array_size(vals), evs[i].n_values);
        for (int k = 0; k < evs[i].n_values; k++) {
            json_t *v = json_array_get(vals, (size_t)k);
            ck_assert_str_eq(json_string_value(json_array_get(v, 0)), evs[i].values[k].tag);
            ck_assert_uint_eq((uint32_t)json_integer_value(json_array_get(v, 1)),
                              evs[i].values[k].bits);
        }
    }
    json_decref(doc);
    free(out);
    return true;
}

/* ------------------------------------------------------------------------------ CRC */

START_TEST(test_crc32c_vectors)
{
    ck_assert_uint_eq(vn_crc32c(0, "123456789", 9), 0xE3069283u);
    uint8_t b[32];
    memset(b, 0, 32);
    ck_assert_uint_eq(vn_crc32c(0, b, 32), 0x8A9136AAu);
    memset(b, 0xff, 32); /* RFC 3720 B.4 */
    ck_assert_uint_eq(vn_crc32c(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    ck_assert_uint_eq(vn_crc32c(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
    ck_assert_uint_eq(vn_crc32c(0, b, 32), 0x113FDB5Cu);
    ck_assert_uint_eq(vn_crc32c(0, "", 0), 0u);

    /* The table agrees with the bitwise definition, and CRCs continue across calls. */
    uint8_t data[1000];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 1000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        data[i] = (uint8_t)(s >> 56);
    }
    ck_assert_uint_eq(vn_crc32c(0, data, 1000), ref_crc32c(data, 1000));
    for (size_t cut = 0; cut <= 1000; cut += 37)
        ck_assert_uint_eq(vn_crc32c(vn_crc32c(0, data, cut), data + cut, 1000 - cut),
                          ref_crc32c(data, 1000));
}
END_TEST

START_TEST(test_crc32c_mask)
{
    ck_assert_uint_eq(vn_crc32c_mask(0), 0xa282ead8u);
    ck_assert_uint_eq(vn_crc32c_mask(0xE3069283u), 0xc78ab0e5u);
    ck_assert_uint_eq(vn_crc32c_mask(0x12345678u), 0x4f730f40u);
    /* Sums past 2^32 wrap. */
    for (uint32_t c = 1; c < 0xF0000000u; c += 0x0F0F0F0Fu)
        ck_assert_uint_eq(vn_crc32c_mask(c), ref_mask(c));
}
END_TEST

/* ---------------------------------------------------------------------- event files */

START_TEST(test_tb_roundtrip)
{
    char *tmp = make_tmpdir();
    char dir[1024]; /* parents are created */
    snprintf(dir, sizeof dir, "%s", path_in(tmp, "a/b/tb"));
    vn_tb_writer *tb = NULL;
    vn_error err = {0};
    time_t t0 = time(NULL);
    ck_assert_msg(vn_tb_open(dir, &tb, &err) == VN_OK, "%s", err.msg);
    time_t t1 = time(NULL);

    /* The name: events.out.tfevents.<seconds>.<hostname>. */
    char host[256] = "";
    gethostname(host, sizeof host);
    const char *path = vn_tb_path(tb);
    char prefix[1100];
    snprintf(prefix, sizeof prefix, "%s/events.out.tfevents.", dir);
    ck_assert_msg(!strncmp(path, prefix, strlen(prefix)), "path %s", path);
    char *end;
    long long secs = strtoll(path + strlen(prefix), &end, 10);
    ck_assert(secs >= (long long)t0 && secs <= (long long)t1);
    ck_assert_msg(*end == '.' && !strcmp(end + 1, host), "path %s, host %s", path, host);

    const char *tags3[3] = {"acc/top1", "nan", "neg_inf"};
    const double vals3[3] = {0.875, NAN, -INFINITY};
    ck_assert_int_eq(vn_tb_scalar(tb, "loss", 1, 0.5, 1700000000.5, &err), VN_OK);
    ck_assert_int_eq(vn_tb_scalar(tb, "loss", 2, 0.1, 1700000001.25, &err), VN_OK);
    ck_assert_int_eq(vn_tb_scalars(tb, 300, 1700000002.0, tags3, vals3, 3, &err), VN_OK);
    ck_assert_int_eq(vn_tb_scalar(tb, "neg", -5, 3.0e38, 1.0, &err), VN_OK);
    ck_assert_int_eq(vn_tb_scalar(tb, "big", (int64_t)1 << 40, 1e-30, 2.0, &err), VN_OK);
    ck_assert_int_eq(vn_tb_session_start(tb, 7, 1700000003.0, &err), VN_OK);
    ck_assert_int_eq(vn_tb_scalar(tb, "now", 8, -2.5, 0, &err), VN_OK);
    /* Bad tags are refused before anything is written. */
    ck_assert_int_eq(vn_tb_scalar(tb, "", 9, 1, 1, &err), VN_ERR_INVALID);
    ck_assert_int_eq(vn_tb_scalar(tb, "a\nb", 9, 1, 1, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "control character"), "%s", err.msg);
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", path);
    ck_assert_int_eq(vn_tb_close(tb, &err), VN_OK);

    tb_event ev[16];
    int n = read_events(keep, ev, 16);
    ck_assert_int_eq(n, 7);
    ck_assert(ev[0].wall_time == 1700000000.5 && ev[0].step == 1 && ev[0].n_values == 1);
    ck_assert_str_eq(ev[0].values[0].tag, "loss");
    ck_assert_uint_eq(ev[0].values[0].bits, fbits(0.5));
    ck_assert(ev[1].wall_time == 1700000001.25 && ev[1].step == 2);
    ck_assert_uint_eq(ev[1].values[0].bits, fbits(0.1));
    ck_assert(ev[2].step == 300 && ev[2].n_values == 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(ev[2].values[i].tag, tags3[i]);
        ck_assert_uint_eq(ev[2].values[i].bits, fbits(vals3[i]));
    }
    ck_assert_int_eq(ev[3].step, -5);
    ck_assert_uint_eq(ev[3].values[0].bits, fbits(3.0e38));
    ck_assert_int_eq(ev[4].step, (int64_t)1 << 40);
    ck_assert_uint_eq(ev[4].values[0].bits, fbits(1e-30));
    ck_assert(ev[5].step == 7 && ev[5].session_log == 1 && ev[5].n_values == 0);
    ck_assert(ev[5].wall_time == 1700000003.0);
    ck_assert(fabs(ev[6].wall_time - (double)time(NULL)) < 60);
    ck_assert_int_eq(ev[6].session_log, -1);
    python_agrees(keep, ev, n);
    rm_rf(tmp);
}
END_TEST

START_TEST(test_tb_unique_names)
{
    char *tmp = make_tmpdir();
    char host[256] = "";
    gethostname(host, sizeof host);
    for (char *c = host; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", *c))
            *c = '_';
    /* Occupy the names of the next few seconds so the writers must add suffixes. */
    long long now = (long long)time(NULL);
    char name[512];
    for (long long s = now; s < now + 4; s++) {
        snprintf(name, sizeof name, "events.out.tfevents.%lld.%s", s, host);
        vn_test_write_text(path_in(tmp, name), "");
    }
    vn_tb_writer *a = NULL, *b = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_tb_open(tmp, &a, &err) == VN_OK, "%s", err.msg);
    ck_assert_msg(vn_tb_open(tmp, &b, &err) == VN_OK, "%s", err.msg);
    size_t la = strlen(vn_tb_path(a)), lb = strlen(vn_tb_path(b));
    ck_assert_msg(la > 2 && !strcmp(vn_tb_path(a) + la - 2, ".1"), "%s", vn_tb_path(a));
    ck_assert_msg(lb > 2 && !strcmp(vn_tb_path(b) + lb - 2, ".2"), "%s", vn_tb_path(b));
    ck_assert_int_eq(vn_tb_close(a, &err), VN_OK);
    ck_assert_int_eq(vn_tb_close(b, &err), VN_OK);
    /* The occupied files were not touched. */
    for (long long s = now; s < now + 4; s++) {
        snprintf(name, sizeof name, "events.out.tfevents.%lld.%s", s, host);
        struct stat st;
        ck_assert(stat(path_in(tmp, name), &st) == 0 && st.st_size == 0);
    }
    rm_rf(tmp);
}
END_TEST

START_TEST(test_tb_errors)
{
    vn_tb_writer *tb = NULL;
    vn_error err = {0};
    if (access("/dev/full", W_OK) == 0) {
        ck_assert_int_eq(vn_tb_open_path("/dev/full", &tb, &err), VN_ERR_IO);
        ck_assert(tb == NULL);
        ck_assert_msg(strstr(err.msg, "/dev/full") && strstr(err.msg, "No space"), "%s", err.msg);
    }
    char *tmp = make_tmpdir();
    vn_test_write_text(path_in(tmp, "file"), "x");
    ck_assert_int_eq(vn_tb_open(path_in(tmp, "file"), &tb, &err), VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, "not a directory"), "%s", err.msg);
    ck_assert_int_eq(vn_tb_open(path_in(tmp, "file/sub"), &tb, &err), VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, "file/sub"), "%s", err.msg);

    /* The disk filling up during training: the file size limit makes writes fail with
     * EFBIG after 4 KiB. Calls report the error, later ones are refused, nothing crashes. */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    ck_assert_msg(vn_tb_open(tmp, &tb, &err) == VN_OK, "%s", err.msg);
    lim = old;
    lim.rlim_cur = 4096;
    ck_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc = VN_OK, i;
    for (i = 0; i < 2000 && rc == VN_OK; i++) {
        rc = vn_tb_scalar(tb, "loss", i, 1.0 / (i + 1), 5.0, &err);
        if (rc == VN_OK && i % 50 == 49) rc = vn_tb_flush(tb, &err);
    }
    ck_assert_int_eq(rc, VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, vn_tb_path(tb)) && strstr(err.msg, "too large"), "%s", err.msg);
    ck_assert_int_eq(vn_tb_scalar(tb, "loss", i, 1.0, 5.0, &err), VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, "earlier write failed"), "%s", err.msg);
    ck_assert_int_eq(vn_tb_flush(tb, &err), VN_ERR_IO);
    ck_assert_int_eq(vn_tb_close(tb, &err), VN_ERR_IO);
    setrlimit(RLIMIT_FSIZE, &old);
    rm_rf(tmp);
}
END_TEST

/* --------------------------------------------------------------------------- metrics */

typedef struct fake_clock {
    double t;
} fake_clock;

static double fake_now(void *user) { return ((fake_clock *)user)->t; }

START_TEST(test_format_number)
{
    char b[40];
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, (double)0.4321f), "0.4321");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, 0.1), "0.1");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, 0.001), "0.001");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, 1.0 / 3.0), "0.3333333333333333");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, (double)(1.0f / 3.0f)), "0.33333334");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, 60000.0), "60000");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, -2.5), "-2.5");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, 1e300), "1e+300");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, NAN), "nan");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, INFINITY), "inf");
    ck_assert_str_eq(vn_metrics_format_number(b, sizeof b, -INFINITY), "-inf");
    /* Exact round trips over many magnitudes. */
    uint64_t s = 1;
    for (int i = 0; i < 2000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double d = ldexp((double)(s >> 11) / 9007199254740992.0, (int)(s % 80) - 40);
        float f = (float)d;
        vn_metrics_format_number(b, sizeof b, d);
        ck_assert_msg(strtod(b, NULL) == d, "%.17g -> %s", d, b);
        vn_metrics_format_number(b, sizeof b, (double)f);
        ck_assert_msg(strtof(b, NULL) == f && strlen(b) <= 15, "%.9g -> %s", (double)f, b);
    }
}
END_TEST

START_TEST(test_metrics_sinks)
{
    char *tmp = make_tmpdir();
    char run[1024];
    snprintf(run, sizeof run, "%s", path_in(tmp, "run"));
    fake_clock clk = {1700000000.25};
    const char *cols[] = {"train_loss", "val_acc1"};
    vn_metrics_opts o = {.csv_columns = cols, .n_csv_columns = 2, .clock = fake_now,
                         .clock_user = &clk};
    vn_metrics *m = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_metrics_open(run, -1, &o, &m, &err) == VN_OK, "%s", err.msg);
    /* The header is written at open when the columns are known. */
    assert_file_eq(path_in(run, "epochs.csv"), "epoch,step,time,train_loss,val_acc1\n");

    const char *n1[] = {"loss", "lr", "act_learn"};
    const double v1[] = {(double)0.4321f, 0.001, 0.25};
    clk.t = 1700000001.0;
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_STEP, 0, 10, n1, v1, 3, &err), VN_OK);
    const char *n2[] = {"train_loss", "val_acc1", "extra"};
    const double v2[] = {1.0 / 3.0, NAN, INFINITY};
    clk.t = 1700000002.5;
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 0, 20, n2, v2, 3, &err), VN_OK);
    const char *n3[] = {"acc1"};
    const double v3[] = {0.75};
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EVAL, 0, 20, n3, v3, 1, &err), VN_OK);
    const char *n4[] = {"val_acc1"}; /* train_loss missing: an empty CSV field */
    const double v4[] = {-INFINITY};
    clk.t = 1700000003.125;
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 1, 40, n4, v4, 1, &err), VN_OK);
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_STEP, 1, 41, NULL, NULL, 0, &err), VN_OK);
    char tbpath[1024];
    snprintf(tbpath, sizeof tbpath, "%s", vn_metrics_tb_path(m));
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);

    const char *want_jsonl =
        "{\"kind\":\"step\",\"epoch\":0,\"step\":10,\"time\":1700000001.000,\"loss\":0.4321,"
        "\"lr\":0.001,\"act_learn\":0.25}\n"
        "{\"kind\":\"epoch\",\"epoch\":0,\"step\":20,\"time\":1700000002.500,"
        "\"train_loss\":0.3333333333333333,\"val_acc1\":null,\"extra\":null}\n"
        "{\"kind\":\"eval\",\"epoch\":0,\"step\":20,\"time\":1700000002.500,\"acc1\":0.75}\n"
        "{\"kind\":\"epoch\",\"epoch\":1,\"step\":40,\"time\":1700000003.125,\"val_acc1\":null}\n"
        "{\"kind\":\"step\",\"epoch\":1,\"step\":41,\"time\":1700000003.125}\n";
    assert_file_eq(path_in(run, "metrics.jsonl"), want_jsonl);
    /* Every line is valid JSON with the values (parsed independently of the text check). */
    char *text = slurp(path_in(run, "metrics.jsonl"), NULL);
    int lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_error_t je;
        json_t *o2 = json_loads(line, 0, &je);
        ck_assert_msg(o2 && json_is_object(o2), "line %d: %s", lines, je.text);
        if (lines == 0) {
            ck_assert_str_eq(json_string_value(json_object_get(o2, "kind")), "step");
            ck_assert_int_eq(json_integer_value(json_object_get(o2, "step")), 10);
            ck_assert((float)json_number_value(json_object_get(o2, "loss")) == 0.4321f);
            ck_assert(json_number_value(json_object_get(o2, "lr")) == 0.001);
            ck_assert(json_number_value(json_object_get(o2, "time")) == 1700000001.0);
        }
        if (lines == 1) {
            ck_assert(json_real_value(json_object_get(o2, "train_loss")) == 1.0 / 3.0);
            ck_assert(json_is_null(json_object_get(o2, "val_acc1")));
        }
        json_decref(o2);
    }
    ck_assert_int_eq(lines, 5);
    free(text);
    assert_file_eq(path_in(run, "epochs.csv"),
                   "epoch,step,time,train_loss,val_acc1\n"
                   "0,20,1700000002.500,0.3333333333333333,nan\n"
                   "1,40,1700000003.125,,-inf\n");

    /* TensorBoard: START at step 0 (fresh run), then one event per record, kind/name tags. */
    ck_assert_str_eq(events_file(path_in(run, "tb"), 1), tbpath);
    tb_event ev[8];
    int n = read_events(tbpath, ev, 8);
    ck_assert_int_eq(n, 5); /* the record without scalars writes no event */
    ck_assert(ev[0].session_log == 1 && ev[0].step == 0 && ev[0].wall_time == 1700000000.25);
    ck_assert(ev[1].step == 10 && ev[1].n_values == 3 && ev[1].wall_time == 1700000001.0);
    ck_assert_str_eq(ev[1].values[0].tag, "step/loss");
    ck_assert_str_eq(ev[1].values[2].tag, "step/act_learn");
    ck_assert_uint_eq(ev[1].values[0].bits, fbits(0.4321));
    ck_assert_str_eq(ev[2].values[0].tag, "epoch/train_loss");
    ck_assert_uint_eq(ev[2].values[0].bits, fbits(1.0 / 3.0));
    ck_assert_uint_eq(ev[2].values[1].bits, fbits(NAN));
    ck_assert_str_eq(ev[3].values[0].tag, "eval/acc1");
    ck_assert(ev[4].step == 40 && ev[4].values[0].bits == fbits(-INFINITY));
    python_agrees(tbpath, ev, n);
    rm_rf(tmp);
}
END_TEST

START_TEST(test_metrics_csv_columns_from_first_record)
{
    char *tmp = make_tmpdir();
    fake_clock clk = {100.0};
    vn_metrics_opts o = {.no_tensorboard = true, .clock = fake_now, .clock_user = &clk};
    vn_metrics *m = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_metrics_open(tmp, -1, &o, &m, &err) == VN_OK, "%s", err.msg);
    ck_assert(vn_metrics_tb_path(m) == NULL);
    ck_assert_int_eq(access(path_in(tmp, "tb"), F_OK), -1);
    ck_assert_int_eq(access(path_in(tmp, "epochs.csv"), F_OK), -1);
    const char *n1[] = {"loss", "acc"};
    const double v1[] = {2.0, 0.5};
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_STEP, 0, 5, n1, v1, 2, &err), VN_OK);
    ck_assert_int_eq(access(path_in(tmp, "epochs.csv"), F_OK), -1); /* steps make no rows */
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 0, 10, n1, v1, 2, &err), VN_OK);
    const char *n2[] = {"acc", "new"};
    const double v2[] = {0.75, 9.0};
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 1, 20, n2, v2, 2, &err), VN_OK);
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
    assert_file_eq(path_in(tmp, "epochs.csv"),
                   "epoch,step,time,loss,acc\n0,10,100.000,2,0.5\n1,20,100.000,,0.75\n");
    rm_rf(tmp);
}
END_TEST

/* Writes run 1: step records every 10 steps to 100, epoch rows at 50 and 100. */
static void write_run1(const char *run, fake_clock *clk)
{
    vn_metrics_opts o = {.clock = fake_now, .clock_user = clk};
    vn_metrics *m = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_metrics_open(run, -1, &o, &m, &err) == VN_OK, "%s", err.msg);
    for (int s = 10; s <= 100; s += 10) {
        clk->t = 1000.0 + s;
        const char *n[] = {"loss"};
        const double v[] = {s / 1000.0};
        ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_STEP, s / 50, s, n, v, 1, &err), VN_OK);
        if (s % 50 == 0) {
            const char *ne[] = {"train_loss", "acc"};
            const double ve[] = {s / 100.0, 0.5};
            ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, s / 50 - 1, s, ne, ve, 2, &err),
                             VN_OK);
        }
    }
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
}

/* The lines of text up to and including the line that contains `last`. */
static char *prefix_through(const char *text, const char *last)
{
    const char *p = strstr(text, last);
    ck_assert(p != NULL);
    const char *e = strchr(p, '\n');
    return strndup(text, (size_t)(e - text + 1));
}

START_TEST(test_metrics_resume_truncates)
{
    char *tmp = make_tmpdir();
    char run[1024];
    snprintf(run, sizeof run, "%s", path_in(tmp, "run"));
    fake_clock clk = {1000.0};
    write_run1(run, &clk);
    char *jsonl1 = slurp(path_in(run, "metrics.jsonl"), NULL);
    ck_assert_int_eq((int)(strlen(jsonl1) > 0), 1);
    assert_file_eq(path_in(run, "epochs.csv"),
                   "epoch,step,time,train_loss,acc\n"
                   "0,50,1050.000,0.5,0.5\n"
                   "1,100,1100.000,1,0.5\n");
    /* A crash in the middle of a line, and a torn CSV row. */
    FILE *f = fopen(path_in(run, "metrics.jsonl"), "ab");
    fputs("{\"kind\":\"step\",\"epoch\":2,\"st", f);
    fclose(f);
    f = fopen(path_in(run, "epochs.csv"), "ab");
    fputs("2,1", f);
    fclose(f);

    /* Resume from the checkpoint at step 50, with one more CSV column than run 1. */
    const char *cols[] = {"train_loss", "acc", "val_loss"};
    vn_metrics_opts o = {.csv_columns = cols, .n_csv_columns = 3, .clock = fake_now,
                         .clock_user = &clk};
    vn_metrics *m = NULL;
    vn_error err = {0};
    clk.t = 2000.0;
    ck_assert_msg(vn_metrics_open(run, 50, &o, &m, &err) == VN_OK, "%s", err.msg);
    /* Lines with step <= 50 are kept byte for byte; the rest is gone. */
    char *kept = prefix_through(jsonl1, "\"kind\":\"epoch\",\"epoch\":0,\"step\":50");
    assert_file_eq(path_in(run, "metrics.jsonl"), kept);
    int n_kept = 0;
    for (char *c = kept; *c; c++) n_kept += *c == '\n';
    ck_assert_int_eq(n_kept, 6); /* steps 10..50 and the epoch record at 50 */
    assert_file_eq(path_in(run, "epochs.csv"),
                   "epoch,step,time,train_loss,acc,val_loss\n"
                   "0,50,1050.000,0.5,0.5,\n");
    ck_assert_int_eq(access(path_in(run, "metrics.jsonl.tmp"), F_OK), -1);
    ck_assert_int_eq(access(path_in(run, "epochs.csv.tmp"), F_OK), -1);

    const char *n[] = {"loss"};
    const double v[] = {0.06};
    clk.t = 2060.0;
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_STEP, 1, 60, n, v, 1, &err), VN_OK);
    const char *ne[] = {"train_loss", "val_loss"};
    const double ve[] = {0.25, 0.125};
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 1, 100, ne, ve, 2, &err), VN_OK);
    char tbpath[1024];
    snprintf(tbpath, sizeof tbpath, "%s", vn_metrics_tb_path(m));
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);

    size_t klen = strlen(kept);
    char *jsonl2 = slurp(path_in(run, "metrics.jsonl"), NULL);
    ck_assert(!strncmp(jsonl2, kept, klen));
    ck_assert_str_eq(jsonl2 + klen,
                     "{\"kind\":\"step\",\"epoch\":1,\"step\":60,\"time\":2060.000,\"loss\":0.06}\n"
                     "{\"kind\":\"epoch\",\"epoch\":1,\"step\":100,\"time\":2060.000,"
                     "\"train_loss\":0.25,\"val_loss\":0.125}\n");
    assert_file_eq(path_in(run, "epochs.csv"),
                   "epoch,step,time,train_loss,acc,val_loss\n"
                   "0,50,1050.000,0.5,0.5,\n"
                   "1,100,2060.000,0.25,,0.125\n");

    /* A second events file, starting with START at step 51 so TensorBoard hides the old
     * points past the checkpoint. */
    events_file(path_in(run, "tb"), 2);
    tb_event ev[8];
    int nev = read_events(tbpath, ev, 8);
    ck_assert_int_eq(nev, 3);
    ck_assert(ev[0].session_log == 1 && ev[0].step == 51 && ev[0].wall_time == 2000.0);
    ck_assert(ev[1].step == 60 && ev[2].step == 100);

    /* Resuming past the end changes nothing (no rewrite); later columns stay. */
    char *before_j = slurp(path_in(run, "metrics.jsonl"), NULL);
    char *before_c = slurp(path_in(run, "epochs.csv"), NULL);
    struct stat st1, st2;
    stat(path_in(run, "metrics.jsonl"), &st1);
    vn_metrics_opts o2 = {.no_tensorboard = true};
    ck_assert_msg(vn_metrics_open(run, 1000, &o2, &m, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
    stat(path_in(run, "metrics.jsonl"), &st2);
    ck_assert(st1.st_ino == st2.st_ino); /* not replaced by a rename */
    assert_file_eq(path_in(run, "metrics.jsonl"), before_j);
    assert_file_eq(path_in(run, "epochs.csv"), before_c);

    /* A resume whose checkpoint comes before epoch 1's evaluation (at its last step, 100):
     * that epoch's record goes, though at the checkpoint's step, as the resume logs it again;
     * the epoch's running loss comes back from its step records. */
    double lsum;
    int64_t lcount;
    ck_assert_int_eq(vn_metrics_sum_steps(run, 1, "loss", &lsum, &lcount), VN_OK);
    /* epoch 1's steps kept: 50 (0.05, logged by write_run1) and 60 (0.06), in file order */
    ck_assert_msg(lcount == 2 && lsum == 0.0 + 0.05 + 0.06, "%lld %.17g", (long long)lcount, lsum);
    vn_metrics_opts o3 = {.no_tensorboard = true, .resume_epoch_set = true, .resume_epoch = 1};
    ck_assert_msg(vn_metrics_open(run, 100, &o3, &m, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
    char *after3 = slurp(path_in(run, "metrics.jsonl"), NULL);
    ck_assert_ptr_null(strstr(after3, "\"kind\":\"epoch\",\"epoch\":1"));
    ck_assert_ptr_nonnull(strstr(after3, "\"kind\":\"step\",\"epoch\":1,\"step\":60"));
    ck_assert_ptr_nonnull(strstr(after3, "\"kind\":\"epoch\",\"epoch\":0"));
    assert_file_eq(path_in(run, "epochs.csv"), "epoch,step,time,train_loss,acc,val_loss\n"
                                               "0,50,1050.000,0.5,0.5,\n");
    free(after3);

    /* Resuming at step 0 keeps nothing but the CSV header. */
    ck_assert_msg(vn_metrics_open(run, 0, &o2, &m, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
    assert_file_eq(path_in(run, "metrics.jsonl"), "");
    assert_file_eq(path_in(run, "epochs.csv"), "epoch,step,time,train_loss,acc,val_loss\n");
    free(before_j);
    free(before_c);
    free(jsonl1);
    free(jsonl2);
    free(kept);
    rm_rf(tmp);
}
END_TEST

START_TEST(test_metrics_resume_bad_files)
{
    char *tmp = make_tmpdir();
    vn_metrics_opts o = {.no_tensorboard = true};
    vn_metrics *m = NULL;
    vn_error err = {0};
    /* A CSV that vanilla did not write is an error that names it, and stays as it was. */
    vn_test_write_text(path_in(tmp, "epochs.csv"), "a,b,c\n1,2,3\n");
    ck_assert_int_eq(vn_metrics_open(tmp, 10, &o, &m, &err), VN_ERR_FORMAT);
    ck_assert(m == NULL);
    ck_assert_msg(strstr(err.msg, "epochs.csv") && strstr(err.msg, "\"step\""), "%s", err.msg);
    assert_file_eq(path_in(tmp, "epochs.csv"), "a,b,c\n1,2,3\n");

    /* Unreadable lines and rows are dropped; good ones kept. */
    vn_test_write_text(path_in(tmp, "metrics.jsonl"),
               "{\"kind\":\"step\",\"step\":1}\n"
               "garbage\n"
               "\n"
               "{\"kind\":\"step\",\"step\":\"2\"}\n"
               "{\"kind\":\"step\",\"step\":3}\n"
               "{\"kind\":\"step\",\"step\":30}\n");
    vn_test_write_text(path_in(tmp, "epochs.csv"),
               "epoch,step,time\n0,1,5.0\n0,x,5.0\n0,2\n0,3,7.5,9\n0,4,8.0\n0,40,9.0\n");
    ck_assert_msg(vn_metrics_open(tmp, 10, &o, &m, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
    assert_file_eq(path_in(tmp, "metrics.jsonl"),
                   "{\"kind\":\"step\",\"step\":1}\n{\"kind\":\"step\",\"step\":3}\n");
    assert_file_eq(path_in(tmp, "epochs.csv"), "epoch,step,time\n0,1,5.0\n0,4,8.0\n");

    /* A torn header: the file starts again. */
    vn_test_write_text(path_in(tmp, "epochs.csv"), "epoch,st");
    ck_assert_msg(vn_metrics_open(tmp, 10, &o, &m, &err) == VN_OK, "%s", err.msg);
    const char *n[] = {"acc"};
    const double v[] = {1};
    ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 0, 11, n, v, 1, &err), VN_OK);
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
    char *csv = slurp(path_in(tmp, "epochs.csv"), NULL);
    ck_assert_msg(!strncmp(csv, "epoch,step,time,acc\n0,11,", 25), "%s", csv);
    free(csv);

    /* A fresh run empties both files. */
    ck_assert_msg(vn_metrics_open(tmp, -1, &o, &m, &err) == VN_OK, "%s", err.msg);
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
    assert_file_eq(path_in(tmp, "metrics.jsonl"), "");
    ck_assert_int_eq(access(path_in(tmp, "epochs.csv"), F_OK), -1);
    rm_rf(tmp);
}
END_TEST

START_TEST(test_metrics_bad_names)
{
    char *tmp = make_tmpdir();
    vn_metrics_opts o = {.no_tensorboard = true};
    vn_metrics *m = NULL;
    vn_error err = {0};
    const char *bad_cols[] = {"ok", "not ok"};
    vn_metrics_opts ob = {.no_tensorboard = true, .csv_columns = bad_cols, .n_csv_columns = 2};
    ck_assert_int_eq(vn_metrics_open(tmp, -1, &ob, &m, &err), VN_ERR_INVALID);
    ck_assert_msg(strstr(err.msg, "epochs.csv columns") && strstr(err.msg, "not ok"), "%s",
                  err.msg);
    ck_assert_msg(vn_metrics_open(tmp, -1, &o, &m, &err) == VN_OK, "%s", err.msg);
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    const char *cases[][2] = {{"", "x"}, {"a b", "x"}, {"kind", "x"}, {"step", "x"},
                              {"x", "x"}, {long_name, "x"}, {"q\"", "x"}, {"a,b", "x"}};
    const double v[2] = {1, 2};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err.msg[0] = '\0';
        ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 0, 1, cases[i], v, 2, &err),
                         VN_ERR_INVALID);
        ck_assert(err.msg[0] != '\0');
    }
    ck_assert_int_eq(vn_metrics_log(m, (vn_metrics_kind)7, 0, 1, cases[4], v, 1, &err),
                     VN_ERR_INVALID);
    ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
    assert_file_eq(path_in(tmp, "metrics.jsonl"), "");
    ck_assert_int_eq(access(path_in(tmp, "epochs.csv"), F_OK), -1);
    rm_rf(tmp);
}
END_TEST

START_TEST(test_metrics_write_errors)
{
    char *tmp = make_tmpdir();
    vn_metrics *m = NULL;
    vn_error err = {0};
    const char *n[] = {"loss"};
    const double v[] = {1.5};
    if (access("/dev/full", W_OK) == 0) {
        /* metrics.jsonl on a full disk: the error names it, the other sinks still work. */
        ck_assert(symlink("/dev/full", path_in(tmp, "metrics.jsonl")) == 0);
        vn_metrics_opts o = {0};
        ck_assert_msg(vn_metrics_open(tmp, -1, &o, &m, &err) == VN_OK, "%s", err.msg);
        ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 0, 3, n, v, 1, &err), VN_ERR_IO);
        ck_assert_msg(strstr(err.msg, "metrics.jsonl") && strstr(err.msg, "No space"), "%s",
                      err.msg);
        ck_assert_int_eq(vn_metrics_log(m, VN_METRICS_EPOCH, 0, 4, n, v, 1, &err), VN_ERR_IO);
        char tbpath[1024];
        snprintf(tbpath, sizeof tbpath, "%s", vn_metrics_tb_path(m));
        ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
        char *csv = slurp(path_in(tmp, "epochs.csv"), NULL);
        ck_assert_msg(strstr(csv, "\n0,3,") && strstr(csv, "\n0,4,"), "%s", csv);
        free(csv);
        tb_event ev[4];
        ck_assert_int_eq(read_events(tbpath, ev, 4), 3);
        /* Resuming over a device leaves it alone instead of reading it forever. */
        vn_metrics_opts o2 = {.no_tensorboard = true};
        ck_assert_msg(vn_metrics_open(tmp, 3, &o2, &m, &err) == VN_OK, "%s", err.msg);
        ck_assert_int_eq(vn_metrics_close(m, &err), VN_OK);
    }
    /* A run directory that cannot be created. */
    vn_test_write_text(path_in(tmp, "plain"), "");
    ck_assert_int_eq(vn_metrics_open(path_in(tmp, "plain/run"), -1, NULL, &m, &err), VN_ERR_IO);
    ck_assert_msg(strstr(err.msg, "run directory") && strstr(err.msg, "plain/run"), "%s",
                  err.msg);
    rm_rf(tmp);
}
END_TEST

/* Adds the progress-display tests (test_metrics_progress.c). */
void add_progress_tests(Suite *s);

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("tb");
    tcase_add_test(tc, test_crc32c_vectors);
    tcase_add_test(tc, test_crc32c_mask);
    tcase_add_test(tc, test_tb_roundtrip);
    tcase_add_test(tc, test_tb_unique_names);
    tcase_add_test(tc, test_tb_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("metrics");
    tcase_add_test(tc, test_format_number);
    tcase_add_test(tc, test_metrics_sinks);
    tcase_add_test(tc, test_metrics_csv_columns_from_first_record);
    tcase_add_test(tc, test_metrics_resume_truncates);
    tcase_add_test(tc, test_metrics_resume_bad_files);
    tcase_add_test(tc, test_metrics_bad_names);
    tcase_add_test(tc, test_metrics_write_errors);
    suite_add_tcase(s, tc);
    add_progress_tests(s);
    return s;
}

int main(void)
{
    return vn_test_run(metrics_suite(), true);
}

/* TensorBoard event-file writer: TFRecord framing with CRC-32C, Event protobufs encoded by
 * hand (see vn_tbwriter.h for the exact layout). */
#include "train/vn_tbwriter.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/vn_fs.h"

/* TensorBoard polls event files; flushing more often than this only costs syscalls. */
#define TB_FLUSH_INTERVAL_S 2.0

/* ---------------------------------------------------------------------------- CRC-32C */

/* The 256-entry table for the reflected polynomial, built at compile time so that no
 * mutable global or one-time initialisation is needed. */
#define CRC_P 0x82F63B78u
#define CRC_B(c) (((c) & 1u) ? (((c) >> 1) ^ CRC_P) : ((c) >> 1))
#define CRC_8(c) CRC_B(CRC_B(CRC_B(CRC_B(CRC_B(CRC_B(CRC_B(CRC_B((uint32_t)(c)))))))))
#define CRC_R4(i) CRC_8(i), CRC_8((i) + 1), CRC_8((i) + 2), CRC_8((i) + 3)
#define CRC_R16(i) CRC_R4(i), CRC_R4((i) + 4), CRC_R4((i) + 8), CRC_R4((i) + 12)
#define CRC_R64(i) CRC_R16(i), CRC_R16((i) + 16), CRC_R16((i) + 32), CRC_R16((i) + 48)
static const uint32_t crc_table[256] = {CRC_R64(0), CRC_R64(64), CRC_R64(128), CRC_R64(192)};

uint32_t vn_crc32c(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xffu] ^ (c >> 8);
    return ~c;
}

uint32_t vn_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* ------------------------------------------------------------------ protobuf encoding */

/* Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. */
#define PB_KEY(field, wire) ((uint8_t)(((field) << 3) | (wire)))

typedef struct pb_buf {
    uint8_t *data;
    size_t len, cap;
} pb_buf;

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* The caller reserves the exact size first, so the put_ functions cannot overflow. */
static int pb_reserve(pb_buf *b, size_t need)
{
    if (need <= b->cap) return VN_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) return VN_ERR_NOMEM;
    b->data = d;
    b->cap = cap;
    return VN_OK;
}

static void put_byte(pb_buf *b, uint8_t v) { b->data[b->len++] = v; }

static void put_varint(pb_buf *b, uint64_t v)
{
    while (v >= 0x80) {
        put_byte(b, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    put_byte(b, (uint8_t)v);
}

static void put_le(pb_buf *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) put_byte(b, (uint8_t)(v >> (8 * i)));
}

static void put_bytes(pb_buf *b, const void *p, size_t n)
{
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static uint64_t double_bits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static uint32_t float_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* Length of a Value { tag, simple_value } message body. */
static size_t value_len(size_t tag_len)
{
    return 1 + varint_len(tag_len) + tag_len + 1 + 4;
}

/* ----------------------------------------------------------------------------- writer */

struct vn_tb_writer {
    FILE *f;
    char *path;
    pb_buf buf;
    double last_flush; /* monotonic seconds */
    int failed;        /* status of the first failed write; later writes are refused */
};

const char *vn_tb_path(const vn_tb_writer *tb) { return tb->path; }

static int tb_fail(vn_tb_writer *tb, int e, const char *what, vn_error *err)
{
    if (!tb->failed) tb->failed = VN_ERR_IO;
    return vn_error_set(err, VN_ERR_IO, "%s TensorBoard events file %s: %s", what, tb->path,
                        strerror(e));
}

static int tb_refuse(const vn_tb_writer *tb, vn_error *err)
{
    return vn_error_set(err, tb->failed,
                        "TensorBoard events file %s: an earlier write failed; no more records "
                        "are written to it",
                        tb->path);
}

/* Frames tb->buf as one TFRecord and writes it. */
static int tb_write_record(vn_tb_writer *tb, vn_error *err)
{
    uint8_t head[12], foot[4];
    uint64_t len = tb->buf.len;
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)(len >> (8 * i));
    uint32_t hcrc = vn_crc32c_mask(vn_crc32c(0, head, 8));
    uint32_t dcrc = vn_crc32c_mask(vn_crc32c(0, tb->buf.data, tb->buf.len));
    for (int i = 0; i < 4; i++) {
        head[8 + i] = (uint8_t)(hcrc >> (8 * i));
        foot[i] = (uint8_t)(dcrc >> (8 * i));
    }
    errno = 0;
    if (fwrite(head, 1, sizeof head, tb->f) != sizeof head ||
        fwrite(tb->buf.data, 1, tb->buf.len, tb->f) != tb->buf.len ||
        fwrite(foot, 1, sizeof foot, tb->f) != sizeof foot)
        return tb_fail(tb, errno ? errno : EIO, "writing", err);
    if (vn_monotonic() - tb->last_flush >= TB_FLUSH_INTERVAL_S)
        return vn_tb_flush(tb, err);
    return VN_OK;
}

/* Event header fields shared by every record: wall_time and step. */
static size_t event_head_len(int64_t step) { return 9 + 1 + varint_len((uint64_t)step); }

static void put_event_head(pb_buf *b, int64_t step, double wall_time)
{
    put_byte(b, PB_KEY(1, 1));
    put_le(b, double_bits(wall_time), 8);
    put_byte(b, PB_KEY(2, 0));
    put_varint(b, (uint64_t)step); /* int64 varints are the two's complement as uint64 */
}

static double resolve_time(double wall_time)
{
    return wall_time > 0 ? wall_time : vn_wall_time();
}

static int tb_write_file_version(vn_tb_writer *tb, vn_error *err)
{
    static const char version[] = "brain.Event:2";
    size_t vlen = sizeof version - 1;
    tb->buf.len = 0;
    if (pb_reserve(&tb->buf, event_head_len(0) + 1 + varint_len(vlen) + vlen) != VN_OK)
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory encoding a TensorBoard event");
    put_event_head(&tb->buf, 0, vn_wall_time());
    put_byte(&tb->buf, PB_KEY(3, 2));
    put_varint(&tb->buf, vlen);
    put_bytes(&tb->buf, version, vlen);
    return tb_write_record(tb, err);
}

static int tb_open_file(const char *path, const char *mode, vn_tb_writer **out, vn_error *err)
{
    FILE *f = fopen(path, mode);
    if (!f) return errno; /* the caller decides whether EEXIST means "try another name" */
    vn_tb_writer *tb = calloc(1, sizeof *tb);
    char *p = tb ? strdup(path) : NULL;
    if (!p) {
        fclose(f);
        free(tb);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory opening %s", path);
    }
    tb->f = f;
    tb->path = p;
    tb->last_flush = vn_monotonic();
    int rc = tb_write_file_version(tb, err);
    if (rc == VN_OK) rc = vn_tb_flush(tb, err);
    if (rc != VN_OK) {
        vn_tb_close(tb, NULL);
        return rc;
    }
    *out = tb;
    return 0;
}

/* Maps tb_open_file's result (0, errno > 0 from fopen, or a negative status whose message
 * is set) to a status with a message. */
static int open_result(int r, const char *path, vn_error *err)
{
    if (r <= 0) return r;
    return vn_error_set(err, VN_ERR_IO, "cannot create TensorBoard events file %s: %s", path,
                        strerror(r));
}

int vn_tb_open_path(const char *path, vn_tb_writer **out, vn_error *err)
{
    if (!path || !out) return vn_error_set(err, VN_ERR_INVALID, "vn_tb_open_path: NULL argument");
    *out = NULL;
    return open_result(tb_open_file(path, "wb", out, err), path, err);
}

int vn_tb_open(const char *dir, vn_tb_writer **out, vn_error *err)
{
    if (!dir || !out) return vn_error_set(err, VN_ERR_INVALID, "vn_tb_open: NULL argument");
    *out = NULL;
    int rc = vn_mkdirs(dir, err);
    if (rc != VN_OK) {
        vn_error_prefix(err, "TensorBoard log directory: ");
        return rc;
    }

    /* TensorBoard's own writers name files this way; the hostname keeps files written by
     * several machines into one shared directory apart. Characters that could form a path
     * are replaced. */
    char host[256];
    if (gethostname(host, sizeof host) != 0 || !host[0]) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 *c == '-' || *c == '_' || *c == '.';
        if (!ok) *c = '_';
    }
    size_t cap = strlen(dir) + strlen(host) + 96;
    char *path = malloc(cap);
    if (!path) return vn_error_set(err, VN_ERR_NOMEM, "out of memory opening an events file");
    long long secs = (long long)time(NULL);
    /* "x" (C11) creates exclusively, so two writers started within the same second never
     * share a file. */
    int r = EEXIST;
    for (int attempt = 0; attempt < 1000 && r == EEXIST; attempt++) {
        if (attempt == 0)
            snprintf(path, cap, "%s/events.out.tfevents.%lld.%s", dir, secs, host);
        else
            snprintf(path, cap, "%s/events.out.tfevents.%lld.%s.%d", dir, secs, host, attempt);
        r = tb_open_file(path, "wbx", out, err);
    }
    rc = open_result(r, path, err);
    free(path);
    return rc;
}

int vn_tb_scalars(vn_tb_writer *tb, int64_t step, double wall_time, const char *const *tags,
                  const double *values, int n, vn_error *err)
{
    if (!tb || n < 0 || (n > 0 && (!tags || !values)))
        return vn_error_set(err, VN_ERR_INVALID, "vn_tb_scalars: NULL argument or n < 0");
    if (tb->failed) return tb_refuse(tb, err);
    size_t summary_len = 0;
    for (int i = 0; i < n; i++) {
        if (!tags[i] || !tags[i][0])
            return vn_error_set(err, VN_ERR_INVALID, "TensorBoard scalar %d has an empty tag", i);
        for (const unsigned char *c = (const unsigned char *)tags[i]; *c; c++)
            if (*c < 0x20)
                return vn_error_set(err, VN_ERR_INVALID,
                                    "TensorBoard tag \"%s\" contains a control character",
                                    tags[i]);
        size_t vl = value_len(strlen(tags[i]));
        summary_len += 1 + varint_len(vl) + vl;
    }
    size_t total = event_head_len(step) + 1 + varint_len(summary_len) + summary_len;
    tb->buf.len = 0;
    if (pb_reserve(&tb->buf, total) != VN_OK)
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory encoding a TensorBoard event");

    put_event_head(&tb->buf, step, resolve_time(wall_time));
    put_byte(&tb->buf, PB_KEY(5, 2)); /* Event.summary */
    put_varint(&tb->buf, summary_len);
    for (int i = 0; i < n; i++) {
        size_t tl = strlen(tags[i]);
        put_byte(&tb->buf, PB_KEY(1, 2)); /* Summary.value */
        put_varint(&tb->buf, value_len(tl));
        put_byte(&tb->buf, PB_KEY(1, 2)); /* Value.tag */
        put_varint(&tb->buf, tl);
        put_bytes(&tb->buf, tags[i], tl);
        put_byte(&tb->buf, PB_KEY(2, 5)); /* Value.simple_value */
        put_le(&tb->buf, float_bits((float)values[i]), 4);
    }
    VN_ASSERT(tb->buf.len == total, "TensorBoard event size mismatch (%zu vs %zu)", tb->buf.len,
              total);
    return tb_write_record(tb, err);
}

int vn_tb_scalar(vn_tb_writer *tb, const char *tag, int64_t step, double value,
                 double wall_time, vn_error *err)
{
    return vn_tb_scalars(tb, step, wall_time, &tag, &value, 1, err);
}

int vn_tb_session_start(vn_tb_writer *tb, int64_t step, double wall_time, vn_error *err)
{
    if (!tb) return vn_error_set(err, VN_ERR_INVALID, "vn_tb_session_start: NULL writer");
    if (tb->failed) return tb_refuse(tb, err);
    tb->buf.len = 0;
    if (pb_reserve(&tb->buf, event_head_len(step) + 4) != VN_OK)
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory encoding a TensorBoard event");
    put_event_head(&tb->buf, step, resolve_time(wall_time));
    put_byte(&tb->buf, PB_KEY(6, 2)); /* Event.session_log */
    put_varint(&tb->buf, 2);
    put_byte(&tb->buf, PB_KEY(1, 0)); /* SessionLog.status */
    put_varint(&tb->buf, 1);          /* START */
    return tb_write_record(tb, err);
}

int vn_tb_flush(vn_tb_writer *tb, vn_error *err)
{
    if (!tb) return vn_error_set(err, VN_ERR_INVALID, "vn_tb_flush: NULL writer");
    if (tb->failed) return tb_refuse(tb, err);
    errno = 0;
    if (fflush(tb->f) != 0) return tb_fail(tb, errno ? errno : EIO, "flushing", err);
    tb->last_flush = vn_monotonic();
    return VN_OK;
}

int vn_tb_close(vn_tb_writer *tb, vn_error *err)
{
    if (!tb) return VN_OK;
    int rc = tb->failed ? tb_refuse(tb, err) : VN_OK;
    errno = 0;
    /* fclose flushes; after a failure its buffer may hold a partial record, which is the
     * reason failed writers refuse later records (the partial one is at least the last). */
    if (fclose(tb->f) != 0 && rc == VN_OK) rc = tb_fail(tb, errno ? errno : EIO, "closing", err);
    free(tb->path);
    free(tb->buf.data);
    free(tb);
    return rc;
}

/* safetensors reading (validate everything, report the first problem) and writing (atomic
 * replace through a temporary file in the same folder). */
#include "io/vn_safetensors.h"
#include "base/vn_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

/* The data section of a file read into memory starts on this boundary, so that an entry
 * whose offset is a multiple of its element size (every entry of a one-dtype file) can be
 * read in place. Entries are not guaranteed aligned in general: see vn_st_entry. */
#define ST_DATA_ALIGN 64

#define ST_META_KEY "__metadata__"
/* Files written before the whole-file checksum: CRC-32 of the data section only. */
#define ST_CRC_KEY "crc32"
/* The whole-file checksum. The writer makes it the first metadata entry and the metadata the
 * first header entry, so the header always opens with ST_SUM_PREFIX followed by 8 lowercase
 * hex digits and '"'. Its value is the zlib CRC-32 of the whole file (length field, header,
 * data) as it is with those 8 digits replaced by ST_SUM_PLACEHOLDER: the checksum covers
 * every byte but itself, and a reader finds it without parsing the header, so a damaged
 * header is reported as a checksum mismatch rather than as whatever the damage looks like. */
#define ST_SUM_KEY "file_crc32"
#define ST_SUM_PREFIX "{\"" ST_META_KEY "\":{\"" ST_SUM_KEY "\":\""
#define ST_SUM_PLACEHOLDER "00000000"
enum {
    ST_SUM_AT = 8 + (int)sizeof ST_SUM_PREFIX - 1, /* file offset of the 8 digits */
    ST_SUM_END = ST_SUM_AT + 9,                    /* ... and of the byte after the '"' */
    /* A header opening that differs from ST_SUM_PREFIX in at most this many bytes is a
     * checksummed file whose opening was damaged; another writer's header (metadata with
     * other keys, or a tensor name first) differs in many more. */
    ST_SUM_NEAR = 4,
};

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [VN_DTYPE_F32] = {"F32", 4}, [VN_DTYPE_F64] = {"F64", 8},  [VN_DTYPE_F16] = {"F16", 2},
    [VN_DTYPE_BF16] = {"BF16", 2}, [VN_DTYPE_I64] = {"I64", 8}, [VN_DTYPE_I32] = {"I32", 4},
    [VN_DTYPE_I16] = {"I16", 2}, [VN_DTYPE_I8] = {"I8", 1},    [VN_DTYPE_U8] = {"U8", 1},
    [VN_DTYPE_BOOL] = {"BOOL", 1},
};
_Static_assert(sizeof dtype_info / sizeof dtype_info[0] == VN_DTYPE_COUNT,
               "dtype_info must list every vn_dtype");

const char *vn_dtype_name(vn_dtype dt)
{
    return (unsigned)dt < VN_DTYPE_COUNT ? dtype_info[dt].name : NULL;
}

size_t vn_dtype_size(vn_dtype dt)
{
    return (unsigned)dt < VN_DTYPE_COUNT ? dtype_info[dt].size : 0;
}

bool vn_dtype_is_float(vn_dtype dt)
{
    return dt == VN_DTYPE_F32 || dt == VN_DTYPE_F64 || dt == VN_DTYPE_F16 || dt == VN_DTYPE_BF16;
}

float vn_dtype_float_at(const uint8_t *p, vn_dtype dt)
{
    switch (dt) {
    case VN_DTYPE_F64: {
        double d;
        memcpy(&d, p, 8);
        return (float)d;
    }
    case VN_DTYPE_F16: { /* IEEE half: subnormals, infinities and NaN included */
        uint16_t h = (uint16_t)(p[0] | p[1] << 8);
        int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY)
                                                           : ldexpf((float)(m | 0x400), e - 25);
        return (h & 0x8000) ? -v : v;
    }
    case VN_DTYPE_BF16: { /* the top half of a float32 */
        uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    default: {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    }
}

static bool dtype_from_name(const char *s, vn_dtype *out)
{
    for (int i = 0; i < VN_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (vn_dtype)i;
            return true;
        }
    }
    return false;
}

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void store_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* zlib's crc32 takes a 32-bit length; crc32_z takes size_t. */
static uint32_t crc_update(uint32_t crc, const void *data, size_t len)
{
    return len ? (uint32_t)crc32_z(crc, data, len) : crc;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON value";
}

/* ------------------------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------------------------- */

struct vn_st_file {
    char *label;
    unsigned char *block; /* the malloc'd buffer holding the whole file */
    int n;
    vn_st_entry *entries;            /* ascending data offset */
    const vn_st_entry **by_name;     /* the same entries sorted by name, for vn_st_find */
    int n_meta;
    const char **meta_keys;          /* file order */
    const char **meta_vals;
    char *strings;                   /* names, metadata keys and values */
};

/* An entry while parsing: its place in the header, and its offsets in the data section. */
typedef struct st_pending {
    vn_st_entry e;
    uint64_t begin, end;
    int order;
} st_pending;

/* Every reader and writer error is a format error. */
#define fmt_error(err, ...) vn_error_set((err), VN_ERR_FORMAT, __VA_ARGS__)

/* Checks the 8-byte length field against the size of the whole file. */
static int check_prefix(const char *label, const unsigned char *first8, size_t file_len,
                        uint64_t *hlen, vn_error *err)
{
    if (file_len < 8)
        return fmt_error(err, "%s: file is %zu bytes, too short for the 8-byte header length "
                         "(truncated?)", label, file_len);
    uint64_t n = load_le64(first8);
    if (n == 0) return fmt_error(err, "%s: header length is 0", label);
    if (n > VN_ST_MAX_HEADER)
        return fmt_error(err, "%s: header length %llu exceeds the limit of %u bytes (not a "
                         "safetensors file?)", label, (unsigned long long)n, VN_ST_MAX_HEADER);
    if (n > file_len - 8)
        return fmt_error(err, "%s: header length %llu exceeds the %zu bytes after the length "
                         "field (truncated?)", label, (unsigned long long)n, file_len - 8);
    *hlen = n;
    return VN_OK;
}

/* A buffer for a file of len bytes whose header is hlen bytes, placed so that the data section
 * starts on an ST_DATA_ALIGN boundary. */
static unsigned char *alloc_file_block(size_t len, uint64_t hlen, unsigned char **start)
{
    if (len > SIZE_MAX - ST_DATA_ALIGN) return NULL;
    unsigned char *block = malloc(len + ST_DATA_ALIGN);
    if (!block) return NULL;
    uintptr_t data_at = (uintptr_t)block + 8 + (uintptr_t)hlen;
    size_t shift = (ST_DATA_ALIGN - data_at % ST_DATA_ALIGN) % ST_DATA_ALIGN;
    *start = block + shift;
    return block;
}

static int parse_dtype(const char *L, const char *name, const json_t *v, vn_dtype *dt,
                       vn_error *err)
{
    if (!v) return fmt_error(err, "%s: tensor '%s': missing \"dtype\"", L, name);
    if (!json_is_string(v))
        return fmt_error(err, "%s: tensor '%s': dtype is %s, not a string", L, name,
                         json_kind(v));
    if (!dtype_from_name(json_string_value(v), dt))
        return fmt_error(err, "%s: tensor '%s': unknown dtype '%s'", L, name,
                         json_string_value(v));
    return VN_OK;
}

static int parse_shape(const char *L, const char *name, const json_t *v, vn_st_entry *e,
                       vn_error *err)
{
    if (!v) return fmt_error(err, "%s: tensor '%s': missing \"shape\"", L, name);
    if (!json_is_array(v))
        return fmt_error(err, "%s: tensor '%s': shape is %s, not an array", L, name,
                         json_kind(v));
    size_t nd = json_array_size(v);
    if (nd > VN_ST_MAX_DIMS)
        return fmt_error(err, "%s: tensor '%s': shape has %zu dims, more than the %d supported",
                         L, name, nd, VN_ST_MAX_DIMS);
    e->ndim = (int)nd;
    int64_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < nd; i++) {
        const json_t *d = json_array_get(v, i);
        if (!json_is_integer(d))
            return fmt_error(err, "%s: tensor '%s': shape[%zu] is %s, not a non-negative "
                             "integer", L, name, i, json_kind(d));
        if (json_integer_value(d) < 0)
            return fmt_error(err, "%s: tensor '%s': shape[%zu] is %lld, not a non-negative "
                             "integer", L, name, i, (long long)json_integer_value(d));
        e->shape[i] = (int64_t)json_integer_value(d);
        if (__builtin_mul_overflow(numel, e->shape[i], &numel)) overflow = true;
    }
    for (size_t i = nd; i < VN_ST_MAX_DIMS; i++) e->shape[i] = 0;
    /* A zero dim makes the product 0 whatever overflowed before it. */
    for (size_t i = 0; i < nd; i++)
        if (e->shape[i] == 0) overflow = false, numel = 0;
    size_t nbytes = 0;
    if (overflow || __builtin_mul_overflow((uint64_t)numel, (uint64_t)vn_dtype_size(e->dtype),
                                           &nbytes)) {
        char sb[256];
        return fmt_error(err, "%s: tensor '%s': shape %s of %s is too large (element count "
                         "overflows)", L, name, vn_shape_str(e->ndim, e->shape, sb, sizeof sb),
                         vn_dtype_name(e->dtype));
    }
    e->numel = numel;
    e->nbytes = nbytes;
    return VN_OK;
}

static int parse_offsets(const char *L, const char *name, const json_t *v, st_pending *p,
                         vn_error *err)
{
    if (!v) return fmt_error(err, "%s: tensor '%s': missing \"data_offsets\"", L, name);
    const json_t *b = json_array_get(v, 0), *e = json_array_get(v, 1);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(b) ||
        !json_is_integer(e) || json_integer_value(b) < 0 || json_integer_value(e) < 0)
        return fmt_error(err, "%s: tensor '%s': data_offsets must be [begin, end] with two "
                         "non-negative integers", L, name);
    p->begin = (uint64_t)json_integer_value(b);
    p->end = (uint64_t)json_integer_value(e);
    if (p->begin > p->end)
        return fmt_error(err, "%s: tensor '%s': data_offsets [%llu, %llu] begin after they end",
                         L, name, (unsigned long long)p->begin, (unsigned long long)p->end);
    return VN_OK;
}

static int parse_entry(const char *L, const char *name, const json_t *v, st_pending *p,
                       vn_error *err)
{
    if (!json_is_object(v))
        return fmt_error(err, "%s: tensor '%s': entry is %s, not an object", L, name,
                         json_kind(v));
    const json_t *jd = NULL, *js = NULL, *jo = NULL;
    const char *key;
    const json_t *x;
    json_object_foreach((json_t *)v, key, x) {
        if (strcmp(key, "dtype") == 0) jd = x;
        else if (strcmp(key, "shape") == 0) js = x;
        else if (strcmp(key, "data_offsets") == 0) jo = x;
        else
            return fmt_error(err, "%s: tensor '%s': unknown key '%s' (expected dtype, shape, "
                             "data_offsets)", L, name, key);
    }
    int rc;
    if ((rc = parse_dtype(L, name, jd, &p->e.dtype, err))) return rc;
    if ((rc = parse_shape(L, name, js, &p->e, err))) return rc;
    if ((rc = parse_offsets(L, name, jo, p, err))) return rc;
    if (p->end - p->begin != p->e.nbytes) {
        char sb[256];
        return fmt_error(err, "%s: tensor '%s': data_offsets [%llu, %llu] do not match shape %s "
                         "of %s (%zu bytes)", L, name, (unsigned long long)p->begin,
                         (unsigned long long)p->end,
                         vn_shape_str(p->e.ndim, p->e.shape, sb, sizeof sb),
                         vn_dtype_name(p->e.dtype), p->e.nbytes);
    }
    return VN_OK;
}

static bool is_crc_text(const char *s)
{
    if (strlen(s) != 8) return false;
    for (int i = 0; i < 8; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* Bytes in which a header's opening (at least ST_SUM_AT bytes of the file) differs from
 * ST_SUM_PREFIX. */
static int sum_prefix_distance(const unsigned char *file)
{
    int differ = 0;
    for (int i = 8; i < ST_SUM_AT; i++) differ += file[i] != (unsigned char)ST_SUM_PREFIX[i - 8];
    return differ;
}

/* Whether a file whose first n bytes are at hand opens like a checksummed header, allowing
 * for a few damaged bytes (so that damage to the opening itself is not mistaken for a file
 * without a checksum). */
static bool sum_expected(const unsigned char *file, size_t n)
{
    return n >= ST_SUM_END && sum_prefix_distance(file) <= ST_SUM_NEAR;
}

/* The CRC-32 of a whole file with its checksum digits read as the placeholder. */
static uint32_t file_sum(const unsigned char *file, size_t len)
{
    uint32_t crc = crc_update((uint32_t)crc32(0, NULL, 0), file, ST_SUM_AT);
    crc = crc_update(crc, ST_SUM_PLACEHOLDER, 8);
    return crc_update(crc, file + ST_SUM_AT + 8, len - ST_SUM_AT - 8);
}

/* Checks the whole-file checksum of a file for which sum_expected holds, before anything else
 * is read from it. */
static int verify_sum(const char *L, const unsigned char *file, size_t len, vn_error *err)
{
    int differ = sum_prefix_distance(file);
    if (differ)
        return fmt_error(err, "%s: checksum mismatch: the checksum entry that opens the header is "
                         "damaged (%d bytes differ from what vanilla writes there)", L, differ);
    char stored[9];
    memcpy(stored, file + ST_SUM_AT, 8);
    stored[8] = '\0';
    if (!is_crc_text(stored))
        return fmt_error(err, "%s: checksum mismatch: the stored " ST_SUM_KEY " is not 8 lowercase "
                         "hex digits (the header is damaged)", L);
    uint32_t got = file_sum(file, len);
    if (strtoul(stored, NULL, 16) == got) return VN_OK;
    return fmt_error(err, "%s: checksum mismatch: the header says " ST_SUM_KEY " %s, the file's %zu "
                     "bytes give %08lx (changed or damaged since it was written)", L, stored,
                     len, (unsigned long)got);
}

static int check_metadata(const char *L, const json_t *m, bool summed, vn_error *err)
{
    if (!json_is_object(m))
        return fmt_error(err, "%s: " ST_META_KEY " is %s, not an object of strings", L,
                         json_kind(m));
    const char *key;
    const json_t *x;
    json_object_foreach((json_t *)m, key, x) {
        if (!json_is_string(x))
            return fmt_error(err, "%s: " ST_META_KEY " value of '%s' is %s, not a string", L, key,
                             json_kind(x));
        if (strcmp(key, ST_CRC_KEY) == 0 && !is_crc_text(json_string_value(x)))
            return fmt_error(err, "%s: " ST_META_KEY " '" ST_CRC_KEY "' is '%s', not 8 lowercase "
                             "hex digits", L, json_string_value(x));
        if (strcmp(key, ST_SUM_KEY) == 0 && !summed)
            return fmt_error(err, "%s: " ST_META_KEY " '" ST_SUM_KEY "' is not at the start of the "
                             "header, where vanilla writes it, so it cannot be checked (was the "
                             "file rewritten by another tool? remove the key to load it "
                             "unchecked)", L);
    }
    return VN_OK;
}

static int cmp_pending(const void *a, const void *b)
{
    const st_pending *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

static int cmp_by_name(const void *a, const void *b)
{
    const vn_st_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Every byte of the data section belongs to exactly one tensor: with the entries sorted by
 * (begin, end), each must begin where the previous ended and the last end at the file's end. */
static int check_tiling(const char *L, const st_pending *p, int n, uint64_t data_len,
                        vn_error *err)
{
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const st_pending *c = &p[i];
        if (c->begin > pos) {
            if (i == 0)
                return fmt_error(err, "%s: tensor '%s': data_offsets [%llu, %llu] leave a hole: "
                                 "the first tensor must begin at 0", L, c->e.name,
                                 (unsigned long long)c->begin, (unsigned long long)c->end);
            return fmt_error(err, "%s: tensor '%s': data_offsets [%llu, %llu] leave a hole of "
                             "%llu bytes after tensor '%s', which ends at %llu", L, c->e.name,
                             (unsigned long long)c->begin, (unsigned long long)c->end,
                             (unsigned long long)(c->begin - pos), p[i - 1].e.name,
                             (unsigned long long)pos);
        }
        if (c->begin < pos)
            return fmt_error(err, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                             "[%llu, %llu]", L, c->e.name, (unsigned long long)c->begin,
                             (unsigned long long)c->end, p[i - 1].e.name,
                             (unsigned long long)p[i - 1].begin,
                             (unsigned long long)p[i - 1].end);
        if (c->end > data_len)
            return fmt_error(err, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end "
                             "of the data section (%llu bytes; truncated?)", L, c->e.name,
                             (unsigned long long)c->begin, (unsigned long long)c->end,
                             (unsigned long long)data_len);
        pos = c->end;
    }
    if (pos != data_len)
        return fmt_error(err, "%s: %llu trailing bytes after the last tensor (data section is "
                         "%llu bytes, tensors end at %llu)", L,
                         (unsigned long long)(data_len - pos), (unsigned long long)data_len,
                         (unsigned long long)pos);
    return VN_OK;
}

static char *arena_put(char **cursor, const char *s)
{
    size_t k = strlen(s) + 1;
    char *d = memcpy(*cursor, s, k);
    *cursor += k;
    return d;
}

/* One arena for every string handed out (names, metadata keys and values) and the entry and
 * metadata arrays, sized from the header. */
static int alloc_header(vn_st_file *f, json_t *root, const json_t *meta, size_t n,
                        st_pending **pend, vn_error *err)
{
    size_t str_bytes = 1;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) str_bytes += strlen(key) + 1;
    if (meta && json_is_object(meta)) {
        json_object_foreach((json_t *)meta, key, v)
            if (json_is_string(v)) str_bytes += strlen(key) + strlen(json_string_value(v)) + 2;
    }
    size_t n_meta = meta && json_is_object(meta) ? json_object_size(meta) : 0;
    f->strings = malloc(str_bytes);
    *pend = calloc(n ? n : 1, sizeof **pend);
    f->entries = calloc(n ? n : 1, sizeof *f->entries);
    f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
    f->meta_keys = calloc(n_meta ? n_meta : 1, sizeof *f->meta_keys);
    f->meta_vals = calloc(n_meta ? n_meta : 1, sizeof *f->meta_vals);
    if (!f->strings || !*pend || !f->entries || !f->by_name || !f->meta_keys || !f->meta_vals)
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory for the header", f->label);
    return VN_OK;
}

/* Entries in header order, so the first problem reported is the first in the file; then the
 * metadata strings. */
static int read_header_entries(vn_st_file *f, json_t *root, const json_t *meta,
                               st_pending *pend, bool summed, vn_error *err)
{
    const char *L = f->label;
    char *cursor = f->strings;
    const char *key;
    json_t *v;
    int rc;
    int k = 0;
    json_object_foreach(root, key, v) {
        if (strcmp(key, ST_META_KEY) == 0) {
            if ((rc = check_metadata(L, v, summed, err))) return rc;
            continue;
        }
        pend[k].order = k;
        pend[k].e.name = arena_put(&cursor, key);
        if ((rc = parse_entry(L, key, v, &pend[k], err))) return rc;
        k++;
    }
    if (meta) {
        const char *mk;
        json_t *mv;
        json_object_foreach((json_t *)meta, mk, mv) {
            f->meta_keys[f->n_meta] = arena_put(&cursor, mk);
            f->meta_vals[f->n_meta] = arena_put(&cursor, json_string_value(mv));
            f->n_meta++;
        }
    }
    return VN_OK;
}

/* Validates the file at `file` (len bytes, length field already checked) and fills f. */
static int parse_file(vn_st_file *f, const unsigned char *file, size_t len, uint64_t hlen,
                      bool summed, vn_error *err)
{
    const char *L = f->label;
    const unsigned char *data = file + 8 + hlen;
    const uint64_t data_len = len - 8 - hlen;
    st_pending *pend = NULL;
    int rc = VN_OK;

    json_error_t je;
    json_t *root = json_loadb((const char *)file + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fmt_error(err, "%s: invalid JSON header at line %d, column %d: %s", L, je.line,
                         je.column, je.text);
    if (!json_is_object(root)) {
        rc = fmt_error(err, "%s: header is %s, not a JSON object", L, json_kind(root));
        goto done;
    }

    const json_t *meta = json_object_get(root, ST_META_KEY);
    size_t n_keys = json_object_size(root);
    size_t n = n_keys - (meta ? 1 : 0);
    if (n > INT_MAX || (meta && json_is_object(meta) && json_object_size(meta) > INT_MAX)) {
        rc = fmt_error(err, "%s: header has too many entries", L);
        goto done;
    }
    if ((rc = alloc_header(f, root, meta, n, &pend, err))) goto done;
    if ((rc = read_header_entries(f, root, meta, pend, summed, err))) goto done;

    qsort(pend, n, sizeof *pend, cmp_pending);
    if ((rc = check_tiling(L, pend, (int)n, data_len, err))) goto done;

    const char *crc_text = vn_st_meta(f, ST_CRC_KEY);
    if (crc_text) {
        uint32_t got = crc_update((uint32_t)crc32(0, NULL, 0), data, (size_t)data_len);
        if (strtoul(crc_text, NULL, 16) != got) {
            rc = fmt_error(err, "%s: checksum mismatch: file says %s, data gives %08lx "
                           "(the data section is corrupt)", L, crc_text, (unsigned long)got);
            goto done;
        }
    }

    f->n = (int)n;
    for (size_t i = 0; i < n; i++) {
        f->entries[i] = pend[i].e;
        f->entries[i].data = data + pend[i].begin;
        f->by_name[i] = &f->entries[i];
    }
    qsort(f->by_name, n, sizeof *f->by_name, cmp_by_name);

done:
    free(pend);
    json_decref(root);
    return rc;
}

static vn_st_file *file_new(const char *label, vn_error *err)
{
    vn_st_file *f = calloc(1, sizeof *f);
    if (f) f->label = strdup(label);
    if (!f || !f->label) {
        free(f);
        vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", label);
        return NULL;
    }
    return f;
}

void vn_st_close(vn_st_file *f)
{
    if (!f) return;
    free(f->label);
    free(f->block);
    free(f->entries);
    free(f->by_name);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->strings);
    free(f);
}

/* After a checksum mismatch: what the file's structure says is wrong, when it says anything
 * (a truncated file, a header that no longer parses), appended to the message. */
static void explain_damage(vn_st_file *f, const unsigned char *file, size_t len, vn_error *err)
{
    vn_error why = {0};
    uint64_t hlen = 0;
    if (!err || (check_prefix(f->label, file, len, &hlen, &why) == VN_OK &&
                 parse_file(f, file, len, hlen, true, &why) == VN_OK))
        return;
    const char *m = why.msg;
    size_t ll = strlen(f->label), n = strlen(err->msg);
    if (strncmp(m, f->label, ll) == 0 && strncmp(m + ll, ": ", 2) == 0) m += ll + 2;
    snprintf(err->msg + n, sizeof err->msg - n, "; its structure says: %s", m);
}

/* Reads a file of len bytes whose first n_first bytes are at `first` (the rest comes from fp
 * when it is not NULL, from first + n_first otherwise) into a buffer of its own, and validates
 * it: the whole-file checksum first when the file has one, then the length field, then the
 * header. A file without a checksum is refused on a bad length field before it is read. */
static int load(const char *label, const unsigned char *first, size_t n_first, size_t len,
                FILE *fp, vn_st_file **out, vn_error *err)
{
    uint64_t hlen = 0;
    bool summed = sum_expected(first, n_first);
    int rc = summed ? VN_OK : check_prefix(label, first, len, &hlen, err);
    if (rc) return rc;
    if (summed) hlen = load_le64(first); /* only to align the data; checked below */
    vn_st_file *f = file_new(label, err);
    if (!f) return VN_ERR_NOMEM;
    unsigned char *start = NULL;
    f->block = alloc_file_block(len, hlen, &start);
    if (!f->block) {
        rc = vn_error_set(err, VN_ERR_NOMEM, "%s: cannot allocate %zu bytes", label, len);
        goto fail;
    }
    memcpy(start, first, n_first);
    if (!fp) {
        memcpy(start + n_first, first + n_first, len - n_first);
    } else if (fread(start + n_first, 1, len - n_first, fp) != len - n_first) {
        rc = ferror(fp) ? vn_error_set(err, VN_ERR_IO, "%s: read failed: %s", label,
                                       strerror(errno))
                        : vn_error_set(err, VN_ERR_IO, "%s: file shrank while reading", label);
        goto fail;
    }
    if (summed && (rc = verify_sum(label, start, len, err))) {
        explain_damage(f, start, len, err);
        goto fail;
    }
    if (summed && (rc = check_prefix(label, start, len, &hlen, err))) goto fail;
    if ((rc = parse_file(f, start, len, hlen, summed, err))) goto fail;
    *out = f;
    return VN_OK;
fail:
    vn_st_close(f);
    return rc;
}

int vn_st_open_memory(const void *buf, size_t len, const char *label, vn_st_file **out,
                      vn_error *err)
{
    VN_ASSERT(out != NULL, "vn_st_open_memory needs somewhere to store the file");
    *out = NULL;
    if (!label) label = "<memory>";
    if (!buf && len) return vn_error_set(err, VN_ERR_INVALID, "%s: NULL buffer", label);
    return load(label, buf, len, len, NULL, out, err);
}

int vn_st_open(const char *path, vn_st_file **out, vn_error *err)
{
    VN_ASSERT(out != NULL, "vn_st_open needs somewhere to store the file");
    *out = NULL;
    if (!path) return vn_error_set(err, VN_ERR_INVALID, "vn_st_open: NULL path");
    FILE *fp = fopen(path, "rb");
    if (!fp) return vn_error_set(err, VN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int rc;
    struct stat st;
    unsigned char first[ST_SUM_END] = {0};
    size_t n_first = 0;
    if (fstat(fileno(fp), &st) != 0)
        rc = vn_error_set(err, VN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = vn_error_set(err, VN_ERR_IO, "%s: not a regular file", path);
    else if ((uintmax_t)st.st_size > SIZE_MAX - ST_DATA_ALIGN)
        rc = vn_error_set(err, VN_ERR_NOMEM, "%s: file too large to read into memory", path);
    else if ((n_first = (size_t)st.st_size < sizeof first ? (size_t)st.st_size
                                                            : sizeof first) > 0 &&
             fread(first, 1, n_first, fp) != n_first)
        rc = vn_error_set(err, VN_ERR_IO, "%s: read failed: %s", path,
                          ferror(fp) ? strerror(errno) : "file shrank while reading");
    else
        rc = load(path, first, n_first, (size_t)st.st_size, fp, out, err);
    fclose(fp);
    return rc;
}

const char *vn_st_path(const vn_st_file *f) { return f->label; }

int vn_st_count(const vn_st_file *f) { return f->n; }

const vn_st_entry *vn_st_at(const vn_st_file *f, int i)
{
    return i >= 0 && i < f->n ? &f->entries[i] : NULL;
}

const vn_st_entry *vn_st_find(const vn_st_file *f, const char *name)
{
    vn_st_entry key = {.name = name};
    const vn_st_entry *kp = &key;
    const vn_st_entry **hit = bsearch(&kp, f->by_name, (size_t)f->n, sizeof *f->by_name,
                                      cmp_by_name);
    return hit ? *hit : NULL;
}

const char *vn_st_meta(const vn_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

int vn_st_meta_count(const vn_st_file *f) { return f->n_meta; }

const char *vn_st_meta_key(const vn_st_file *f, int i)
{
    return i >= 0 && i < f->n_meta ? f->meta_keys[i] : NULL;
}

/* ------------------------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------------------------- */

typedef struct st_wentry {
    char *name;
    vn_dtype dtype;
    int ndim;
    int64_t shape[VN_ST_MAX_DIMS];
    size_t nbytes;
    unsigned char *data;
} st_wentry;

struct vn_st_writer {
    st_wentry *e;
    int n, cap;
    int *slots; /* open-addressing name index: entry index + 1, 0 when free */
    size_t n_slots;
    char **meta_keys, **meta_vals;
    int n_meta, meta_cap;
    uint64_t data_len;
};

vn_st_writer *vn_st_writer_new(void) { return calloc(1, sizeof(vn_st_writer)); }

void vn_st_writer_free(vn_st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].data);
    }
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_vals[i]);
    }
    free(w->e);
    free(w->slots);
    free(w->meta_keys);
    free(w->meta_vals);
    free(w);
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The slot holding `name`, or the free slot where it would go. */
static size_t slot_of(const vn_st_writer *w, const char *name)
{
    size_t mask = w->n_slots - 1, i = (size_t)name_hash(name) & mask;
    while (w->slots[i] && strcmp(w->e[w->slots[i] - 1].name, name) != 0) i = (i + 1) & mask;
    return i;
}

/* Keeps the index at most half full so probes stay short. */
static bool grow_slots(vn_st_writer *w)
{
    if ((size_t)(w->n + 1) * 2 <= w->n_slots) return true;
    size_t n_new = w->n_slots ? w->n_slots * 2 : 64;
    int *old = w->slots;
    size_t n_old = w->n_slots;
    w->slots = calloc(n_new, sizeof *w->slots);
    if (!w->slots) {
        w->slots = old;
        return false;
    }
    w->n_slots = n_new;
    for (size_t i = 0; i < n_old; i++)
        if (old[i]) w->slots[slot_of(w, w->e[old[i] - 1].name)] = old[i];
    free(old);
    return true;
}

static bool valid_utf8(const char *s)
{
    json_t *j = json_string(s); /* jansson checks the encoding */
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

int vn_st_add(vn_st_writer *w, const char *name, vn_dtype dtype, int ndim,
              const int64_t *shape, const void *data, vn_error *err)
{
    VN_ASSERT(w != NULL, "vn_st_add needs a writer from vn_st_writer_new");
    if (!name || !*name)
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: empty tensor name");
    if (strcmp(name, ST_META_KEY) == 0)
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: '" ST_META_KEY "' is "
                            "reserved and cannot name a tensor");
    if ((unsigned)dtype >= VN_DTYPE_COUNT)
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: tensor '%s': bad dtype %d",
                            name, (int)dtype);
    if (ndim < 0 || ndim > VN_ST_MAX_DIMS || (ndim > 0 && !shape))
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: tensor '%s': bad ndim %d "
                            "(0..%d, shape needed when > 0)", name, ndim, VN_ST_MAX_DIMS);
    uint64_t numel = 1;
    bool overflow = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: tensor '%s': "
                                "negative dim %lld", name, (long long)shape[i]);
        if (__builtin_mul_overflow(numel, (uint64_t)shape[i], &numel)) overflow = true;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) overflow = false, numel = 0;
    uint64_t nbytes = 0, total = 0;
    if (overflow || numel > INT64_MAX ||
        __builtin_mul_overflow(numel, (uint64_t)vn_dtype_size(dtype), &nbytes) ||
        nbytes > SIZE_MAX || __builtin_add_overflow(w->data_len, nbytes, &total) ||
        total > INT64_MAX)
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: tensor '%s': too large",
                            name);
    if (nbytes && !data)
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: tensor '%s': NULL data",
                            name);
    if (!valid_utf8(name))
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: tensor name is not valid "
                            "UTF-8");
    if (!grow_slots(w)) goto nomem;
    size_t slot = slot_of(w, name);
    if (w->slots[slot])
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: duplicate tensor name "
                            "'%s'", name);
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 16;
        st_wentry *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) goto nomem;
        w->e = e;
        w->cap = cap;
    }
    st_wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->data = nbytes ? malloc((size_t)nbytes) : NULL;
    if (!e->name || (nbytes && !e->data)) {
        free(e->name);
        free(e->data);
        goto nomem;
    }
    if (nbytes) memcpy(e->data, data, (size_t)nbytes);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = (size_t)nbytes;
    w->slots[slot] = ++w->n;
    w->data_len = total;
    return VN_OK;
nomem:
    return vn_error_set(err, VN_ERR_NOMEM, "safetensors writer: tensor '%s': out of memory",
                        name);
}

int vn_st_set_meta(vn_st_writer *w, const char *key, const char *value, vn_error *err)
{
    VN_ASSERT(w != NULL, "vn_st_set_meta needs a writer from vn_st_writer_new");
    if (!key || !value)
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: NULL metadata key or "
                            "value");
    if (strcmp(key, ST_CRC_KEY) == 0 || strcmp(key, ST_SUM_KEY) == 0)
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: metadata key '%s' is "
                            "reserved for the checksum (pass VN_ST_CRC32 instead)", key);
    if (!valid_utf8(key) || !valid_utf8(value))
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: metadata '%s' is not "
                            "valid UTF-8", key);
    char *v = strdup(value);
    if (!v) goto nomem;
    for (int i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_vals[i]);
            w->meta_vals[i] = v;
            return VN_OK;
        }
    }
    if (w->n_meta == w->meta_cap) {
        int cap = w->meta_cap ? w->meta_cap * 2 : 8;
        char **k = realloc(w->meta_keys, (size_t)cap * sizeof *k);
        if (k) w->meta_keys = k;
        char **vv = k ? realloc(w->meta_vals, (size_t)cap * sizeof *vv) : NULL;
        if (vv) w->meta_vals = vv;
        if (!k || !vv) {
            free(v);
            goto nomem;
        }
        w->meta_cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        goto nomem;
    }
    w->meta_keys[w->n_meta] = k;
    w->meta_vals[w->n_meta] = v;
    w->n_meta++;
    return VN_OK;
nomem:
    return vn_error_set(err, VN_ERR_NOMEM, "safetensors writer: out of memory");
}

/* Replaces the placeholder digits of a header (length field included) opening with
 * ST_SUM_PREFIX by the CRC-32 of the file it starts: the header as it is, then the data. */
static void seal_header(const vn_st_writer *w, unsigned char *head, size_t head_len)
{
    VN_ASSERT(head_len >= ST_SUM_END &&
              memcmp(head + 8, ST_SUM_PREFIX, ST_SUM_AT - 8) == 0 &&
              memcmp(head + ST_SUM_AT, ST_SUM_PLACEHOLDER "\"", 9) == 0,
              "safetensors writer: the checksum must open the header (metadata first, "
              "checksum first within it, compact JSON)");
    uint32_t crc = crc_update((uint32_t)crc32(0, NULL, 0), head, head_len);
    for (int i = 0; i < w->n; i++) crc = crc_update(crc, w->e[i].data, w->e[i].nbytes);
    char digits[16];
    snprintf(digits, sizeof digits, "%08lx", (unsigned long)crc);
    memcpy(head + ST_SUM_AT, digits, 8);
}

static json_t *entry_json(const st_wentry *e, uint64_t begin)
{
    json_t *ent = json_object(), *shape = json_array(), *offs = json_array();
    bool ok = ent && shape && offs;
    ok = ok && !json_object_set_new(ent, "dtype", json_string(vn_dtype_name(e->dtype)));
    ok = ok && !json_object_set(ent, "shape", shape);
    ok = ok && !json_object_set(ent, "data_offsets", offs);
    for (int d = 0; d < e->ndim; d++)
        ok = ok && !json_array_append_new(shape, json_integer((json_int_t)e->shape[d]));
    ok = ok && !json_array_append_new(offs, json_integer((json_int_t)begin));
    ok = ok && !json_array_append_new(offs, json_integer((json_int_t)(begin + e->nbytes)));
    json_decref(shape);
    json_decref(offs);
    if (!ok) {
        json_decref(ent);
        return NULL;
    }
    return ent;
}

/* json_dumps without jansson's growing buffer: jansson 2.14 drops bytes from the text when
 * growing that buffer fails and still reports success (found by the allocation-failure
 * sweeps). Measured first, then written into one allocation of the exact size. */
char *vn__json_dumps(const void *o, size_t flags)
{
    if (!o) return NULL;
    size_t n = json_dumpb(o, NULL, 0, flags);
    char *s = n ? malloc(n + 1) : NULL;
    if (!s || json_dumpb(o, s, n, flags) != n) {
        free(s);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

/* The length field and the header, padded with spaces to a multiple of 8 bytes:
 * {"__metadata__": {...}, name: {dtype, shape, data_offsets}, ...} in insertion order
 * (metadata first, as the reference implementation writes it). */
static int build_header(const vn_st_writer *w, uint32_t flags, unsigned char **out,
                        size_t *out_len, vn_error *err)
{
    json_t *root = json_object(), *meta = NULL;
    char *text = NULL;
    bool ok = root != NULL;
    if (ok && (w->n_meta > 0 || (flags & VN_ST_CRC32))) {
        meta = json_object();
        ok = meta && !json_object_set(root, ST_META_KEY, meta);
        if (flags & VN_ST_CRC32)
            ok = ok && !json_object_set_new(meta, ST_SUM_KEY, json_string(ST_SUM_PLACEHOLDER));
        for (int i = 0; i < w->n_meta; i++)
            ok = ok && !json_object_set_new(meta, w->meta_keys[i], json_string(w->meta_vals[i]));
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n && ok; i++) {
        ok = !json_object_set_new(root, w->e[i].name, entry_json(&w->e[i], off));
        off += w->e[i].nbytes;
    }
    if (ok) text = vn__json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(meta);
    json_decref(root);
    if (!text) return vn_error_set(err, VN_ERR_NOMEM, "safetensors writer: out of memory");

    size_t tlen = strlen(text), padded = (tlen + 7) & ~(size_t)7;
    if (padded > VN_ST_MAX_HEADER) {
        free(text);
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: header of %zu bytes "
                            "exceeds the %u-byte limit readers accept", padded,
                            VN_ST_MAX_HEADER);
    }
    unsigned char *buf = malloc(8 + padded);
    if (!buf) {
        free(text);
        return vn_error_set(err, VN_ERR_NOMEM, "safetensors writer: out of memory");
    }
    store_le64(buf, padded);
    memcpy(buf + 8, text, tlen);
    memset(buf + 8 + tlen, ' ', padded - tlen);
    free(text);
    if (flags & VN_ST_CRC32) seal_header(w, buf, 8 + padded);
    *out = buf;
    *out_len = 8 + padded;
    return VN_OK;
}

int vn_st_serialize(vn_st_writer *w, uint32_t flags, void **buf, size_t *len, vn_error *err)
{
    VN_ASSERT(w && buf && len, "vn_st_serialize needs a writer and output pointers");
    *buf = NULL;
    *len = 0;
    if (flags & ~(uint32_t)VN_ST_CRC32)
        return vn_error_set(err, VN_ERR_INVALID, "safetensors writer: unknown flags 0x%x",
                            (unsigned)flags);
    unsigned char *head = NULL;
    size_t hl = 0;
    int rc = build_header(w, flags, &head, &hl, err);
    if (rc) return rc;
    if (w->data_len > SIZE_MAX - hl) {
        free(head);
        return vn_error_set(err, VN_ERR_NOMEM, "safetensors writer: too large for memory");
    }
    unsigned char *out = malloc(hl + (size_t)w->data_len);
    if (!out) {
        free(head);
        return vn_error_set(err, VN_ERR_NOMEM, "safetensors writer: out of memory");
    }
    memcpy(out, head, hl);
    free(head);
    size_t pos = hl;
    for (int i = 0; i < w->n; i++) {
        if (w->e[i].nbytes) memcpy(out + pos, w->e[i].data, w->e[i].nbytes);
        pos += w->e[i].nbytes;
    }
    *buf = out;
    *len = pos;
    return VN_OK;
}

int vn_st_write(vn_st_writer *w, const char *path, uint32_t flags, vn_error *err)
{
    VN_ASSERT(w != NULL, "vn_st_write needs a writer from vn_st_writer_new");
    if (!path || !*path) return vn_error_set(err, VN_ERR_INVALID, "vn_st_write: empty path");
    if (flags & ~(uint32_t)VN_ST_CRC32)
        return vn_error_set(err, VN_ERR_INVALID, "%s: unknown safetensors flags 0x%x", path,
                            (unsigned)flags);
    unsigned char *head = NULL;
    size_t hl = 0;
    int rc = build_header(w, flags, &head, &hl, err);
    if (rc) {
        vn_error_prefix(err, "%s: ", path);
        return rc;
    }

    size_t tmp_cap = strlen(path) + 32;
    char *tmp = malloc(tmp_cap);
    if (!tmp) {
        free(head);
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, tmp_cap, "%s.tmp.%ld", path, (long)getpid());
    vn_fs_remove_stale_tmps(path); /* left by a writer of this file killed before its rename */

    FILE *fp = NULL;
    bool created = false;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0 || !(fp = fdopen(fd, "wb"))) {
        rc = vn_error_set(err, VN_ERR_IO, "%s: cannot create temporary file '%s': %s", path,
                          tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
            created = true;
        }
        goto fail;
    }
    created = true;
    bool ok = fwrite(head, 1, hl, fp) == hl;
    for (int i = 0; i < w->n && ok; i++)
        ok = fwrite(w->e[i].data ? (const void *)w->e[i].data : "", 1, w->e[i].nbytes, fp) ==
             w->e[i].nbytes;
    if (!ok || fflush(fp) != 0) {
        rc = vn_error_set(err, VN_ERR_IO, "%s: writing '%s' failed: %s", path, tmp,
                          strerror(errno));
        goto fail;
    }
    if (fsync(fileno(fp)) != 0) {
        rc = vn_error_set(err, VN_ERR_IO, "%s: fsync of '%s' failed: %s", path, tmp,
                          strerror(errno));
        goto fail;
    }
    int closed = fclose(fp);
    fp = NULL;
    if (closed != 0) {
        rc = vn_error_set(err, VN_ERR_IO, "%s: closing '%s' failed: %s", path, tmp,
                          strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        rc = vn_error_set(err, VN_ERR_IO, "%s: cannot rename '%s' over it: %s", path, tmp,
                          strerror(errno));
        goto fail;
    }
    created = false;
    int dir_errno = vn_fs_sync_parent(path);
    if (dir_errno != 0)
        rc = vn_error_set(err, VN_ERR_IO, "%s: written, but syncing its folder failed (the "
                          "new file may not survive a crash): %s", path, strerror(dir_errno));
fail:
    if (fp) fclose(fp);
    if (created) unlink(tmp);
    free(tmp);
    free(head);
    return rc;
}

/* .pth archives (see vn_pth.h): libzip for the container, io/pickle.c for data.pkl. */
#include "io/vn_pth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>
#include <zlib.h>

#include "base/vn_fs.h"
#include "io/pickle_impl.h"

typedef struct record {
    char *key;
    uint8_t *data;
    size_t len;
} record;

struct vn_pth {
    char label[512];
    char prefix[256]; /* "<archive name>/" */
    zip_t *zip;       /* only while parsing */
    size_t archive_len;
    record *records;
    int n_records, cap_records;
    vn__pk_arena *arena;
    vn__pk_value *root;
};

void vn_pth_free(vn_pth *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_records; i++) {
        free(p->records[i].key);
        free(p->records[i].data);
    }
    free(p->records);
    vn__pk_arena_free(p->arena);
    if (p->zip) zip_discard(p->zip);
    free(p);
}

static int read_entry(vn_pth *p, zip_int64_t idx, const char *name, uint8_t **data, size_t *len,
                      vn_error *err)
{
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(p->zip, (zip_uint64_t)idx, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
        return vn_error_set(err, VN_ERR_FORMAT, "%s: cannot read the size of '%s'", p->label, name);
    /* Deflate expands at most ~1032x; a larger claim is a damaged or hostile archive. */
    if (st.size > (zip_uint64_t)1 << 40 || st.size / 1100 > (zip_uint64_t)p->archive_len)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: '%s' claims %llu bytes", p->label, name,
                            (unsigned long long)st.size);
    *len = (size_t)st.size;
    *data = malloc(*len ? *len : 1);
    if (!*data) return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory reading '%s'", p->label, name);
    zip_file_t *zf = zip_fopen_index(p->zip, (zip_uint64_t)idx, 0);
    zip_int64_t got = zf ? zip_fread(zf, *data, (zip_uint64_t)*len) : -1;
    const char *why = zf ? zip_file_strerror(zf) : zip_strerror(p->zip);
    int rc = got == (zip_int64_t)*len ? VN_OK
             : vn_error_set(err, VN_ERR_FORMAT, "%s: cannot read '%s' from the zip archive (%s)",
                            p->label, name, got < 0 ? why : "short read");
    if (zf) zip_fclose(zf);
    /* The record's CRC-32 from the archive's directory: libzip checks it only on a read that
     * reaches the end of the entry, and this one stops at its size. */
    if (rc == VN_OK && (st.valid & ZIP_STAT_CRC)) {
        uLong crc = crc32(0L, Z_NULL, 0);
        for (size_t o = 0; o < *len;) {
            uInt n = *len - o > (1u << 30) ? (1u << 30) : (uInt)(*len - o);
            crc = crc32(crc, *data + o, n);
            o += n;
        }
        if ((zip_uint32_t)crc != st.crc)
            rc = vn_error_set(err, VN_ERR_FORMAT, "%s: '%s' fails its CRC-32 check (the file is "
                              "damaged)", p->label, name);
    }
    if (rc != VN_OK) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

/* The persistent_load of torch.load: a storage record data/<key>, read once. */
static int load_storage(void *user, vn_dtype dtype, const char *key, int64_t numel,
                        vn__pk_value *st, vn_error *err)
{
    vn_pth *p = user;
    record *r = NULL;
    for (int i = 0; i < p->n_records && !r; i++)
        if (strcmp(p->records[i].key, key) == 0) r = &p->records[i];
    if (!r) {
        char name[512];
        snprintf(name, sizeof name, "%sdata/%s", p->prefix, key);
        zip_int64_t idx = zip_name_locate(p->zip, name, 0);
        if (idx < 0)
            return vn_error_set(err, VN_ERR_FORMAT, "%s: storage record '%s' is missing from the "
                                "archive (the pickle refers to it)", p->label, name);
        if (p->n_records == p->cap_records) {
            int cap = p->cap_records ? 2 * p->cap_records : 64;
            record *nr = realloc(p->records, (size_t)cap * sizeof *nr);
            if (!nr) return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", p->label);
            p->records = nr;
            p->cap_records = cap;
        }
        r = &p->records[p->n_records];
        memset(r, 0, sizeof *r);
        int rc = read_entry(p, idx, name, &r->data, &r->len, err);
        if (rc != VN_OK) return rc;
        if (!(r->key = strdup(key))) {
            free(r->data);
            return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", p->label);
        }
        p->n_records++;
    }
    size_t es = vn_dtype_size(dtype);
    if ((uint64_t)numel > r->len / es)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: storage record 'data/%s' holds %zu bytes, the "
                            "pickle says %lld %s elements (%llu bytes): truncated or wrong-shaped",
                            p->label, key, r->len, (long long)numel, vn_dtype_name(dtype),
                            (unsigned long long)numel * es);
    st->data = r->data;
    st->numel = numel;
    return VN_OK;
}

/* The archive's data.pkl: "<name>/data.pkl", the only pickle at the top of one folder. */
static int find_pickle(vn_pth *p, zip_int64_t *idx, vn_error *err)
{
    zip_int64_t n = zip_get_num_entries(p->zip, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(p->zip, (zip_uint64_t)i, 0);
        if (!name) continue;
        const char *slash = strchr(name, '/');
        if (slash && strcmp(slash, "/data.pkl") == 0 && (size_t)(slash - name) + 2 < sizeof p->prefix) {
            snprintf(p->prefix, sizeof p->prefix, "%.*s/", (int)(slash - name), name);
            *idx = i;
            return VN_OK;
        }
    }
    return vn_error_set(err, VN_ERR_FORMAT, "%s: a zip archive without <name>/data.pkl: not written "
                        "by torch.save", p->label);
}

static int open_zip(vn_pth *p, const void *buf, size_t len, vn_error *err)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(buf, len, 0, &ze);
    if (src) {
        p->zip = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
        if (!p->zip) zip_source_free(src);
    }
    int rc = p->zip ? VN_OK
                    : vn_error_set(err, VN_ERR_FORMAT, "%s: not a readable torch.save zip archive "
                                   "(%s)", p->label, zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return rc;
}

/* ---- the legacy format (torch.save before 1.6, or _use_new_zipfile_serialization=False):
 * pickles of the magic number, the protocol version (1001) and system info, the object (its
 * persistent ids name storages by key), the sorted list of keys, then per key an int64
 * element count and the raw little-endian data. */

static const uint8_t legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                       0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};

typedef struct pending {
    vn__pk_value **st;
    char **keys;
    int n, cap;
} pending;

/* Storages are known by key during the object's pickle; their data follows it. */
static int legacy_storage(void *user, vn_dtype dtype, const char *key, int64_t numel,
                          vn__pk_value *st, vn_error *err)
{
    pending *pd = user;
    (void)dtype; /* already in st */
    st->numel = numel;
    if (pd->n == pd->cap) {
        int cap = pd->cap ? 2 * pd->cap : 64;
        vn__pk_value **ns = realloc(pd->st, (size_t)cap * sizeof *ns);
        if (ns) pd->st = ns;
        char **nk = ns ? realloc(pd->keys, (size_t)cap * sizeof *nk) : NULL;
        if (!nk) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        pd->keys = nk;
        pd->cap = cap;
    }
    if (!(pd->keys[pd->n] = strdup(key))) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    pd->st[pd->n++] = st;
    return VN_OK;
}

/* Reads each key's record after the key list and points its storages at the data. */
static int legacy_records(vn_pth *p, const pending *pd, const vn__pk_value *keys, const uint8_t *b,
                          size_t len, size_t pos, vn_error *err)
{
    if (keys->kind != VN__PK_LIST) return vn_error_set(err, VN_ERR_FORMAT, "%s: no storage key list", p->label);
    for (int k = 0; k < keys->n; k++) {
        const vn__pk_value *key = keys->items[k];
        if (key->kind != VN__PK_STR || len - pos < 8)
            return vn_error_set(err, VN_ERR_FORMAT, "%s: storage records truncated or malformed", p->label);
        uint64_t count = 0;
        for (int i = 7; i >= 0; i--) count = count << 8 | b[pos + (size_t)i];
        pos += 8;
        for (int i = 0; i < pd->n; i++) {
            vn__pk_value *st = pd->st[i];
            if (strcmp(pd->keys[i], key->s) != 0) continue;
            size_t es = vn_dtype_size(st->dtype);
            if (count > (len - pos) / es || (uint64_t)st->numel > count)
                return vn_error_set(err, VN_ERR_FORMAT, "%s: storage '%s' holds %llu elements in %zu "
                                    "bytes left, the pickle says %lld: truncated or wrong-shaped",
                                    p->label, key->s, (unsigned long long)count, len - pos,
                                    (long long)st->numel);
            st->data = b + pos;
        }
        size_t es = 0;
        for (int i = 0; i < pd->n && !es; i++)
            if (strcmp(pd->keys[i], key->s) == 0) es = vn_dtype_size(pd->st[i]->dtype);
        if (!es) return vn_error_set(err, VN_ERR_FORMAT, "%s: storage '%s' is not used", p->label, key->s);
        pos += (size_t)count * es;
    }
    for (int i = 0; i < pd->n; i++)
        if (!pd->st[i]->data)
            return vn_error_set(err, VN_ERR_FORMAT, "%s: storage '%s' has no data record", p->label, pd->keys[i]);
    return VN_OK;
}

static int read_legacy(vn_pth *p, const uint8_t *b, size_t len, vn_error *err)
{
    /* The storages point into one copy of the file, kept as the only record. */
    if (!(p->records = calloc(1, sizeof *p->records)) || !(p->records[0].data = malloc(len)) ||
        !(p->records[0].key = strdup("")))
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    p->n_records = p->cap_records = 1;
    memcpy(p->records[0].data, b, len);
    b = p->records[0].data;
    size_t pos = sizeof legacy_magic, used = 0;
    vn__pk_value *v = NULL, *keys = NULL;
    pending pd = {0};
    int rc = vn__pk_load_prefix(b + pos, len - pos, p->label, pos, NULL, NULL, &p->arena, &v, &used,
                                err);
    if (rc == VN_OK && (v->kind != VN__PK_INT || v->i != 1001))
        rc = vn_error_set(err, VN_ERR_UNSUPPORTED, "%s: legacy protocol version is not 1001", p->label);
    for (int step = 0; rc == VN_OK && step < 3; step++) {
        pos += used;
        rc = vn__pk_load_prefix(b + pos, len - pos, p->label, pos, step == 1 ? legacy_storage : NULL, &pd,
                                &p->arena, step == 1 ? &p->root : step == 2 ? &keys : &v, &used, err);
        if (rc == VN_OK && step == 0 && vn__pk_dict_get(v, "little_endian") &&
            !vn__pk_dict_get(v, "little_endian")->i)
            rc = vn_error_set(err, VN_ERR_UNSUPPORTED, "%s: written on a big-endian machine", p->label);
    }
    if (rc == VN_OK) rc = legacy_records(p, &pd, keys, b, len, pos + used, err);
    for (int i = 0; i < pd.n; i++) free(pd.keys[i]);
    free(pd.keys);
    free(pd.st);
    return rc;
}

int vn_pth_read_memory(const void *buf, size_t len, const char *label, vn_pth **out, vn_error *err)
{
    *out = NULL;
    const uint8_t *b = buf;
    bool legacy = len >= sizeof legacy_magic && memcmp(b, legacy_magic, sizeof legacy_magic) == 0;
    if (!legacy && (len < 4 || memcmp(b, "PK\003\004", 4) != 0))
        return vn_error_set(err, VN_ERR_FORMAT, "%s: not a torch.save file (no zip signature, no "
                            "legacy magic number)", label);
    vn_pth *p = calloc(1, sizeof *p);
    if (!p) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    snprintf(p->label, sizeof p->label, "%s", label);
    p->archive_len = len;
    if (legacy) {
        int rc = read_legacy(p, b, len, err);
        if (rc != VN_OK) vn_pth_free(p);
        else *out = p;
        return rc;
    }
    int rc = open_zip(p, buf, len, err);
    zip_int64_t idx = -1;
    if (rc == VN_OK) rc = find_pickle(p, &idx, err);
    uint8_t *pkl = NULL;
    size_t plen = 0;
    if (rc == VN_OK) rc = read_entry(p, idx, "data.pkl", &pkl, &plen, err);
    if (rc == VN_OK) rc = vn__pk_load(pkl, plen, p->label, load_storage, p, &p->arena, &p->root, err);
    free(pkl);
    if (p->zip) zip_discard(p->zip);
    p->zip = NULL;
    if (rc != VN_OK) {
        vn_pth_free(p);
        return rc;
    }
    *out = p;
    return VN_OK;
}

int vn_pth_read(const char *path, vn_pth **out, vn_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = vn_read_file(path, &buf, &len, err);
    if (rc != VN_OK) return rc;
    rc = vn_pth_read_memory(buf, len, path, out, err);
    free(buf);
    return rc;
}

/* ---- state_dicts ---------------------------------------------------------------------- */

static double element(const uint8_t *base, vn_dtype dt, int64_t i, int64_t *iv, bool *is_int)
{
    const uint8_t *q = base + (size_t)i * vn_dtype_size(dt);
    *is_int = false;
    switch (dt) {
    case VN_DTYPE_F32: { float f; memcpy(&f, q, 4); return f; }
    case VN_DTYPE_F64: { double d; memcpy(&d, q, 8); return d; }
    case VN_DTYPE_F16: case VN_DTYPE_BF16: return vn_dtype_float_at(q, dt);
    default: break;
    }
    *is_int = true;
    switch (dt) {
    case VN_DTYPE_I64: memcpy(iv, q, 8); break;
    case VN_DTYPE_I32: { int32_t v; memcpy(&v, q, 4); *iv = v; break; }
    case VN_DTYPE_I16: { int16_t v; memcpy(&v, q, 2); *iv = v; break; }
    case VN_DTYPE_I8: *iv = (int8_t)q[0]; break;
    default: *iv = q[0]; break; /* U8, BOOL */
    }
    return 0;
}

static bool is_float(vn_dtype dt) { return vn_dtype_is_float(dt); }

/* Gathers a (possibly strided) tensor into a contiguous F32 or I64 buffer. */
static int add_tensor(vn_st_writer *w, const char *name, const vn__pk_value *t, vn_pth_stats *s,
                      vn_error *err)
{
    const vn__pk_value *st = t->storage;
    int64_t numel = 1, want = 1, idx[VN__PK_MAX_DIMS] = {0};
    bool contiguous = true;
    for (int d = t->ndim - 1; d >= 0; d--) {
        numel *= t->shape[d];
        if (t->shape[d] != 1 && t->stride[d] != want) contiguous = false;
        want *= t->shape[d];
    }
    bool fl = is_float(st->dtype);
    void *buf = malloc((size_t)(numel ? numel : 1) * (fl ? sizeof(float) : sizeof(int64_t)));
    if (!buf) return vn_error_set(err, VN_ERR_NOMEM, "out of memory converting '%s'", name);
    for (int64_t i = 0; i < numel; i++) {
        int64_t off = t->offset, iv = 0;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        bool is_int;
        double v = element(st->data, st->dtype, off, &iv, &is_int);
        if (fl) ((float *)buf)[i] = (float)v;
        else ((int64_t *)buf)[i] = iv;
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->shape[d]; d--) idx[d] = 0;
    }
    int64_t shape[VN_ST_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
    int rc = vn_st_add(w, name, fl ? VN_DTYPE_F32 : VN_DTYPE_I64, t->ndim, shape, buf, err);
    free(buf);
    s->n_tensors++;
    s->numel += numel;
    if (fl && st->dtype != VN_DTYPE_F32) s->n_converted++;
    if (!contiguous || t->offset) s->n_views++;
    return rc;
}

static const char *kind_name(vn__pk_kind k)
{
    static const char *const names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple",
                                        "list", "dict", "object", "global", "storage", "tensor", "mark"};
    return names[k];
}

/* "model, model_ema, optimizer, epoch" of a dict, for messages. */
static void list_keys(const vn__pk_value *d, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i + 1 < d->n && n + 1 < len; i += 2) {
        const vn__pk_value *k = d->items[i];
        if (i >= 24) {
            snprintf(buf + n, len - n, ", ...");
            break;
        }
        if (k->kind == VN__PK_STR) n += (size_t)snprintf(buf + n, len - n, "%s'%.40s'", i ? ", " : "", k->s);
        else if (k->kind == VN__PK_INT) n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? ", " : "", (long long)k->i);
    }
}

static bool holds_tensors(const vn__pk_value *d)
{
    for (int i = 1; i < d->n; i += 2)
        if (d->items[i]->kind == VN__PK_TENSOR) return true;
    return false;
}

static const vn__pk_value *pick(const vn_pth *p, const char *key, char *used, size_t ulen, vn_error *err)
{
    const vn__pk_value *root = p->root;
    char keys[400];
    if (root->kind != VN__PK_DICT)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: holds a %s, not a state_dict or a dict of them",
                            p->label, kind_name(root->kind)), NULL;
    list_keys(root, keys, sizeof keys);
    if (key) {
        const vn__pk_value *v = vn__pk_dict_get(root, key);
        if (!v || v->kind != VN__PK_DICT)
            return vn_error_set(err, VN_ERR_NOT_FOUND, "%s: no state_dict under '%s' (the file holds %s)",
                                p->label, key, keys), NULL;
        snprintf(used, ulen, "%s", key);
        return v;
    }
    if (holds_tensors(root)) {
        used[0] = 0;
        return root;
    }
    static const char *const tries[] = {"model", "state_dict", "model_ema", "module"};
    for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
        const vn__pk_value *v = vn__pk_dict_get(root, tries[i]);
        if (v && v->kind == VN__PK_DICT && holds_tensors(v)) {
            snprintf(used, ulen, "%s", tries[i]);
            return v;
        }
    }
    return vn_error_set(err, VN_ERR_NOT_FOUND, "%s: no state_dict found (the file holds %s); choose "
                        "one with --key", p->label, keys), NULL;
}

int vn_pth_state_dict(const vn_pth *p, const char *key, vn_st_writer *w, vn_pth_stats *stats,
                      vn_error *err)
{
    vn_pth_stats local;
    vn_pth_stats *s = stats ? stats : &local;
    memset(s, 0, sizeof *s);
    const vn__pk_value *sd = pick(p, key, s->key, sizeof s->key, err);
    if (!sd) return err ? err->code : VN_ERR_FORMAT;
    for (int i = 0; i + 1 < sd->n; i += 2) {
        const vn__pk_value *k = sd->items[i], *v = sd->items[i + 1];
        if (k->kind != VN__PK_STR)
            return vn_error_set(err, VN_ERR_FORMAT, "%s: state_dict '%s' has a %s key", p->label,
                                s->key, kind_name(k->kind));
        if (v->kind != VN__PK_TENSOR)
            return vn_error_set(err, VN_ERR_FORMAT, "%s: '%s' in state_dict '%s' is a %s, not a tensor",
                                p->label, k->s, s->key, kind_name(v->kind));
        const char *name = k->s;
        if (strncmp(name, "module.", 7) == 0) {
            while (strncmp(name, "module.", 7) == 0) name += 7;
            s->n_stripped++;
        }
        int rc = add_tensor(w, name, v, s, err);
        if (rc != VN_OK) {
            vn_error_prefix(err, "%s: ", p->label);
            return rc;
        }
    }
    return VN_OK;
}

bool vn_pth_looks_like(const char *path)
{
    unsigned char head[2] = {0};
    FILE *fp = fopen(path, "rb");
    bool torch = fp && fread(head, 1, 2, fp) == 2 &&
                 ((head[0] == 'P' && head[1] == 'K') || (head[0] == 0x80 && head[1] == 0x02));
    if (fp) fclose(fp);
    return torch;
}

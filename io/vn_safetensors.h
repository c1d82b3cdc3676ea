/* safetensors files: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
 * data: every byte belongs to exactly one tensor (no holes, no overlaps, nothing after).
 *
 * Reading validates everything before handing out a tensor and reports the first problem
 * with the file name. Writing is atomic: a temporary file in the same folder, fsync, rename,
 * fsync of the folder.
 *
 * Checksum: with VN_ST_CRC32 the writer stores a CRC-32 (zlib) of the whole file, header and
 * data, in __metadata__["file_crc32"] (8 lowercase hex digits). It is the first entry of the
 * metadata, which is the first entry of the header, so every such header opens with
 *     {"__metadata__":{"file_crc32":"xxxxxxxx"
 * and the CRC is taken over the file's bytes as they are, except that those 8 digits count
 * as "00000000". In Python:
 *     b = open(p, "rb").read(); i = 8 + 31
 *     ok = zlib.crc32(b[:i] + b"00000000" + b[i + 8:]) == int(b[i:i + 8], 16)
 * Every reader checks it before parsing the header, so a change to any byte (names, shapes,
 * offsets, metadata, data, the length field) is refused as a checksum mismatch naming the
 * file. A header whose opening differs from that text in a few bytes counts as a damaged
 * checksummed one; a "file_crc32" anywhere else is refused (the file was rewritten by another
 * tool). Files without it (written by PyTorch or others) load unchecked; files written
 * before it carry __metadata__["crc32"], the CRC-32 of the data section only, which is still
 * verified. */
#ifndef VN_SAFETENSORS_H
#define VN_SAFETENSORS_H

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_dtype {
    VN_DTYPE_F32,
    VN_DTYPE_F64,
    VN_DTYPE_F16,
    VN_DTYPE_BF16,
    VN_DTYPE_I64,
    VN_DTYPE_I32,
    VN_DTYPE_I16,
    VN_DTYPE_I8,
    VN_DTYPE_U8,
    VN_DTYPE_BOOL,
    VN_DTYPE_COUNT
} vn_dtype;

/* "F32", "I64", ... as in the format; size in bytes of one element. */
const char *vn_dtype_name(vn_dtype dt);
size_t vn_dtype_size(vn_dtype dt);
/* F32, F64, F16 or BF16. */
bool vn_dtype_is_float(vn_dtype dt);
/* The float32 value of one element of a float dtype at p (any alignment, little-endian):
 * exact for F16 and BF16, rounded to nearest for F64. */
float vn_dtype_float_at(const uint8_t *p, vn_dtype dt);

#define VN_ST_MAX_DIMS 8
/* Header limit on read (the reference implementation uses 100 MB). */
#define VN_ST_MAX_HEADER (100u * 1024u * 1024u)

typedef struct vn_st_entry {
    const char *name;
    vn_dtype dtype;
    int ndim; /* 0 for a scalar (shape []) */
    int64_t shape[VN_ST_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    const void *data; /* inside the file's buffer; valid until vn_st_close */
} vn_st_entry;

typedef struct vn_st_file vn_st_file;

/* Reads and validates a whole file. On failure *out is NULL and err names the file and the
 * first problem ("model.safetensors: tensor 'a.weight': data_offsets [0, 12] do not match
 * shape [2, 2] of F32 (16 bytes)"). */
int vn_st_open(const char *path, vn_st_file **out, vn_error *err);
/* The same from memory (the buffer is copied); `label` names it in messages. */
int vn_st_open_memory(const void *buf, size_t len, const char *label, vn_st_file **out,
                      vn_error *err);
void vn_st_close(vn_st_file *f);

const char *vn_st_path(const vn_st_file *f);
/* Entries in ascending order of data offset. */
int vn_st_count(const vn_st_file *f);
const vn_st_entry *vn_st_at(const vn_st_file *f, int i);
const vn_st_entry *vn_st_find(const vn_st_file *f, const char *name);
/* __metadata__ values; NULL when absent. */
const char *vn_st_meta(const vn_st_file *f, const char *key);
int vn_st_meta_count(const vn_st_file *f);
const char *vn_st_meta_key(const vn_st_file *f, int i);

/* Writer: tensors in the order added. Data is copied at vn_st_add time. */
typedef struct vn_st_writer vn_st_writer;

enum { VN_ST_CRC32 = 1u << 0 };

vn_st_writer *vn_st_writer_new(void);
void vn_st_writer_free(vn_st_writer *w);
/* shape may be NULL when ndim is 0. Rejects duplicate names and "__metadata__". */
int vn_st_add(vn_st_writer *w, const char *name, vn_dtype dtype, int ndim,
              const int64_t *shape, const void *data, vn_error *err);
int vn_st_set_meta(vn_st_writer *w, const char *key, const char *value, vn_error *err);
/* Writes atomically to path (see above). */
int vn_st_write(vn_st_writer *w, const char *path, uint32_t flags, vn_error *err);
/* Serialises to a malloc'd buffer (for tests and in-memory use). */
int vn_st_serialize(vn_st_writer *w, uint32_t flags, void **buf, size_t *len, vn_error *err);

/* Internal: jansson's json_dumps (o is a json_t), failing (NULL) instead of returning
 * incomplete text when out of memory. */
char *vn__json_dumps(const void *o, size_t flags);

#ifdef __cplusplus
}
#endif
#endif

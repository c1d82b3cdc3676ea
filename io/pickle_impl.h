/* The restricted unpickler behind vn_pth (io/pickle.c): the pickle opcodes torch.save writes
 * for state_dicts and training checkpoints, building a tree of inert values. Globals are
 * resolved against a fixed list (OrderedDict, the tensor rebuild functions, storage types,
 * argparse.Namespace); any other global is refused by name. Nothing is ever executed: the
 * "calls" of the pickle are interpreted by this file for those few functions only. */
#ifndef VN_PICKLE_IMPL_H
#define VN_PICKLE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "io/vn_safetensors.h"

typedef enum vn__pk_kind {
    VN__PK_NONE, VN__PK_BOOL, VN__PK_INT, VN__PK_FLOAT, VN__PK_STR, VN__PK_BYTES,
    VN__PK_TUPLE, VN__PK_LIST, VN__PK_DICT, VN__PK_OBJECT, VN__PK_GLOBAL,
    VN__PK_STORAGE, VN__PK_TENSOR, VN__PK_MARK
} vn__pk_kind;

typedef enum vn__pk_global {
    VN__G_ORDERED_DICT, VN__G_REBUILD_TENSOR, VN__G_REBUILD_PARAMETER, VN__G_NAMESPACE,
    VN__G_STORAGE_TYPE
} vn__pk_global;

#define VN__PK_MAX_DIMS 8

typedef struct vn__pk_value vn__pk_value;
struct vn__pk_value {
    vn__pk_kind kind;
    int64_t i;                /* BOOL, INT */
    double f;                 /* FLOAT */
    char *s;                  /* STR, BYTES (NUL-terminated copy) */
    size_t len;
    vn__pk_value **items;     /* TUPLE, LIST; DICT and OBJECT: key, value, key, value ... */
    int n, cap;
    vn__pk_global global;     /* GLOBAL */
    vn_dtype dtype;           /* GLOBAL storage type, STORAGE */
    const uint8_t *data;      /* STORAGE: the record's bytes (owned by the caller) */
    int64_t numel;            /* STORAGE */
    vn__pk_value *storage;    /* TENSOR */
    int64_t offset;           /* TENSOR: in elements */
    int ndim;
    int64_t shape[VN__PK_MAX_DIMS], stride[VN__PK_MAX_DIMS];
};

/* Resolves a persistent id ('storage', type, key, location, numel) to a storage value (the
 * callback fills data and numel, checking the record is large enough). */
typedef int (*vn__pk_persistent_fn)(void *user, vn_dtype dtype, const char *key, int64_t numel,
                                    vn__pk_value *storage, vn_error *err);

typedef struct vn__pk_arena vn__pk_arena;

/* Unpickles buf into *root (values live in the arena until vn__pk_arena_free). label names
 * the file in messages. */
int vn__pk_load(const uint8_t *buf, size_t len, const char *label, vn__pk_persistent_fn fn,
                void *user, vn__pk_arena **arena, vn__pk_value **root, vn_error *err);
/* The same, reading one pickle from the start of buf (more data may follow: the legacy
 * torch.save format chains pickles); *used receives its length. *arena may already hold an
 * arena, which the new values join. base is buf's offset in the file, for messages. */
int vn__pk_load_prefix(const uint8_t *buf, size_t len, const char *label, size_t base,
                       vn__pk_persistent_fn fn, void *user, vn__pk_arena **arena,
                       vn__pk_value **root, size_t *used, vn_error *err);
void vn__pk_arena_free(vn__pk_arena *a);

/* Dict lookup by string key; NULL when absent or not a dict. */
vn__pk_value *vn__pk_dict_get(const vn__pk_value *d, const char *key);

#endif

/* Internals shared by the config sources (schema, values, YAML reader, output). */
#ifndef VN_CONFIG_IMPL_H
#define VN_CONFIG_IMPL_H

#include "train/vn_config.h"

/* One scalar as written by the user: its text (not NUL-terminated), whether it was a plain
 * (unquoted) scalar, and its 1-based position (0 when it has none, as for --set). */
typedef struct vn__cfg_scalar {
    const char *text;
    size_t len;
    bool plain;
    int line, col;
} vn__cfg_scalar;

/* A key's value before conversion: a scalar or a list of scalars. */
typedef struct vn__cfg_value {
    bool is_list;
    vn__cfg_scalar scalar;       /* !is_list (also carries the list's position) */
    const vn__cfg_scalar *items; /* is_list */
    size_t n_items;
} vn__cfg_value;

/* Where a value comes from: a file (label, origin index) or a --set, for messages. */
typedef struct vn__cfg_where {
    const char *file;    /* label of a YAML file or text, or NULL */
    const char *set;     /* the --set assignment, or NULL */
    int16_t source;      /* recorded as the key's origin */
} vn__cfg_where;

/* Converts v to key `index`'s type, checks ranges, lengths and choices, and stores it (and
 * its origin) in cfg. On error cfg is unchanged and the message reads
 * "<where>: <key>[<item>]: <problem>". */
int vn__config_assign(vn_config *cfg, size_t index, const vn__cfg_value *v,
                      const vn__cfg_where *w, vn_error *err);

/* The closest known key to an unknown one (by the official flag names, the same key name in
 * another section, or edit distance), or NULL. */
const char *vn__config_suggest_key(const char *section, const char *name);
/* The closest section name, or NULL. */
const char *vn__config_suggest_section(const char *name);
bool vn__config_is_section(const char *name, size_t len);

/* Canonical YAML text of a key's value (as vn_config_get). */
int vn__config_format(const vn_config *cfg, const vn_config_key *k, char *buf, size_t len);
/* "int in [1, 100000]", "one of: sgd, adamw, lamb", "2 floats in [0, 1)", ... */
void vn__config_describe(const vn_config_key *k, char *buf, size_t len);

#endif

/* Reading config files with libyaml's document API: a mapping of sections to mappings of
 * keys to scalars or sequences of scalars, every key checked against the schema. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "train/config_impl.h"

typedef struct loader {
    vn_config *cfg;
    yaml_document_t *doc;
    const char *label;
    vn__cfg_where where;
    int first_line[VN_CONFIG_MAX_KEYS]; /* line where each key was set in this file; 0: not */
    vn_error *err;
} loader;

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }
static int col_of(const yaml_node_t *n) { return (int)n->start_mark.column + 1; }

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "a value";
    }
}

static bool null_scalar(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *t = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || (len == 1 && t[0] == '~') ||
           (len == 4 && (!strncmp(t, "null", 4) || !strncmp(t, "Null", 4) || !strncmp(t, "NULL", 4)));
}

static vn__cfg_scalar scalar_of(const yaml_node_t *n)
{
    return (vn__cfg_scalar){(const char *)n->data.scalar.value, n->data.scalar.length,
                            n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, line_of(n),
                            col_of(n)};
}

/* A mapping key as a C string: scalars only, no NUL inside. */
static bool key_text(const yaml_node_t *n, char *buf, size_t len)
{
    if (n->type != YAML_SCALAR_NODE) return false;
    size_t l = n->data.scalar.length;
    if (l == 0 || l >= len || memchr(n->data.scalar.value, '\0', l)) return false;
    memcpy(buf, n->data.scalar.value, l);
    buf[l] = '\0';
    return true;
}

static int error_at(loader *L, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int error_at(loader *L, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return vn_error_set(L->err, VN_ERR_INVALID, "%s:%d:%d: %s", L->label, line_of(n), col_of(n),
                        msg);
}

/* One key's value: checks it is new in this file, converts it and stores it. */
static int load_key(loader *L, const char *section, const char *name, const yaml_node_t *keynode,
                    const yaml_node_t *val)
{
    char full[256];
    snprintf(full, sizeof full, "%s.%s", section, name);
    size_t index;
    if (!vn_config_find(full, &index)) {
        const char *sug = vn__config_suggest_key(section, name);
        if (sug) return error_at(L, keynode, "unknown key '%s' (did you mean '%s'?)", full, sug);
        return error_at(L, keynode, "unknown key '%s'", full);
    }
    if (L->first_line[index])
        return error_at(L, keynode, "duplicate key '%s' (first set at line %d)", full,
                        L->first_line[index]);
    L->first_line[index] = line_of(keynode);

    vn__cfg_value v = {0};
    if (val->type == YAML_SCALAR_NODE) {
        v.scalar = scalar_of(val);
        return vn__config_assign(L->cfg, index, &v, &L->where, L->err);
    }
    if (val->type == YAML_MAPPING_NODE)
        return error_at(L, val, "%s: expected a value or a list, got a mapping", full);
    /* A sequence: every item must be a scalar. */
    size_t n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    vn__cfg_scalar *items = calloc(n ? n : 1, sizeof *items);
    if (!items) return vn_error_set(L->err, VN_ERR_NOMEM, "%s: out of memory", L->label);
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *it = yaml_document_get_node(L->doc, val->data.sequence.items.start[i]);
        if (!it || it->type != YAML_SCALAR_NODE) {
            int rc = error_at(L, it ? it : val, "%s[%zu]: expected a number, got %s", full, i,
                              it ? node_kind(it) : "nothing");
            free(items);
            return rc;
        }
        items[i] = scalar_of(it);
    }
    v.is_list = true;
    v.scalar = (vn__cfg_scalar){"", 0, false, line_of(val), col_of(val)};
    v.items = items;
    v.n_items = n;
    int rc = vn__config_assign(L->cfg, index, &v, &L->where, L->err);
    free(items);
    return rc;
}

/* One pair of a mapping: its key and value nodes, and the key as text (false when the key is
 * not a scalar that fits). */
static bool pair_at(const loader *L, const yaml_node_pair_t *p, const yaml_node_t **k,
                    const yaml_node_t **v, char *key, size_t len)
{
    *k = yaml_document_get_node(L->doc, p->key);
    *v = yaml_document_get_node(L->doc, p->value);
    return key_text(*k, key, len);
}

/* The keys of one section, given as a mapping (or as nothing: "ema:" alone). */
static int load_section(loader *L, const char *name, const yaml_node_t *v)
{
    if (null_scalar(v)) return VN_OK; /* "ema:" with nothing under it */
    if (v->type != YAML_MAPPING_NODE)
        return error_at(L, v, "section '%s' must be a mapping of keys (like '  key: value' "
                              "on the next lines), got %s", name, node_kind(v));
    for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
        const yaml_node_t *kk, *vv;
        char key[256];
        if (!pair_at(L, q, &kk, &vv, key, sizeof key))
            return error_at(L, kk, "expected a key name in section '%s', got %s", name,
                            node_kind(kk));
        int rc = load_key(L, name, key, kk, vv);
        if (rc) return rc;
    }
    return VN_OK;
}

static int load_root(loader *L, const yaml_node_t *root)
{
    if (null_scalar(root)) return VN_OK; /* "---" alone or "~": nothing to set */
    if (root->type != YAML_MAPPING_NODE)
        return error_at(L, root, "expected a mapping of sections (like 'optim:' followed by "
                                 "indented 'lr: 0.001'), got %s", node_kind(root));
    int section_line[64] = {0};
    char section_name[64][32];
    int n_sections = 0;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *k, *v;
        char name[256];
        if (!pair_at(L, p, &k, &v, name, sizeof name))
            return error_at(L, k, "expected a section name, got %s", node_kind(k));
        char *dot = strchr(name, '.');
        if (dot) { /* "optim.lr: 0.001" at the top level, as on the command line */
            *dot = '\0';
            int rc = load_key(L, name, dot + 1, k, v);
            if (rc) return rc;
            continue;
        }
        if (!vn__config_is_section(name, strlen(name))) {
            const char *key = vn__config_suggest_key(NULL, name);
            const char *sec = vn__config_suggest_section(name);
            /* a value (aa: rand-m9, an official flag's name) is a key; a mapping a section */
            if (key && v->type == YAML_SCALAR_NODE)
                return error_at(L, k, "unknown section '%s' (did you mean '%s'? keys go inside "
                                      "their section)", name, key);
            if (sec) return error_at(L, k, "unknown section '%s' (did you mean '%s'?)", name, sec);
            return error_at(L, k, "unknown section '%s'", name);
        }
        for (int i = 0; i < n_sections; i++)
            if (strcmp(section_name[i], name) == 0)
                return error_at(L, k, "duplicate section '%s' (first at line %d)", name,
                                section_line[i]);
        if (n_sections < 64) {
            snprintf(section_name[n_sections], sizeof section_name[0], "%s", name);
            section_line[n_sections++] = line_of(k);
        }
        int rc = load_section(L, name, v);
        if (rc) return rc;
    }
    return VN_OK;
}

static int syntax_error(const yaml_parser_t *p, const char *label, vn_error *err)
{
    if (p->error == YAML_MEMORY_ERROR)
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory while parsing YAML", label);
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->error == YAML_READER_ERROR)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: invalid YAML: %s (byte %zu)", label,
                            problem, p->problem_offset);
    if (p->context)
        return vn_error_set(err, VN_ERR_FORMAT, "%s:%zu:%zu: invalid YAML: %s (%s at line %zu)",
                            label, p->problem_mark.line + 1, p->problem_mark.column + 1,
                            problem, p->context, p->context_mark.line + 1);
    return vn_error_set(err, VN_ERR_FORMAT, "%s:%zu:%zu: invalid YAML: %s", label,
                        p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
}

int vn_config_load_text(vn_config *cfg, const char *text, size_t len, const char *label,
                        vn_error *err)
{
    if (!cfg || (!text && len)) return vn_error_set(err, VN_ERR_INVALID, "config: no text");
    if (!label) label = "<config>";
    if (cfg->n_files >= VN_CONFIG_MAX_FILES)
        return vn_error_set(err, VN_ERR_INVALID, "%s: too many config files (at most %d)",
                            label, VN_CONFIG_MAX_FILES);
    loader *L = calloc(1, sizeof *L);
    vn_config *work = malloc(sizeof *work);
    if (!L || !work) {
        free(L);
        free(work);
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", label);
    }
    /* Applied to a copy, so a failure leaves cfg as it was. */
    *work = *cfg;
    int16_t source = (int16_t)work->n_files++;
    snprintf(work->files[source], sizeof work->files[source], "%s", label);
    L->cfg = work;
    L->label = label;
    L->where = (vn__cfg_where){.file = label, .source = source};
    L->err = err;

    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = VN_OK;
    if (!yaml_parser_initialize(&parser)) {
        free(L);
        free(work);
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", label);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = syntax_error(&parser, label, err);
    } else {
        L->doc = &doc;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root) rc = load_root(L, root);
        if (rc == VN_OK && root) {
            /* A second document would be silently ignored otherwise. */
            yaml_document_t next;
            if (!yaml_parser_load(&parser, &next)) {
                rc = syntax_error(&parser, label, err);
            } else {
                yaml_node_t *r2 = yaml_document_get_root_node(&next);
                if (r2)
                    rc = vn_error_set(err, VN_ERR_INVALID,
                                      "%s:%d:%d: a second YAML document ('---'); a config file "
                                      "holds one", label, line_of(r2), col_of(r2));
                yaml_document_delete(&next);
            }
        }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    if (rc == VN_OK) *cfg = *work;
    free(L);
    free(work);
    return rc;
}

int vn_config_load_file(vn_config *cfg, const char *path, vn_error *err)
{
    if (!path) return vn_error_set(err, VN_ERR_INVALID, "config: no file name");
    FILE *f = fopen(path, "rb");
    if (!f) return vn_error_set(err, VN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = VN_OK;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            if (ncap > ((size_t)64 << 20)) {
                rc = vn_error_set(err, VN_ERR_FORMAT, "%s: larger than 64 MiB, not a config",
                                  path);
                break;
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) rc = vn_error_set(err, VN_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (rc == VN_OK) rc = vn_config_load_text(cfg, buf, len, path, err);
    free(buf);
    return rc;
}

int vn_config_from_text(vn_config *cfg, const char *text, size_t len, const char *label,
                        vn_error *err)
{
    vn_config_init(cfg);
    int rc = vn_config_load_text(cfg, text, len, label, err);
    if (rc == VN_OK) rc = vn_config_check(cfg, err);
    return rc;
}

/* Weight files: safetensors with the official state_dict names, plus the configuration in
 * __metadata__ so a file alone is enough to rebuild the network. */
#include "models/vn_vanillanet.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define META_KEY "vanilla.model"

/* NULL when out of memory: every jansson call's failure counts, so that a file is never
 * written with a silently incomplete description. */
char *vn_vanillanet_config_json(const vn_vanillanet_config *c, bool deploy)
{
    json_t *o = json_object(), *dims = json_array(), *strides = json_array();
    int bad = 0;
    for (int i = 0; i <= c->n_stages; i++) bad |= json_array_append_new(dims, json_integer(c->dims[i]));
    for (int i = 0; i < c->n_stages; i++) bad |= json_array_append_new(strides, json_integer(c->strides[i]));
    bad |= json_object_set_new(o, "dims", dims);
    bad |= json_object_set_new(o, "strides", strides);
    if (c->ada_pool_enabled) {
        json_t *ap = json_array();
        for (int i = 0; i < c->n_stages; i++) bad |= json_array_append_new(ap, json_integer(c->ada_pool[i]));
        bad |= json_object_set_new(o, "ada_pool", ap);
    }
    bad |= json_object_set_new(o, "act_num", json_integer(c->act_num));
    bad |= json_object_set_new(o, "in_chans", json_integer(c->in_chans));
    bad |= json_object_set_new(o, "num_classes", json_integer(c->num_classes));
    bad |= json_object_set_new(o, "drop_rate", json_real(c->drop_rate));
    bad |= json_object_set_new(o, "shortcut", json_string(c->shortcut == VN_SHORTCUT_NONE ? "none" : "identity"));
    bad |= json_object_set_new(o, "deploy", json_boolean(deploy));
    char *s = bad ? NULL : vn__json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

static int int_array(json_t *a, int *dst, int max, int *n)
{
    if (!json_is_array(a) || (int)json_array_size(a) > max) return -1;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v)) return -1;
        dst[i] = (int)json_integer_value(v);
    }
    *n = (int)json_array_size(a);
    return 0;
}

int vn_vanillanet_config_from_json(const char *text, const char *label, vn_vanillanet_config *c,
                                   bool *deploy, vn_error *err)
{
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return vn_error_set(err, VN_ERR_FORMAT, "%s: model description is not valid JSON", label);
    }
    memset(c, 0, sizeof *c);
    int nd = 0, ns = 0, na = 0, rc = VN_OK;
    json_t *v;
    if (int_array(json_object_get(o, "dims"), c->dims, VN_MAX_STAGES + 1, &nd) ||
        int_array(json_object_get(o, "strides"), c->strides, VN_MAX_STAGES, &ns) || nd != ns + 1) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: model description needs dims and strides "
                          "(len(dims) = len(strides) + 1)", label);
        goto out;
    }
    c->n_stages = ns;
    if ((v = json_object_get(o, "ada_pool")) && !json_is_null(v)) {
        if (int_array(v, c->ada_pool, VN_MAX_STAGES, &na) || na != ns) {
            rc = vn_error_set(err, VN_ERR_FORMAT, "%s: ada_pool must list one size per stage", label);
            goto out;
        }
        c->ada_pool_enabled = true;
    }
    c->act_num = (v = json_object_get(o, "act_num")) ? (int)json_integer_value(v) : 3;
    c->in_chans = (v = json_object_get(o, "in_chans")) ? (int)json_integer_value(v) : 3;
    c->num_classes = (v = json_object_get(o, "num_classes")) ? (int)json_integer_value(v) : 1000;
    c->drop_rate = (v = json_object_get(o, "drop_rate")) ? (float)json_number_value(v) : 0.0f;
    v = json_object_get(o, "shortcut");
    c->shortcut = v && json_is_string(v) && strcmp(json_string_value(v), "identity") == 0
                      ? VN_SHORTCUT_IDENTITY : VN_SHORTCUT_NONE;
    *deploy = json_is_true(json_object_get(o, "deploy"));
    rc = vn_vanillanet_config_check(c, err);
    if (rc != VN_OK) vn_error_prefix(err, "%s: ", label);
out:
    json_decref(o);
    return rc;
}

int vn_vanillanet_save(const vn_vanillanet *m, const char *path, vn_error *err)
{
    vn_st_writer *w = vn_st_writer_new();
    if (!w) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = vn_state_to_writer(&m->state, "", w, err);
    char *meta = rc == VN_OK ? vn_vanillanet_config_json(&m->cfg, m->deploy) : NULL;
    if (rc == VN_OK && !meta) rc = vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
    if (rc == VN_OK) rc = vn_st_set_meta(w, META_KEY, meta, err);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "format", "pt", err);
    if (rc == VN_OK) rc = vn_st_write(w, path, VN_ST_CRC32, err);
    free(meta);
    vn_st_writer_free(w);
    return rc;
}

int vn_vanillanet_load(vn_vanillanet *m, const char *path, vn_error *err)
{
    vn_st_file *f = NULL;
    int rc = vn_st_open(path, &f, err);
    if (rc != VN_OK) return rc;
    rc = vn_state_from_file(&m->state, "", f, true, err);
    vn_st_close(f);
    return rc;
}

int vn_vanillanet_open(const char *path, vn_vanillanet **out, vn_error *err)
{
    *out = NULL;
    vn_st_file *f = NULL;
    int rc = vn_st_open(path, &f, err);
    if (rc != VN_OK) return rc;
    const char *meta = vn_st_meta(f, META_KEY);
    vn_vanillanet_config cfg;
    bool deploy = false;
    if (!meta) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: no model description in the file's metadata "
                          "(key '%s'); build the model from a config and load the weights into it",
                          path, META_KEY);
    } else {
        rc = vn_vanillanet_config_from_json(meta, path, &cfg, &deploy, err);
    }
    vn_vanillanet *m = NULL;
    if (rc == VN_OK) rc = vn_vanillanet_create(&cfg, deploy, &m, err);
    if (rc == VN_OK) rc = vn_state_from_file(&m->state, "", f, true, err);
    vn_st_close(f);
    if (rc != VN_OK) {
        vn_vanillanet_destroy(m);
        return rc;
    }
    *out = m;
    return VN_OK;
}

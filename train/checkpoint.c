/* Checkpoints: one safetensors file holding the model ("model."), the optimizer state
 * ("optim."), every EMA model ("ema.<i>.") and, in __metadata__, the trainer state, the
 * effective config and its hash, the class names and the preprocessing, with a CRC-32 of the
 * data. Written atomically by vn_st_write (temporary file, fsync, rename, folder fsync). */
#include "train/train_impl.h"
#include "base/vn_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* NULL when out of memory (any jansson call failing). */
static json_t *state_to_json(const vn_train_state *s)
{
    json_t *o = json_object();
    int bad = 0;
    bad |= json_object_set_new(o, "epoch", json_integer(s->epoch));
    bad |= json_object_set_new(o, "position", json_integer(s->position));
    bad |= json_object_set_new(o, "step", json_integer(s->step));
    bad |= json_object_set_new(o, "micro_step", json_integer(s->micro_step));
    bad |= json_object_set_new(o, "act_learn", json_real(s->act_learn));
    json_t *rng = json_array();
    for (int i = 0; i < 4; i++) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, s->rng.s[i]);
        bad |= json_array_append_new(rng, json_string(hex));
    }
    bad |= json_object_set_new(o, "rng", rng);
    bad |= json_object_set_new(o, "best_top1", json_real(s->best_top1));
    bad |= json_object_set_new(o, "best_epoch", json_integer(s->best_epoch));
    bad |= json_object_set_new(o, "best_source", json_string(s->best_source));
    bad |= json_object_set_new(o, "best_model_top1", json_real(s->best_model_top1));
    bad |= json_object_set_new(o, "best_model_epoch", json_integer(s->best_model_epoch));
    json_t *be = json_array(), *bee = json_array();
    for (int i = 0; i < VN_TRAIN_MAX_EMAS; i++) {
        bad |= json_array_append_new(be, json_real(s->best_ema_top1[i]));
        bad |= json_array_append_new(bee, json_integer(s->best_ema_epoch[i]));
    }
    bad |= json_object_set_new(o, "best_ema_top1", be);
    bad |= json_object_set_new(o, "best_ema_epoch", bee);
    bad |= json_object_set_new(o, "skipped_in_row", json_integer(s->skipped_in_row));
    bad |= json_object_set_new(o, "elapsed", json_real(s->elapsed));
    bad |= json_object_set_new(o, "finished", json_boolean(s->finished));
    if (s->ranks > 1) bad |= json_object_set_new(o, "ranks", json_integer(s->ranks));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The separate bests (absent from files of older builds: then none, except the overall best
 * when it was the live model's). */
static void best_from_json(json_t *o, vn_train_state *s)
{
    json_t *bm = json_object_get(o, "best_model_top1");
    bool old = strcmp(s->best_source, "model") == 0;
    s->best_model_top1 = json_is_number(bm) ? json_number_value(bm) : old ? s->best_top1 : -1;
    s->best_model_epoch = bm ? json_integer_value(json_object_get(o, "best_model_epoch"))
                             : old ? s->best_epoch : 0;
    json_t *be = json_object_get(o, "best_ema_top1"), *bee = json_object_get(o, "best_ema_epoch");
    for (int i = 0; i < VN_TRAIN_MAX_EMAS; i++) {
        json_t *v = json_array_get(be, (size_t)i);
        s->best_ema_top1[i] = json_is_number(v) ? json_number_value(v) : -1;
        s->best_ema_epoch[i] = json_integer_value(json_array_get(bee, (size_t)i));
    }
}

static int state_from_json(const char *text, const char *path, vn_train_state *s, vn_error *err)
{
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    memset(s, 0, sizeof *s);
    int rc = VN_OK;
    json_t *rng = o ? json_object_get(o, "rng") : NULL;
    if (!json_is_object(o) || !json_is_integer(json_object_get(o, "epoch")) ||
        !json_is_integer(json_object_get(o, "step")) || !json_is_array(rng) ||
        json_array_size(rng) != 4) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: trainer state in the metadata is missing or "
                          "malformed", path);
        goto out;
    }
    s->epoch = json_integer_value(json_object_get(o, "epoch"));
    s->position = json_integer_value(json_object_get(o, "position"));
    s->step = json_integer_value(json_object_get(o, "step"));
    s->micro_step = json_integer_value(json_object_get(o, "micro_step"));
    s->act_learn = json_number_value(json_object_get(o, "act_learn"));
    for (int i = 0; i < 4; i++) {
        const char *h = json_string_value(json_array_get(rng, (size_t)i));
        if (!h || sscanf(h, "%16" SCNx64, &s->rng.s[i]) != 1) {
            rc = vn_error_set(err, VN_ERR_FORMAT, "%s: bad RNG state in the metadata", path);
            goto out;
        }
    }
    s->best_top1 = json_number_value(json_object_get(o, "best_top1"));
    s->best_epoch = json_integer_value(json_object_get(o, "best_epoch"));
    const char *src = json_string_value(json_object_get(o, "best_source"));
    snprintf(s->best_source, sizeof s->best_source, "%s", src ? src : "");
    best_from_json(o, s);
    s->skipped_in_row = json_integer_value(json_object_get(o, "skipped_in_row"));
    s->elapsed = json_number_value(json_object_get(o, "elapsed"));
    s->finished = json_is_true(json_object_get(o, "finished"));
    json_t *rk = json_object_get(o, "ranks");
    s->ranks = json_is_integer(rk) && json_integer_value(rk) > 1 ? (int)json_integer_value(rk) : 1;
    if (s->epoch < 0 || s->position < 0 || s->step < 0 || s->micro_step < 0)
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: negative counters in the trainer state", path);
out:
    json_decref(o);
    return rc;
}

static char *classes_json(const char *const *names, int n)
{
    json_t *a = json_array();
    int bad = 0;
    for (int i = 0; i < n; i++) bad |= json_array_append_new(a, json_string(names[i]));
    char *s = bad ? NULL : vn__json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

void vn__data_from_config(const vn_config *cfg, vn_ckpt_info *d)
{
    vn_loader_config lc;
    vn_build_loader_config(cfg, false, &lc);
    d->input_size = lc.input_size;
    d->channels = lc.channels;
    d->interpolation = lc.interpolation;
    d->crop_pct = lc.crop_pct;
    d->eval_resize = lc.eval_resize;
    memcpy(d->mean, lc.mean, sizeof d->mean);
    memcpy(d->std, lc.std, sizeof d->std);
    d->has_data = true;
}

/* vanilla.data, read back by data_from_json. */
static char *data_json(const vn_ckpt_info *d)
{
    json_t *o = json_object();
    int bad = 0;
    bad |= json_object_set_new(o, "input_size", json_integer(d->input_size));
    bad |= json_object_set_new(o, "channels", json_integer(d->channels));
    bad |= json_object_set_new(o, "interpolation", json_string(d->interpolation == VN_INTERP_BICUBIC ? "bicubic" : "bilinear"));
    bad |= json_object_set_new(o, "crop_pct", json_real(d->crop_pct));
    bad |= json_object_set_new(o, "resize", json_string(vn_eval_resize_name((vn_eval_resize)d->eval_resize)));
    json_t *mean = json_array(), *std = json_array();
    for (int c = 0; c < 3; c++) {
        bad |= json_array_append_new(mean, json_real(d->mean[c]));
        bad |= json_array_append_new(std, json_real(d->std[c]));
    }
    bad |= json_object_set_new(o, "mean", mean);
    bad |= json_object_set_new(o, "std", std);
    char *s = bad ? NULL : vn__json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* Metadata every file we write for a model carries: what it is, how to feed it. */
int vn__write_model_meta(vn_st_writer *w, const vn_vanillanet *m, const vn_config *cfg,
                         const vn_ckpt_info *data, const char *const *class_names, int n_classes,
                         vn_error *err)
{
    vn_ckpt_info from_cfg;
    memset(&from_cfg, 0, sizeof from_cfg);
    if (cfg) vn__data_from_config(cfg, &from_cfg);
    if (cfg) data = &from_cfg;
    char *model = vn_vanillanet_config_json(&m->cfg, m->deploy);
    char *classes = class_names ? classes_json(class_names, n_classes) : NULL;
    bool want_data = data && data->has_data;
    char *data_text = want_data ? data_json(data) : NULL;
    int rc = VN_OK;
    for (int c = 0; class_names && c < n_classes && rc == VN_OK; c++)
        if (class_names[c] && !vn_utf8_valid(class_names[c])) /* JSON holds UTF-8 only */
            rc = vn_error_set(err, VN_ERR_INVALID, "class name %d is not UTF-8 text", c);
    if (rc == VN_OK)
        rc = !model || (class_names && !classes) || (want_data && !data_text)
                 ? vn_error_set(err, VN_ERR_NOMEM, "out of memory describing the model")
                 : vn_st_set_meta(w, "format", "pt", err);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "vanilla.model", model, err);
    if (rc == VN_OK && classes) rc = vn_st_set_meta(w, "vanilla.classes", classes, err);
    if (rc == VN_OK && data_text) rc = vn_st_set_meta(w, "vanilla.data", data_text, err);
    free(model);
    free(classes);
    free(data_text);
    return rc;
}

int vn_ckpt_save(const char *path, const vn_ckpt_parts *p, vn_error *err)
{
    vn_st_writer *w = vn_st_writer_new();
    if (!w) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = vn_state_to_writer(&p->model->state, "model.", w, err);
    for (int i = 0; rc == VN_OK && p->optim && i < vn_optim_state_count(p->optim); i++) {
        vn_ckpt_entry e;
        rc = vn_optim_state_at(p->optim, i, &e);
        if (rc == VN_OK)
            rc = vn_st_add(w, e.name, e.dtype, e.ndim,
                           e.shape, e.data, err);
    }
    char prefix[32];
    for (int i = 0; rc == VN_OK && i < p->n_emas; i++) {
        snprintf(prefix, sizeof prefix, "ema.%d.", i);
        rc = vn_state_to_writer(&p->emas[i]->state, prefix, w, err);
    }
    if (rc == VN_OK) rc = vn__write_model_meta(w, p->model, p->cfg, NULL, p->class_names, p->n_classes, err);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "vanilla.kind", "checkpoint", err);
    char num[32];
    snprintf(num, sizeof num, "%d", p->n_emas);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "vanilla.emas", num, err);
    if (rc == VN_OK && p->state) {
        json_t *o = state_to_json(p->state);
        char *s = o ? vn__json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        rc = s ? vn_st_set_meta(w, "vanilla.trainer", s, err)
               : vn_error_set(err, VN_ERR_NOMEM, "out of memory writing the trainer state");
        free(s);
    }
    if (rc == VN_OK && p->cfg) {
        char *yaml = vn_config_to_yaml(p->cfg, 0);
        char hash[17];
        vn_config_hash_hex(p->cfg, hash);
        rc = yaml ? vn_st_set_meta(w, "vanilla.config", yaml, err)
                  : vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        if (rc == VN_OK) rc = vn_st_set_meta(w, "vanilla.config_hash", hash, err);
        free(yaml);
    }
    if (rc == VN_OK) rc = vn_st_write(w, path, VN_ST_CRC32, err);
    vn_st_writer_free(w);
    return rc;
}

/* The file's optimizer entries match the optimizer (nothing is written). */
int vn__ckpt_optim_check(const vn_st_file *f, const char *path, vn_optim *opt, vn_error *err)
{
    for (int i = 0; i < vn_optim_state_count(opt); i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(opt, i, &e);
        const vn_st_entry *fe = vn_st_find(f, e.name);
        if (!fe)
            return vn_error_set(err, VN_ERR_NOT_FOUND, "%s: missing optimizer state '%s' (was the "
                                "checkpoint written with another optimizer?)", path, e.name);
        if (fe->dtype != VN_DTYPE_F32 && fe->dtype != VN_DTYPE_I64)
            return vn_error_set(err, VN_ERR_FORMAT, "%s: '%s' has dtype %s", path, e.name,
                                vn_dtype_name(fe->dtype));
        int rc = vn_ckpt_entry_check(&e, fe->dtype == VN_DTYPE_I64 ? VN_DTYPE_I64 : VN_DTYPE_F32,
                                      fe->ndim, fe->shape, fe->data, fe->nbytes, err);
        if (rc != VN_OK) {
            vn_error_prefix(err, "%s: ", path);
            return rc;
        }
    }
    return VN_OK;
}

/* Copies the optimizer state between the optimizer and a flat buffer (either way). */
static void optim_swap_copy(vn_optim *opt, uint8_t *buf, bool to_buf)
{
    size_t off = 0;
    for (int i = 0; i < vn_optim_state_count(opt); i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(opt, i, &e);
        size_t n = vn_ckpt_entry_nbytes(&e);
        if (n) memcpy(to_buf ? buf + off : e.data, to_buf ? e.data : buf + off, n);
        off += n;
    }
}

/* Loads checked optimizer entries and validates the values (vn_optim_state_loaded); when the
 * values are refused, the optimizer gets its previous state back from a copy taken first. */
static int optim_apply(const vn_st_file *f, const char *path, vn_optim *opt, vn_error *err)
{
    size_t total = 0;
    for (int i = 0; i < vn_optim_state_count(opt); i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(opt, i, &e);
        total += vn_ckpt_entry_nbytes(&e);
    }
    uint8_t *backup = malloc(total ? total : 1);
    if (!backup)
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory: %zu bytes to load the "
                            "optimizer state", path, total);
    optim_swap_copy(opt, backup, true);
    for (int i = 0; i < vn_optim_state_count(opt); i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(opt, i, &e);
        const vn_st_entry *fe = vn_st_find(f, e.name);
        if (fe->nbytes) memcpy(e.data, fe->data, fe->nbytes);
    }
    int rc = vn_optim_state_loaded(opt, err);
    if (rc != VN_OK) {
        vn_error_prefix(err, "%s: ", path);
        optim_swap_copy(opt, backup, false);
    }
    free(backup);
    return rc;
}

/* Everything in the file checked against the parts before anything is written. */
static int ckpt_check(const vn_st_file *f, const char *path, const vn_ckpt_parts *p,
                      vn_train_state *state, vn_error *err)
{
    const char *kind = vn_st_meta(f, "vanilla.kind");
    if (!kind || strcmp(kind, "checkpoint") != 0)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: not a training checkpoint (a weight file?)",
                            path);
    const char *ne = vn_st_meta(f, "vanilla.emas");
    if (!ne || atoi(ne) != p->n_emas)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: holds %s EMA models, this run has %d", path,
                            ne ? ne : "no", p->n_emas);
    int rc = vn_state_check_file(&p->model->state, "model.", f, true, err);
    char prefix[32];
    for (int i = 0; rc == VN_OK && i < p->n_emas; i++) {
        snprintf(prefix, sizeof prefix, "ema.%d.", i);
        rc = vn_state_check_file(&p->emas[i]->state, prefix, f, true, err);
    }
    if (rc == VN_OK && p->optim) rc = vn__ckpt_optim_check(f, path, p->optim, err);
    if (rc == VN_OK && p->state) {
        const char *st = vn_st_meta(f, "vanilla.trainer");
        rc = st ? state_from_json(st, path, state, err)
                : vn_error_set(err, VN_ERR_FORMAT, "%s: no trainer state", path);
    }
    return rc;
}

/* All or nothing: every check (and the one allocation) comes before the first write, so a
 * failed load leaves model, EMAs, optimizer and trainer state as they were. */
int vn_ckpt_load(const char *path, const vn_ckpt_parts *p, vn_error *err)
{
    vn_st_file *f = NULL;
    int rc = vn_st_open(path, &f, err);
    if (rc != VN_OK) return rc;
    vn_train_state state;
    rc = ckpt_check(f, path, p, &state, err);
    if (rc == VN_OK && p->optim) rc = optim_apply(f, path, p->optim, err);
    if (rc == VN_OK) {
        /* Checked above: these copies cannot fail. */
        vn_state_from_file(&p->model->state, "model.", f, true, err);
        char prefix[32];
        for (int i = 0; i < p->n_emas; i++) {
            snprintf(prefix, sizeof prefix, "ema.%d.", i);
            vn_state_from_file(&p->emas[i]->state, prefix, f, true, err);
        }
        if (p->state) *p->state = state;
    }
    vn_st_close(f);
    return rc;
}

static int data_from_json(const char *text, vn_ckpt_info *info)
{
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return -1;
    }
    info->input_size = (int)json_integer_value(json_object_get(o, "input_size"));
    info->channels = (int)json_integer_value(json_object_get(o, "channels"));
    const char *ip = json_string_value(json_object_get(o, "interpolation"));
    info->interpolation = ip && strcmp(ip, "bicubic") == 0 ? VN_INTERP_BICUBIC : VN_INTERP_BILINEAR;
    info->crop_pct = json_number_value(json_object_get(o, "crop_pct"));
    /* Files of older builds: the timm resize + center crop they were evaluated with. */
    const char *rs = json_string_value(json_object_get(o, "resize"));
    info->eval_resize = rs ? vn_eval_resize_parse(rs) : VN_EVAL_RESIZE_CROP;
    for (int c = 0; c < 3; c++) {
        info->mean[c] = (float)json_number_value(json_array_get(json_object_get(o, "mean"), (size_t)c));
        info->std[c] = (float)json_number_value(json_array_get(json_object_get(o, "std"), (size_t)c));
    }
    json_decref(o);
    bool ok = info->input_size > 0 && (info->channels == 1 || info->channels == 3) &&
              info->crop_pct > 0 && info->std[0] > 0;
    return ok && info->eval_resize >= 0 ? 0 : -1;
}

static int info_from_file(const vn_st_file *f, const char *path, const vn_config *cfg,
                          vn_ckpt_info *info, vn_error *err)
{
    memset(info, 0, sizeof *info);
    const char *kind = vn_st_meta(f, "vanilla.kind");
    info->is_checkpoint = kind && strcmp(kind, "checkpoint") == 0;
    const char *model = vn_st_meta(f, "vanilla.model");
    if (!model && cfg) return vn__plain_info(f, path, cfg, info, err);
    if (!model)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: no model description in the metadata (not "
                            "written by vanilla? describe the model with --config/--set)", path);
    int rc = vn_vanillanet_config_from_json(model, path, &info->model, &info->deploy, err);
    if (rc != VN_OK) return rc;
    const char *ne = vn_st_meta(f, "vanilla.emas");
    info->n_emas = ne ? atoi(ne) : 0;
    const char *cy = vn_st_meta(f, "vanilla.config");
    if (cy) info->config_yaml = strdup(cy);
    const char *ch = vn_st_meta(f, "vanilla.config_hash");
    if (ch) snprintf(info->config_hash, sizeof info->config_hash, "%s", ch);
    const char *cl = vn_st_meta(f, "vanilla.classes");
    if (cl) {
        json_error_t je;
        json_t *a = json_loads(cl, 0, &je);
        if (json_is_array(a) && json_array_size(a) > 0) {
            info->n_classes = (int)json_array_size(a);
            info->class_names = calloc((size_t)info->n_classes, sizeof(char *));
            for (int i = 0; info->class_names && i < info->n_classes; i++) {
                const char *s = json_string_value(json_array_get(a, (size_t)i));
                info->class_names[i] = strdup(s ? s : "?");
            }
        }
        json_decref(a);
    }
    const char *dj = vn_st_meta(f, "vanilla.data");
    info->has_data = dj && data_from_json(dj, info) == 0;
    const char *st = vn_st_meta(f, "vanilla.trainer");
    if (info->is_checkpoint && st) return state_from_json(st, path, &info->state, err);
    return VN_OK;
}

int vn_ckpt_info_read(const char *path, vn_ckpt_info *info, vn_error *err)
{
    return vn_ckpt_info_read_cfg(path, NULL, info, err);
}

int vn_ckpt_info_read_cfg(const char *path, const vn_config *cfg, vn_ckpt_info *info, vn_error *err)
{
    vn_st_file *f = NULL;
    memset(info, 0, sizeof *info);
    int rc = vn_st_open(path, &f, err);
    if (rc != VN_OK) return rc;
    rc = info_from_file(f, path, cfg, info, err);
    vn_st_close(f);
    if (rc != VN_OK) vn_ckpt_info_free(info);
    return rc;
}

void vn_ckpt_info_free(vn_ckpt_info *info)
{
    free(info->config_yaml);
    for (int i = 0; i < info->n_classes && info->class_names; i++) free(info->class_names[i]);
    free(info->class_names);
    memset(info, 0, sizeof *info);
}

int vn_open_model(const char *path, int ema_index, vn_vanillanet **model, vn_ckpt_info *info,
                  vn_error *err)
{
    return vn_open_model_cfg(path, ema_index, NULL, model, info, err);
}

int vn_open_model_cfg(const char *path, int ema_index, const vn_config *cfg, vn_vanillanet **model,
                      vn_ckpt_info *info, vn_error *err)
{
    *model = NULL;
    vn_st_file *f = NULL;
    int rc = vn_st_open(path, &f, err);
    if (rc != VN_OK) return rc;
    rc = info_from_file(f, path, cfg, info, err);
    char prefix[32] = "";
    if (rc == VN_OK && info->plain) snprintf(prefix, sizeof prefix, "%s", info->prefix);
    if (rc == VN_OK && info->is_checkpoint) {
        if (ema_index >= info->n_emas)
            rc = vn_error_set(err, VN_ERR_NOT_FOUND, "%s: EMA copy %d requested, the checkpoint "
                              "holds %d", path, ema_index, info->n_emas);
        else if (ema_index >= 0) snprintf(prefix, sizeof prefix, "ema.%d.", ema_index);
        else snprintf(prefix, sizeof prefix, "model.");
    } else if (rc == VN_OK && ema_index >= 0) {
        rc = vn_error_set(err, VN_ERR_INVALID, "%s: a weight file has no EMA copies", path);
    }
    vn_vanillanet *m = NULL;
    if (rc == VN_OK) rc = vn_vanillanet_create(&info->model, info->deploy, &m, err);
    if (rc == VN_OK && info->plain) rc = vn_state_check_all(m, f, prefix, info->deploy, err);
    if (rc == VN_OK) rc = vn_state_from_file(&m->state, prefix, f, info->is_checkpoint ? false : true, err);
    if (rc == VN_OK && info->is_checkpoint) vn_vanillanet_change_act(m, (float)info->state.act_learn);
    vn_st_close(f);
    if (rc != VN_OK) {
        vn_vanillanet_destroy(m);
        vn_ckpt_info_free(info);
        return rc;
    }
    vn_vanillanet_set_training(m, false);
    *model = m;
    return VN_OK;
}

/* Checkpoint names: ckpt-s<step, 10 digits>.safetensors sort by step. */
static int is_ckpt_name(const char *n)
{
    size_t len = strlen(n);
    return strncmp(n, "ckpt-", 5) == 0 && len > 17 && strcmp(n + len - 12, ".safetensors") == 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void vn__ckpt_list_free(char **names, int n)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

int vn__fresh_run_check(const char *run_dir, vn_error *err)
{
    char **names = NULL;
    int n = 0;
    vn_error e2 = {0};
    int rc = vn__ckpt_list(run_dir, &names, &n, &e2);
    if (rc == VN_ERR_NOT_FOUND) return VN_OK; /* no checkpoints folder: a new run */
    if (rc != VN_OK) return vn_error_set(err, rc, "%s", e2.msg);
    if (n > 0)
        rc = vn_error_set(err, VN_ERR_INVALID, "%s already holds a run (its newest checkpoint is "
                          "checkpoints/%s): continue it with --resume auto, or set another "
                          "output.dir (a new run there would mix its files with the old run's); "
                          "delete the folder to start over", run_dir, names[n - 1]);
    vn__ckpt_list_free(names, n);
    return rc;
}

int vn__ckpt_list(const char *run_dir, char ***names_out, int *n_out, vn_error *err)
{
    *names_out = NULL;
    *n_out = 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    DIR *d = opendir(dir);
    if (!d) return vn_error_set(err, VN_ERR_NOT_FOUND, "no checkpoints in %s", run_dir);
    char **names = NULL;
    int n = 0, cap = 0, rc = VN_OK;
    struct dirent *de;
    while (rc == VN_OK && (de = readdir(d))) {
        if (!is_ckpt_name(de->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory listing %s", dir);
            else names = nn;
        }
        if (rc == VN_OK && !(names[n++] = strdup(de->d_name)))
            rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory listing %s", dir);
    }
    closedir(d);
    if (rc != VN_OK) {
        vn__ckpt_list_free(names, n);
        return rc;
    }
    /* Zero-padded step numbers: name order is age order. */
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_name);
    *names_out = names;
    *n_out = n;
    return VN_OK;
}

int vn__resume_path(const char *want, const char *run_dir, FILE *out, char *path, size_t len,
                    vn_error *err)
{
    path[0] = 0;
    if (strcmp(want, "auto") != 0) {
        snprintf(path, len, "%s", want);
        return VN_OK;
    }
    vn_error e2 = {0};
    int rc = vn_ckpt_find_latest(run_dir, path, len, &e2);
    if (rc == VN_ERR_NOT_FOUND) {
        path[0] = 0;
        fprintf(out, "resume: no checkpoint in %s yet, starting from scratch\n", run_dir);
        return VN_OK;
    }
    return rc == VN_OK ? VN_OK : vn_error_set(err, rc, "%s", e2.msg);
}

int vn_ckpt_find_latest(const char *run_dir, char *path, size_t len, vn_error *err)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    char **names = NULL;
    int n = 0;
    int rc = vn__ckpt_list(run_dir, &names, &n, err);
    if (rc != VN_OK) return rc;
    rc = vn_error_set(err, VN_ERR_NOT_FOUND, "no checkpoints in %s", dir);
    for (int i = n - 1; i >= 0; i--) {
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        vn_st_file *f = NULL;
        vn_error e2 = {0};
        if (vn_st_open(p, &f, &e2) == VN_OK) {
            vn_st_close(f);
            snprintf(path, len, "%s", p);
            rc = VN_OK;
            break;
        }
        vn_log(VN_LOG_WARN, "checkpoint %s is unusable (%s); trying the one before", p, e2.msg);
        rc = vn_error_set(err, VN_ERR_FORMAT, "no valid checkpoint in %s (newest problem: %s)", dir, e2.msg);
    }
    vn__ckpt_list_free(names, n);
    return rc;
}

int vn__run_lock(const char *run_dir, int *fd_out, vn_error *err)
{
    *fd_out = -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/.lock", run_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return vn_error_set(err, VN_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char who[32] = "";
        ssize_t n = pread(fd, who, sizeof who - 1, 0);
        who[n > 0 ? n : 0] = 0;
        who[strcspn(who, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            return vn_error_set(err, VN_ERR_STATE, "%s is in use by another training (process %s): "
                                "two runs writing one folder would mix their checkpoints; wait "
                                "for it, stop it, or set another output.dir", run_dir,
                                who[0] ? who : "?");
        return vn_error_set(err, VN_ERR_IO, "cannot lock %s: %s", path, strerror(e));
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        /* the pid is only for the message above: the lock itself holds */
    }
    *fd_out = fd;
    return VN_OK;
}

void vn__run_folder_note(const char *run_dir, vn__run_made *made)
{
    char ck[4096];
    snprintf(ck, sizeof ck, "%s/checkpoints", run_dir);
    struct stat st;
    made->dir = stat(run_dir, &st) != 0 && errno == ENOENT;
    made->ckdir = stat(ck, &st) != 0 && errno == ENOENT;
}

void vn__run_folder_undo(const char *run_dir, const vn__run_made *made)
{
    char p[4096];
    if (made->ckdir) {
        snprintf(p, sizeof p, "%s/checkpoints", run_dir);
        rmdir(p); /* fails, as it should, when something was written there */
    }
    if (made->dir) {
        snprintf(p, sizeof p, "%s/.lock", run_dir);
        DIR *d = opendir(run_dir);
        int others = 0;
        for (struct dirent *e; d && (e = readdir(d));)
            others += strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, ".lock");
        if (d) closedir(d);
        if (!others) unlink(p);
        rmdir(run_dir);
    }
}

void vn__run_unlock(int fd)
{
    if (fd >= 0) close(fd); /* the lock goes with the descriptor; the file stays */
}

int vn_ckpt_dir_prepare(const char *dir, vn_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return vn_error_set(err, VN_ERR_IO, "%s: cannot open the checkpoint folder: %s", dir,
                            strerror(errno));
    closedir(d);
    int removed = vn_fs_sweep_stale_tmps(dir);
    if (removed)
        vn_log(VN_LOG_INFO, "%s: removed %d temporary file(s) of interrupted writes", dir, removed);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.vn_write_probe.tmp.%ld", dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return vn_error_set(err, VN_ERR_IO, "%s: cannot write checkpoints there: %s", dir,
                            strerror(errno));
    close(fd);
    unlink(probe);
    return VN_OK;
}

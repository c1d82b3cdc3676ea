/* Detector files: checkpoints (model, optimizer, trainer state, config) and weight files
 * (the model alone, merged or not), one safetensors format told apart from the classifier's by
 * the metadata key vanilla.task = "detect". Tensor names are the detector's state_dict names
 * ("model.{i}....", Ultralytics' layout); the optimizer's go under "optim.". */
#include "train/vn_detect.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_impl.h"

#define EMA_PREFIX "ema."

/* ---- metadata -------------------------------------------------------------------------------- */

static char *dumps(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

char *vn__detector_json(const vn_yolo *m)
{
    const vn_yolo_config *c = vn_yolo_get_config(m);
    char *bb = vn_vanillanet_config_json(&c->backbone, false);
    json_t *b = bb ? json_loads(bb, 0, NULL) : NULL;
    free(bb);
    if (!b) return NULL;
    json_t *o = json_object();
    /* json_object_set_new fails (-1) when a value could not be allocated: then no JSON at all
     * rather than one with a key missing. */
    int bad = json_object_set_new(o, "arch", json_string("yolo11-vanillanet"));
    bad |= json_object_set_new(o, "backbone", b);
    bad |= json_object_set_new(o, "nc", json_integer(c->nc));
    bad |= json_object_set_new(o, "depth_multiple", json_real(c->depth_multiple));
    bad |= json_object_set_new(o, "width_multiple", json_real(c->width_multiple));
    bad |= json_object_set_new(o, "max_channels", json_integer(c->max_channels));
    bad |= json_object_set_new(o, "c3k", json_boolean(c->c3k));
    bad |= json_object_set_new(o, "reg_max", json_integer(c->reg_max));
    bad |= json_object_set_new(o, "deploy", json_boolean(vn_yolo_is_deploy(m)));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return dumps(o);
}

static int detector_from_json(const char *text, const char *path, vn_yolo_config *c, bool *deploy,
                              vn_error *err)
{
    json_t *o = json_loads(text, 0, NULL);
    json_t *b = o ? json_object_get(o, "backbone") : NULL;
    char *bt = b ? json_dumps(b, JSON_COMPACT) : NULL;
    int rc = VN_OK;
    vn_yolo_config_default(c);
    if (!bt || !json_is_integer(json_object_get(o, "nc"))) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: vanilla.detector is malformed", path);
    } else {
        bool bd;
        rc = vn_vanillanet_config_from_json(bt, path, &c->backbone, &bd, err);
        c->nc = (int)json_integer_value(json_object_get(o, "nc"));
        c->depth_multiple = (float)json_number_value(json_object_get(o, "depth_multiple"));
        c->width_multiple = (float)json_number_value(json_object_get(o, "width_multiple"));
        c->max_channels = (int)json_integer_value(json_object_get(o, "max_channels"));
        c->c3k = json_is_true(json_object_get(o, "c3k"));
        c->reg_max = (int)json_integer_value(json_object_get(o, "reg_max"));
        *deploy = json_is_true(json_object_get(o, "deploy"));
        if (rc == VN_OK && vn_yolo_config_check(c, err) != VN_OK)
            rc = vn_error_prefix(err, "%s: ", path);
    }
    free(bt);
    json_decref(o);
    return rc;
}

static char *state_json(const vn_detect_state *s)
{
    json_t *o = json_object(), *rng = json_array();
    json_object_set_new(o, "epoch", json_integer(s->epoch));
    json_object_set_new(o, "position", json_integer(s->position));
    json_object_set_new(o, "step", json_integer(s->step));
    json_object_set_new(o, "act_learn", json_real(s->act_learn));
    for (int i = 0; i < 4; i++) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, s->rng.s[i]);
        json_array_append_new(rng, json_string(hex));
    }
    json_object_set_new(o, "rng", rng);
    json_object_set_new(o, "best_fitness", json_real(s->best_fitness));
    json_object_set_new(o, "best_epoch", json_integer(s->best_epoch));
    json_object_set_new(o, "elapsed", json_real(s->elapsed));
    json_object_set_new(o, "finished", json_boolean(s->finished));
    json_object_set_new(o, "ema_updates", json_integer(s->ema_updates));
    json_object_set_new(o, "skipped_in_row", json_integer(s->skipped_in_row));
    return dumps(o);
}

static int state_from_json(const char *text, const char *path, vn_detect_state *s, vn_error *err)
{
    json_t *o = text ? json_loads(text, 0, NULL) : NULL;
    json_t *rng = o ? json_object_get(o, "rng") : NULL;
    int rc = VN_OK;
    memset(s, 0, sizeof *s);
    if (!json_is_integer(json_object_get(o, "step")) || json_array_size(rng) != 4) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: trainer state missing or malformed", path);
    } else {
        s->epoch = json_integer_value(json_object_get(o, "epoch"));
        s->position = json_integer_value(json_object_get(o, "position"));
        s->step = json_integer_value(json_object_get(o, "step"));
        s->act_learn = json_number_value(json_object_get(o, "act_learn"));
        for (int i = 0; i < 4 && rc == VN_OK; i++) {
            const char *h = json_string_value(json_array_get(rng, (size_t)i));
            if (!h || sscanf(h, "%16" SCNx64, &s->rng.s[i]) != 1)
                rc = vn_error_set(err, VN_ERR_FORMAT, "%s: bad RNG state", path);
        }
        s->best_fitness = json_number_value(json_object_get(o, "best_fitness"));
        s->best_epoch = json_integer_value(json_object_get(o, "best_epoch"));
        s->elapsed = json_number_value(json_object_get(o, "elapsed"));
        s->finished = json_is_true(json_object_get(o, "finished"));
        s->ema_updates = json_integer_value(json_object_get(o, "ema_updates"));
        s->skipped_in_row = json_integer_value(json_object_get(o, "skipped_in_row"));
        if (rc == VN_OK && (s->epoch < 0 || s->position < 0 || s->step < 0 || s->ema_updates < 0))
            rc = vn_error_set(err, VN_ERR_FORMAT, "%s: negative counters in the trainer state", path);
    }
    json_decref(o);
    return rc;
}

static char *names_json(const char *const *names, int nc)
{
    json_t *a = json_array();
    for (int i = 0; i < nc; i++) json_array_append_new(a, json_string(names[i]));
    return dumps(a);
}

/* ---- save / load ----------------------------------------------------------------------------- */

static int set_meta_owned(vn_st_writer *w, const char *key, char *value, vn_error *err)
{
    int rc = value ? vn_st_set_meta(w, key, value, err)
                   : vn_error_set(err, VN_ERR_NOMEM, "out of memory describing the detector");
    free(value);
    return rc;
}

int vn_detect_ckpt_save(const char *path, const vn_detect_ckpt *c, vn_error *err)
{
    vn_st_writer *w = vn_st_writer_new();
    if (!w) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = vn_state_to_writer(vn_yolo_state(c->model), "", w, err);
    if (rc == VN_OK && c->ema) rc = vn_state_to_writer(vn_yolo_state(c->ema), EMA_PREFIX, w, err);
    for (int i = 0; rc == VN_OK && c->optim && i < vn_optim_state_count(c->optim); i++) {
        vn_ckpt_entry e;
        rc = vn_optim_state_at(c->optim, i, &e);
        if (rc == VN_OK) rc = vn_st_add(w, e.name, e.dtype, e.ndim, e.shape, e.data, err);
    }
    char num[32];
    snprintf(num, sizeof num, "%d", c->imgsz);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "format", "pt", err);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "vanilla.task", "detect", err);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "vanilla.kind", c->state ? "checkpoint" : "weights", err);
    if (rc == VN_OK) rc = set_meta_owned(w, "vanilla.detector", vn__detector_json(c->model), err);
    if (rc == VN_OK) rc = set_meta_owned(w, "vanilla.classes", names_json(c->names, c->nc), err);
    if (rc == VN_OK) rc = vn_st_set_meta(w, "vanilla.imgsz", num, err);
    if (rc == VN_OK && c->state) rc = set_meta_owned(w, "vanilla.trainer", state_json(c->state), err);
    if (rc == VN_OK && c->cfg) {
        char hash[17];
        vn_config_hash_hex(c->cfg, hash);
        rc = set_meta_owned(w, "vanilla.config", vn_config_to_yaml(c->cfg, 0), err);
        if (rc == VN_OK) rc = vn_st_set_meta(w, "vanilla.config_hash", hash, err);
    }
    if (rc == VN_OK) rc = vn_st_write(w, path, VN_ST_CRC32, err);
    vn_st_writer_free(w);
    return rc;
}

int vn_detect_ckpt_load(const char *path, const vn_detect_ckpt *c, vn_error *err)
{
    vn_st_file *f = NULL;
    int rc = vn_st_open(path, &f, err);
    if (rc != VN_OK) return rc;
    vn_detect_state st;
    const char *task = vn_st_meta(f, "vanilla.task");
    if (!task || strcmp(task, "detect") != 0)
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: not a detector file (no vanilla.task: detect)", path);
    const char *mprefix = c->use_ema ? EMA_PREFIX : "";
    if (rc == VN_OK) rc = vn_state_check_file(vn_yolo_state(c->model), mprefix, f, false, err);
    if (rc == VN_OK && c->ema && vn_state_check_file(vn_yolo_state(c->ema), EMA_PREFIX, f, false, err) != VN_OK)
        rc = vn_error_prefix(err, "%s: no usable EMA weights (written with detect.ema_decay 0?): ", path);
    if (rc == VN_OK && c->optim) rc = vn__ckpt_optim_check(f, path, c->optim, err);
    if (rc == VN_OK && c->state) rc = state_from_json(vn_st_meta(f, "vanilla.trainer"), path, &st, err);
    if (rc == VN_OK) rc = vn_state_from_file(vn_yolo_state(c->model), mprefix, f, false, err);
    if (rc == VN_OK && c->ema) rc = vn_state_from_file(vn_yolo_state(c->ema), EMA_PREFIX, f, false, err);
    for (int i = 0; rc == VN_OK && c->optim && i < vn_optim_state_count(c->optim); i++) {
        vn_ckpt_entry e;
        vn_optim_state_at(c->optim, i, &e);
        const vn_st_entry *fe = vn_st_find(f, e.name);
        rc = vn_ckpt_entry_load(&e, fe->dtype, fe->ndim, fe->shape, fe->data, fe->nbytes, err);
    }
    if (rc == VN_OK && c->optim) rc = vn_optim_state_loaded(c->optim, err);
    if (rc == VN_OK && c->state) *c->state = st;
    vn_st_close(f);
    return rc;
}

/* ---- describing and opening ------------------------------------------------------------------ */

bool vn_detect_file_is(const char *path)
{
    vn_st_file *f = NULL;
    vn_error e = {0};
    if (vn_st_open(path, &f, &e) != VN_OK) return false;
    const char *t = vn_st_meta(f, "vanilla.task");
    bool yes = t && strcmp(t, "detect") == 0;
    vn_st_close(f);
    return yes;
}

static int names_from_json(const char *text, const char *path, vn_detect_info *info, vn_error *err)
{
    json_t *a = text ? json_loads(text, 0, NULL) : NULL;
    int rc = VN_OK;
    if (!json_is_array(a) || (int)json_array_size(a) != info->model.nc) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: vanilla.classes is not a list of %d names", path,
                          info->model.nc);
    } else {
        info->nc = info->model.nc;
        info->names = calloc((size_t)info->nc, sizeof *info->names);
        for (int i = 0; info->names && i < info->nc; i++) {
            const char *s = json_string_value(json_array_get(a, (size_t)i));
            info->names[i] = strdup(s ? s : "?");
            if (!info->names[i]) rc = VN_ERR_NOMEM;
        }
        if (!info->names || rc != VN_OK) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    json_decref(a);
    return rc;
}

int vn_detect_info_read(const char *path, vn_detect_info *info, vn_error *err)
{
    memset(info, 0, sizeof *info);
    vn_st_file *f = NULL;
    int rc = vn_st_open(path, &f, err);
    if (rc != VN_OK) return rc;
    const char *task = vn_st_meta(f, "vanilla.task"), *det = vn_st_meta(f, "vanilla.detector");
    const char *kind = vn_st_meta(f, "vanilla.kind"), *imgsz = vn_st_meta(f, "vanilla.imgsz");
    if (!task || strcmp(task, "detect") != 0 || !det)
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: not a detector file (no vanilla.task: detect)", path);
    if (rc == VN_OK) rc = detector_from_json(det, path, &info->model, &info->deploy, err);
    if (rc == VN_OK) rc = names_from_json(vn_st_meta(f, "vanilla.classes"), path, info, err);
    if (rc == VN_OK) {
        info->is_checkpoint = kind && strcmp(kind, "checkpoint") == 0;
        info->imgsz = imgsz ? atoi(imgsz) : 640;
        const char *y = vn_st_meta(f, "vanilla.config");
        if (y && !(info->config_yaml = strdup(y))) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        vn_detect_state st;
        vn_error e2 = {0};
        if (info->is_checkpoint && state_from_json(vn_st_meta(f, "vanilla.trainer"), path, &st, &e2) == VN_OK) {
            info->epoch = st.epoch;
            info->step = st.step;
            info->act_learn = st.act_learn;
            info->ema_updates = st.ema_updates;
        }
        for (int i = 0; info->is_checkpoint && i < vn_st_count(f) && !info->has_ema; i++)
            info->has_ema = strncmp(vn_st_at(f, i)->name, EMA_PREFIX, strlen(EMA_PREFIX)) == 0;
    }
    vn_st_close(f);
    if (rc != VN_OK) vn_detect_info_free(info);
    return rc;
}

void vn_detect_info_free(vn_detect_info *info)
{
    for (int i = 0; info->names && i < info->nc; i++) free(info->names[i]);
    free(info->names);
    free(info->config_yaml);
    memset(info, 0, sizeof *info);
}

int vn_detect_open(const char *path, vn_yolo **m, vn_detect_info *info, vn_error *err)
{
    *m = NULL;
    int rc = vn_detect_info_read(path, info, err);
    if (rc != VN_OK) return rc;
    rc = vn_yolo_create(&info->model, m, err);
    if (rc == VN_OK && info->deploy) rc = vn_yolo_switch_to_deploy(*m, true, err);
    if (rc == VN_OK) {
        vn_detect_ckpt c = {*m, NULL, NULL, NULL, NULL, 0, 0, NULL, info->has_ema};
        rc = vn_detect_ckpt_load(path, &c, err);
    }
    if (rc == VN_OK) {
        vn_yolo_change_act(*m, info->is_checkpoint ? (float)info->act_learn : 1.0f);
        vn_yolo_set_training(*m, false);
        return VN_OK;
    }
    vn_yolo_destroy(*m);
    *m = NULL;
    vn_detect_info_free(info);
    return rc;
}

int vn_detect_config_from_json(const char *json, const char *label, vn_yolo_config *c, bool *deploy,
                               vn_error *err)
{
    return detector_from_json(json, label, c, deploy, err);
}

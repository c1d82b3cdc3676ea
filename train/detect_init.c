/* model.init of a detector (model.task: detect): the weights a detector run starts from.
 *
 * Two kinds of file are taken. A detector file written by vanilla (a checkpoint: its live
 * model, or its EMA weights "ema." with model.init_key model_ema; or training-form weights)
 * gives every tensor of the configured detector; Detect's class branch (model.15.cv3.*), whose
 * shapes follow the number of classes, keeps its initialisation where it does not fit. A
 * VanillaNet classifier (vanilla checkpoint or weight file, an official-names safetensors
 * state_dict, or an official torch.save .pth read by io/vn_pth.h) gives the backbone: its
 * tensors go into layer 0 ("model.0." + the classifier's name) and its head (cls*) is dropped.
 * Anything else that does not fit is one error naming the tensors and both shapes. Merged
 * (deploy-form) files are refused: the training form cannot be recovered from them. */
#include "train/vn_detect.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "io/vn_pth.h"
#include "train/train_impl.h"

#define BACKBONE "model.0."           /* layer 0 of the detector (models/vn_yolo.h) */
#define CLASS_BRANCH "model.15.cv3."  /* Detect (layer 15): the class branch of each level */
#define SHOWN_SHAPES 4                /* mismatches of each kind spelled out in the error */
#define SHOWN_NAMES 6

/* Mismatches: the first few of each kind in the error message, every further one as a
 * warning of its own, so that all of them are reported. */
typedef struct mismatch {
    char shapes[560], missing[200], extra[200];
    int n_shapes, n_missing, n_extra;
} mismatch;

static void note(char *buf, size_t cap, int *count, int shown, const char *path, const char *kind,
                 const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* kind ("missing ", "unexpected ", ""): what the warning calls an item beyond the shown. */
static void note(char *buf, size_t cap, int *count, int shown, const char *path, const char *kind,
                 const char *fmt, ...)
{
    char item[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    if (*count < shown) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", item);
    } else {
        vn_log(VN_LOG_WARN, "model.init %s: %s%s", path, kind, item);
    }
    (*count)++;
}

static void note_shape(mismatch *mm, const char *path, const char *name, const vn_state_item *e,
                       const vn_st_entry *fe)
{
    char a[128], b[128];
    note(mm->shapes, sizeof mm->shapes, &mm->n_shapes, SHOWN_SHAPES, path, "",
         "'%s' is %s in the file, %s in the model", name, vn__st_entry_shape(fe, b, sizeof b),
         vn__state_item_shape(e, a, sizeof a));
}

static int mismatch_error(const mismatch *mm, const char *path, const char *what, vn_error *err)
{
    char more[3][32] = {"", "", ""};
    const int over[3] = {mm->n_shapes - SHOWN_SHAPES, mm->n_missing - SHOWN_NAMES,
                         mm->n_extra - SHOWN_NAMES};
    for (int k = 0; k < 3; k++)
        if (over[k] > 0) snprintf(more[k], sizeof more[k], " and %d more", over[k]);
    return vn_error_set(err, VN_ERR_SHAPE, "%s does not fit %s: %d wrong shapes%s%s%s%s; %d missing%s%s%s; "
                        "%d unexpected%s%s%s", path, what, mm->n_shapes, mm->n_shapes ? " (" : "",
                        mm->shapes, more[0], mm->n_shapes ? ")" : "", mm->n_missing,
                        mm->n_missing ? ": " : "", mm->missing, more[1], mm->n_extra,
                        mm->n_extra ? ": " : "", mm->extra, more[2]);
}

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* ---- opening: safetensors, or a torch.save file through io/vn_pth.h ------------------------ */

/* The state_dict one key names (model: the file itself, or its first of model, state_dict,
 * model_ema, module) as an in-memory safetensors file under the official names. */
static int pth_entry(const vn_pth *p, const char *path, const char *one, vn_st_file **f,
                     char *what, size_t what_len, bool *ema, vn_error *err)
{
    vn_st_writer *w = vn_st_writer_new();
    if (!w) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    vn_pth_stats st;
    void *buf = NULL;
    size_t len = 0;
    int rc = vn_pth_state_dict(p, strcmp(one, "model") == 0 ? NULL : one, w, &st, err);
    if (rc == VN_OK) rc = vn_st_serialize(w, 0, &buf, &len, err);
    if (rc == VN_OK) rc = vn_st_open_memory(buf, len, path, f, err);
    *ema = rc == VN_OK && strncmp(st.key, "model_ema", 9) == 0;
    if (rc == VN_OK && st.key[0]) snprintf(what, what_len, " (the .pth's '%s')", st.key);
    else if (rc == VN_OK) snprintf(what, what_len, " (a .pth state_dict)");
    free(buf);
    vn_st_writer_free(w);
    return rc;
}

static int open_pth(const char *path, const char *key, vn_st_file **f, char *what, size_t what_len,
                    bool *ema, vn_error *err)
{
    vn_pth *p = NULL;
    int rc = vn_pth_read(path, &p, err);
    for (const char *k = key; rc == VN_OK;) {
        const char *bar = strchr(k, '|');
        char one[64];
        snprintf(one, sizeof one, "%.*s", bar ? (int)(bar - k) : (int)strlen(k), k);
        rc = pth_entry(p, path, one, f, what, what_len, ema, err);
        if (rc == VN_OK || !bar || rc == VN_ERR_NOMEM) break;
        k = bar + 1;
        rc = VN_OK;
    }
    vn_pth_free(p);
    return rc;
}

/* ---- from a detector file ------------------------------------------------------------------- */

/* Compares the detector's state with the file under prefix; class-branch tensors that do not
 * fit are marked in keep (they stay as initialised). Returns the number of hard mismatches. */
static int compare_detector(const vn_state_list *l, const vn_st_file *f, const char *path,
                            const char *prefix, bool *keep, int *n_keep, mismatch *mm)
{
    char full[512];
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *e = &l->items[i];
        snprintf(full, sizeof full, "%s%s", prefix, e->name);
        const vn_st_entry *fe = vn_st_find(f, full);
        if (fe && vn__state_entry_fits(e, fe)) continue;
        if (starts(e->name, CLASS_BRANCH)) {
            keep[i] = true;
            (*n_keep)++;
        } else if (!fe) {
            note(mm->missing, sizeof mm->missing, &mm->n_missing, SHOWN_NAMES, path, "missing ", "'%s'", full);
        } else {
            note_shape(mm, path, full, e, fe);
        }
    }
    size_t plen = strlen(prefix);
    for (int i = 0; i < vn_st_count(f); i++) {
        const char *name = vn_st_at(f, i)->name;
        if (!starts(name, prefix) || !starts(name + plen, "model.") || vn_state_find(l, name + plen))
            continue;
        note(mm->extra, sizeof mm->extra, &mm->n_extra, SHOWN_NAMES, path, "unexpected ", "'%s'", name);
    }
    return mm->n_shapes + mm->n_missing + mm->n_extra;
}

/* Loads the items of l marked in use; name_from: where the file's name (after prefix) starts
 * in the item's (0: the whole name; strlen(BACKBONE): the classifier's name). */
static int load_items(const vn_state_list *l, const bool *use, size_t name_from, const char *prefix,
                      const vn_st_file *f, int *n_loaded, vn_error *err)
{
    vn_state_list sub = {0};
    sub.items = calloc((size_t)l->n + 1, sizeof *sub.items);
    if (!sub.items) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < l->n; i++) {
        if (!use[i]) continue;
        sub.items[sub.n] = l->items[i];
        sub.items[sub.n++].name = l->items[i].name + name_from;
    }
    int rc = vn_state_from_file(&sub, prefix, f, false, err);
    *n_loaded = sub.n;
    free(sub.items);
    return rc;
}

static void warn_kept(const vn_state_list *l, const bool *keep, int n_keep, const char *path,
                      int file_nc, int nc)
{
    char msg[640] = "", a[128];
    int shown = 0;
    for (int i = 0; i < l->n; i++)
        if (keep[i])
            note(msg, sizeof msg, &shown, 6, path, "fresh ", "%s (now %s)", l->items[i].name,
                 vn__state_item_shape(&l->items[i], a, sizeof a));
    vn_log(VN_LOG_WARN, "model.init %s: %d tensors of Detect's class branch do not fit (%d classes "
           "in the file, %d configured) and keep their fresh initialisation: %s%s", path, n_keep,
           file_nc, nc, msg, n_keep > 6 ? " ..." : "");
}

static int from_detector(vn_yolo *m, const vn_st_file *f, const char *path, const char *key,
                         vn_detect_init_result *res, vn_error *err)
{
    vn_yolo_config fc;
    bool deploy = false;
    int rc = vn_detect_config_from_json(vn_st_meta(f, "vanilla.detector"), path, &fc, &deploy, err);
    if (rc != VN_OK) return rc;
    if (deploy)
        return vn_error_set(err, VN_ERR_INVALID, "%s is a merged (deploy-form) detector, as `vanilla "
                            "export` writes it: a merged backbone cannot be split back into the "
                            "training form; start from a detector checkpoint", path);
    const char *kind = vn_st_meta(f, "vanilla.kind");
    bool ckpt = kind && strcmp(kind, "checkpoint") == 0, has_ema = false;
    for (int i = 0; ckpt && i < vn_st_count(f) && !has_ema; i++)
        has_ema = starts(vn_st_at(f, i)->name, "ema.");
    int idx = -1;
    rc = vn__model_key_pick(path, key, ckpt, has_ema ? 1 : 0, &idx, err);
    if (rc != VN_OK) return rc;
    const char *prefix = idx >= 0 ? "ema." : "";
    const vn_state_list *l = vn_yolo_state(m);
    bool *keep = calloc((size_t)l->n + 1, sizeof *keep), *use = calloc((size_t)l->n + 1, sizeof *use);
    mismatch mm = {0};
    int n_keep = 0;
    if (!keep || !use) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    else if (compare_detector(l, f, path, prefix, keep, &n_keep, &mm) > 0)
        rc = mismatch_error(&mm, path, "the configured detector", err);
    for (int i = 0; rc == VN_OK && i < l->n; i++) use[i] = !keep[i];
    if (rc == VN_OK) rc = load_items(l, use, 0, prefix, f, &res->n_loaded, err);
    if (rc == VN_OK && n_keep) warn_kept(l, keep, n_keep, path, fc.nc, vn_yolo_get_config(m)->nc);
    free(keep);
    free(use);
    if (rc != VN_OK) return rc;
    res->from_detector = true;
    res->ema = idx >= 0;
    res->n_kept = n_keep;
    if (n_keep)
        snprintf(res->line, sizeof res->line, "model.init %s: %d tensors of a detector%s, Detect's "
                 "class branch (%d tensors, %d classes in the file) initialised afresh", path,
                 res->n_loaded, res->ema ? " (EMA weights)" : "", n_keep, fc.nc);
    else
        snprintf(res->line, sizeof res->line, "model.init %s: all %d tensors of a detector%s", path,
                 res->n_loaded, res->ema ? " (EMA weights)" : "");
    return VN_OK;
}

/* ---- from a classifier: its backbone into layer 0 ------------------------------------------ */

/* Strides change no tensor's shape: a classifier described with other strides than the
 * configured backbone loads, with a warning. */
static void warn_strides(const vn_vanillanet_config *file, const vn_vanillanet_config *want,
                         const char *path)
{
    bool same = file->n_stages == want->n_stages;
    for (int i = 0; same && i < want->n_stages; i++) same = file->strides[i] == want->strides[i];
    if (same) return;
    char a[96] = "", b[96] = "";
    for (int i = 0; i < file->n_stages; i++)
        snprintf(a + strlen(a), sizeof a - strlen(a), "%s%d", i ? ", " : "", file->strides[i]);
    for (int i = 0; i < want->n_stages; i++)
        snprintf(b + strlen(b), sizeof b - strlen(b), "%s%d", i ? ", " : "", want->strides[i]);
    vn_log(VN_LOG_WARN, "model.init %s: the classifier was built with strides [%s], the detector's "
           "backbone has [%s]; its weights are loaded as they are", path, a, b);
}

/* Where the classifier's tensors are (prefix) and in which form; what names the source. */
static int classifier_layout(const vn_st_file *f, const char *path, const char *key,
                             const vn_vanillanet_config *want, char *prefix, size_t len,
                             bool *deploy, int *idx, char *what, size_t what_len, vn_error *err)
{
    const char *meta = vn_st_meta(f, "vanilla.model");
    *idx = -1;
    if (!meta) {
        int rc = vn_plain_detect(f, prefix, len, deploy, err);
        if (rc != VN_OK) {
            vn_error_prefix(err, "neither a detector written by vanilla nor a VanillaNet classifier: ");
            return rc;
        }
        if (!what[0]) snprintf(what, what_len, " (an official-names state_dict)");
        return vn__model_key_pick(path, key, false, 0, idx, err);
    }
    vn_vanillanet_config c;
    int rc = vn_vanillanet_config_from_json(meta, path, &c, deploy, err);
    const char *kind = vn_st_meta(f, "vanilla.kind"), *ne = vn_st_meta(f, "vanilla.emas");
    bool ckpt = kind && strcmp(kind, "checkpoint") == 0;
    if (rc == VN_OK) rc = vn__model_key_pick(path, key, ckpt, ne ? atoi(ne) : 0, idx, err);
    if (rc != VN_OK) return rc;
    if (!*deploy) warn_strides(&c, want, path);
    if (*idx >= 0) snprintf(prefix, len, "ema.%d.", *idx);
    else snprintf(prefix, len, "%s", ckpt ? "model." : "");
    if (*idx >= 0) snprintf(what, what_len, " (EMA weights %d)", *idx);
    return VN_OK;
}

/* Backbone items against the file under prefix; the file's other tensors are the dropped
 * head (cls*) or, anything else, unexpected. Returns the number of hard mismatches. */
static int compare_backbone(const vn_state_list *l, const vn_st_file *f, const char *path,
                            const char *prefix, bool *use, int *n_dropped, mismatch *mm)
{
    char full[512];
    size_t blen = strlen(BACKBONE), plen = strlen(prefix);
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *e = &l->items[i];
        if (!starts(e->name, BACKBONE)) continue;
        snprintf(full, sizeof full, "%s%s", prefix, e->name + blen);
        const vn_st_entry *fe = vn_st_find(f, full);
        if (!fe)
            note(mm->missing, sizeof mm->missing, &mm->n_missing, SHOWN_NAMES, path, "missing ", "'%s'", full);
        else if (!vn__state_entry_fits(e, fe)) note_shape(mm, path, full, e, fe);
        else use[i] = true;
    }
    for (int i = 0; i < vn_st_count(f); i++) {
        const char *name = vn_st_at(f, i)->name;
        if (!starts(name, prefix)) continue;
        snprintf(full, sizeof full, "%s%s", BACKBONE, name + plen);
        if (vn_state_find(l, full)) continue;
        if (starts(name + plen, "cls")) (*n_dropped)++;
        else note(mm->extra, sizeof mm->extra, &mm->n_extra, SHOWN_NAMES, path, "unexpected ", "'%s'", name);
    }
    return mm->n_shapes + mm->n_missing + mm->n_extra;
}

static int from_classifier(vn_yolo *m, const vn_st_file *f, const char *path, const char *key,
                           char *what, size_t what_len, vn_detect_init_result *res, vn_error *err)
{
    char prefix[32];
    bool deploy = false;
    int idx = -1;
    const vn_vanillanet_config *bc = &vn_yolo_get_config(m)->backbone;
    int rc = classifier_layout(f, path, key, bc, prefix, sizeof prefix, &deploy, &idx, what, what_len,
                               err);
    if (rc != VN_OK) return rc;
    if (deploy)
        return vn_error_set(err, VN_ERR_INVALID, "%s holds a merged (deploy-form) VanillaNet: a merged "
                            "network cannot be split back into the training form the detector's "
                            "backbone trains in; start from the classifier's checkpoint or its "
                            "training-form weights (the official state_dict before switch_to_deploy)", path);
    const vn_state_list *l = vn_yolo_state(m);
    bool *use = calloc((size_t)l->n + 1, sizeof *use);
    if (!use) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    mismatch mm = {0};
    if (compare_backbone(l, f, path, prefix, use, &res->n_dropped, &mm) > 0) {
        char desc[160];
        snprintf(desc, sizeof desc, "the configured backbone (model.0: %d stages, widths %d..%d, "
                 "act_num %d, %d input channels)", bc->n_stages, bc->dims[0], bc->dims[bc->n_stages],
                 bc->act_num, bc->in_chans);
        rc = mismatch_error(&mm, path, desc, err);
    }
    if (rc == VN_OK) rc = load_items(l, use, strlen(BACKBONE), prefix, f, &res->n_loaded, err);
    free(use);
    if (rc != VN_OK) return rc;
    res->ema = idx >= 0;
    snprintf(res->line, sizeof res->line, "model.init %s: backbone of a classifier%s, %d tensors into "
             "model.0, %d classifier tensors dropped", path, what, res->n_loaded, res->n_dropped);
    return VN_OK;
}

int vn_detect_init_from(vn_yolo *m, const char *path, const char *key, vn_detect_init_result *res,
                        vn_error *err)
{
    memset(res, 0, sizeof *res);
    if (!key || !key[0]) key = "model";
    if (vn_yolo_is_deploy(m))
        return vn_error_set(err, VN_ERR_INVALID, "model.init: the detector to start is merged; "
                            "weights are loaded into the training form only");
    vn_st_file *f = NULL;
    char what[96] = ""; /* a .pth: the entry taken (the key chose it), then a plain state_dict */
    bool pth_ema = false;
    int rc = vn_pth_looks_like(path) ? open_pth(path, key, &f, what, sizeof what, &pth_ema, err)
                                 : vn_st_open(path, &f, err);
    if (rc == VN_OK) {
        const char *task = vn_st_meta(f, "vanilla.task");
        if (task && strcmp(task, "detect") == 0) rc = from_detector(m, f, path, key, res, err);
        else if (what[0]) rc = from_classifier(m, f, path, "model", what, sizeof what, res, err);
        else rc = from_classifier(m, f, path, key, what, sizeof what, res, err);
    }
    vn_st_close(f);
    if (rc != VN_OK) vn_error_prefix(err, "model.init: ");
    res->ema |= rc == VN_OK && pth_ema;
    return rc;
}

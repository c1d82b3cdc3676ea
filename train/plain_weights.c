/* Weight files without vanilla's metadata: a safetensors state_dict with the official names
 * as PyTorch writes it (safetensors.torch.save_file(model.state_dict())). The architecture
 * comes from a config, the training or deploy form from the key set, the class count from the
 * classifier when the config leaves it open. Also the fine-tuning load of model.init, which
 * takes every tensor that fits and leaves a mismatched classifier freshly initialised. */
#include "train/train_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/vn_pth.h"

/* A mismatch list: the first few of each kind go in the error message, all of them to the
 * log when they do not fit. */
typedef struct mismatch {
    char shapes[640], missing[400], extra[400];
    int n_shapes, n_missing, n_extra;
} mismatch;

static void append(char *buf, size_t cap, int *count, int shown_max, const char *fmt, const char *a,
                   const char *b, const char *c)
{
    if (*count < shown_max) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, fmt, len ? ", " : "", a, b, c);
    }
    (*count)++;
}

/* The stem's and classifier's names in each form. */
static const char *stem_key(bool deploy) { return deploy ? "stem.0.weight" : "stem1.0.weight"; }
static const char *head_key(bool deploy) { return deploy ? "cls.2.weight" : "cls2.0.weight"; }

static const vn_st_entry *find_p(const vn_st_file *f, const char *prefix, const char *name)
{
    char full[512];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return vn_st_find(f, full);
}

int vn_plain_detect(const vn_st_file *f, char *prefix, size_t len, bool *deploy, vn_error *err)
{
    static const char *const prefixes[] = {"", "module.", "model.", "model.module.", "state_dict."};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        for (int d = 0; d < 2; d++) {
            if (find_p(f, prefixes[i], stem_key(d))) {
                snprintf(prefix, len, "%s", prefixes[i]);
                *deploy = d;
                return VN_OK;
            }
        }
    }
    return vn_error_set(err, VN_ERR_FORMAT, "%s: no 'stem1.0.weight' (training form) or "
                        "'stem.0.weight' (deploy form): not a VanillaNet state_dict", vn_st_path(f));
}

/* Widths and stage count the file's tensors imply, and the released variant they match. */
static void describe_file(const vn_st_file *f, const char *prefix, bool deploy, int in_chans,
                          char *buf, size_t len)
{
    vn_vanillanet_config c = {0};
    const vn_st_entry *e = find_p(f, prefix, stem_key(deploy));
    if (!e || e->ndim != 4) {
        buf[0] = 0;
        return;
    }
    c.dims[0] = (int)e->shape[0];
    char key[64];
    while (c.n_stages < VN_MAX_STAGES) {
        snprintf(key, sizeof key, deploy ? "stages.%d.conv.weight" : "stages.%d.conv2.0.weight", c.n_stages);
        if (!(e = find_p(f, prefix, key)) || e->ndim < 1) break;
        c.dims[++c.n_stages] = (int)e->shape[0];
    }
    int n = snprintf(buf, len, " The file holds %d stages of widths [", c.n_stages);
    for (int i = 0; i <= c.n_stages && n < (int)len; i++)
        n += snprintf(buf + n, len - (size_t)n, "%s%d", i ? ", " : "", c.dims[i]);
    if (n < (int)len) n += snprintf(buf + n, len - (size_t)n, "]");
    for (const char *const *v = vn_vanillanet_variant_names(); *v && n < (int)len; v++) {
        vn_vanillanet_config vc;
        if (vn_vanillanet_variant(*v, &vc, NULL) != VN_OK || vc.n_stages != c.n_stages) continue;
        bool same = true;
        for (int i = 0; same && i <= c.n_stages; i++) same = vc.dims[i] == c.dims[i];
        if (same) {
            n += snprintf(buf + n, len - (size_t)n, " (%s: --set model.name=%s)", *v, *v);
            break;
        }
    }
    (void)in_chans;
}

bool vn__state_entry_fits(const vn_state_item *e, const vn_st_entry *fe)
{
    if (e->kind == VN_STATE_COUNT) return fe->dtype == VN_DTYPE_I64 && fe->numel == 1;
    const vn_tensor *t = e->tensor;
    int64_t shape[VN_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
    if ((t->flags & VN_TENSOR_OHWI) && t->ndim == 4) shape[1] = t->shape[3], shape[2] = t->shape[1], shape[3] = t->shape[2];
    if (!vn_dtype_is_float(fe->dtype) || fe->ndim != t->ndim) return false; /* read as float32 */
    for (int d = 0; d < t->ndim; d++)
        if (fe->shape[d] != shape[d]) return false;
    return true;
}

const char *vn__state_item_shape(const vn_state_item *e, char *buf, size_t len)
{
    if (e->kind == VN_STATE_COUNT) return snprintf(buf, len, "I64 []"), buf;
    const vn_tensor *t = e->tensor;
    int64_t shape[VN_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
    if ((t->flags & VN_TENSOR_OHWI) && t->ndim == 4) shape[1] = t->shape[3], shape[2] = t->shape[1], shape[3] = t->shape[2];
    char s[96];
    snprintf(buf, len, "F32 %s", vn_shape_str(t->ndim, shape, s, sizeof s));
    return buf;
}

const char *vn__st_entry_shape(const vn_st_entry *fe, char *buf, size_t len)
{
    char s[96];
    snprintf(buf, len, "%s %s", vn_dtype_name(fe->dtype), vn_shape_str(fe->ndim, fe->shape, s, sizeof s));
    return buf;
}

/* Compares the model's state with the file under prefix; skip(name) marks tensors that may
 * differ (fine-tuning's classifier). Returns the number of hard mismatches. */
static int compare(const vn_state_list *l, const vn_st_file *f, const char *prefix,
                   bool (*skip)(const char *), mismatch *mm, bool log_all)
{
    char a[128], b[128], full[512];
    size_t plen = strlen(prefix);
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *e = &l->items[i];
        if (skip && skip(e->name)) continue;
        snprintf(full, sizeof full, "%s%s", prefix, e->name);
        const vn_st_entry *fe = vn_st_find(f, full);
        if (!fe && e->kind == VN_STATE_COUNT) continue; /* optional, as in torch */
        if (!fe) {
            append(mm->missing, sizeof mm->missing, &mm->n_missing, 6, "%s'%s'%s%s", e->name, "", "");
            if (log_all)
                vn_log(VN_LOG_WARN, "%s: missing '%s' (%s)", vn_st_path(f), full,
                       vn__state_item_shape(e, a, sizeof a));
        } else if (!vn__state_entry_fits(e, fe)) {
            vn__state_item_shape(e, a, sizeof a);
            vn__st_entry_shape(fe, b, sizeof b);
            append(mm->shapes, sizeof mm->shapes, &mm->n_shapes, 4, "%s'%s' is %s in the file, %s in the model",
                   e->name, b, a);
            if (log_all) vn_log(VN_LOG_WARN, "%s: '%s' is %s in the file, %s in the model", vn_st_path(f), full, b, a);
        }
    }
    for (int i = 0; i < vn_st_count(f); i++) {
        const char *fname = vn_st_at(f, i)->name;
        if (strncmp(fname, prefix, plen) != 0 || vn_state_find(l, fname + plen)) continue;
        if (skip && skip(fname + plen)) continue;
        append(mm->extra, sizeof mm->extra, &mm->n_extra, 6, "%s'%s'%s%s", fname, "", "");
        if (log_all) vn_log(VN_LOG_WARN, "%s: unexpected '%s' (not part of the model)", vn_st_path(f), fname);
    }
    return mm->n_shapes + mm->n_missing + mm->n_extra;
}

static int report(const vn_st_file *f, const char *prefix, bool deploy, const vn_vanillanet *m,
                  const mismatch *mm, vn_error *err)
{
    char hint[256], more[3][32] = {"", "", ""};
    describe_file(f, prefix, deploy, m->cfg.in_chans, hint, sizeof hint);
    if (mm->n_shapes > 4) snprintf(more[0], sizeof more[0], " and %d more", mm->n_shapes - 4);
    if (mm->n_missing > 6) snprintf(more[1], sizeof more[1], " and %d more", mm->n_missing - 6);
    if (mm->n_extra > 6) snprintf(more[2], sizeof more[2], " and %d more", mm->n_extra - 6);
    return vn_error_set(err, VN_ERR_SHAPE,
                        "%s (%s form) does not fit the configured model (%d stages, widths %d..%d, %d "
                        "classes): %d wrong shapes%s%s%s%s; %d missing%s%s%s; %d unexpected%s%s%s.%s",
                        vn_st_path(f), deploy ? "deploy" : "training", m->cfg.n_stages, m->cfg.dims[0],
                        m->cfg.dims[m->cfg.n_stages], m->cfg.num_classes, mm->n_shapes,
                        mm->n_shapes ? " (" : "", mm->shapes, more[0], mm->n_shapes ? ")" : "", mm->n_missing,
                        mm->n_missing ? ": " : "", mm->missing, more[1], mm->n_extra,
                        mm->n_extra ? ": " : "", mm->extra, more[2], hint);
}

int vn_state_check_all(const vn_vanillanet *m, const vn_st_file *f, const char *prefix,
                       bool file_deploy, vn_error *err)
{
    mismatch mm = {0};
    if (compare(&m->state, f, prefix, NULL, &mm, false) == 0) return VN_OK;
    if (mm.n_shapes > 4 || mm.n_missing > 6 || mm.n_extra > 6) {
        mismatch again = {0};
        compare(&m->state, f, prefix, NULL, &again, true);
    }
    return report(f, prefix, file_deploy, m, &mm, err);
}

int vn__plain_info(const vn_st_file *f, const char *path, const vn_config *cfg, vn_ckpt_info *info,
                   vn_error *err)
{
    char prefix[32];
    bool deploy = false;
    int rc = vn_plain_detect(f, prefix, sizeof prefix, &deploy, err);
    if (rc != VN_OK) return rc;
    const vn_st_entry *head = find_p(f, prefix, head_key(deploy));
    int nc = cfg->model.num_classes > 0 ? (int)cfg->model.num_classes
                                        : head && head->ndim >= 1 ? (int)head->shape[0] : 1000;
    rc = vn_build_model_config(cfg, nc, &info->model, err);
    if (rc != VN_OK) {
        vn_error_prefix(err, "%s: the config's model: ", path);
        return rc;
    }
    info->plain = true;
    info->deploy = deploy;
    snprintf(info->prefix, sizeof info->prefix, "%s", prefix);
    info->config_yaml = vn_config_to_yaml(cfg, 0);
    info->n_classes = nc;
    info->class_names = calloc((size_t)nc, sizeof(char *));
    if (!info->config_yaml || !info->class_names) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nc; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        if (!(info->class_names[i] = strdup(num))) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    /* The preprocessing of the config, data.eval_mode's geometry included, as import and
     * export store it for the same --config / --set: one file gives the same logits whichever
     * way it arrived. */
    vn__data_from_config(cfg, info);
    return VN_OK;
}

/* ---- fine-tuning: model.init ------------------------------------------------------------ */

static bool is_classifier(const char *name) { return strncmp(name, "cls", 3) == 0; }

/* Where a file keeps the model's tensors and in which form. */
static int file_layout(const vn_st_file *f, char *prefix, size_t len, bool *deploy, vn_error *err)
{
    const char *meta = vn_st_meta(f, "vanilla.model");
    if (!meta) return vn_plain_detect(f, prefix, len, deploy, err);
    vn_vanillanet_config c;
    int rc = vn_vanillanet_config_from_json(meta, vn_st_path(f), &c, deploy, err);
    const char *kind = vn_st_meta(f, "vanilla.kind");
    snprintf(prefix, len, "%s", kind && strcmp(kind, "checkpoint") == 0 ? "model." : "");
    return rc;
}

/* Loads the listed items only (they share names and tensors with the model's list). */
static int load_subset(const vn_vanillanet *m, const vn_st_file *f, const char *prefix,
                       bool (*skip)(const char *), vn_error *err)
{
    vn_state_list sub = {0};
    sub.items = calloc((size_t)m->state.n + 1, sizeof *sub.items);
    if (!sub.items) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    char full[512];
    for (int i = 0; i < m->state.n; i++) {
        const vn_state_item *e = &m->state.items[i];
        snprintf(full, sizeof full, "%s%s", prefix, e->name);
        const vn_st_entry *fe = vn_st_find(f, full);
        if (skip(e->name) && (!fe || !vn__state_entry_fits(e, fe))) continue;
        sub.items[sub.n++] = *e;
    }
    int rc = vn_state_from_file(&sub, prefix, f, false, err);
    free(sub.items);
    return rc;
}

/* vn_st_open, with a pointer to `vanilla import` when the file is a torch.save archive. */
static int open_weights(const char *path, vn_st_file **f, vn_error *err)
{
    int rc = vn_st_open(path, f, err);
    if (rc == VN_OK) return rc;
    if (vn_pth_looks_like(path))
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s is a PyTorch file (torch.save): convert it first "
                          "with `vanilla import %s -o WEIGHTS.safetensors`", path, path);
    return rc;
}

int vn_model_init_from(vn_vanillanet *m, const char *path, vn_error *err)
{
    vn_st_file *f = NULL;
    int rc = open_weights(path, &f, err);
    if (rc != VN_OK) {
        vn_error_prefix(err, "model.init: ");
        return rc;
    }
    char prefix[32];
    bool deploy = false;
    rc = file_layout(f, prefix, sizeof prefix, &deploy, err);
    if (rc == VN_OK && deploy != m->deploy)
        rc = vn_error_set(err, VN_ERR_INVALID, "%s is in %s form and the model to train in %s form; "
                          "fine-tune from training-form weights (a checkpoint, or the official "
                          "state_dict before switch_to_deploy)", path, deploy ? "deploy" : "training",
                          m->deploy ? "deploy" : "training");
    mismatch mm = {0};
    if (rc == VN_OK && compare(&m->state, f, prefix, is_classifier, &mm, false) > 0)
        rc = report(f, prefix, deploy, m, &mm, err);
    if (rc == VN_OK) {
        mismatch head = {0};
        char a[128], b[128], full[512], msg[768] = "";
        int n = 0;
        for (int i = 0; i < m->state.n; i++) {
            const vn_state_item *e = &m->state.items[i];
            if (!is_classifier(e->name)) continue;
            snprintf(full, sizeof full, "%s%s", prefix, e->name);
            const vn_st_entry *fe = vn_st_find(f, full);
            if (fe && vn__state_entry_fits(e, fe)) continue;
            n++;
            append(msg, sizeof msg, &head.n_shapes, 8, "%s%s (%s -> %s)", e->name,
                   fe ? vn__st_entry_shape(fe, b, sizeof b) : "absent", vn__state_item_shape(e, a, sizeof a));
        }
        rc = load_subset(m, f, prefix, is_classifier, err);
        if (rc == VN_OK && n)
            vn_log(VN_LOG_WARN, "model.init %s: loaded everything but the classifier, which does "
                   "not fit and starts from a fresh initialisation: %s%s", path, msg,
                   n > 8 ? " ..." : "");
    }
    if (rc != VN_OK) vn_error_prefix(err, "model.init: ");
    vn_st_close(f);
    return rc;
}


/* Reading run folders and ablation folders back for reports (see vn_run_report.h). */
#include "train/vn_run_report.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/vn_fs.h"
#include "train/vn_detect.h"
#include "train/vn_trainer.h"

/* Headers of checkpoints larger than this are not read (ours are a few kB). */
#define HEADER_MAX ((uint64_t)64 << 20)
#define RECORD_MAX_FIELDS 128

/* ---------------------------------------------------------------------------- notes */

static int add_note(char ***notes, int *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int add_note(char ***notes, int *n, const char *fmt, ...)
{
    char buf[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **grown = realloc(*notes, (size_t)(*n + 1) * sizeof *grown);
    if (!grown) return VN_ERR_NOMEM;
    *notes = grown;
    if (!(grown[*n] = strdup(buf))) return VN_ERR_NOMEM;
    (*n)++;
    return VN_OK;
}

static void free_notes(char **notes, int n)
{
    for (int i = 0; i < n; i++) free(notes[i]);
    free(notes);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Whole file, NUL-terminated. VN_ERR_NOT_FOUND when it does not exist. */
static int slurp(const char *path, char **out, size_t *len, vn_error *err)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return vn_error_set(err, errno == ENOENT ? VN_ERR_NOT_FOUND : VN_ERR_IO, "%s: %s", path,
                            strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    bool nomem = !buf;
    while (!nomem) {
        if (n + 1 >= cap) {
            char *b = realloc(buf, cap * 2);
            if (!b) {
                nomem = true;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (nomem) {
        free(buf);
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
    }
    if (bad) {
        free(buf);
        return vn_error_set(err, VN_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return VN_OK;
}

/* --------------------------------------------------------------------------- series */

const vn_run_series *vn_run_find(const vn_run *run, int kind, const char *name)
{
    if (kind < 0 || kind >= VN_RUN_KINDS) return NULL;
    for (int i = 0; i < run->n_series[kind]; i++)
        if (!strcmp(run->series[kind][i].name, name))
            return run->series[kind][i].n > 0 ? &run->series[kind][i] : NULL;
    return NULL;
}

static vn_run_series *series_get(vn_run *run, int kind, const char *name, size_t name_len)
{
    for (int i = 0; i < run->n_series[kind]; i++) {
        vn_run_series *s = &run->series[kind][i];
        if (strlen(s->name) == name_len && !memcmp(s->name, name, name_len)) return s;
    }
    if (name_len >= sizeof run->series[kind]->name) return NULL;
    vn_run_series *grown = realloc(run->series[kind], (size_t)(run->n_series[kind] + 1) * sizeof *grown);
    if (!grown) return NULL;
    run->series[kind] = grown;
    vn_run_series *s = &grown[run->n_series[kind]++];
    memset(s, 0, sizeof *s);
    memcpy(s->name, name, name_len);
    return s;
}

static int series_push(vn_run_series *s, double step, double epoch, double time, double value)
{
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 256;
        double **arrays[4] = {&s->step, &s->epoch, &s->time, &s->value};
        for (int a = 0; a < 4; a++) {
            double *p = realloc(*arrays[a], (size_t)cap * sizeof *p);
            if (!p) return VN_ERR_NOMEM;
            *arrays[a] = p;
        }
        s->cap = cap;
    }
    s->step[s->n] = step;
    s->epoch[s->n] = epoch;
    s->time[s->n] = time;
    s->value[s->n++] = value;
    return VN_OK;
}

/* ------------------------------------------------------------------- metrics.jsonl */

typedef struct field {
    const char *name;
    size_t len;
    double value;
    const char *str; /* string values (kind) */
    size_t str_len;
} field;

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
    return p;
}

/* A quoted string without escapes beyond \" and \\ (our names never need them). */
static const char *parse_string(const char *p, const char **s, size_t *len)
{
    if (*p != '"') return NULL;
    *s = ++p;
    while (*p && *p != '"' && *p != '\n') p += *p == '\\' && p[1] ? 2 : 1;
    if (*p != '"') return NULL;
    *len = (size_t)(p - *s);
    return p + 1;
}

/* One flat JSON object of numbers, nulls and strings on one line. Returns the number of
 * fields, or -1 when the line is not such an object. */
static int parse_record(const char *p, field *f, int max)
{
    int n = 0;
    p = skip_ws(p);
    if (*p++ != '{') return -1;
    p = skip_ws(p);
    if (*p == '}') return 0;
    for (;;) {
        if (n == max) return -1;
        p = parse_string(skip_ws(p), &f[n].name, &f[n].len);
        if (!p) return -1;
        p = skip_ws(p);
        if (*p++ != ':') return -1;
        p = skip_ws(p);
        f[n].str = NULL;
        if (*p == '"') {
            p = parse_string(p, &f[n].str, &f[n].str_len);
            if (!p) return -1;
            f[n].value = NAN;
        } else if (!strncmp(p, "null", 4)) {
            f[n].value = NAN;
            p += 4;
        } else {
            char *end;
            f[n].value = strtod(p, &end);
            if (end == p) return -1;
            p = end;
        }
        n++;
        p = skip_ws(p);
        if (*p == '}') return skip_ws(p + 1)[0] == '\0' || skip_ws(p + 1)[0] == '\n' ? n : -1;
        if (*p++ != ',') return -1;
    }
}

static bool field_is(const field *f, const char *name)
{
    return f->len == strlen(name) && !memcmp(f->name, name, f->len);
}

static int kind_of(const field *f, int n)
{
    static const char *const kinds[VN_RUN_KINDS] = {"step", "epoch", "eval"};
    for (int i = 0; i < n; i++)
        if (field_is(&f[i], "kind") && f[i].str)
            for (int k = 0; k < VN_RUN_KINDS; k++)
                if (f[i].str_len == strlen(kinds[k]) && !memcmp(f[i].str, kinds[k], f[i].str_len))
                    return k;
    return -1;
}

static int add_record(vn_run *run, const field *f, int n)
{
    int kind = kind_of(f, n);
    double step = NAN, epoch = NAN, time = NAN;
    for (int i = 0; i < n; i++) {
        if (field_is(&f[i], "step")) step = f[i].value;
        else if (field_is(&f[i], "epoch")) epoch = f[i].value;
        else if (field_is(&f[i], "time")) time = f[i].value;
    }
    if (kind < 0 || !isfinite(step)) return VN_ERR_FORMAT;
    for (int i = 0; i < n; i++) {
        if (f[i].str || field_is(&f[i], "step") || field_is(&f[i], "epoch") || field_is(&f[i], "time"))
            continue;
        vn_run_series *s = series_get(run, kind, f[i].name, f[i].len);
        if (!s && f[i].len >= sizeof s->name) continue; /* a name too long to be ours */
        if (!s || series_push(s, step, epoch, time, f[i].value) != VN_OK) return VN_ERR_NOMEM;
    }
    run->records++;
    return VN_OK;
}

int vn_run_parse_jsonl(vn_run *run, const char *text, size_t len, vn_error *err)
{
    field fields[RECORD_MAX_FIELDS];
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            /* No newline: the writer is in the middle of this record (or crashed there). */
            if (skip_ws(p) < end) run->partial_last_line = true;
            break;
        }
        const char *q = skip_ws(p);
        if (q < nl) {
            int n = parse_record(p, fields, RECORD_MAX_FIELDS);
            int rc = n < 0 ? VN_ERR_FORMAT : add_record(run, fields, n);
            if (rc == VN_ERR_NOMEM) return vn_error_set(err, rc, "out of memory reading metrics");
            if (rc != VN_OK) run->bad_lines++;
        }
        p = nl + 1;
    }
    return VN_OK;
}

/* --------------------------------------------------------------------- epochs.csv */

/* Rows of epochs.csv as EPOCH series (for runs without metrics.jsonl). */
static int parse_epochs_csv(vn_run *run, char *text)
{
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    if (!line) return VN_OK;
    char *cols[RECORD_MAX_FIELDS];
    int n_cols = 0;
    for (char *c = line, *sep; c && n_cols < RECORD_MAX_FIELDS; c = sep ? sep + 1 : NULL) {
        sep = strchr(c, ',');
        if (sep) *sep = '\0';
        c[strcspn(c, "\r")] = '\0';
        cols[n_cols++] = c;
    }
    field f[RECORD_MAX_FIELDS + 1];
    while ((line = strtok_r(NULL, "\n", &save))) {
        int n = 0;
        bool ok = true;
        f[n++] = (field){"kind", 4, NAN, "epoch", 5};
        for (char *c = line, *sep; c; c = sep ? sep + 1 : NULL) {
            sep = strchr(c, ',');
            if (sep) *sep = '\0';
            if (n > n_cols) {
                ok = false;
                break;
            }
            char *e;
            double v = strtod(c, &e);
            f[n] = (field){cols[n - 1], strlen(cols[n - 1]), e == c ? NAN : v, NULL, 0};
            n++;
        }
        if (!ok || n != n_cols + 1 || add_record(run, f, n) != VN_OK) run->bad_lines++;
    }
    return VN_OK;
}

/* ---------------------------------------------------------------------- checkpoints */

/* The __metadata__ of a safetensors file, read from its header alone. */
static json_t *read_st_metadata(const char *path, int64_t *bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    uint8_t len8[8];
    json_t *meta = NULL;
    if (fstat(fileno(f), &st) == 0 && fread(len8, 1, 8, f) == 8) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
        char *hdr = n <= HEADER_MAX && n + 8 <= (uint64_t)st.st_size ? malloc(n) : NULL;
        if (hdr && fread(hdr, 1, n, f) == n) {
            json_t *root = json_loadb(hdr, n, 0, NULL);
            meta = json_incref(json_object_get(root, "__metadata__"));
            json_decref(root);
        }
        free(hdr);
        *bytes = (int64_t)st.st_size;
    }
    fclose(f);
    return meta;
}

static int ckpt_cmp(const void *a, const void *b)
{
    const vn_run_ckpt *x = a, *y = b;
    bool bx = !strncmp(x->file, "best", 4), by = !strncmp(y->file, "best", 4);
    if (bx != by) return bx ? 1 : -1;
    return strcmp(x->file, y->file);
}

/* A detector checkpoint's model (vanilla.detector, vanilla.imgsz), the first one read. */
static void ckpt_detector(vn_run *run, vn_run_ckpt *c, json_t *meta, json_t *tr)
{
    c->detect = run->detector = true;
    json_t *bf = json_object_get(tr, "best_fitness");
    c->best_fitness = json_is_number(bf) ? json_number_value(bf) : -1;
    c->best_top1 = -1;
    const char *det = json_string_value(json_object_get(meta, "vanilla.detector"));
    const char *imgsz = json_string_value(json_object_get(meta, "vanilla.imgsz"));
    bool deploy;
    if (!run->has_det_model && det && imgsz &&
        vn_detect_config_from_json(det, c->file, &run->det_model, &deploy, NULL) == VN_OK) {
        run->has_det_model = run->model_from_ckpt = true;
        run->det_imgsz = atoi(imgsz);
    }
}

static void ckpt_fill(vn_run *run, vn_run_ckpt *c, const char *path, char **model_json)
{
    json_t *meta = read_st_metadata(path, &c->bytes);
    json_t *tr = json_loads(json_string_value(json_object_get(meta, "vanilla.trainer")) ?
                                json_string_value(json_object_get(meta, "vanilla.trainer")) : "",
                            0, NULL);
    if (json_is_object(tr)) {
        c->readable = true;
        c->step = json_integer_value(json_object_get(tr, "step"));
        c->epoch = json_integer_value(json_object_get(tr, "epoch"));
        c->best_top1 = json_number_value(json_object_get(tr, "best_top1"));
        c->finished = json_is_true(json_object_get(tr, "finished"));
        const char *mj = json_string_value(json_object_get(meta, "vanilla.model"));
        if (mj && !*model_json) *model_json = strdup(mj);
        const char *task = json_string_value(json_object_get(meta, "vanilla.task"));
        if (task && !strcmp(task, "detect")) ckpt_detector(run, c, meta, tr);
    } else {
        c->best_top1 = -1;
    }
    json_decref(tr);
    json_decref(meta);
}

static int load_checkpoints(vn_run *run)
{
    char dir[1100], path[1400];
    snprintf(dir, sizeof dir, "%s/checkpoints", run->dir);
    DIR *d = opendir(dir);
    if (!d) return VN_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 12 || strcmp(de->d_name + l - 12, ".safetensors") || strstr(de->d_name, ".tmp")) continue;
        vn_run_ckpt *grown = realloc(run->ckpts, (size_t)(run->n_ckpts + 1) * sizeof *grown);
        if (!grown) {
            closedir(d);
            return VN_ERR_NOMEM;
        }
        run->ckpts = grown;
        vn_run_ckpt *c = &grown[run->n_ckpts++];
        memset(c, 0, sizeof *c);
        snprintf(c->file, sizeof c->file, "%s", de->d_name);
    }
    closedir(d);
    qsort(run->ckpts, (size_t)run->n_ckpts, sizeof *run->ckpts, ckpt_cmp);
    /* The newest step checkpoint describes the model (names sort by step). */
    char *model_json = NULL;
    for (int i = run->n_ckpts - 1; i >= 0; i--) {
        snprintf(path, sizeof path, "%s/%s", dir, run->ckpts[i].file);
        ckpt_fill(run, &run->ckpts[i], path, &model_json);
        if (run->ckpts[i].readable) continue;
        struct stat st;
        if (stat(path, &st) != 0 && errno == ENOENT) { /* pruned by a live run since the listing */
            memmove(&run->ckpts[i], &run->ckpts[i + 1],
                    (size_t)(run->n_ckpts - i - 1) * sizeof *run->ckpts);
            run->n_ckpts--;
            continue;
        }
        add_note(&run->notes, &run->n_notes, "checkpoints/%s: not a readable vanilla checkpoint "
                 "(no trainer state in its header)", run->ckpts[i].file);
    }
    bool deploy;
    if (model_json && vn_vanillanet_config_from_json(model_json, "checkpoint", &run->model, &deploy,
                                                     NULL) == VN_OK)
        run->has_model = run->model_from_ckpt = true;
    free(model_json);
    return VN_OK;
}

/* ------------------------------------------------------------------------ run folder */

/* A file of the run folder read whole: its path (for messages) and NUL-terminated text. */
typedef struct run_file {
    char path[1100];
    char *text;
    size_t len;
} run_file;

static int run_file_read(const vn_run *run, const char *name, run_file *f, vn_error *err)
{
    snprintf(f->path, sizeof f->path, "%s/%s", run->dir, name);
    return slurp(f->path, &f->text, &f->len, err);
}

/* A detector run's model from its config when no checkpoint gave it: the class count from
 * detect.data (when that file is still there). */
static int config_detector(vn_run *run)
{
    run->detector = true;
    if (run->has_det_model) return VN_OK;
    vn_det_data_cfg dc;
    vn_error e = {0};
    if (vn_det_data_cfg_load(run->cfg->detect.data, &dc, &e) != VN_OK)
        return add_note(&run->notes, &run->n_notes, "no detector checkpoint and %s: the model's size "
                        "is not shown", e.msg);
    if (vn_detect_model_config(run->cfg, dc.nc, &run->det_model, NULL) == VN_OK) {
        run->has_det_model = true;
        run->det_imgsz = (int)run->cfg->detect.imgsz;
    }
    vn_det_data_cfg_free(&dc);
    return VN_OK;
}

static int load_config(vn_run *run)
{
    run_file f;
    vn_error e = {0};
    int rc = run_file_read(run, "config.yaml", &f, &e);
    if (rc == VN_ERR_NOT_FOUND)
        return add_note(&run->notes, &run->n_notes, "no config.yaml: the configuration is not shown");
    if (rc != VN_OK) return add_note(&run->notes, &run->n_notes, "%s", e.msg);
    run->cfg = malloc(sizeof *run->cfg);
    if (!run->cfg) rc = VN_ERR_NOMEM;
    else rc = vn_config_from_text(run->cfg, f.text, f.len, f.path, &e);
    free(f.text);
    if (rc == VN_ERR_NOMEM) return rc;
    if (rc != VN_OK) {
        free(run->cfg);
        run->cfg = NULL;
        return add_note(&run->notes, &run->n_notes, "%s (the configuration is not shown)", e.msg);
    }
    if (run->cfg->model.task == VN_CONFIG_TASK_DETECT) return config_detector(run);
    if (!run->has_model && run->cfg->model.num_classes > 0 &&
        vn_build_model_config(run->cfg, (int)run->cfg->model.num_classes, &run->model, NULL) == VN_OK)
        run->has_model = true;
    return VN_OK;
}

bool vn_run_result_read(const char *dir, vn_run_result *r)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/result.json", dir);
    json_t *o = json_load_file(path, 0, NULL);
    bool ok = json_is_object(o);
    if (ok) {
        r->best_top1 = json_number_value(json_object_get(o, "best_top1"));
        r->final_top1 = json_number_value(json_object_get(o, "final_top1"));
        r->seconds = json_number_value(json_object_get(o, "seconds"));
        r->params = json_integer_value(json_object_get(o, "params"));
        r->macs = json_integer_value(json_object_get(o, "macs"));
        const char *task = json_string_value(json_object_get(o, "task"));
        r->detect = task && !strcmp(task, "detect");
        if (r->detect) {
            r->best_map = json_number_value(json_object_get(o, "best_mAP50-95"));
            r->best_map50 = json_number_value(json_object_get(o, "best_mAP50"));
            r->final_map = json_number_value(json_object_get(o, "final_mAP50-95"));
            r->final_map50 = json_number_value(json_object_get(o, "final_mAP50"));
        }
    }
    json_decref(o);
    return ok;
}

int vn_run_result_write(const char *dir, const vn_run_result *r, vn_error *err)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/result.json", dir);
    json_t *o = json_object();
    json_object_set_new(o, "best_top1", json_real(r->best_top1));
    json_object_set_new(o, "final_top1", json_real(r->final_top1));
    json_object_set_new(o, "seconds", json_real(r->seconds));
    json_object_set_new(o, "params", json_integer(r->params));
    json_object_set_new(o, "macs", json_integer(r->macs));
    if (r->detect) { /* classifiers' result.json stays as it was */
        json_object_set_new(o, "task", json_string("detect"));
        json_object_set_new(o, "best_mAP50-95", json_real(r->best_map));
        json_object_set_new(o, "best_mAP50", json_real(r->best_map50));
        json_object_set_new(o, "final_mAP50-95", json_real(r->final_map));
        json_object_set_new(o, "final_mAP50", json_real(r->final_map50));
    }
    char *text = json_dumps(o, JSON_INDENT(1));
    json_decref(o);
    if (!text) return vn_error_set(err, VN_ERR_NOMEM, "out of memory writing %s", path);
    int e = vn_fs_write_atomic(path, text, strlen(text), true); /* temporary file, rename */
    free(text);
    return e ? vn_error_set(err, VN_ERR_IO, "cannot write %s: %s", path, strerror(e)) : VN_OK;
}

static void load_result(vn_run *run)
{
    if (vn_run_result_read(run->dir, &run->result)) {
        snprintf(run->result.name, sizeof run->result.name, "%s", run->name);
        run->has_result = true;
    }
}

static int load_metrics(vn_run *run, vn_error *err)
{
    run_file f;
    vn_error e = {0};
    int rc = run_file_read(run, "metrics.jsonl", &f, &e);
    if (rc == VN_OK) {
        rc = vn_run_parse_jsonl(run, f.text, f.len, err);
        free(f.text);
        if (rc != VN_OK) return rc;
        if (run->bad_lines)
            add_note(&run->notes, &run->n_notes, "metrics.jsonl: %lld unreadable lines skipped",
                     (long long)run->bad_lines);
        if (run->partial_last_line)
            add_note(&run->notes, &run->n_notes, "metrics.jsonl ends in the middle of a record "
                     "(a run in progress, or one that was killed): that last line is skipped");
        if (run->records == 0)
            add_note(&run->notes, &run->n_notes, "metrics.jsonl holds no records yet");
        return VN_OK;
    }
    if (rc == VN_ERR_NOMEM) return vn_error_set(err, rc, "%s", e.msg);
    add_note(&run->notes, &run->n_notes, rc == VN_ERR_NOT_FOUND ? "no metrics.jsonl: no per-step "
             "curves (%s)" : "cannot read metrics.jsonl: %s", e.msg);
    if (run_file_read(run, "epochs.csv", &f, &e) == VN_OK) {
        parse_epochs_csv(run, f.text);
        free(f.text);
    }
    return VN_OK;
}

int vn_run_load(const char *dir, vn_run *run, vn_error *err)
{
    memset(run, 0, sizeof *run);
    snprintf(run->dir, sizeof run->dir, "%s", dir);
    size_t l = strlen(run->dir);
    while (l > 1 && run->dir[l - 1] == '/') run->dir[--l] = '\0';
    const char *base = strrchr(run->dir, '/');
    snprintf(run->name, sizeof run->name, "%s", base ? base + 1 : run->dir);
    int rc = load_metrics(run, err);
    if (rc == VN_OK) rc = load_checkpoints(run);
    if (rc == VN_OK) rc = load_config(run);
    if (vn_run_find(run, VN_RUN_STEP, "box_loss") || vn_run_find(run, VN_RUN_EVAL, "val_mAP50-95"))
        run->detector = true;
    if (rc == VN_OK) load_result(run);
    if (rc == VN_ERR_NOMEM) return vn_error_set(err, rc, "out of memory reading %s", dir);
    return rc;
}

void vn_run_free(vn_run *run)
{
    for (int k = 0; k < VN_RUN_KINDS; k++) {
        for (int i = 0; i < run->n_series[k]; i++) {
            vn_run_series *s = &run->series[k][i];
            free(s->step);
            free(s->epoch);
            free(s->time);
            free(s->value);
        }
        free(run->series[k]);
    }
    free(run->cfg);
    free(run->ckpts);
    free_notes(run->notes, run->n_notes);
    memset(run, 0, sizeof *run);
}

/* ------------------------------------------------------------------------------ sets */

void vn_run_set_init(vn_run_set *s) { memset(s, 0, sizeof *s); }

void vn_run_set_free(vn_run_set *s)
{
    for (int i = 0; i < s->n_runs; i++) vn_run_free(&s->runs[i]);
    free(s->runs);
    for (int i = 0; i < s->n_ablations; i++) free(s->ablations[i].rows);
    free(s->ablations);
    free_notes(s->notes, s->n_notes);
    memset(s, 0, sizeof *s);
}

static bool looks_like_run(const char *dir)
{
    static const char *const marks[] = {"metrics.jsonl", "epochs.csv", "config.yaml", "result.json"};
    char p[1400];
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, marks[i]);
        if (is_file(p)) return true;
    }
    snprintf(p, sizeof p, "%s/checkpoints", dir);
    return is_dir(p);
}

static int set_add_run(vn_run_set *s, const char *dir, vn_error *err)
{
    vn_run *grown = realloc(s->runs, (size_t)(s->n_runs + 1) * sizeof *grown);
    if (!grown) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    s->runs = grown;
    int rc = vn_run_load(dir, &s->runs[s->n_runs], err);
    if (rc != VN_OK) {
        vn_run_free(&s->runs[s->n_runs]);
        return rc;
    }
    s->n_runs++;
    return VN_OK;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A row of a detector ablation's results.csv (VN_RUN_DET_CSV_HEADER); a field left empty
 * (a classifier run among detectors) reads as -1. */
static bool det_csv_row(char *line, vn_run_result *r, char *name)
{
    char *f[8];
    int n = 0;
    for (char *p = line, *sep; p && n < 8; p = sep ? sep + 1 : NULL) {
        sep = strchr(p, ',');
        if (sep) *sep = '\0';
        f[n++] = p;
    }
    if (n != 8 || !*f[0]) return false;
    snprintf(name, 256, "%s", f[0]);
    double v[7];
    for (int i = 0; i < 7; i++) {
        char *end;
        v[i] = strtod(f[i + 1], &end);
        if (end == f[i + 1]) v[i] = -1;
    }
    *r = (vn_run_result){.best_top1 = -1, .final_top1 = -1, .detect = true, .best_map = v[0],
                         .best_map50 = v[1], .final_map = v[2], .final_map50 = v[3],
                         .params = (int64_t)v[4], .macs = (int64_t)v[5], .seconds = v[6]};
    return true;
}

/* results.csv of `vanilla ablate`: run,best_top1,final_top1,params,macs,seconds, or the
 * detectors' VN_RUN_DET_CSV_HEADER. */
static void read_results_csv(vn_run_ablation *a)
{
    char path[1400], line[2048];
    snprintf(path, sizeof path, "%s/results.csv", a->dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    bool header = true, det = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (header) {
            header = false;
            det = !strcmp(line, VN_RUN_DET_CSV_HEADER);
            continue;
        }
        vn_run_result r = {0};
        char name[256];
        long long params, macs;
        if (det ? !det_csv_row(line, &r, name) :
                  sscanf(line, "%255[^,],%lf,%lf,%lld,%lld,%lf", name, &r.best_top1, &r.final_top1, &params,
                         &macs, &r.seconds) != 6)
            continue;
        snprintf(r.name, sizeof r.name, "%s", name);
        if (!det) r.params = params, r.macs = macs;
        vn_run_result *grown = realloc(a->rows, (size_t)(a->n_rows + 1) * sizeof *grown);
        if (!grown) break;
        a->rows = grown;
        a->rows[a->n_rows++] = r;
    }
    fclose(f);
}

static int load_ablation(vn_run_set *s, const char *path, char **subs, int n_subs, vn_error *err)
{
    vn_run_ablation *grown = realloc(s->ablations, (size_t)(s->n_ablations + 1) * sizeof *grown);
    if (!grown) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    s->ablations = grown;
    vn_run_ablation *a = &grown[s->n_ablations++];
    memset(a, 0, sizeof *a);
    snprintf(a->dir, sizeof a->dir, "%s", path);
    const char *base = strrchr(path, '/');
    snprintf(a->name, sizeof a->name, "%s", base && base[1] ? base + 1 : path);
    a->first_run = s->n_runs;
    for (int i = 0; i < n_subs; i++) {
        int rc = set_add_run(s, subs[i], err);
        if (rc != VN_OK) return rc;
    }
    a = &s->ablations[s->n_ablations - 1];
    a->n_runs = s->n_runs - a->first_run;
    read_results_csv(a);
    if (a->n_rows == 0) /* still running: the finished runs' result.json */
        for (int i = a->first_run; i < s->n_runs; i++) {
            if (!s->runs[i].has_result) continue;
            vn_run_result *rows = realloc(a->rows, (size_t)(a->n_rows + 1) * sizeof *rows);
            if (!rows) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
            a->rows = rows;
            a->rows[a->n_rows++] = s->runs[i].result;
        }
    return VN_OK;
}

int vn_run_load_path(vn_run_set *s, const char *path, vn_error *err)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    size_t l = strlen(dir);
    while (l > 1 && dir[l - 1] == '/') dir[--l] = '\0';
    if (!is_dir(dir)) {
        int rc = add_note(&s->notes, &s->n_notes, "%s: %s", dir,
                          access(dir, F_OK) == 0 ? "not a folder" : "no such folder");
        return rc == VN_OK ? vn_error_set(err, VN_ERR_NOT_FOUND, "%s", s->notes[s->n_notes - 1]) : rc;
    }
    if (looks_like_run(dir)) return set_add_run(s, dir, err);
    /* An ablation folder: run folders one level down. */
    char **subs = NULL;
    int n_subs = 0, rc = VN_OK;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && rc == VN_OK && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (!is_dir(p) || !looks_like_run(p)) continue;
        char **grown = realloc(subs, (size_t)(n_subs + 1) * sizeof *grown);
        if (!grown || !(grown[n_subs] = strdup(p))) rc = VN_ERR_NOMEM;
        if (grown) subs = grown;
        if (rc == VN_OK) n_subs++;
    }
    if (d) closedir(d);
    if (rc == VN_OK && n_subs > 0) {
        qsort(subs, (size_t)n_subs, sizeof *subs, name_cmp);
        rc = load_ablation(s, dir, subs, n_subs, err);
    } else if (rc == VN_OK) {
        rc = add_note(&s->notes, &s->n_notes, "%s is not a run folder (no metrics.jsonl, epochs.csv, "
                      "config.yaml or checkpoints/) nor an ablation folder (no run folders inside)", dir);
        if (rc == VN_OK) rc = vn_error_set(err, VN_ERR_NOT_FOUND, "%s", s->notes[s->n_notes - 1]);
    } else {
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n_subs; i++) free(subs[i]);
    free(subs);
    return rc;
}

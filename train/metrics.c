/* Metrics sinks of a run directory: metrics.jsonl, epochs.csv and TensorBoard events
 * (see vn_metrics.h for the formats and the resume rules). */
#include "train/vn_metrics.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/vn_fs.h"
#include "train/vn_tbwriter.h"

struct vn_metrics {
    char *jsonl_path, *csv_path;
    FILE *jsonl, *csv;
    vn_tb_writer *tb;
    int64_t resume_step; /* < 0: fresh run */
    int64_t resume_epoch; /* EPOCH/EVAL records from this epoch on are dropped; < 0: none */
    /* Every column of epochs.csv in file order (epoch, step, time included); NULL until the
     * CSV is opened for writing. */
    char **csv_cols;
    int n_csv_cols;
    double (*clock)(void *user);
    void *clock_user;
    bool process_stats;
};

/* Records with more names than this get no process statistics added. */
#define VN_METRICS_MAX_AUTO_NAMES 64

static const char *const reserved_names[] = {"kind", "epoch", "step", "time"};

const char *vn_metrics_kind_name(vn_metrics_kind kind)
{
    switch (kind) {
    case VN_METRICS_STEP: return "step";
    case VN_METRICS_EPOCH: return "epoch";
    case VN_METRICS_EVAL: return "eval";
    }
    return NULL;
}

const char *vn_metrics_tb_path(const vn_metrics *m) { return m->tb ? vn_tb_path(m->tb) : NULL; }

/* ------------------------------------------------------------------------- formatting */

char *vn_metrics_format_number(char *buf, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(buf, cap, "nan");
    } else if (isinf(v)) {
        snprintf(buf, cap, v > 0 ? "inf" : "-inf");
    } else if (fabs(v) <= FLT_MAX && (double)(float)v == v) {
        /* A float32 value (most metrics are): the shortest text that reads back as it. */
        for (int p = 1; p <= 9; p++) {
            snprintf(buf, cap, "%.*g", p, v);
            if (strtof(buf, NULL) == (float)v) break;
        }
    } else {
        for (int p = 15; p <= 17; p++) {
            snprintf(buf, cap, "%.*g", p, v);
            if (strtod(buf, NULL) == v) break;
        }
    }
    /* %g picks an exponent for 60000 at one digit ("6e+04"); whole numbers read better in
     * full, and more digits still read back as the same value. */
    const char *e = strchr(buf, 'e');
    if (e) {
        int exp10 = atoi(e + 1);
        if (exp10 >= 0 && exp10 <= 16) snprintf(buf, cap, "%.*g", exp10 + 1, v);
    }
    return buf;
}

static bool name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-' || c == '/';
}

static int check_name(const char *name, vn_error *err)
{
    if (!name) return vn_error_set(err, VN_ERR_INVALID, "metric name is NULL");
    size_t n = strlen(name);
    if (n == 0 || n > VN_METRICS_NAME_MAX)
        return vn_error_set(err, VN_ERR_INVALID, "metric name \"%s\" must have 1 to %d characters",
                            name, VN_METRICS_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (!name_char_ok(name[i]))
            return vn_error_set(err, VN_ERR_INVALID,
                                "metric name \"%s\": only letters, digits and _ . - / are allowed",
                                name);
    for (size_t i = 0; i < sizeof reserved_names / sizeof *reserved_names; i++)
        if (!strcmp(name, reserved_names[i]))
            return vn_error_set(err, VN_ERR_INVALID, "metric name \"%s\" is reserved", name);
    return VN_OK;
}

static int check_names(const char *const *names, int n, vn_error *err)
{
    for (int i = 0; i < n; i++) {
        int rc = check_name(names[i], err);
        if (rc != VN_OK) return rc;
        for (int j = 0; j < i; j++)
            if (!strcmp(names[i], names[j]))
                return vn_error_set(err, VN_ERR_INVALID, "metric name \"%s\" given twice",
                                    names[i]);
    }
    return VN_OK;
}

static void free_strings(char **s, int n)
{
    if (!s) return;
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

/* ----------------------------------------------------------------- resume truncation */

/* A rewrite of a file through path.tmp and rename. */
typedef struct rewrite {
    const char *path;
    char *tmp_path;
    FILE *in, *out;
    char *line;
    size_t line_cap;
    int kept, dropped_later, dropped_bad;
} rewrite;

static int rewrite_begin(rewrite *rw, const char *path, bool *exists, vn_error *err)
{
    memset(rw, 0, sizeof *rw);
    rw->path = path;
    *exists = false;
    struct stat st;
    /* Only regular files are rewritten: a log redirected to a device or a pipe is left as
     * it is. */
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return VN_OK;
    rw->in = fopen(path, "rb");
    if (!rw->in)
        return vn_error_set(err, VN_ERR_IO, "cannot read %s to resume: %s", path, strerror(errno));
    size_t n = strlen(path) + 5;
    rw->tmp_path = malloc(n);
    if (!rw->tmp_path) return vn_error_set(err, VN_ERR_NOMEM, "out of memory resuming %s", path);
    snprintf(rw->tmp_path, n, "%s.tmp", path);
    rw->out = fopen(rw->tmp_path, "wb");
    if (!rw->out)
        return vn_error_set(err, VN_ERR_IO, "cannot create %s: %s", rw->tmp_path, strerror(errno));
    *exists = true;
    return VN_OK;
}

/* Next line without its newline in rw->line; *complete is false for a last line that has no
 * newline (cut short by a crash). Returns false at the end of the file. */
static bool rewrite_next(rewrite *rw, bool *complete)
{
    ssize_t len = getline(&rw->line, &rw->line_cap, rw->in);
    if (len <= 0) return false;
    *complete = rw->line[len - 1] == '\n';
    if (*complete) rw->line[--len] = '\0';
    if (len > 0 && rw->line[len - 1] == '\r') rw->line[--len] = '\0';
    return true;
}

/* Installs the new file when changed, else discards it; closes and frees. */
static int rewrite_end(rewrite *rw, bool changed, int status, vn_error *err)
{
    int rc = status;
    if (rw->in && ferror(rw->in) && rc == VN_OK)
        rc = vn_error_set(err, VN_ERR_IO, "error reading %s to resume", rw->path);
    if (rw->in) fclose(rw->in);
    if (rw->out) {
        if (rc == VN_OK && changed) {
            errno = 0;
            if (fflush(rw->out) != 0 || ferror(rw->out) || fsync(fileno(rw->out)) != 0)
                rc = vn_error_set(err, VN_ERR_IO, "cannot write %s: %s", rw->tmp_path,
                                  strerror(errno ? errno : EIO));
        }
        if (fclose(rw->out) != 0 && rc == VN_OK && changed)
            rc = vn_error_set(err, VN_ERR_IO, "cannot write %s: %s", rw->tmp_path,
                              strerror(errno));
        if (rc == VN_OK && changed) {
            if (rename(rw->tmp_path, rw->path) != 0)
                rc = vn_error_set(err, VN_ERR_IO, "cannot replace %s with %s: %s", rw->path,
                                  rw->tmp_path, strerror(errno));
        } else {
            unlink(rw->tmp_path);
        }
    }
    if (rc == VN_OK && (rw->dropped_later || rw->dropped_bad))
        vn_log(rw->dropped_bad ? VN_LOG_WARN : VN_LOG_INFO,
               "resume: %s: kept %d lines, dropped %d past the checkpoint and %d unreadable ones",
               rw->path, rw->kept, rw->dropped_later, rw->dropped_bad);
    free(rw->tmp_path);
    free(rw->line);
    return rc;
}

static int truncate_jsonl(const char *path, int64_t resume_step, int64_t resume_epoch,
                          vn_error *err)
{
    rewrite rw;
    bool exists;
    int rc = rewrite_begin(&rw, path, &exists, err);
    if (rc != VN_OK || !exists) return rewrite_end(&rw, false, rc, err);
    bool complete;
    while (rc == VN_OK && rewrite_next(&rw, &complete)) {
        if (!rw.line[0] && complete) continue; /* blank lines carry nothing */
        json_t *obj = complete ? json_loads(rw.line, 0, NULL) : NULL;
        json_t *step = obj ? json_object_get(obj, "step") : NULL;
        const char *kind = obj ? json_string_value(json_object_get(obj, "kind")) : NULL;
        json_t *ep = obj ? json_object_get(obj, "epoch") : NULL;
        bool redone = resume_epoch >= 0 && kind && (!strcmp(kind, "epoch") || !strcmp(kind, "eval")) &&
                      json_is_integer(ep) && json_integer_value(ep) >= resume_epoch;
        if (!step || !json_is_integer(step)) {
            rw.dropped_bad++;
        } else if (json_integer_value(step) > resume_step || redone) {
            rw.dropped_later++;
        } else {
            rw.kept++;
            if (fprintf(rw.out, "%s\n", rw.line) < 0)
                rc = vn_error_set(err, VN_ERR_IO, "cannot write %s", rw.tmp_path);
        }
        json_decref(obj);
    }
    return rewrite_end(&rw, rw.dropped_later || rw.dropped_bad, rc, err);
}

/* Splits a CSV line in place at commas (our files never quote: names and numbers only). */
static int split_fields(char *line, char ***fields, int *cap, int *n)
{
    *n = 0;
    for (char *p = line;;) {
        if (*n == *cap) {
            int nc = *cap ? *cap * 2 : 16;
            char **f = realloc(*fields, (size_t)nc * sizeof *f);
            if (!f) return VN_ERR_NOMEM;
            *fields = f;
            *cap = nc;
        }
        (*fields)[(*n)++] = p;
        char *c = strchr(p, ',');
        if (!c) break;
        *c = '\0';
        p = c + 1;
    }
    return VN_OK;
}

static int find_string(char *const *list, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], s)) return i;
    return -1;
}

static int dup_into(char ***list, int *n, const char *s)
{
    char **l = realloc(*list, (size_t)(*n + 1) * sizeof *l);
    if (!l) return VN_ERR_NOMEM;
    *list = l;
    if (!(l[*n] = strdup(s))) return VN_ERR_NOMEM;
    (*n)++;
    return VN_OK;
}

/* The new run's columns first, then the old ones it does not have; *changed when that
 * differs from the old header. */
static int union_header(char ***cols, int *n_cols, char **want, int n_want, bool *changed)
{
    char **u = NULL;
    int n_u = 0, rc = VN_OK;
    for (int i = 0; rc == VN_OK && i < n_want; i++) rc = dup_into(&u, &n_u, want[i]);
    for (int i = 0; rc == VN_OK && i < *n_cols; i++)
        if (find_string(u, n_u, (*cols)[i]) < 0) rc = dup_into(&u, &n_u, (*cols)[i]);
    if (n_u != *n_cols) *changed = true;
    for (int i = 0; !*changed && i < n_u; i++) *changed = strcmp(u[i], (*cols)[i]) != 0;
    free_strings(*cols, *n_cols);
    *cols = u;
    *n_cols = n_u;
    return rc;
}

/* The index in the old rows of a column of the new header (src, cols), -1 when absent. */
static int old_column(const int *src, char **cols, int n_cols, const char *name)
{
    int at = find_string(cols, n_cols, name);
    return at >= 0 ? src[at] : -1;
}

/* Filters the rows of an existing epochs.csv by resume step and, when want is given,
 * rewrites it with the columns want ∪ old header. On return m->csv_cols holds the resulting
 * columns (the old header, or want when there is no file). */
static int prepare_csv(vn_metrics *m, char **want, int n_want, vn_error *err)
{
    rewrite rw;
    bool exists, complete;
    char **fields = NULL, **cols = NULL;
    int fields_cap = 0, n_fields = 0, n_cols = 0, n_old = 0, *src = NULL;
    bool header_changed = false;

    int rc = rewrite_begin(&rw, m->csv_path, &exists, err);
    if (rc == VN_OK && exists && rewrite_next(&rw, &complete) && complete && rw.line[0]) {
        rc = split_fields(rw.line, &fields, &fields_cap, &n_fields);
        n_old = n_fields;
        for (int i = 0; rc == VN_OK && i < n_fields; i++) rc = dup_into(&cols, &n_cols, fields[i]);
        if (rc == VN_OK && find_string(cols, n_cols, "step") < 0)
            rc = vn_error_set(err, VN_ERR_FORMAT,
                              "%s: the header has no \"step\" column, so this is not an epochs "
                              "file written by vanilla; move it away to resume",
                              m->csv_path);
    } else if (rc == VN_OK && exists) {
        header_changed = true; /* empty or torn header: the file is started again */
    }
    if (rc == VN_OK && want && union_header(&cols, &n_cols, want, n_want, &header_changed) != VN_OK)
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    if (rc == VN_OK && exists && n_old == 0) {
        /* Without a readable header no row can be interpreted: the file starts again. */
        while (rewrite_next(&rw, &complete)) rw.dropped_bad++;
    } else if (rc == VN_OK && exists) {
        /* For each new column, its index in the old rows (-1: left empty). fields[] still
         * holds the header here; the next getline overwrites it. */
        src = malloc((size_t)n_cols * sizeof *src);
        if (!src) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        for (int i = 0; rc == VN_OK && i < n_cols; i++) {
            src[i] = -1;
            for (int j = 0; j < n_old; j++)
                if (!strcmp(cols[i], fields[j])) src[i] = j;
        }
        int step_col = rc == VN_OK ? src[find_string(cols, n_cols, "step")] : -1;
        int epoch_col = rc == VN_OK ? old_column(src, cols, n_cols, "epoch") : -1;
        if (rc == VN_OK) {
            for (int i = 0; i < n_cols; i++) fprintf(rw.out, "%s%s", i ? "," : "", cols[i]);
            fputc('\n', rw.out);
        }
        while (rc == VN_OK && rewrite_next(&rw, &complete)) {
            if (!rw.line[0] && complete) continue;
            rc = split_fields(rw.line, &fields, &fields_cap, &n_fields);
            if (rc != VN_OK) {
                rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
                break;
            }
            char *end = NULL;
            long long step = 0;
            if (complete && n_fields == n_old) step = strtoll(fields[step_col], &end, 10);
            if (!complete || n_fields != n_old || !end || end == fields[step_col] || *end) {
                rw.dropped_bad++;
            } else if (step > m->resume_step ||
                       (m->resume_epoch >= 0 && epoch_col >= 0 &&
                        strtoll(fields[epoch_col], NULL, 10) >= m->resume_epoch)) {
                rw.dropped_later++;
            } else {
                rw.kept++;
                for (int i = 0; i < n_cols; i++)
                    fprintf(rw.out, "%s%s", i ? "," : "", src[i] >= 0 ? fields[src[i]] : "");
                fputc('\n', rw.out);
            }
        }
        if (rc == VN_OK && ferror(rw.out))
            rc = vn_error_set(err, VN_ERR_IO, "cannot write %s", rw.tmp_path);
    }
    rc = rewrite_end(&rw, header_changed || rw.dropped_later || rw.dropped_bad, rc, err);
    free(src);
    free(fields);
    if (rc != VN_OK) {
        free_strings(cols, n_cols);
        return rc;
    }
    free_strings(m->csv_cols, m->n_csv_cols);
    m->csv_cols = cols;
    m->n_csv_cols = n_cols;
    return VN_OK;
}

/* Opens epochs.csv for appending with the columns epoch,step,time + names (merged with an
 * existing file's header), writing the header when the file is new. */
static int open_csv(vn_metrics *m, const char *const *names, int n, vn_error *err)
{
    char **want = NULL;
    int n_want = 0, rc = VN_OK;
    for (int i = 0; rc == VN_OK && i < 3; i++) rc = dup_into(&want, &n_want, reserved_names[i + 1]);
    for (int i = 0; rc == VN_OK && i < n; i++) rc = dup_into(&want, &n_want, names[i]);
    if (rc != VN_OK) {
        free_strings(want, n_want);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory opening %s", m->csv_path);
    }
    rc = prepare_csv(m, want, n_want, err);
    free_strings(want, n_want);
    if (rc != VN_OK) return rc;
    m->csv = fopen(m->csv_path, "ab");
    if (!m->csv)
        return vn_error_set(err, VN_ERR_IO, "cannot open %s: %s", m->csv_path, strerror(errno));
    if (fseek(m->csv, 0, SEEK_END) == 0 && ftell(m->csv) == 0) {
        for (int i = 0; i < m->n_csv_cols; i++)
            fprintf(m->csv, "%s%s", i ? "," : "", m->csv_cols[i]);
        fputc('\n', m->csv);
        if (fflush(m->csv) != 0 || ferror(m->csv)) {
            /* Closed again, so the next record retries the header instead of writing rows
             * under no header. */
            int e = errno ? errno : EIO;
            fclose(m->csv);
            m->csv = NULL;
            return vn_error_set(err, VN_ERR_IO, "cannot write %s: %s", m->csv_path, strerror(e));
        }
    }
    return VN_OK;
}

/* ------------------------------------------------------------------------ open, close */

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static double metrics_now(const vn_metrics *m)
{
    return m->clock ? m->clock(m->clock_user) : vn_wall_time();
}

/* metrics.jsonl: cut back to resume_step and appended to, or started afresh. */
static int open_jsonl(vn_metrics *m, int64_t resume_step, vn_error *err)
{
    if (resume_step >= 0) {
        int rc = truncate_jsonl(m->jsonl_path, resume_step, m->resume_epoch, err);
        if (rc != VN_OK) return rc;
        m->jsonl = fopen(m->jsonl_path, "ab");
    } else {
        m->jsonl = fopen(m->jsonl_path, "wb");
    }
    if (!m->jsonl)
        return vn_error_set(err, VN_ERR_IO, "cannot open %s: %s", m->jsonl_path, strerror(errno));
    return VN_OK;
}

int vn_metrics_open(const char *run_dir, int64_t resume_step, const vn_metrics_opts *opts,
                    vn_metrics **out, vn_error *err)
{
    if (!run_dir || !out)
        return vn_error_set(err, VN_ERR_INVALID, "vn_metrics_open: NULL argument");
    *out = NULL;
    vn_metrics_opts none = {0};
    if (!opts) opts = &none;
    if (opts->n_csv_columns < 0 || (opts->n_csv_columns > 0 && !opts->csv_columns))
        return vn_error_set(err, VN_ERR_INVALID, "vn_metrics_open: bad CSV column list");
    int rc = check_names(opts->csv_columns, opts->n_csv_columns, err);
    if (rc != VN_OK) {
        vn_error_prefix(err, "epochs.csv columns: ");
        return rc;
    }
    rc = vn_mkdirs(run_dir, err);
    if (rc != VN_OK) {
        vn_error_prefix(err, "run directory: ");
        return rc;
    }

    vn_metrics *m = calloc(1, sizeof *m);
    if (!m) return vn_error_set(err, VN_ERR_NOMEM, "out of memory opening metrics");
    m->resume_step = resume_step < 0 ? -1 : resume_step;
    m->resume_epoch = resume_step >= 0 && opts->resume_epoch_set ? opts->resume_epoch : -1;
    m->clock = opts->clock;
    m->clock_user = opts->clock_user;
    m->process_stats = opts->process_stats;
    m->jsonl_path = join_path(run_dir, "metrics.jsonl");
    m->csv_path = join_path(run_dir, "epochs.csv");
    if (!m->jsonl_path || !m->csv_path) {
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory opening metrics");
        goto fail;
    }

    rc = open_jsonl(m, resume_step, err);
    if (rc != VN_OK) goto fail;

    if (resume_step < 0) {
        /* A fresh run's rows start a fresh file (created at the first EPOCH record unless
         * the columns are known now). */
        struct stat st;
        if (stat(m->csv_path, &st) == 0 && S_ISREG(st.st_mode) && unlink(m->csv_path) != 0) {
            rc = vn_error_set(err, VN_ERR_IO, "cannot remove the old %s: %s", m->csv_path,
                              strerror(errno));
            goto fail;
        }
    }
    if (opts->n_csv_columns > 0) {
        rc = open_csv(m, opts->csv_columns, opts->n_csv_columns, err);
    } else if (resume_step >= 0) {
        rc = prepare_csv(m, NULL, 0, err); /* drop rows now; columns at the first record */
        free_strings(m->csv_cols, m->n_csv_cols);
        m->csv_cols = NULL;
        m->n_csv_cols = 0;
    }
    if (rc != VN_OK) goto fail;

    if (!opts->no_tensorboard) {
        char *tb_dir = join_path(run_dir, "tb");
        if (!tb_dir) {
            rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory opening metrics");
            goto fail;
        }
        rc = vn_tb_open(tb_dir, &m->tb, err);
        free(tb_dir);
        if (rc == VN_OK) rc = vn_tb_session_start(m->tb, m->resume_step + 1, metrics_now(m), err);
        if (rc == VN_OK) rc = vn_tb_flush(m->tb, err);
        if (rc != VN_OK) goto fail;
    }
    *out = m;
    return VN_OK;

fail:
    vn_metrics_close(m, NULL);
    return rc;
}

/* Flushes the JSONL and CSV files, and closes them when `close`; the first failure is
 * reported. A file left open has its error flag cleared, so the next record is tried again. */
static int finish_files(vn_metrics *m, bool close, vn_error *err)
{
    int rc = VN_OK;
    FILE *files[2] = {m->jsonl, m->csv};
    const char *paths[2] = {m->jsonl_path, m->csv_path};
    for (int i = 0; i < 2; i++) {
        if (!files[i]) continue;
        errno = 0;
        bool bad = fflush(files[i]) != 0 || ferror(files[i]);
        int e = errno;
        if (!close) {
            clearerr(files[i]);
        } else if (fclose(files[i]) != 0 && !bad) {
            bad = true;
            e = errno;
        }
        if (bad && rc == VN_OK)
            rc = vn_error_set(err, VN_ERR_IO, "cannot write %s: %s", paths[i],
                              strerror(e ? e : EIO));
    }
    return rc;
}

int vn_metrics_flush(vn_metrics *m, vn_error *err)
{
    if (!m) return vn_error_set(err, VN_ERR_INVALID, "vn_metrics_flush: NULL");
    int rc = finish_files(m, false, err);
    if (m->tb) {
        int r = vn_tb_flush(m->tb, rc == VN_OK ? err : NULL);
        if (rc == VN_OK) rc = r;
    }
    return rc;
}

int vn_metrics_close(vn_metrics *m, vn_error *err)
{
    if (!m) return VN_OK;
    int rc = finish_files(m, true, err);
    int r = vn_tb_close(m->tb, rc == VN_OK ? err : NULL);
    if (rc == VN_OK) rc = r;
    free(m->jsonl_path);
    free(m->csv_path);
    free_strings(m->csv_cols, m->n_csv_cols);
    free(m);
    return rc;
}

/* --------------------------------------------------------------------------- logging */

/* Writes to f and flushes; a failure is reported and the stream's error flag cleared, so
 * the next record is tried again (a disk that was full may have room again). */
static int finish_line(FILE *f, const char *path, vn_error *err)
{
    errno = 0;
    if (fflush(f) != 0 || ferror(f)) {
        int e = errno ? errno : EIO;
        clearerr(f);
        return vn_error_set(err, VN_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return VN_OK;
}

static int log_jsonl(vn_metrics *m, vn_metrics_kind kind, int64_t epoch, int64_t step,
                     double now, const char *const *names, const double *values, int n,
                     vn_error *err)
{
    char num[40];
    fprintf(m->jsonl, "{\"kind\":\"%s\",\"epoch\":%" PRId64 ",\"step\":%" PRId64 ",\"time\":%.3f",
            vn_metrics_kind_name(kind), epoch, step, now);
    for (int i = 0; i < n; i++) {
        const char *v = isfinite(values[i]) ? vn_metrics_format_number(num, sizeof num, values[i])
                                            : "null";
        fprintf(m->jsonl, ",\"%s\":%s", names[i], v);
    }
    fputs("}\n", m->jsonl);
    return finish_line(m->jsonl, m->jsonl_path, err);
}

static int log_csv(vn_metrics *m, int64_t epoch, int64_t step, double now,
                   const char *const *names, const double *values, int n, vn_error *err)
{
    if (!m->csv) {
        int rc = open_csv(m, names, n, err);
        if (rc != VN_OK) return rc;
    }
    char num[40];
    for (int c = 0; c < m->n_csv_cols; c++) {
        const char *col = m->csv_cols[c];
        if (c) fputc(',', m->csv);
        if (!strcmp(col, "epoch")) {
            fprintf(m->csv, "%" PRId64, epoch);
        } else if (!strcmp(col, "step")) {
            fprintf(m->csv, "%" PRId64, step);
        } else if (!strcmp(col, "time")) {
            fprintf(m->csv, "%.3f", now);
        } else {
            for (int i = 0; i < n; i++)
                if (!strcmp(col, names[i])) {
                    fputs(vn_metrics_format_number(num, sizeof num, values[i]), m->csv);
                    break;
                }
        }
    }
    fputc('\n', m->csv);
    return finish_line(m->csv, m->csv_path, err);
}

static int log_tb(vn_metrics *m, vn_metrics_kind kind, int64_t step, double now,
                  const char *const *names, const double *values, int n, vn_error *err)
{
    if (n == 0) return VN_OK;
    const char *prefix = vn_metrics_kind_name(kind);
    size_t stride = strlen(prefix) + 1 + VN_METRICS_NAME_MAX + 1;
    char *text = malloc((size_t)n * stride);
    const char **tags = malloc((size_t)n * sizeof *tags);
    int rc;
    if (!text || !tags) {
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory logging metrics");
    } else {
        for (int i = 0; i < n; i++) {
            snprintf(text + (size_t)i * stride, stride, "%s/%s", prefix, names[i]);
            tags[i] = text + (size_t)i * stride;
        }
        rc = vn_tb_scalars(m->tb, step, now, tags, values, n, err);
        if (rc == VN_OK && kind != VN_METRICS_STEP) rc = vn_tb_flush(m->tb, err);
    }
    free(text);
    free(tags);
    return rc;
}

int vn_metrics_log(vn_metrics *m, vn_metrics_kind kind, int64_t epoch, int64_t step,
                   const char *const *names, const double *values, int n, vn_error *err)
{
    if (!m || n < 0 || (n > 0 && (!names || !values)) || !vn_metrics_kind_name(kind))
        return vn_error_set(err, VN_ERR_INVALID, "vn_metrics_log: bad argument");
    int rc = check_names(names, n, err);
    if (rc != VN_OK) return rc;
    double now = metrics_now(m);

    /* Process statistics ride along with the records that mark progress (see the options). */
    const char *xnames[VN_METRICS_MAX_AUTO_NAMES];
    double xvalues[VN_METRICS_MAX_AUTO_NAMES];
    if (m->process_stats && kind != VN_METRICS_STEP && n < VN_METRICS_MAX_AUTO_NAMES) {
        bool given = false;
        for (int i = 0; i < n; i++) given = given || !strcmp(names[i], "peak_rss_mb");
        struct rusage ru;
        if (!given && getrusage(RUSAGE_SELF, &ru) == 0) {
            memcpy(xnames, names, (size_t)n * sizeof *names);
            memcpy(xvalues, values, (size_t)n * sizeof *values);
            xnames[n] = "peak_rss_mb";
            xvalues[n] = (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
            names = xnames;
            values = xvalues;
            n++;
        }
    }

    /* Every sink is written even when an earlier one failed; the first error is returned. */
    vn_error e2;
    rc = log_jsonl(m, kind, epoch, step, now, names, values, n, err);
    if (kind == VN_METRICS_EPOCH) {
        int r = log_csv(m, epoch, step, now, names, values, n, rc == VN_OK ? err : &e2);
        if (rc == VN_OK) rc = r;
    }
    if (m->tb) {
        int r = log_tb(m, kind, step, now, names, values, n, rc == VN_OK ? err : &e2);
        if (rc == VN_OK) rc = r;
    }
    return rc;
}

int vn_metrics_sum_steps(const char *run_dir, int64_t epoch, const char *key, double *sum,
                         int64_t *n)
{
    *sum = 0;
    *n = 0;
    char *path = join_path(run_dir, "metrics.jsonl");
    if (!path) return VN_ERR_NOMEM;
    FILE *f = fopen(path, "r");
    free(path);
    if (!f) return VN_OK;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        const char *kind = o ? json_string_value(json_object_get(o, "kind")) : NULL;
        json_t *ep = o ? json_object_get(o, "epoch") : NULL, *v = o ? json_object_get(o, key) : NULL;
        if (kind && !strcmp(kind, "step") && json_is_integer(ep) && json_integer_value(ep) == epoch &&
            json_is_number(v)) {
            *sum += json_number_value(v); /* as vn_metrics_as_logged gives it */
            (*n)++;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return VN_OK;
}

double vn_metrics_as_logged(double v)
{
    char buf[64];
    return strtod(vn_metrics_format_number(buf, sizeof buf, v), NULL);
}

/* vanilla ablate: a grid (or list) of config overrides, one resumable run each, one table. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "base/vn_fs.h"
#include "train/cli/vn_cli.h"
#include "train/vn_run_report.h"
#include "train/vn_trainer.h"

#define MAX_RUNS 256
#define MAX_SETS 16

typedef struct abl_run {
    char name[256];
    char sets[MAX_SETS][512];
    int n_sets;
} abl_run;

typedef struct ablation {
    char name[128];
    char common[MAX_SETS][512];
    int n_common;
    abl_run runs[MAX_RUNS];
    int n_runs;
} ablation;

static const char ablate_help[] =
    "usage: vanilla ablate BASE.yaml ABLATION.yaml [--set section.key=value]... [--dry-run]\n"
    "\n"
    "Runs one training per variant of ABLATION.yaml on top of BASE.yaml, each in its own\n"
    "folder <output.dir>/<name>/<run>; runs are resumable and finished ones are not redone.\n"
    "Prints a table (also written as results.md and results.csv) of best and final top-1,\n"
    "parameters, multiply-adds and time per run; for detectors (model.task: detect) best and\n"
    "final mAP50-95 and mAP50 instead of top-1 (best: the evaluation with the highest fitness\n"
    "0.1 mAP50 + 0.9 mAP50-95, as best.safetensors), sizes with the backbone merged.\n"
    "\n"
    "ABLATION.yaml:\n"
    "  name: act_num                  # folder name (default: the file's name)\n"
    "  set: {train.epochs: 5}         # overrides common to every run (optional)\n"
    "  grid:                          # every combination of these values, or ...\n"
    "    model.act_num: [0, 1, 2, 3]\n"
    "  variants:                      # ... an explicit list of runs\n"
    "    - {name: deep, set: {deep_training.decay_epochs: 5}}\n"
    "    - {name: no-deep, set: {deep_training.decay_epochs: 0}}\n";

/* A node's value as override text: scalars as they are, sequences as a flow list. */
static void node_text(yaml_document_t *doc, yaml_node_t *n, char *buf, size_t len)
{
    if (n->type == YAML_SCALAR_NODE) {
        snprintf(buf, len, "%.*s", (int)n->data.scalar.length, (const char *)n->data.scalar.value);
        return;
    }
    size_t pos = (size_t)snprintf(buf, len, "[");
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            char item[256];
            node_text(doc, yaml_document_get_node(doc, *it), item, sizeof item);
            if (pos < len)
                pos += (size_t)snprintf(buf + pos, len - pos, "%s%s",
                                        it == n->data.sequence.items.start ? "" : ", ", item);
        }
    }
    if (pos < len) snprintf(buf + pos, len - pos, "]");
}

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int map_sets(yaml_document_t *doc, yaml_node_t *m, char (*sets)[512], int *n, const char *path)
{
    if (!m || m->type != YAML_MAPPING_NODE) {
        vn_cli_error("ablate", "%s: 'set' must be a mapping of section.key: value", path);
        return -1;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        if (!k || *n >= MAX_SETS) {
            vn_cli_error("ablate", "%s: bad or too many overrides", path);
            return -1;
        }
        char v[400];
        node_text(doc, yaml_document_get_node(doc, p->value), v, sizeof v);
        snprintf(sets[(*n)++], 512, "%s=%s", k, v);
    }
    return 0;
}

static void sanitize(char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.' || *s == '='))
            *s = *s == ',' || *s == ' ' ? '_' : '-';
}

/* grid: the cartesian product of each key's list of values. */
static int parse_grid(yaml_document_t *doc, yaml_node_t *grid, ablation *a, const char *path)
{
    if (grid->type != YAML_MAPPING_NODE) {
        vn_cli_error("ablate", "%s: 'grid' must map section.key to a list of values", path);
        return -1;
    }
    a->n_runs = 1;
    for (yaml_node_pair_t *p = grid->data.mapping.pairs.start; p < grid->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        yaml_node_t *vals = yaml_document_get_node(doc, p->value);
        if (!k || vals->type != YAML_SEQUENCE_NODE || vals->data.sequence.items.top == vals->data.sequence.items.start) {
            vn_cli_error("ablate", "%s:%zu: grid entry %s needs a non-empty list of values", path,
                         vals->start_mark.line + 1, k ? k : "?");
            return -1;
        }
        int nv = (int)(vals->data.sequence.items.top - vals->data.sequence.items.start);
        if (a->n_runs * nv > MAX_RUNS) {
            vn_cli_error("ablate", "%s: more than %d runs", path, MAX_RUNS);
            return -1;
        }
        /* Cartesian product: each existing run forks into nv runs. */
        int old = a->n_runs;
        for (int r = old - 1; r >= 0; r--)
            for (int v = nv - 1; v >= 0; v--) {
                abl_run *dst = &a->runs[r * nv + v];
                if (dst != &a->runs[r]) *dst = a->runs[r];
            }
        for (int r = 0; r < old; r++)
            for (int v = 0; v < nv; v++) {
                abl_run *run = &a->runs[r * nv + v];
                char val[400];
                node_text(doc, yaml_document_get_node(doc, vals->data.sequence.items.start[v]), val, sizeof val);
                if (run->n_sets >= MAX_SETS) return -1;
                snprintf(run->sets[run->n_sets++], 512, "%s=%s", k, val);
                const char *short_key = strrchr(k, '.') ? strrchr(k, '.') + 1 : k;
                size_t l = strlen(run->name);
                snprintf(run->name + l, sizeof run->name - l, "%s%s=%s", l ? "," : "", short_key, val);
            }
        a->n_runs = old * nv;
    }
    return 0;
}

/* variants: a list of {name, set}. */
static int parse_variants(yaml_document_t *doc, yaml_node_t *variants, ablation *a, const char *path)
{
    if (variants->type != YAML_SEQUENCE_NODE) {
        vn_cli_error("ablate", "%s: 'variants' must be a list of {name, set}", path);
        return -1;
    }
    for (yaml_node_item_t *it = variants->data.sequence.items.start; it < variants->data.sequence.items.top; it++) {
        yaml_node_t *v = yaml_document_get_node(doc, *it);
        if (v->type != YAML_MAPPING_NODE || a->n_runs >= MAX_RUNS) {
            vn_cli_error("ablate", "%s:%zu: each variant is a mapping {name, set}", path, v->start_mark.line + 1);
            return -1;
        }
        abl_run *run = &a->runs[a->n_runs++];
        snprintf(run->name, sizeof run->name, "run%d", a->n_runs);
        for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
            const char *k = scalar(yaml_document_get_node(doc, p->key));
            yaml_node_t *val = yaml_document_get_node(doc, p->value);
            if (k && strcmp(k, "name") == 0 && scalar(val)) snprintf(run->name, sizeof run->name, "%s", scalar(val));
            else if (k && strcmp(k, "set") == 0) {
                if (map_sets(doc, val, run->sets, &run->n_sets, path)) return -1;
            } else {
                vn_cli_error("ablate", "%s:%zu: unknown variant key '%s' (name, set)", path,
                             val->start_mark.line + 1, k ? k : "?");
                return -1;
            }
        }
    }
    return 0;
}

static int parse_ablation(const char *path, ablation *a)
{
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) {
        vn_cli_error("ablate", "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc = -1;
    bool bad_names = false;
    if (!yaml_parser_load(&parser, &doc)) {
        vn_cli_error("ablate", "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
                     parser.problem_mark.column + 1, parser.problem ? parser.problem : "YAML error");
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(a->name, sizeof a->name, "%.*s", (int)strcspn(base, "."), base);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *grid = NULL, *variants = NULL;
    if (!root || root->type != YAML_MAPPING_NODE) {
        vn_cli_error("ablate", "%s: expected a mapping with 'grid' or 'variants'", path);
        goto out;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(&doc, p->key), *vn = yaml_document_get_node(&doc, p->value);
        const char *k = scalar(kn);
        if (k && strcmp(k, "name") == 0 && scalar(vn)) snprintf(a->name, sizeof a->name, "%s", scalar(vn));
        else if (k && strcmp(k, "set") == 0) {
            if (map_sets(&doc, vn, a->common, &a->n_common, path)) goto out;
        } else if (k && strcmp(k, "grid") == 0) grid = vn;
        else if (k && strcmp(k, "variants") == 0) variants = vn;
        else {
            vn_cli_error("ablate", "%s:%zu: unknown key '%s' (name, set, grid, variants)", path,
                         kn->start_mark.line + 1, k ? k : "?");
            goto out;
        }
    }
    if (!!grid == !!variants) {
        vn_cli_error("ablate", "%s: give exactly one of 'grid' and 'variants'", path);
        goto out;
    }
    if (grid ? parse_grid(&doc, grid, a, path) : parse_variants(&doc, variants, a, path)) goto out;
    for (int i = 0; i < a->n_runs; i++) sanitize(a->runs[i].name);
    sanitize(a->name);
    /* Each run has its own folder: two with one name would share (and mix) one run. */
    for (int i = 0; i < a->n_runs && !bad_names; i++)
        for (int j = 0; j < i && !bad_names; j++)
            if (strcmp(a->runs[i].name, a->runs[j].name) == 0) {
                vn_cli_error("ablate", "%s: runs %d and %d both have the name '%s' (folder names "
                             "keep letters, digits, - _ . =): give each run its own name", path,
                             j + 1, i + 1, a->runs[i].name);
                bad_names = true;
            }
    if (bad_names) goto out;
    rc = 0;
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

/* Whether the run in dir was trained under cfg: its config.yaml against cfg by the resume
 * rule (the keys that change results). False with the changed keys in err. */
static bool same_config(const char *dir, const vn_config *cfg, vn_error *err)
{
    char path[2100];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    vn_config *old = malloc(sizeof *old);
    if (!old) {
        vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        return false;
    }
    vn_config_init(old);
    int rc = vn_config_load_file(old, path, err);
    if (rc == VN_OK && vn_config_diff(old, cfg, true, NULL) > 0) {
        char *d = vn_config_diff_text(old, cfg, true);
        rc = vn_error_set(err, VN_ERR_STATE, "\n%s", d ? d : "(out of memory listing the keys)");
        free(d);
    }
    free(old);
    return rc == VN_OK;
}

/* A finished detector run's figures: mAP from its metrics.jsonl (as `vanilla report` shows
 * them), the size of the detector with its backbone merged (training form when it has
 * shortcuts) at detect.imgsz. */
static void record_detect(const vn_config *cfg, const vn_train_result *res, vn_run_result *r)
{
    *r = (vn_run_result){.best_top1 = -1, .final_top1 = -1, .seconds = res->state.elapsed,
                         .params = res->params, .detect = true};
    vn_run run;
    vn_run_det_summary d;
    if (vn_run_load(cfg->output.dir, &run, NULL) == VN_OK) {
        vn_run_det_summarize(&run, &d);
        r->best_map = d.evals ? d.best_map : -1;
        r->best_map50 = d.evals ? d.best_map50 : -1;
        r->final_map = d.evals ? d.final_map : -1;
        r->final_map50 = d.evals ? d.final_map50 : -1;
        vn_run_det_size sz;
        if (run.has_det_model &&
            vn_run_det_size_of(&run.det_model, (int)cfg->detect.imgsz, &sz, NULL) == VN_OK) {
            r->params = sz.deploy_params >= 0 ? sz.deploy_params : sz.params;
            r->macs = sz.deploy_macs >= 0 ? sz.deploy_macs : sz.macs;
        }
    }
    vn_run_free(&run);
}

/* A finished run's figures; the deploy size from the model as trained (its class count comes
 * from the data when the config has 0). */
static void record_result(const vn_config *cfg, const vn_train_result *res, vn_run_result *r)
{
    if (cfg->model.task == VN_CONFIG_TASK_DETECT) {
        record_detect(cfg, res, r);
        return;
    }
    r->best_top1 = res->state.best_top1;
    r->final_top1 = res->evaluated ? res->last_eval.top1 : -1;
    if (!res->evaluated) { /* finished earlier (killed before its result.json): the last
                              evaluation metrics.jsonl holds */
        vn_run run;
        if (vn_run_load(cfg->output.dir, &run, NULL) == VN_OK) {
            const vn_run_series *t = vn_run_find(&run, VN_RUN_EVAL, "val_top1");
            for (int64_t k = t ? t->n - 1 : -1; k >= 0 && r->final_top1 < 0; k--)
                if (!isnan(t->value[k])) r->final_top1 = t->value[k];
        }
        vn_run_free(&run);
    }
    r->seconds = res->state.elapsed;
    r->params = res->params;
    vn_ckpt_info info;
    vn_report rep;
    bool deploy = cfg->model.shortcut == VN_CONFIG_SHORTCUT_NONE;
    if (vn_ckpt_info_read(res->last_ckpt, &info, NULL) == VN_OK) {
        if (vn_vanillanet_report(&info.model, deploy, (int)cfg->data.input_size,
                                 (int)cfg->data.input_size, &rep, NULL) == VN_OK) {
            r->macs = rep.total_macs;
            if (deploy) r->params = rep.total_params;
            vn_report_free(&rep);
        }
        vn_ckpt_info_free(&info);
    }
}

/* A mAP figure for the tables: empty (csv) or "n/a" (md) when there is none. */
static const char *map_text(double v, bool csv, char *buf, size_t len)
{
    if (v >= 0) snprintf(buf, len, csv ? "%.6f" : "%.4f", v);
    else snprintf(buf, len, "%s", csv ? "" : "n/a");
    return buf;
}

/* The tables of an ablation with detector runs (a classifier among them has n/a for mAP). */
static void write_det_tables(FILE *md, FILE *csv, const ablation *ap, const vn_run_result *res)
{
    FILE *outs[2] = {stdout, md};
    char m[4][32];
    for (int o = 0; o < 2; o++) {
        if (!outs[o]) continue;
        fprintf(outs[o], "\n| run | best mAP50-95 | best mAP50 | final mAP50-95 | final mAP50 | params (deploy) "
                         "| MACs (deploy) | time (s) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < ap->n_runs; i++) {
            const vn_run_result *r = &res[i];
            bool d = r->detect;
            fprintf(outs[o], "| %s | %s | %s | %s | %s | %lld | %lld | %.0f |\n", ap->runs[i].name,
                    map_text(d ? r->best_map : -1, false, m[0], 32), map_text(d ? r->best_map50 : -1, false, m[1], 32),
                    map_text(d ? r->final_map : -1, false, m[2], 32), map_text(d ? r->final_map50 : -1, false, m[3], 32),
                    (long long)r->params, (long long)r->macs, r->seconds);
        }
    }
    if (!csv) return;
    fprintf(csv, "%s\n", VN_RUN_DET_CSV_HEADER);
    for (int i = 0; i < ap->n_runs; i++) {
        const vn_run_result *r = &res[i];
        bool d = r->detect;
        fprintf(csv, "%s,%s,%s,%s,%s,%lld,%lld,%.1f\n", ap->runs[i].name,
                map_text(d ? r->best_map : -1, true, m[0], 32), map_text(d ? r->best_map50 : -1, true, m[1], 32),
                map_text(d ? r->final_map : -1, true, m[2], 32), map_text(d ? r->final_map50 : -1, true, m[3], 32),
                (long long)r->params, (long long)r->macs, r->seconds);
    }
}

/* A table is made in memory (tbl), then written over root/name by vn_fs_write_atomic. */
typedef struct {
    char *buf;
    size_t len;
} tbl;

static FILE *table_open(tbl *t)
{
    FILE *f = open_memstream(&t->buf, &t->len);
    if (!f) vn_cli_error("ablate", "out of memory for the results tables");
    return f;
}

/* Writes the table made in f over root/name; false (with a message, and the earlier table
 * kept) when that failed. */
static bool table_close(FILE *f, tbl *t, const char *root, const char *name)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", root, name);
    int e = fclose(f) != 0 ? ENOMEM : vn_fs_write_atomic(path, t->buf, t->len, false);
    free(t->buf);
    if (e) vn_cli_error("ablate", "cannot write %s: %s", path, strerror(e));
    return !e;
}

/* results.md (also printed) and results.csv under root, each made in memory and written
 * atomically (a full disk keeps the earlier tables). False when either could not be written. */
static bool write_tables(const char *root, const ablation *ap, const vn_run_result *results)
{
    tbl tmd = {0}, tcsv = {0};
    FILE *md = table_open(&tmd);
    FILE *csv = md ? table_open(&tcsv) : NULL;
    bool det = false;
    for (int i = 0; i < ap->n_runs; i++) det = det || results[i].detect;
    if (det) {
        write_det_tables(md, csv, ap, results);
    } else {
        FILE *outs[2] = {stdout, md};
        for (int o = 0; o < 2; o++) {
            if (!outs[o]) continue;
            fprintf(outs[o], "\n| run | best top-1 (%%) | final top-1 (%%) | params (deploy) | MACs (deploy) | time (s) |\n");
            fprintf(outs[o], "|---|---:|---:|---:|---:|---:|\n");
            for (int i = 0; i < ap->n_runs; i++)
                fprintf(outs[o], "| %s | %.2f | %.2f | %lld | %lld | %.0f |\n", ap->runs[i].name, results[i].best_top1,
                        results[i].final_top1, (long long)results[i].params, (long long)results[i].macs,
                        results[i].seconds);
        }
        if (csv) {
            fprintf(csv, "run,best_top1,final_top1,params,macs,seconds\n");
            for (int i = 0; i < ap->n_runs; i++)
                fprintf(csv, "%s,%.4f,%.4f,%lld,%lld,%.1f\n", ap->runs[i].name, results[i].best_top1, results[i].final_top1,
                        (long long)results[i].params, (long long)results[i].macs, results[i].seconds);
        }
    }
    bool ok = md && csv;
    if (csv) ok = table_close(csv, &tcsv, root, "results.csv") && ok;
    if (md) ok = table_close(md, &tmd, root, "results.md") && ok;
    return ok;
}

/* A run that finished before: its figures printed and in *r (0), unless its config.yaml has
 * other values than cfg, which stops the command (VN_EXIT_ERROR, said); -1 when it has not
 * finished. */
static int finished_before(const char *dir, const char *name, const vn_config *cfg,
                           vn_run_result *r)
{
    if (!vn_run_result_read(dir, r)) return -1;
    vn_error err = {0};
    if (!same_config(dir, cfg, &err)) {
        vn_cli_error("ablate", "run %s finished before under another config, so its results are "
                     "not this variant's (its config.yaml -> now):%sput the values back, or "
                     "delete %s to run it again", name, err.msg, dir);
        return VN_EXIT_ERROR;
    }
    if (r->detect) printf("   finished before: best mAP50-95 %.4f\n", r->best_map);
    else printf("   finished before: best top-1 %.2f%%\n", r->best_top1);
    return 0;
}

/* A run's config: the base, the ablation's common overrides, the run's, its folder dir;
 * checked. 0, or VN_EXIT_ERROR after saying why. */
static int run_config(const vn_config *base, const ablation *a, const abl_run *run,
                      const char *dir, vn_config *cfg)
{
    *cfg = *base;
    vn_error err = {0};
    int bad = 0;
    for (int s = 0; s < a->n_common && !bad; s++) bad = vn_config_set(cfg, a->common[s], &err);
    for (int s = 0; s < run->n_sets && !bad; s++) bad = vn_config_set(cfg, run->sets[s], &err);
    char set_dir[1700];
    snprintf(set_dir, sizeof set_dir, "output.dir=%s", dir);
    if (!bad) bad = vn_config_set(cfg, set_dir, &err);
    if (!bad) bad = vn_config_check(cfg, &err);
    if (!bad) return 0;
    vn_cli_error("ablate", "run %s: %s", run->name, err.msg);
    return VN_EXIT_ERROR;
}

int vn_cmd_ablate(int argc, char **argv)
{
    const char *files[2] = {NULL, NULL}, *sets[64];
    int n_files = 0, n_sets = 0;
    bool dry = false;
    for (int i = 1; i < argc; i++) {
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(ablate_help, stdout);
            return 0;
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && n_sets < 64) sets[n_sets++] = argv[++i];
        else if (strcmp(argv[i], "--dry-run") == 0) dry = true;
        else if (argv[i][0] == '-') {
            vn_cli_error("ablate", "unknown option %s", argv[i]);
            return VN_EXIT_USAGE;
        } else if (n_files < 2) files[n_files++] = argv[i];
    }
    if (n_files != 2) {
        fputs(ablate_help, stderr);
        return VN_EXIT_USAGE;
    }
    static ablation a;
    if (parse_ablation(files[1], &a)) return VN_EXIT_ERROR;
    vn_config base;
    int ec = vn_cli_load_config(&base, files, 1, sets, n_sets, "ablate");
    if (ec) return ec;
    char root[1200];
    snprintf(root, sizeof root, "%s/%s", base.output.dir, a.name);
    printf("ablation '%s': %d runs under %s\n", a.name, a.n_runs, root);
    static vn_run_result results[MAX_RUNS]; /* stop signals: main installed the handler */
    for (int i = 0; i < a.n_runs && !ec; i++) {
        abl_run *run = &a.runs[i];
        vn_config cfg;
        vn_error err = {0};
        char dir[1600];
        snprintf(dir, sizeof dir, "%s/%s", root, run->name);
        if ((ec = run_config(&base, &a, run, dir, &cfg)) != 0) break;
        printf("\n== [%d/%d] %s ==\n", i + 1, a.n_runs, run->name);
        for (int s = 0; s < run->n_sets; s++) printf("   --set %s\n", run->sets[s]);
        int fb = finished_before(dir, run->name, &cfg, &results[i]);
        if (fb == VN_EXIT_ERROR) {
            ec = fb;
            break;
        }
        if (fb == 0) continue;
        if (dry) continue;
        vn_train_options opt = {"auto", false, &vn_cli_stop, stdout, NULL};
        vn_train_result res;
        int rc = vn_train(&cfg, &opt, &res, &err);
        if (rc != VN_OK) {
            vn_cli_error("ablate", "run %s: %s", run->name, err.msg);
            ec = rc == VN_ERR_NUMERIC ? VN_EXIT_NONFINITE : VN_EXIT_ERROR;
            break;
        }
        if (res.outcome == VN_TRAIN_INTERRUPTED) {
            printf("interrupted; run the same command again to continue\n");
            return VN_EXIT_INTERRUPTED;
        }
        record_result(&cfg, &res, &results[i]);
        /* Only a run that went through all its epochs is "finished": one cut short by
         * train.max_steps is tabulated now and continued by the next ablate. */
        if (res.state.finished) {
            if (vn_run_result_write(dir, &results[i], &err) != VN_OK) {
                vn_cli_error("ablate", "run %s: %s", run->name, err.msg);
                ec = VN_EXIT_ERROR;
                break;
            }
        } else
            printf("   stopped at step %lld by train.max_steps before its last epoch: in the table "
                   "as it is; the same command with a larger train.max_steps continues it\n",
                   (long long)res.state.step);
    }
    if (ec || dry) return ec;
    if (!write_tables(root, &a, results)) return VN_EXIT_ERROR;
    printf("\ntable: %s/results.md and results.csv\n", root);
    return 0;
}

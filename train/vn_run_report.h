/* Run reports: what a run folder holds, read back, and drawn as one self-contained HTML page
 * (`vanilla report`) or as PNG charts.
 *
 * A run folder (output.dir of `vanilla train`) holds metrics.jsonl (every record), epochs.csv
 * (one row per epoch), config.yaml (the effective config) and checkpoints/. vn_run_load reads
 * whatever of these is there and readable; what is missing or broken becomes a note on the
 * run (shown on the page), never a failure: a run still in progress has a partial last line
 * in metrics.jsonl, which is skipped. An ablation folder (`vanilla ablate`'s
 * <output.dir>/<name>) holds one run folder per variant, each with result.json, and
 * results.csv; vn_run_load_path reads it as its runs plus the results table.
 *
 *     vn_run_set set;
 *     vn_run_set_init(&set);
 *     vn_run_load_path(&set, "runs/fashion_mnist");    // notes for what could not be read
 *     vn_run_report_html(&set, "report.html", NULL, &err);
 *     vn_run_set_free(&set);
 *
 * The page has no external resources and no scripts: inline SVG drawn here, inline CSS.
 * Curves are decimated for drawing (per pixel column: first, last, lowest and highest point,
 * so the drawing is what the full polyline would look like); summary figures come from all
 * the data. */
#ifndef VN_RUN_REPORT_H
#define VN_RUN_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/vn_base.h"
#include "models/vn_vanillanet.h"
#include "models/vn_yolo.h"
#include "train/vn_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One named scalar of one record kind ("step"/"loss", "eval"/"val_top1"), in file order. */
typedef struct vn_run_series {
    char name[72];
    int64_t n, cap;
    double *step, *epoch, *time, *value; /* value NaN where the file had null */
} vn_run_series;

enum { VN_RUN_STEP = 0, VN_RUN_EPOCH = 1, VN_RUN_EVAL = 2, VN_RUN_KINDS = 3 };

typedef struct vn_run_ckpt {
    char file[256];  /* name inside checkpoints/ */
    int64_t step, epoch, bytes;
    double best_top1; /* < 0: none yet */
    bool finished, readable;
    bool detect;          /* a detector checkpoint (vanilla.task: detect) */
    double best_fitness;  /* detector: best 0.1 mAP50 + 0.9 mAP50-95 so far, < 0: none yet */
} vn_run_ckpt;

/* result.json of an ablation run / a row of results.csv. A detector run (detect) has no
 * top-1 (-1) but mAP50-95 and mAP50 of its best evaluation by Ultralytics' fitness
 * (0.1 mAP50 + 0.9 mAP50-95, what best.safetensors keeps) and of its last one (< 0: none). */
typedef struct vn_run_result {
    char name[256];
    double best_top1, final_top1, seconds;
    int64_t params, macs;
    bool detect;
    double best_map, best_map50, final_map, final_map50;
} vn_run_result;

/* results.csv of an ablation of detectors (a classifier ablation's starts "run,best_top1"). */
#define VN_RUN_DET_CSV_HEADER "run,best_mAP50-95,best_mAP50,final_mAP50-95,final_mAP50,params,macs,seconds"

typedef struct vn_run {
    char dir[1024];
    char name[256];                   /* the folder's last component(s) */
    vn_run_series *series[VN_RUN_KINDS];
    int n_series[VN_RUN_KINDS];
    int64_t records, bad_lines;       /* lines read / skipped as unreadable */
    bool partial_last_line;           /* metrics.jsonl ends inside a record (run in progress) */
    vn_config *cfg;                   /* config.yaml, NULL when missing or unreadable */
    vn_vanillanet_config model;       /* from the newest readable checkpoint, or the config */
    bool has_model, model_from_ckpt;
    bool detector;                    /* model.task: detect (config, checkpoints or records) */
    vn_yolo_config det_model;         /* detector: newest readable checkpoint, or config + data */
    bool has_det_model;
    int det_imgsz;                    /* detect.imgsz */
    vn_run_ckpt *ckpts;
    int n_ckpts;
    bool has_result;
    vn_run_result result;
    char **notes;                     /* what could not be read, for the page */
    int n_notes;
} vn_run;

typedef struct vn_run_ablation {
    char dir[1024];
    char name[256];
    vn_run_result *rows;              /* results.csv, else the runs' result.json */
    int n_rows;
    int first_run, n_runs;            /* its runs in the set */
} vn_run_ablation;

typedef struct vn_run_set {
    vn_run *runs;
    int n_runs;
    vn_run_ablation *ablations;
    int n_ablations;
    char **notes;                     /* folders that could not be read at all */
    int n_notes;
} vn_run_set;

void vn_run_set_init(vn_run_set *s);
void vn_run_set_free(vn_run_set *s);

/* Reads a run folder or an ablation folder into the set. Returns VN_OK when something was
 * read (notes may still say what was not), VN_ERR_NOT_FOUND when path is missing or is neither
 * kind of folder (a note on the set says so), VN_ERR_NOMEM. */
int vn_run_load_path(vn_run_set *s, const char *path, vn_error *err);

/* result.json of a finished ablation run in dir (written by `vanilla ablate`): read fills the
 * figures of *r (not its name) and returns false when there is no such file or it is not a
 * JSON object; write returns VN_ERR_IO when the file cannot be written. */
bool vn_run_result_read(const char *dir, vn_run_result *r);
int vn_run_result_write(const char *dir, const vn_run_result *r, vn_error *err);

/* One run folder into *run (vn_run_free it). VN_OK unless out of memory; see run->notes. */
int vn_run_load(const char *dir, vn_run *run, vn_error *err);
void vn_run_free(vn_run *run);

/* Parses metrics.jsonl text into run's series (appending). Complete lines that are not a
 * record are counted in bad_lines; a last line without a newline sets partial_last_line. */
int vn_run_parse_jsonl(vn_run *run, const char *text, size_t len, vn_error *err);

/* A series of a run by kind and name; NULL when absent or empty. */
const vn_run_series *vn_run_find(const vn_run *run, int kind, const char *name);

/* A detector run's evaluations (records "val_P", "val_R", "val_mAP50", "val_mAP50-95"):
 * the best by Ultralytics' fitness 0.1 mAP50 + 0.9 mAP50-95 (the first of equals, as the
 * trainer picks best.safetensors) and the last. Figures are NaN when there is no evaluation. */
typedef struct vn_run_det_summary {
    int64_t evals;
    double best_fitness, best_p, best_r, best_map50, best_map, best_step, best_epoch;
    double final_p, final_r, final_map50, final_map, final_step, final_epoch;
} vn_run_det_summary;

void vn_run_det_summarize(const vn_run *run, vn_run_det_summary *s);

/* Parameters and multiply-adds of a detector at imgsz x imgsz (vn_yolo_report), in its
 * training form and with the backbone merged (deploy_*: -1 when the backbone has shortcuts,
 * which do not merge). Builds the model for the count (its weights are not needed). */
typedef struct vn_run_det_size {
    int64_t params, macs, deploy_params, deploy_macs;
} vn_run_det_size;

int vn_run_det_size_of(const vn_yolo_config *m, int imgsz, vn_run_det_size *out, vn_error *err);

/* Options of the page. */
typedef struct vn_run_report_opts {
    const char *title;   /* NULL: "Training run <name>", "Ablation <name>", ... */
} vn_run_report_opts;

/* Writes the HTML page to path (through a temporary file and a rename). */
int vn_run_report_html(const vn_run_set *s, const char *path, const vn_run_report_opts *o,
                       vn_error *err);
/* The page into a malloc'd string (*len bytes, NUL-terminated). */
int vn_run_report_html_string(const vn_run_set *s, const vn_run_report_opts *o, char **out,
                              size_t *len, vn_error *err);

/* Writes the main charts as PNG files <prefix>loss.png, top1.png, lr.png, act_learn.png,
 * throughput.png, and for detector runs box_loss.png, cls_loss.png, dfl_loss.png,
 * precision.png, recall.png, mAP50.png, mAP50-95.png (those with data); prints each path
 * written to `log` when not NULL. */
int vn_run_report_png(const vn_run_set *s, const char *prefix, FILE *log, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

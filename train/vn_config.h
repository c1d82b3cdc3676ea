/* The trainer's configuration: a typed struct with one nested struct per section, filled from
 * YAML files (libyaml) and `--set section.key=value` overrides, every key checked against one
 * static schema table (type, default, range or choices, help). The same table drives the
 * defaults, validation, `vanilla config show`, the markdown reference, hashing and diffs, so
 * adding a key is one field here plus one row in config_schema.c.
 *
 * Typical use (what `vanilla train` does):
 *
 *     vn_config cfg;
 *     vn_config_init(&cfg);                                // every key at its default
 *     vn_config_load_file(&cfg, "run.yaml", &err);         // "run.yaml:12:3: optim.lr: ..."
 *     vn_config_set(&cfg, "optim.lr=0.002", &err);         // each --set, in order
 *     vn_config_check(&cfg, &err);                         // rules that span several keys
 *     vn_config_save(&cfg, "<run dir>/config.yaml", &err); // the effective config
 *     uint64_t h = vn_config_hash(&cfg);                   // stored in every checkpoint
 *
 * Resume check: load the config text stored in the checkpoint with vn_config_from_text and
 * call vn_config_resume_check(stored, current, force). It compares values key by key, so a
 * newer build that added a key (at its default) still resumes, although the stored hash,
 * computed over the old key set, then differs from vn_config_hash of the same settings.
 *
 * Numbers are read and written with strtod / printf: keep the C numeric locale (do not call
 * setlocale(LC_NUMERIC, "") in a program that uses this module). */
#ifndef VN_CONFIG_H
#define VN_CONFIG_H

#include <stdio.h>

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VN_CONFIG_LIST_MAX 32   /* capacity of list values; each key has its own max length */
#define VN_CONFIG_STR_MAX 1024  /* capacity of string values (paths), including the NUL */
#define VN_CONFIG_MAX_KEYS 128  /* capacity of the origin table; the schema is checked to fit */
#define VN_CONFIG_MAX_FILES 4   /* config files that can be layered onto one config */
#define VN_CONFIG_MAX_EMAS 8    /* the longest ema.decays list (one best file per copy) */

typedef struct vn_config_ints {
    int n;
    int64_t v[VN_CONFIG_LIST_MAX];
} vn_config_ints;

typedef struct vn_config_floats {
    int n;
    double v[VN_CONFIG_LIST_MAX];
} vn_config_floats;

/* Enum keys are stored as int holding one of these; the order is the schema's choice order
 * and vn_config_enum_name(key, value) gives the spelling. */
typedef enum vn_config_model_name {
    VN_CONFIG_MODEL_VANILLANET_5 = 0,
    VN_CONFIG_MODEL_VANILLANET_6,
    VN_CONFIG_MODEL_VANILLANET_7,
    VN_CONFIG_MODEL_VANILLANET_8,
    VN_CONFIG_MODEL_VANILLANET_9,
    VN_CONFIG_MODEL_VANILLANET_10,
    VN_CONFIG_MODEL_VANILLANET_11,
    VN_CONFIG_MODEL_VANILLANET_12,
    VN_CONFIG_MODEL_VANILLANET_13,
    VN_CONFIG_MODEL_VANILLANET_13_X1_5,
    VN_CONFIG_MODEL_VANILLANET_13_X1_5_ADA_POOL,
    VN_CONFIG_MODEL_CUSTOM
} vn_config_model_name;

typedef enum vn_config_shortcut { VN_CONFIG_SHORTCUT_NONE = 0, VN_CONFIG_SHORTCUT_IDENTITY } vn_config_shortcut;
typedef enum vn_config_augment {
    VN_CONFIG_AUGMENT_NONE = 0,
    VN_CONFIG_AUGMENT_RRC,
    VN_CONFIG_AUGMENT_RANDOM_CROP
} vn_config_augment;
typedef enum vn_config_remode { VN_CONFIG_REMODE_CONST = 0, VN_CONFIG_REMODE_RAND, VN_CONFIG_REMODE_PIXEL } vn_config_remode;
typedef enum vn_config_interp { VN_CONFIG_INTERP_BILINEAR = 0, VN_CONFIG_INTERP_BICUBIC } vn_config_interp;
typedef enum vn_config_eval_mode { VN_CONFIG_EVAL_OFFICIAL = 0, VN_CONFIG_EVAL_RESIZE_CROP } vn_config_eval_mode;
typedef enum vn_config_optim_name {
    VN_CONFIG_OPTIM_SGD = 0,
    VN_CONFIG_OPTIM_ADAMW,
    VN_CONFIG_OPTIM_LAMB
} vn_config_optim_name;
typedef enum vn_config_schedule {
    VN_CONFIG_SCHEDULE_COSINE = 0,
    VN_CONFIG_SCHEDULE_STEP,
    VN_CONFIG_SCHEDULE_CONSTANT
} vn_config_schedule;
typedef enum vn_config_decay { VN_CONFIG_DECAY_LINEAR = 0, VN_CONFIG_DECAY_COSINE } vn_config_decay;
typedef enum vn_config_update { VN_CONFIG_UPDATE_EPOCH = 0, VN_CONFIG_UPDATE_ITERATION } vn_config_update;
typedef enum vn_config_nonfinite { VN_CONFIG_NONFINITE_STOP = 0, VN_CONFIG_NONFINITE_SKIP } vn_config_nonfinite;
typedef enum vn_config_device { VN_CONFIG_DEVICE_CPU = 0, VN_CONFIG_DEVICE_CUDA } vn_config_device;
typedef enum vn_config_precision {
    VN_CONFIG_PRECISION_FP32 = 0,
    VN_CONFIG_PRECISION_BF16
} vn_config_precision;
typedef enum vn_config_task { VN_CONFIG_TASK_CLASSIFY = 0, VN_CONFIG_TASK_DETECT } vn_config_task;

/* Field meanings, ranges and defaults: see the help of each row in config_schema.c, or run
 * `vanilla config show` / vn_config_schema_markdown. */
typedef struct vn_config_model {
    int task;                 /* vn_config_task */
    int name;                 /* vn_config_model_name */
    vn_config_ints dims;      /* empty: the variant's */
    vn_config_ints strides;   /* empty: the variant's */
    vn_config_ints ada_pool;  /* empty: the variant's (none for custom) */
    int64_t act_num;
    int64_t in_chans;
    int64_t num_classes;
    double drop_rate;
    int shortcut;             /* vn_config_shortcut */
    char init[VN_CONFIG_STR_MAX];
    char init_key[VN_CONFIG_STR_MAX]; /* "model", "model_ema", "model_ema.N", alternatives with '|' */
    bool sync_bn;             /* data-parallel: BatchNorm statistics over all ranks */
} vn_config_model;

typedef struct vn_config_data {
    char root[VN_CONFIG_STR_MAX];
    char train_dir[VN_CONFIG_STR_MAX];
    char val_dir[VN_CONFIG_STR_MAX];
    int64_t input_size;
    vn_config_floats mean;
    vn_config_floats std;
    int augment;              /* vn_config_augment */
    vn_config_floats scale;
    vn_config_floats ratio;
    int interpolation;        /* vn_config_interp, training */
    int eval_interpolation;   /* vn_config_interp */
    int eval_mode;            /* vn_config_eval_mode */
    double crop_pct;
    double hflip;
    char auto_augment[VN_CONFIG_STR_MAX];
    double color_jitter;
    double reprob;
    int remode;               /* vn_config_remode */
    int64_t recount;
    double mixup;
    double cutmix;
    double mixup_prob;
    double mixup_switch_prob;
    double smoothing;
    int64_t workers;
    int64_t prefetch;
    bool grayscale;
    bool fail_fast;
    double max_bad_fraction;
    int64_t eval_batch_size;
} vn_config_data;

typedef struct vn_config_optim {
    int name;                 /* vn_config_optim_name */
    double lr;
    double weight_decay;
    double weight_decay_end;  /* -1: same as weight_decay */
    double momentum;
    bool nesterov;
    vn_config_floats betas;
    double eps;
    double clip_grad;         /* 0: off */
    int64_t update_freq;
    int64_t warmup_epochs;
    int64_t warmup_steps;     /* > 0 overrides warmup_epochs */
    double min_lr;
    double layer_decay;       /* 1: off */
    int64_t layer_decay_num_layers;
    int schedule;             /* vn_config_schedule */
    int64_t step_epochs;
    double step_gamma;
} vn_config_optim;

typedef struct vn_config_deep_training {
    int64_t decay_epochs;     /* 0: off, act_learn 1 from the start */
    int schedule;             /* vn_config_decay */
    int update;               /* vn_config_update */
} vn_config_deep_training;

typedef struct vn_config_ema {
    vn_config_floats decays;  /* empty: no EMA */
    bool eval;
} vn_config_ema;

typedef struct vn_config_loss {
    bool bce;                 /* BCE while mixup/cutmix is on (official --bce_loss) */
    bool bce_always;          /* also on hard targets */
    double smoothing;
} vn_config_loss;

typedef struct vn_config_train {
    int64_t epochs;
    int64_t max_steps;        /* 0: no limit */
    int64_t batch_size;
    int64_t seed;
    bool shuffle;
    int64_t eval_every;       /* 0: never */
    int64_t eval_from_epoch;  /* 0: off */
    int64_t threads;          /* 0: all cores */
    double keep_mb;           /* per step: recomputable outputs kept instead (vn_ctx_set_keep) */
    int64_t log_every;
    int nonfinite;            /* vn_config_nonfinite */
    int64_t max_skip;
    int device;               /* vn_config_device */
    bool tf32;                /* cuda: TF32 tensor cores (false: strict FP32) */
    bool deterministic;       /* cuda: deterministic cuDNN algorithms only */
    int precision;            /* vn_config_precision: cuda: bf16 autocast of the GEMMs */
    double dist_bucket_mb;    /* data-parallel: gradient bucket size, MB */
    double dist_timeout;      /* data-parallel: seconds a collective may wait, 0: forever */
} vn_config_train;

/* model.task: detect (YOLO11-VanillaNet, train/vn_detect.h). */
typedef struct vn_config_detect {
    char data[VN_CONFIG_STR_MAX]; /* dataset YAML (path, train, val, names) */
    int64_t imgsz;
    double width_multiple, depth_multiple;
    int64_t max_channels;
    bool c3k;
    int64_t reg_max;
    int64_t close_mosaic;
    double mosaic, scale, translate, fliplr, hsv_h, hsv_s, hsv_v;
    double box, cls, dfl;
    int64_t topk;
    double conf, iou;
    int64_t max_det;
    double ema_decay;                       /* Ultralytics ModelEMA; 0: none */
    int64_t ema_tau;                        /* its ramp, in updates; 0: none */
    double warmup_bias_lr, warmup_momentum; /* Ultralytics' warmup of biases and momentum */
    bool warmup_accumulate;                 /* accumulation ramps 1 -> update_freq in warmup */
} vn_config_detect;

typedef struct vn_config_output {
    char dir[VN_CONFIG_STR_MAX];
    int64_t save_every;       /* 0: only at the end */
    int64_t save_every_steps; /* 0: off */
    int64_t keep_last;        /* 0: keep all */
    bool tensorboard;
} vn_config_output;

/* Where a key's value came from: a default, a file (index into files, 1-based line and
 * column of the value) or a --set. */
#define VN_CONFIG_FROM_DEFAULT (-1)
#define VN_CONFIG_FROM_SET (-2)
typedef struct vn_config_origin {
    int16_t source; /* VN_CONFIG_FROM_DEFAULT, VN_CONFIG_FROM_SET, or an index into files */
    int32_t line;
    int32_t column;
} vn_config_origin;

/* Plain data: copy it by value; there is nothing to free. */
typedef struct vn_config {
    vn_config_model model;
    vn_config_data data;
    vn_config_optim optim;
    vn_config_deep_training deep_training;
    vn_config_ema ema;
    vn_config_loss loss;
    vn_config_train train;
    vn_config_detect detect;
    vn_config_output output;
    /* Book-keeping for messages, not part of the configuration (ignored by hash, diff,
     * equality and output). */
    vn_config_origin origin[VN_CONFIG_MAX_KEYS]; /* by schema index */
    int n_files;
    char files[VN_CONFIG_MAX_FILES][VN_CONFIG_STR_MAX];
} vn_config;

/* ---- The schema ---------------------------------------------------------------------- */

typedef enum vn_config_type {
    VN_CONFIG_BOOL = 0,   /* bool */
    VN_CONFIG_INT,        /* int64_t */
    VN_CONFIG_FLOAT,      /* double, finite */
    VN_CONFIG_STRING,     /* char[VN_CONFIG_STR_MAX], valid UTF-8 */
    VN_CONFIG_ENUM,       /* int, index into choices */
    VN_CONFIG_INT_LIST,   /* vn_config_ints */
    VN_CONFIG_FLOAT_LIST  /* vn_config_floats */
} vn_config_type;

enum {
    VN_CONFIG_MIN_OPEN = 1u << 0,   /* the range excludes min */
    VN_CONFIG_MAX_OPEN = 1u << 1,   /* the range excludes max */
    VN_CONFIG_NOT_HASHED = 1u << 2, /* does not change the training result (paths, workers,
                                       logging, evaluation): left out of hash and resume check */
    VN_CONFIG_NONEMPTY = 1u << 3    /* strings: "" is not allowed */
};

typedef struct vn_config_key {
    const char *section;           /* "optim" */
    const char *name;              /* "lr" */
    const char *full;              /* "optim.lr" */
    vn_config_type type;
    size_t offset;                 /* of the value in vn_config */
    size_t size;                   /* of the value in vn_config */
    const char *def;               /* the default, as YAML text parsed like user input */
    bool has_range;                /* numbers and list elements: [min, max] applies */
    double min, max;               /* +-HUGE_VAL: unbounded */
    unsigned flags;                /* VN_CONFIG_MIN_OPEN | ... */
    const char *const *choices;    /* enums: NULL-terminated spellings */
    int min_len, max_len;          /* lists: allowed number of values */
    const char *help;              /* one line */
    const char *official;          /* the official trainer's flag ("--lr"), or NULL */
    const char *aka;               /* other common names, space-separated (for suggestions) */
} vn_config_key;

/* The table, in section order; *n receives the number of keys. */
const vn_config_key *vn_config_schema(size_t *n);
/* A key by full name ("optim.lr"); NULL when unknown. *index (may be NULL) gets its row. */
const vn_config_key *vn_config_find(const char *full, size_t *index);
/* "bool", "int", "float", "string", "enum", "int list", "float list". */
const char *vn_config_type_name(vn_config_type t);
/* The spelling of an enum value ("lamb"), or NULL when key is not an enum or value is out of
 * range. */
const char *vn_config_enum_name(const char *key, int value);

/* ---- Building a config ---------------------------------------------------------------- */

/* Every key at its schema default. Aborts (VN_ASSERT) only if the schema itself is broken. */
void vn_config_init(vn_config *cfg);

/* Applies a YAML file onto cfg: a mapping of sections to mappings of keys to scalars or
 * sequences (`section.key: value` at the top level is accepted too). Keys not in the file
 * keep their values. Errors name "path:line:column: section.key: what was expected, what was
 * found": unknown keys (with a suggestion), wrong types, out-of-range values, bad enum
 * values (with the choices), list lengths, duplicate keys, YAML syntax. On error cfg is
 * unchanged. An empty file is valid. */
int vn_config_load_file(vn_config *cfg, const char *path, vn_error *err);
/* The same for YAML text held in memory; label names it in messages ("ckpt.safetensors"). */
int vn_config_load_text(vn_config *cfg, const char *text, size_t len, const char *label,
                        vn_error *err);
/* vn_config_init + vn_config_load_text + vn_config_check: reads the config stored in a
 * checkpoint or run directory. */
int vn_config_from_text(vn_config *cfg, const char *text, size_t len, const char *label,
                        vn_error *err);

/* One command-line override, "section.key=value". The value is a YAML scalar taken
 * literally up to the end (no quoting needed for paths with ':' or '#'; "quotes" around the
 * whole value are removed); lists are a flow sequence "[32, 64, 128]" or comma-separated
 * "32,64,128"; an empty value (or ~ or null, as in YAML) is "" for strings and [] for lists. Messages start with
 * "--set <assignment>: ". On error cfg is unchanged. */
int vn_config_set(vn_config *cfg, const char *assignment, vn_error *err);

/* Rules that span several keys (a custom model needs dims and strides of matching lengths,
 * in_chans and mean/std match data.grayscale, scale and ratio are ordered, mixup needs an
 * even batch, warmup fits in training, ...). Call after every file and --set is applied;
 * messages name where the offending key was set. */
int vn_config_check(const vn_config *cfg, vn_error *err);

/* ---- Output ---------------------------------------------------------------------------- */

enum {
    VN_CONFIG_WRITE_HELP = 1u << 0,   /* a "# help (range)" comment above each key */
    VN_CONFIG_WRITE_ORIGIN = 1u << 1  /* "# from file:line" / "# from --set" after set keys */
};
/* Every key as YAML that vn_config_load_text reads back to the same values. */
int vn_config_write_yaml(const vn_config *cfg, FILE *f, unsigned flags);
/* The same into a malloc'd string (NULL when out of memory). */
char *vn_config_to_yaml(const vn_config *cfg, unsigned flags);
/* Writes the effective config (with helps) to path through a temporary file and a rename. */
int vn_config_save(const vn_config *cfg, const char *path, vn_error *err);
/* A markdown table of every key: key, type, default, range or choices, hashed, meaning. */
int vn_config_schema_markdown(FILE *f);

/* A key's value as its canonical YAML text ("0.0035", "[512, 1024]", "lamb", "\"runs\"").
 * Returns the length it needs (as snprintf), or -1 for an unknown key. */
int vn_config_get(const vn_config *cfg, const char *key, char *buf, size_t len);
/* Where a key's value came from: "run.yaml:12:3", "--set" or "default". */
const char *vn_config_origin_str(const vn_config *cfg, size_t index, char *buf, size_t len);

/* ---- Comparing ------------------------------------------------------------------------- */

/* FNV-1a 64 of the canonical "key: value" lines of every hashed key, sorted by key name:
 * independent of key order, formatting and comments in the files, and of the unhashed keys
 * (paths, workers, threads, logging, evaluation, output). */
uint64_t vn_config_hash(const vn_config *cfg);
/* The hash as 16 lowercase hex digits. */
void vn_config_hash_hex(const vn_config *cfg, char out[17]);
/* Writes one line "section.key: old -> new" per key whose value differs (only hashed keys
 * when hashed_only); f may be NULL. Returns the number of differing keys. */
int vn_config_diff(const vn_config *a, const vn_config *b, bool hashed_only, FILE *f);
/* The same lines in a malloc'd string ("" when equal; NULL when out of memory). */
char *vn_config_diff_text(const vn_config *a, const vn_config *b, bool hashed_only);
/* Same value for every key (origins aside). */
bool vn_config_equal(const vn_config *a, const vn_config *b);
/* The resume rule: VN_OK when the hashed keys agree; otherwise VN_ERR_STATE with the changed
 * keys ("optim.lr: 0.0035 -> 0.002") in the message, or, with force, VN_OK after logging
 * them as a warning. stored is the config read from the checkpoint (vn_config_from_text). */
int vn_config_resume_check(const vn_config *stored, const vn_config *current, bool force,
                           vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

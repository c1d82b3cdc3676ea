/* vanilla train / config / info */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd/vn_profile.h"
#include "train/cli/vn_cli.h"
#include "train/vn_detect.h"
#include "train/vn_official.h"
#include "train/train_impl.h"
#include "train/vn_trainer.h"

#define MAX_ARGS 64

typedef struct config_args {
    const char *files[MAX_ARGS];
    int n_files;
    const char *sets[MAX_ARGS];
    int n_sets;
} config_args;

/* Takes --set k=v / --set=k=v; returns 1 if consumed (advancing *i), -1 on error. */
static int take_set(config_args *a, int argc, char **argv, int *i, const char *cmd)
{
    const char *arg = argv[*i];
    if (strcmp(arg, "--set") == 0 || strcmp(arg, "-s") == 0) {
        if (*i + 1 >= argc) {
            vn_cli_error(cmd, "--set needs section.key=value");
            return -1;
        }
        if (a->n_sets < MAX_ARGS) a->sets[a->n_sets++] = argv[++*i];
        return 1;
    }
    if (strncmp(arg, "--set=", 6) == 0) {
        if (a->n_sets < MAX_ARGS) a->sets[a->n_sets++] = arg + 6;
        return 1;
    }
    return 0;
}

static const char train_help[] =
    "usage: vanilla train CONFIG.yaml... [--set section.key=value]... [--resume auto|CKPT] [--force]\n"
    "                     [--profile]\n"
    "\n"
    "Trains the model the config describes on data.root/train, evaluating on data.root/val.\n"
    "Several config files are applied in order; --set overrides any key (see `vanilla config\n"
    "show CONFIG` for every key, its value and its meaning).\n"
    "\n"
    "  --resume auto   continue from the newest valid checkpoint in output.dir (or start\n"
    "                  fresh if there is none); an unreadable newest checkpoint is reported\n"
    "                  and the one before it is used\n"
    "  --resume CKPT   continue from that checkpoint; bit-exact, also mid-epoch\n"
    "  --force         resume even though the config changed (prints what changed)\n"
    "  --profile       at the end, print each op's forward, backward and recompute time over\n"
    "                  the session (training and evaluation), slowest first\n"
    "\n"
    "Writes to output.dir: config.yaml, dataset.txt (the training image count, checked on\n"
    "resume), checkpoints/ckpt-s<step>.safetensors (the last output.keep_last),\n"
    "checkpoints/best.safetensors and best-ema-<N>.safetensors (the best of the model and of\n"
    "each EMA), metrics.jsonl, epochs.csv, tb/ (TensorBoard, output.tensorboard) and .lock (one\n"
    "training per folder). SIGINT, SIGTERM or SIGUSR1 finish the current step, write a\n"
    "checkpoint and exit with code 3.\n"
    "\n"
    "Started by mpirun (a build with MPI), every rank trains data-parallel: batch_size and\n"
    "update_freq are per rank, rank 0 writes output.dir; stop with SIGUSR1 to mpirun (see\n"
    "README, Many machines).\n";

/* The exit code of a failed run; with several ranks, prints the rank and ends the whole job
 * (the other ranks may be waiting for this one in a collective). A non-finite stop is agreed
 * by all ranks at the same step, so they leave together (MPI_Finalize) instead: Open MPI's
 * mpirun was seen to crash when every rank called MPI_Abort at once. */
static int train_failed(vn_dist *dist, int rc, const vn_error *err)
{
    int code = rc == VN_ERR_NUMERIC ? VN_EXIT_NONFINITE : VN_EXIT_ERROR;
    if (vn_dist_size(dist) > 1) {
        vn_cli_error("train", "rank %d of %d: %s", vn_dist_rank(dist), vn_dist_size(dist), err->msg);
        fflush(NULL);
        if (rc != VN_ERR_NUMERIC) vn_dist_abort(dist, code);
    } else {
        vn_cli_error("train", "%s", err->msg);
    }
    vn_dist_destroy(dist);
    return code;
}

/* Under mpirun: one rank of a data-parallel job (train/vn_dist.h); else a group of one. Rank 0
 * notes when OpenBLAS runs its generic kernels. NULL (after saying why) on failure. */
static vn_dist *start_rank(const vn_config *cfg)
{
    vn_dist *dist = NULL;
    vn_error err = {0};
    if (vn_dist_create(cfg->train.dist_timeout, &dist, &err) != VN_OK) {
        vn_cli_error("train", "%s", err.msg);
        return NULL;
    }
    const char *advice = vn_blas_advice();
    if (advice && vn_dist_rank(dist) == 0) fprintf(stderr, "vanilla train: note: %s\n", advice);
    return dist;
}

/* One shell word: as is when it holds only safe characters, else in single quotes. */
static void put_shell_word(FILE *f, const char *w)
{
    bool plain = w[0] != 0;
    for (const char *c = w; *c && plain; c++)
        plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                strchr("-_./=,:+@%", *c);
    if (plain) {
        fputs(w, f);
        return;
    }
    fputc('\'', f);
    for (const char *c = w; *c; c++) {
        if (*c == '\'') fputs("'\\''", f);
        else fputc(*c, f);
    }
    fputc('\'', f);
}

/* The end of a finished run on stdout: final and best figures, time, where things are. */
static void print_result(const vn_config *cfg, const vn_train_result *res)
{
    if (res->already_finished)
        printf("this run had already finished (epoch %lld of %lld); nothing to do\n",
               (long long)res->state.epoch, (long long)cfg->train.epochs);
    if (res->evaluated)
        printf("final: top-1 %.2f%%  top-5 %.2f%%  loss %.4f on %lld images\n", res->last_eval.top1,
               res->last_eval.top5, res->last_eval.loss, (long long)res->last_eval.n);
    if (res->state.best_top1 >= 0)
        printf("best:  top-1 %.2f%% (%s, epoch %lld)\n", res->state.best_top1, res->state.best_source,
               (long long)res->state.best_epoch);
    if (res->state.best_model_top1 >= 0)
        printf("       model %.2f%% (epoch %lld): checkpoints/best.safetensors\n",
               res->state.best_model_top1, (long long)res->state.best_model_epoch);
    for (int e = 0; e < cfg->ema.decays.n && e < VN_TRAIN_MAX_EMAS; e++)
        if (res->state.best_ema_top1[e] >= 0)
            printf("       EMA %g %.2f%% (epoch %lld): checkpoints/best-ema-%d.safetensors "
                   "(--key model_ema.%d)\n", cfg->ema.decays.v[e], res->state.best_ema_top1[e],
                   (long long)res->state.best_ema_epoch[e], e, e);
    printf("time:  %.1f s this session (%.1f s waiting for data), %.1f s in total\n", res->seconds,
           res->data_wait, res->state.elapsed);
    printf("run:   %s  (checkpoint %s, metrics.jsonl, epochs.csv%s)\n", cfg->output.dir,
           res->last_ckpt[0] ? res->last_ckpt : "-", cfg->output.tensorboard ? ", tb/" : "");
    fputs("see:   vanilla report ", stdout);
    put_shell_word(stdout, cfg->output.dir);
    fputs(" -o report.html\n", stdout);
}

/* The command that resumes this run: its config files and overrides, then --resume auto. */
static void print_resume_command(FILE *f, const config_args *a, int ranks)
{
    fputs("resume with: ", f);
    if (ranks > 1) fprintf(f, "mpirun -np %d ", ranks); /* and the job's other mpirun options */
    put_shell_word(f, vn_cli_program); /* as it was run: "vanilla" from the PATH, or a path */
    fputs(" train", f);
    for (int i = 0; i < a->n_files; i++) {
        fputc(' ', f);
        put_shell_word(f, a->files[i]);
    }
    for (int i = 0; i < a->n_sets; i++) {
        fputs(" --set ", f);
        put_shell_word(f, a->sets[i]);
    }
    fputs(" --resume auto\n", f);
}

/* After a write error (a full disk, say) in a run that has checkpoints: where it can go on
 * from once the cause is fixed, and the command. */
static void io_failure_hint(const vn_config *cfg, const config_args *a)
{
    char **names = NULL;
    int n = 0;
    vn_error e = {0};
    if (vn__ckpt_list(cfg->output.dir, &names, &n, &e) == VN_OK && n > 0) {
        fprintf(stderr, "the run's newest checkpoint is %s/checkpoints/%s; once the cause is "
                "fixed, ", cfg->output.dir, names[n - 1]);
        print_resume_command(stderr, a, 1);
    }
    vn__ckpt_list_free(names, n);
}

int vn_cmd_train(int argc, char **argv)
{
    config_args a = {0};
    const char *resume = NULL;
    bool force = false, profile = false;
    for (int i = 1; i < argc; i++) {
        int t = take_set(&a, argc, argv, &i, "train");
        if (t < 0) return VN_EXIT_USAGE;
        if (t) continue;
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(train_help, stdout);
            return VN_EXIT_OK;
        } else if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc) {
            resume = argv[++i];
        } else if (strncmp(argv[i], "--resume=", 9) == 0) {
            resume = argv[i] + 9;
        } else if (strcmp(argv[i], "--resume") == 0) {
            vn_cli_error("train", "--resume needs a value: auto (the newest checkpoint of "
                         "output.dir) or a checkpoint file");
            return VN_EXIT_USAGE;
        } else if (strcmp(argv[i], "--force") == 0) {
            force = true;
        } else if (strcmp(argv[i], "--profile") == 0) {
            profile = true;
        } else if (argv[i][0] == '-') {
            vn_cli_error("train", "unknown option %s (see vanilla train --help)", argv[i]);
            return VN_EXIT_USAGE;
        } else if (a.n_files < MAX_ARGS) {
            a.files[a.n_files++] = argv[i];
        }
    }
    if (a.n_files == 0) {
        fputs(train_help, stderr);
        return VN_EXIT_USAGE;
    }
    vn_config cfg;
    int ec = vn_cli_load_config(&cfg, a.files, a.n_files, a.sets, a.n_sets, "train");
    if (ec) return ec;
    if (cfg.model.task != VN_CONFIG_TASK_DETECT && !cfg.data.root[0]) {
        vn_cli_error("train", "data.root is not set: point it at a folder with train/ and val/ "
                     "class folders (in the config or with --set data.root=PATH)");
        return VN_EXIT_USAGE;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* stop signals: main installed the handler */
    vn_train_result res;
    vn_error err = {0};
    vn_dist *dist = start_rank(&cfg);
    if (!dist) return VN_EXIT_ERROR;
    vn_train_options opt = {resume, force, &vn_cli_stop, stdout, dist};
    vn_profile_enable(profile);
    int rc = vn_train(&cfg, &opt, &res, &err);
    if (rc != VN_OK) {
        bool one = vn_dist_size(dist) == 1;
        int code = train_failed(dist, rc, &err);
        /* only for a run that got as far as its state (not, say, a folder locked by another) */
        if (one && rc == VN_ERR_IO && res.state.step > 0) io_failure_hint(&cfg, &a);
        return code;
    }
    bool quiet = vn_dist_rank(dist) > 0;
    int ranks = vn_dist_size(dist);
    vn_dist_destroy(dist);
    if (quiet) return res.outcome == VN_TRAIN_INTERRUPTED ? VN_EXIT_INTERRUPTED : VN_EXIT_OK;
    printf("\n");
    if (res.outcome == VN_TRAIN_INTERRUPTED) {
        /* epochs counted as the run's progress lines count them: from 0 for a classifier,
         * from 1 for a detector (Ultralytics' "1/E") */
        const long long first = cfg.model.task == VN_CONFIG_TASK_DETECT;
        printf("interrupted at epoch %lld, step %lld; checkpoint %s\n",
               (long long)res.state.epoch + first, (long long)res.state.step, res.last_ckpt);
        print_resume_command(stdout, &a, ranks);
        return VN_EXIT_INTERRUPTED;
    }
    print_result(&cfg, &res);
    if (profile) {
        printf("\nop profile of this session (autograd/vn_profile.h):\n");
        vn_profile_report(stdout, res.seconds);
    }
    return VN_EXIT_OK;
}

static const char config_help[] =
    "usage: vanilla config show [CONFIG.yaml...] [--set section.key=value]... [--no-help]\n"
    "       vanilla config schema\n"
    "       vanilla config official\n"
    "\n"
    "show:   prints the effective config (defaults, files, overrides) as YAML with the help\n"
    "        of each key; the output is itself a valid config file.\n"
    "schema: every key with its type, default, range and meaning.\n"
    "official: every flag of the official trainer's main.py, its default, the key or command\n"
    "        that stands for it here and whether the behaviour is identical, different or absent.\n";

int vn_cmd_config(int argc, char **argv)
{
    if (argc < 2 || vn_cli_is(argv[1], "-h", "--help")) {
        fputs(config_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? VN_EXIT_USAGE : VN_EXIT_OK;
    }
    bool table = strcmp(argv[1], "schema") == 0 || strcmp(argv[1], "official") == 0;
    if (table && argc > 2 && vn_cli_is(argv[2], "-h", "--help")) {
        fputs(config_help, stdout);
        return VN_EXIT_OK;
    }
    if (table && argc > 2) {
        vn_cli_error("config", "%s takes no arguments (got %s)", argv[1], argv[2]);
        return VN_EXIT_USAGE;
    }
    if (strcmp(argv[1], "schema") == 0) return vn_config_schema_markdown(stdout) == 0 ? 0 : 1;
    if (strcmp(argv[1], "official") == 0) return vn_official_markdown(stdout) == 0 ? 0 : 1;
    if (strcmp(argv[1], "show") != 0) {
        vn_cli_error("config", "unknown subcommand %s (show, schema or official)", argv[1]);
        return VN_EXIT_USAGE;
    }
    config_args a = {0};
    unsigned flags = VN_CONFIG_WRITE_HELP | VN_CONFIG_WRITE_ORIGIN;
    for (int i = 2; i < argc; i++) {
        int t = take_set(&a, argc, argv, &i, "config");
        if (t < 0) return VN_EXIT_USAGE;
        if (t) continue;
        if (strcmp(argv[i], "--no-help") == 0) flags = 0;
        else if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(config_help, stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            vn_cli_error("config", "unknown option %s", argv[i]);
            return VN_EXIT_USAGE;
        } else if (a.n_files < MAX_ARGS) a.files[a.n_files++] = argv[i];
    }
    vn_config cfg;
    int ec = vn_cli_load_config(&cfg, a.files, a.n_files, a.sets, a.n_sets, "config");
    if (ec) return ec;
    return vn_config_write_yaml(&cfg, stdout, flags) == 0 ? 0 : 1;
}

static const char info_help[] =
    "usage: vanilla info CONFIG.yaml... [--set k=v]... [--input-size N] [--deploy]\n"
    "       vanilla info MODEL.safetensors [CONFIG.yaml... | --config FILE] [--set k=v]...\n"
    "                    [--input-size N]\n"
    "\n"
    "Per-layer output shapes, parameters and multiply-adds, with totals for the training and\n"
    "the deploy form. A plain state_dict (no vanilla metadata) is described by the configs,\n"
    "and checked against them key by key as eval does.\n"
    "A detector (file, or config with model.task: detect) gets one row per backbone layer and\n"
    "per YOLO11 layer (SPPF ... Detect) and Ultralytics' summary: parameters and GFLOPs\n"
    "(2 x multiply-adds) at its imgsz or --input-size.\n";

static int print_report(const vn_vanillanet_config *mc, bool deploy, int size, const char *cmd)
{
    vn_report r;
    vn_error err = {0};
    if (vn_vanillanet_report(mc, deploy, size, size, &r, &err) != VN_OK) {
        vn_cli_error(cmd, "%s", err.msg);
        return VN_EXIT_ERROR;
    }
    printf("%s form, input %dx%dx%d:\n", deploy ? "deploy" : "training", size, size, mc->in_chans);
    vn_report_print(&r, stdout);
    vn_report_free(&r);
    return 0;
}

/* Class folders of an image folder (subfolders not starting with '.'), -1 when it cannot be
 * read. The loader's rule, without reading the images. */
static int count_class_folders(const char *root)
{
    DIR *d = opendir(root);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", root, de->d_name);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) n++;
    }
    closedir(d);
    return n;
}

/* A plain state_dict against the config's model, key by key, as eval/predict/export check
 * it; false after saying why. */
static bool plain_fits(const char *model_file, const vn_config *cfg)
{
    vn_vanillanet *m = NULL;
    vn_ckpt_info chk;
    vn_error err = {0};
    if (vn_open_model_cfg(model_file, -1, cfg, &m, &chk, &err) != VN_OK) {
        vn_cli_error("info", "%s", err.msg);
        return false;
    }
    vn_vanillanet_destroy(m);
    vn_ckpt_info_free(&chk);
    return true;
}

/* The class count `info CONFIG` describes: model.num_classes, else (0) one per folder of the
 * training images as train counts them, else 1000; said when it is not the key's. */
static int info_num_classes(const vn_config *cfg)
{
    if (cfg->model.num_classes > 0) return (int)cfg->model.num_classes;
    char split[4096];
    int folders = cfg->data.root[0] ? count_class_folders(vn_split_path(cfg, true, split, sizeof split)) : -1;
    if (folders > 0) {
        printf("model.num_classes 0: %d classes, the folders of %s\n", folders, split);
        return folders;
    }
    printf("model.num_classes 0 and no training folder to count classes in: assuming 1000\n");
    return 1000;
}

/* A weight file whatever its name: safetensors opens with an 8-byte little-endian header
 * length and the header's '{'. */
static bool looks_safetensors(const char *path)
{
    unsigned char b[9];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n < sizeof b || b[8] != '{') return false;
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = len << 8 | b[i];
    return len >= 2 && len < ((uint64_t)1 << 32);
}

int vn_cmd_info(int argc, char **argv)
{
    config_args a = {0};
    int size = 0;
    bool deploy_only = false, bad = false;
    const char *model_file = NULL;
    for (int i = 1; i < argc; i++) {
        int t = take_set(&a, argc, argv, &i, "info");
        if (t < 0) return VN_EXIT_USAGE;
        if (t) continue;
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(info_help, stdout);
            return 0;
        } else if (strcmp(argv[i], "--input-size") == 0 && i + 1 < argc) {
            size = vn_cli_int("info", "--input-size", argv[++i], 1, 16384, &bad);
        } else if (strcmp(argv[i], "--deploy") == 0) {
            deploy_only = true;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            /* as eval/predict/export take it; a positional config works the same */
            if (a.n_files < MAX_ARGS) a.files[a.n_files++] = argv[++i];
        } else if (argv[i][0] == '-') {
            vn_cli_error("info", "unknown option %s", argv[i]);
            return VN_EXIT_USAGE;
        } else if (strstr(argv[i], ".safetensors") || looks_safetensors(argv[i])) {
            model_file = argv[i];
        } else if (vn_cli_model_hint("info", argv[i])) { /* a run folder, .pth, .onnx */
            return VN_EXIT_ERROR;
        } else if (a.n_files < MAX_ARGS) {
            a.files[a.n_files++] = argv[i];
        }
    }
    if (bad) return VN_EXIT_USAGE;
    vn_vanillanet_config mc;
    vn_error err = {0};
    bool file_deploy = false;
    if (model_file && vn_detect_file_is(model_file)) return vn_cli_detect_info(model_file, NULL, size, deploy_only);
    if (model_file) {
        vn_ckpt_info info;
        vn_config cfg; /* describes a plain state_dict (no vanilla metadata) */
        int ec = vn_cli_load_config(&cfg, a.files, a.n_files, a.sets, a.n_sets, "info");
        if (ec) return ec;
        if (vn_ckpt_info_read_cfg(model_file, &cfg, &info, &err) != VN_OK) {
            vn_cli_error("info", "%s", err.msg);
            return VN_EXIT_ERROR;
        }
        if (info.plain && !plain_fits(model_file, &cfg)) {
            vn_ckpt_info_free(&info);
            return VN_EXIT_ERROR;
        }
        mc = info.model;
        file_deploy = info.deploy;
        if (!size) size = info.has_data ? info.input_size : 224;
        printf("%s: %s%s, %d classes\n", model_file, info.is_checkpoint ? "training checkpoint"
               : info.plain ? "plain state_dict (model from the config)" : "weights",
               info.deploy ? " (deploy form)" : "", mc.num_classes);
        vn_ckpt_info_free(&info);
    } else {
        if (a.n_files == 0 && a.n_sets == 0) {
            fputs(info_help, stderr);
            return VN_EXIT_USAGE;
        }
        vn_config cfg;
        int ec = vn_cli_load_config(&cfg, a.files, a.n_files, a.sets, a.n_sets, "info");
        if (ec) return ec;
        if (cfg.model.task == VN_CONFIG_TASK_DETECT) return vn_cli_detect_info(NULL, &cfg, size, deploy_only);
        if (vn_build_model_config(&cfg, info_num_classes(&cfg), &mc, &err) != VN_OK) {
            vn_cli_error("info", "%s", err.msg);
            return VN_EXIT_ERROR;
        }
        if (!size) size = (int)cfg.data.input_size;
    }
    int rc = 0;
    if (!deploy_only && !file_deploy) rc = print_report(&mc, false, size, "info");
    if (rc == 0 && (mc.shortcut == VN_SHORTCUT_NONE)) {
        if (!deploy_only && !file_deploy) printf("\n");
        rc = print_report(&mc, true, size, "info");
    }
    return rc;
}

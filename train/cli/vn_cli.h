/* The `vanilla` command: shared helpers of the subcommands. */
#ifndef VN_CLI_H
#define VN_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "train/vn_config.h"

/* Exit codes (also in `vanilla --help`). */
enum {
    VN_EXIT_OK = 0,
    VN_EXIT_ERROR = 1,       /* bad input, I/O, failed run: the message says which */
    VN_EXIT_USAGE = 2,       /* bad command line */
    VN_EXIT_INTERRUPTED = 3, /* SIGINT/SIGTERM/SIGUSR1: checkpoint written, resume later */
    VN_EXIT_NONFINITE = 4    /* training stopped on a non-finite loss or gradient */
};

/* Prints "vanilla <cmd>: <msg>" to stderr. */
void vn_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A model file that could not be read: msg, or what the path is instead when that says more
 * (a run folder: its best and newest checkpoints; a PyTorch file: vanilla import; an ONNX
 * file: an export). */
void vn_cli_model_error(const char *cmd, const char *path, const char *msg);
/* The same hints when path is not a file a model command reads (run folder, .pth, .onnx):
 * printed, and true; false (nothing printed) otherwise. */
bool vn_cli_model_hint(const char *cmd, const char *path);

/* Loads CONFIG files and --set overrides into cfg (defaults first), then checks it. */
int vn_cli_load_config(vn_config *cfg, const char *const *files, int n_files,
                       const char *const *sets, int n_sets, const char *cmd);

/* The number in s, all of it, as the value of option opt of cmd: on anything else (not a
 * number, trailing characters, outside [lo, hi]) says so and sets *bad (the caller then
 * exits with VN_EXIT_USAGE), returning lo. */
int vn_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, bool *bad);
double vn_cli_real(const char *cmd, const char *opt, const char *s, double lo, double hi, bool *bad);

/* Checks an output file path before any work: not the input file `in` itself (NULL: no
 * input), not a folder, and its folder exists and is writable. Says what is wrong and returns
 * false (the caller exits with VN_EXIT_ERROR). */
bool vn_cli_output_ok(const char *cmd, const char *out, const char *in);
/* Whether a and b both exist and are the same file (same inode, through links too). */
bool vn_cli_same_file(const char *a, const char *b);

/* True when `arg` is one of the given option spellings. */
bool vn_cli_is(const char *arg, const char *a, const char *b);

int vn_cmd_train(int argc, char **argv);
int vn_cmd_config(int argc, char **argv);
int vn_cmd_info(int argc, char **argv);
int vn_cmd_eval(int argc, char **argv);
int vn_cmd_export(int argc, char **argv);
int vn_cmd_predict(int argc, char **argv);
int vn_cmd_data(int argc, char **argv);
int vn_cmd_ablate(int argc, char **argv);
int vn_cmd_import(int argc, char **argv);
int vn_cmd_report(int argc, char **argv);
/* Detector files (train/cli/cmd_detect.c): eval, predict and export hand over to these when
 * vn_cli_is_detector (the first positional argument is a detector file). */
bool vn_cli_is_detector(int argc, char **argv);
int vn_cmd_detect_eval(int argc, char **argv);
int vn_cmd_detect_predict(int argc, char **argv);
int vn_cmd_detect_export(int argc, char **argv);
/* `vanilla info` on a detector file (model_file) or a model.task: detect config (cfg; its
 * classes from detect.data when readable, else 80): per-layer table and summary at size
 * (0: the file's or config's imgsz), training form then deploy form (deploy_only: only that). */
int vn_cli_detect_info(const char *model_file, const vn_config *cfg, int size, bool deploy_only);

/* Set by the signal handlers of `train` and `ablate`. */
extern volatile sig_atomic_t vn_cli_stop;
void vn_cli_install_signals(void);
/* argv[0] as the user typed it (main sets it): what a printed command should start with. */
extern const char *vn_cli_program;

#endif

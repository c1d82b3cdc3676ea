/* vanilla: train, evaluate, export and use VanillaNet models. */
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/vn_base.h"
#include "base/vn_fs.h"
#include "io/vn_pth.h"
#include "train/cli/vn_cli.h"
#include "train/train_impl.h"

volatile sig_atomic_t vn_cli_stop = 0;
const char *vn_cli_program = "vanilla";

static void on_signal(int sig)
{
    (void)sig;
    vn_cli_stop = 1;
}

void vn_cli_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

bool vn_cli_model_hint(const char *cmd, const char *path)
{
    struct stat st;
    size_t n = strlen(path);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char **names = NULL, best[4096];
        int k = 0;
        vn_error e = {0};
        snprintf(best, sizeof best, "%s/checkpoints/best.safetensors", path);
        bool has_best = stat(best, &st) == 0;
        if (vn__ckpt_list(path, &names, &k, &e) == VN_OK && (k > 0 || has_best)) {
            char newest[4096] = "";
            if (k > 0) snprintf(newest, sizeof newest, "%s/checkpoints/%s (newest)", path, names[k - 1]);
            vn_cli_error(cmd, "%s is a run folder: give one of its checkpoints, e.g. %s%s%s", path,
                         has_best ? best : "", has_best && k > 0 ? " (best) or " : has_best ? " (best)" : "",
                         newest);
            vn__ckpt_list_free(names, k);
        } else {
            vn__ckpt_list_free(names, k);
            vn_cli_error(cmd, "%s is a folder, not a checkpoint or weight file", path);
        }
        return true;
    }
    if (vn_pth_looks_like(path)) {
        vn_cli_error(cmd, "%s is a PyTorch file (torch.save): convert it first with `vanilla "
                     "import %s -o WEIGHTS.safetensors`", path, path);
        return true;
    }
    if (n > 5 && strcasecmp(path + n - 5, ".onnx") == 0) {
        vn_cli_error(cmd, "%s: an ONNX file is an export for other runtimes; vanilla reads "
                     "safetensors checkpoints and weights (give the file it was exported from)",
                     path);
        return true;
    }
    return false;
}

void vn_cli_model_error(const char *cmd, const char *path, const char *msg)
{
    if (!vn_cli_model_hint(cmd, path)) vn_cli_error(cmd, "%s", msg);
}

void vn_cli_error(const char *cmd, const char *fmt, ...)
{
    fprintf(stderr, "vanilla %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int vn_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, bool *bad)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        vn_cli_error(cmd, "%s wants an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
        *bad = true;
        return (int)lo;
    }
    return (int)v;
}

double vn_cli_real(const char *cmd, const char *opt, const char *s, double lo, double hi, bool *bad)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi)) {
        vn_cli_error(cmd, "%s wants a number in [%g, %g], got '%s'", opt, lo, hi, s);
        *bad = true;
        return lo;
    }
    return v;
}

bool vn_cli_is(const char *arg, const char *a, const char *b)
{
    return (a && strcmp(arg, a) == 0) || (b && strcmp(arg, b) == 0);
}

bool vn_cli_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

bool vn_cli_output_ok(const char *cmd, const char *out, const char *in)
{
    struct stat so;
    if (vn_cli_same_file(out, in)) {
        vn_cli_error(cmd, "the output %s is the input file %s: writing it would destroy the "
                     "input; choose another output path", out, in);
        return false;
    }
    if (stat(out, &so) == 0 && S_ISDIR(so.st_mode)) {
        vn_cli_error(cmd, "the output %s is a folder; give a file path", out);
        return false;
    }
    /* The folder it goes into must exist and take new files (a temporary, then a rename). */
    char dir[4096];
    if (stat(vn_fs_parent(out, dir, sizeof dir), &so) != 0) {
        vn_cli_error(cmd, "cannot write %s: the folder %s does not exist", out, dir);
        return false;
    }
    if (!S_ISDIR(so.st_mode)) {
        vn_cli_error(cmd, "cannot write %s: %s is a file, not a folder", out, dir);
        return false;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        vn_cli_error(cmd, "cannot write %s: the folder %s is not writable (%s)", out, dir,
                     strerror(errno));
        return false;
    }
    return true;
}

int vn_cli_load_config(vn_config *cfg, const char *const *files, int n_files,
                       const char *const *sets, int n_sets, const char *cmd)
{
    vn_error err = {0};
    vn_config_init(cfg);
    for (int i = 0; i < n_files; i++)
        if (vn_config_load_file(cfg, files[i], &err) != VN_OK) {
            vn_cli_error(cmd, "%s", err.msg);
            return VN_EXIT_ERROR;
        }
    for (int i = 0; i < n_sets; i++)
        if (vn_config_set(cfg, sets[i], &err) != VN_OK) {
            vn_cli_error(cmd, "%s", err.msg);
            return VN_EXIT_USAGE;
        }
    if (vn_config_check(cfg, &err) != VN_OK) {
        vn_cli_error(cmd, "%s", err.msg);
        /* A rule broken by a value given with --set is a bad command line, as a bad --set
         * value is (the message starts with where the key was set). */
        return strncmp(err.msg, "--set", 5) == 0 ? VN_EXIT_USAGE : VN_EXIT_ERROR;
    }
    return VN_EXIT_OK;
}

static const char usage[] =
    "usage: vanilla <command> [options]\n"
    "\n"
    "Train VanillaNet models on ImageNet-format image folders, resume, evaluate, export the\n"
    "merged deploy network (loads into the official PyTorch model) and run ablations.\n"
    "\n"
    "commands:\n"
    "  train CONFIG...     train (or resume) a model from YAML config files\n"
    "  eval MODEL          top-1/top-5/loss of a checkpoint or weight file on a folder\n"
    "  export CKPT -o OUT  merge a checkpoint into the deploy network (safetensors, ONNX)\n"
    "  predict MODEL IMG.. top-k classes of image files\n"
    "  ablate BASE ABL     run a grid of config overrides and tabulate the results\n"
    "  report RUN...       one self-contained HTML page of runs: curves, tables, config\n"
    "  info CONFIG|MODEL   per-layer shapes, parameters and multiply-adds\n"
    "  config show|schema|official  the effective config, every key, the official flags\n"
    "  data import|check   import MNIST/Fashion-MNIST into image folders, check a folder\n"
    "  data preview CONFIG a PNG grid of augmented training samples\n"
    "  import W.pth -o OUT convert PyTorch weights (torch.save) to safetensors, no Python\n"
    "\n"
    "Run `vanilla <command> --help` for the options of a command.\n"
    "\n"
    "exit codes: 0 ok, 1 error, 2 bad command line, 3 interrupted by a signal (a checkpoint\n"
    "was written: resume with --resume auto), 4 stopped on a non-finite loss or gradient\n";

int main(int argc, char **argv)
{
    /* A stop signal that comes while the process starts (vn_runtime_setup may exec again,
     * which resets handlers but keeps the signal mask) waits, blocked, until the commands
     * that stop cleanly (train, ablate) have their handler: then it stops the run after its
     * first step with a checkpoint (exit 3) instead of killing it on the spot. */
    sigset_t stop_sigs;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &stop_sigs, NULL);
    vn_runtime_setup(argv); /* before any OpenMP or BLAS work; may exec again */
    if (argc > 0 && argv[0] && strchr(argv[0], '/')) vn_cli_program = argv[0]; /* a path */
    if (argc >= 2 && (strcmp(argv[1], "train") == 0 || strcmp(argv[1], "ablate") == 0))
        vn_cli_install_signals();
    sigprocmask(SIG_UNBLOCK, &stop_sigs, NULL);
    if (argc < 2 || vn_cli_is(argv[1], "-h", "--help") || strcmp(argv[1], "help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? VN_EXIT_USAGE : VN_EXIT_OK;
    }
    if (vn_cli_is(argv[1], "--version", NULL)) {
        printf("vanilla 0.1.0\n");
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"train", vn_cmd_train},   {"eval", vn_cmd_eval},     {"export", vn_cmd_export},
                {"predict", vn_cmd_predict}, {"ablate", vn_cmd_ablate}, {"info", vn_cmd_info},
                {"config", vn_cmd_config}, {"data", vn_cmd_data}, {"import", vn_cmd_import},
                {"report", vn_cmd_report}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "vanilla: unknown command '%s'\n\n%s", argv[1], usage);
    return VN_EXIT_USAGE;
}

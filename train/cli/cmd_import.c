/* vanilla import: official PyTorch weights (.pth) into safetensors. */
#include <stdio.h>
#include <string.h>

#include "train/cli/vn_cli.h"
#include "train/vn_trainer.h"

static const char import_help[] =
    "usage: vanilla import WEIGHTS.pth -o OUT.safetensors [--key model|model_ema|state_dict|...]\n"
    "                      [--config FILE]... [--set section.key=value]...\n"
    "\n"
    "Converts a PyTorch file written by torch.save (the official VanillaNet releases and main.py\n"
    "checkpoints: a bare state_dict or {\"model\": ..., \"model_ema\": ...}) into a safetensors\n"
    "weight file with the official names, without Python. --key picks the entry (default: the\n"
    "file itself when it is a state_dict, else model, state_dict, model_ema, module). float16,\n"
    "bfloat16 and float64 tensors become float32; DataParallel 'module.' prefixes are dropped;\n"
    "views are made contiguous. With --config/--set, every tensor is checked against that\n"
    "model (all mismatches reported by key with both shapes) and the output carries the model,\n"
    "its preprocessing and class numbers, so eval/predict/export/model.init need no config.\n"
    "\n"
    "Both torch.save formats are read (the zip archive, and the legacy one before PyTorch 1.6).\n"
    "Refused: any pickle that names a global other than\n"
    "OrderedDict, the tensor rebuild functions, the storage types and argparse.Namespace\n"
    "(nothing in the file is ever executed).\n";

int vn_cmd_import(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *key = NULL, *files[16], *sets[64];
    int n_files = 0, n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (vn_cli_is(argv[i], "-h", "--help")) {
            fputs(import_help, stdout);
            return 0;
        } else if (vn_cli_is(argv[i], "-o", "--output") && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) key = argv[++i];
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc && n_files < 16) files[n_files++] = argv[++i];
        else if (vn_cli_is(argv[i], "--set", "-s") && i + 1 < argc && n_sets < 64) sets[n_sets++] = argv[++i];
        else if (argv[i][0] == '-') {
            vn_cli_error("import", "unknown option %s (see vanilla import --help)", argv[i]);
            return VN_EXIT_USAGE;
        } else if (in) {
            vn_cli_error("import", "one file at a time: %s, then %s (see vanilla import --help)",
                         in, argv[i]);
            return VN_EXIT_USAGE;
        } else in = argv[i];
    }
    if (!in || !out) {
        fputs(import_help, stderr);
        return VN_EXIT_USAGE;
    }
    if (!vn_cli_output_ok("import", out, in)) return VN_EXIT_ERROR;
    vn_config cfg;
    bool with_cfg = n_files || n_sets;
    if (with_cfg) {
        int ec = vn_cli_load_config(&cfg, files, n_files, sets, n_sets, "import");
        if (ec) return ec;
    }
    vn_pth_import_result res;
    vn_error err = {0};
    if (vn_import_pth(in, key, with_cfg ? &cfg : NULL, out, &res, &err) != VN_OK) {
        vn_cli_error("import", "%s", err.msg);
        return VN_EXIT_ERROR;
    }
    const vn_pth_stats *s = &res.stats;
    printf("%s: %d tensors (%lld values) from %s%s%s: %d converted to float32, %d 'module.' "
           "prefixes dropped, %d views made contiguous\n", in, s->n_tensors, (long long)s->numel,
           s->key[0] ? "'" : "the file itself", s->key, s->key[0] ? "'" : "", s->n_converted,
           s->n_stripped, s->n_views);
    if (res.checked)
        printf("checked against the config's model: %s form, %d classes; model description stored\n",
               res.deploy ? "deploy" : "training", res.num_classes);
    else
        printf("not checked (no --config): a plain state_dict; give --config/--set where it is used\n");
    printf("weights: %s\n", out);
    return 0;
}

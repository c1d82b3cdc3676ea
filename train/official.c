/* The official trainer's flags beside ours (see vn_official.h). Facts from main.py,
 * engine.py, datasets.py, optim_factory.py and utils.py of huawei-noah/VanillaNet. */
#include "train/vn_official.h"

#include <stdlib.h>
#include <string.h>

#define SAME(f, d, k, c, n) {f, d, k, c, VN_OFFICIAL_SAME, n}
#define DIFF(f, d, k, c, n) {f, d, k, c, VN_OFFICIAL_DIFFERENT, n}
#define ABSENT(f, d, n) {f, d, NULL, NULL, VN_OFFICIAL_ABSENT, n}

static const vn_official_flag flags[] = {
    SAME("--batch_size", "64", "train.batch_size", NULL,
         "Per process; the official effective batch is GPUs x batch_size x update_freq, ours "
         "batch_size x update_freq."),
    SAME("--epochs", "300", "train.epochs", NULL, NULL),
    DIFF("--early_stop_epochs", "None", "train.max_steps", NULL,
         "Counted in optimizer steps, schedules unchanged (official: stops after epoch index N, "
         "i.e. N + 1 epochs)."),
    SAME("--decay_epochs", "100", "deep_training.decay_epochs", NULL, NULL),
    SAME("--decay_linear", "True", "deep_training.schedule", NULL,
         "True is linear, False cosine; deep_training.update: iteration also offers a "
         "per-iteration act_learn."),
    SAME("--update_freq", "1", "optim.update_freq", NULL, NULL),
    SAME("--model", "vanillanet_5", "model.name", NULL, "Also custom dims and strides."),
    DIFF("--switch_to_deploy", "None", NULL, "vanilla export CKPT -o OUT",
         "A command of its own: checks the merge on a batch and refuses act_learn < 1 unless "
         "--force."),
    DIFF("--deploy", "False", NULL, "vanilla eval / predict on a deploy file",
         "The form is read from the weight file; training always uses the training form."),
    SAME("--drop", "0", "model.drop_rate", NULL, NULL),
    SAME("--input_size", "224", "data.input_size data.eval_mode", NULL,
         "With data.eval_mode official, datasets.py's geometry: at <= 32 px RandomCrop with "
         "padding 4 and no evaluation resize, at >= 384 px a square evaluation resize."),
    DIFF("--model_ema", "False", "ema.decays", NULL, "EMA is on when ema.decays is not empty."),
    SAME("--model_ema_decay", "0.9999", "ema.decays", NULL, "A list, as the official nargs='+'."),
    ABSENT("--model_ema_force_cpu", "False", "EMA copies live on the model's device (train.device)."),
    DIFF("--model_ema_eval", "False", "ema.eval", NULL,
         "Each EMA copy keeps its own best-ema-N.safetensors (official: one checkpoint-best-ema "
         "for the best of all copies); best.safetensors is the live model's, as "
         "checkpoint-best."),
    DIFF("--opt", "adamw", "optim.name optim.nesterov", NULL,
         "sgd (Nesterov as the official factory; optim.nesterov: false is its 'momentum'), adamw "
         "and lamb; timm's other optimizers and lookahead are absent."),
    SAME("--opt_eps", "1e-8", "optim.eps", NULL, NULL),
    SAME("--opt_betas", "None", "optim.betas", NULL, "None is the optimizers' (0.9, 0.999)."),
    DIFF("--clip_grad", "None", "optim.clip_grad", NULL,
         "Applied on every step; the official engine passes it only to the AMP loss scaler, so "
         "it clips only with --use_amp. LAMB's own clipping at norm 1.0 is in both."),
    SAME("--momentum", "0.9", "optim.momentum", NULL, NULL),
    SAME("--weight_decay", "0.05", "optim.weight_decay", NULL,
         "No decay on biases and 1-D parameters, as optim_factory."),
    SAME("--weight_decay_end", "None", "optim.weight_decay_end", NULL, "None is -1 here."),
    SAME("--lr", "4e-3", "optim.lr", NULL, "Neither scales it by the batch size."),
    SAME("--layer_decay", "1.0", "optim.layer_decay", NULL, NULL),
    SAME("--layer_decay_num_layers", "4", "optim.layer_decay_num_layers", NULL, NULL),
    SAME("--min_lr", "1e-6", "optim.min_lr", NULL, NULL),
    SAME("--warmup_epochs", "5", "optim.warmup_epochs", NULL, NULL),
    SAME("--warmup_steps", "-1", "optim.warmup_steps", NULL, NULL),
    SAME("--color_jitter", "0.4", "data.color_jitter", NULL,
         "torchvision 0.14 ColorJitter, used only while data.auto_augment is off (timm's rule)."),
    DIFF("--aa", "rand-m9-mstd0.5-inc1", "data.auto_augment", NULL,
         "timm 0.6.12's RandAugment strings, ops equal to Pillow 9.4; our default is the "
         "recipes' rand-m7-mstd0.5-inc1; AutoAugment and AugMix policies are refused."),
    SAME("--smoothing", "0.1", "data.smoothing loss.smoothing", NULL,
         "One flag, two keys: the mixed soft targets and the hard-label loss."),
    DIFF("--train_interpolation", "bicubic", "data.interpolation data.eval_interpolation", NULL,
         "bilinear or bicubic, no 'random'. It sets the training resizes only; the evaluation "
         "resize has its own key, bicubic as the official one."),
    SAME("--bce_loss", "False", "loss.bce loss.bce_always", NULL,
         "BCE only while mixup or cutmix is on, label-smoothing cross-entropy otherwise; "
         "loss.bce_always uses BCE on hard labels too."),
    ABSENT("--bce_target_thresh", "None", "BCE targets are never binarised."),
    SAME("--crop_pct", "None", "data.crop_pct", NULL,
         "None is 224 / 256 = 0.875; used between 33 and 383 px in data.eval_mode official."),
    SAME("--reprob", "0.25", "data.reprob", NULL, "timm's RandomErasing after Normalize."),
    SAME("--remode", "pixel", "data.remode", NULL, NULL),
    SAME("--recount", "1", "data.recount", NULL, NULL),
    ABSENT("--resplit", "False", "No augmentation splits."),
    SAME("--mixup", "0.8", "data.mixup", NULL, NULL),
    SAME("--cutmix", "1.0", "data.cutmix", NULL, NULL),
    ABSENT("--cutmix_minmax", "None", "CutMix boxes come from the Beta draw only."),
    SAME("--mixup_prob", "1.0", "data.mixup_prob", NULL, NULL),
    SAME("--mixup_switch_prob", "0.5", "data.mixup_switch_prob", NULL, NULL),
    DIFF("--mixup_mode", "batch", NULL, NULL,
         "Only the default mode, batch; pair and elem are absent."),
    DIFF("--finetune", "", "model.init", NULL,
         "Safetensors weights, loaded strictly: a tensor that does not fit is an error (the "
         "official load prints the mismatches and goes on)."),
    SAME("--model_key", "model|module", "model.init_key", "--key of eval, predict, export",
         "model, model_ema (EMA copy 0) or model_ema.N; a|b takes the first the file holds."),
    ABSENT("--model_prefix", "", "State-dict names are matched without a prefix."),
    SAME("--data_path", "/datasets01/imagenet_full_size/061417/", "data.root", NULL,
         "root/train and root/val, as --data_set IMNET."),
    DIFF("--eval_data_path", "None", "data.val_dir", NULL,
         "Relative to data.root, or an absolute path."),
    DIFF("--nb_classes", "1000", "model.num_classes", NULL,
         "0 counts the class folders (official IMNET fixes 1000)."),
    DIFF("--imagenet_default_mean_and_std", "True", "data.mean data.std", NULL,
         "The values themselves (ImageNet's by default; False is the inception 0.5s)."),
    ABSENT("--data_set", "IMNET", "Always image folders in the IMNET layout; no CIFAR download."),
    DIFF("--output_dir", "", "output.dir", NULL,
         "Always written (official: '' saves nothing)."),
    DIFF("--log_dir", "None", "output.tensorboard", NULL,
         "TensorBoard files go into the run directory when true."),
    DIFF("--device", "cuda", "train.device", NULL,
         "cpu by default; cuda trains on one GPU (eval, predict and export take --device)."),
    DIFF("--seed", "0", "train.seed", NULL,
         "Also fixes shuffling, augmentation and dropout: same seed and threads, same bytes."),
    DIFF("--resume", "", NULL, "vanilla train --resume PATH",
         "Bit-exact, also mid-epoch; a changed config is refused unless --force."),
    DIFF("--resume_new_sched", "False", NULL, "vanilla train --resume PATH --force",
         "Resuming under a changed config needs --force; the schedules follow the new config."),
    SAME("--auto_resume", "False", NULL, "vanilla train --resume auto",
         "The newest checkpoint that passes its CRC check."),
    DIFF("--save_ckpt", "True", "output.save_every", NULL,
         "Checkpoints are always written; 0 writes only the last (and the best)."),
    SAME("--save_ckpt_freq", "1", "output.save_every", NULL, NULL),
    SAME("--test_freq", "20", "train.eval_every", NULL,
         "After epoch e when e > 0 and e % N == 0; the last epoch is always evaluated here."),
    DIFF("--test_epoch", "260", "train.eval_from_epoch", NULL,
         "Every epoch after T: eval_from_epoch T + 1; 0 is off."),
    DIFF("--save_ckpt_num", "10", "output.keep_last", NULL,
         "Keeps the newest N periodic checkpoints (official: deletes the one N saves back)."),
    ABSENT("--start_epoch", "0", "The epoch comes from the checkpoint."),
    DIFF("--eval", "False", NULL, "vanilla eval MODEL", "A command of its own."),
    ABSENT("--dist_eval", "True", "One process (distributed plumbing)."),
    DIFF("--disable_eval", "False", "train.eval_every", NULL, "train.eval_every: 0."),
    SAME("--num_workers", "10", "data.workers", NULL, "Batches do not depend on it."),
    ABSENT("--pin_mem", "True", "No device transfers."),
    ABSENT("--world_size", "1", "One process (distributed plumbing)."),
    ABSENT("--local_rank", "-1", "One process (distributed plumbing)."),
    ABSENT("--dist_on_itp", "False", "One process (distributed plumbing)."),
    ABSENT("--dist_url", "env://", "One process (distributed plumbing)."),
    ABSENT("--use_amp", "False", "float32 on the CPU."),
    ABSENT("--enable_wandb", "False", "metrics.jsonl, epochs.csv and TensorBoard instead."),
    ABSENT("--wandb_ckpt", "False", "No Weights and Biases."),
    SAME("--act_num", "3", "model.act_num", NULL, NULL),
    SAME("--real_labels", "", NULL, "vanilla eval --real-labels FILE",
         "ImageNet-ReaL top-1/top-5 beside top-1/top-5 (official: with --eval, or after "
         "training with the best EMA)."),
};

const vn_official_flag *vn_official_flags(size_t *n)
{
    if (n) *n = sizeof flags / sizeof flags[0];
    return flags;
}

const vn_official_flag *vn_official_find(const char *flag)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strcmp(flags[i].flag, flag) == 0) return &flags[i];
    return NULL;
}

bool vn_official_has_key(const vn_official_flag *row, const char *key)
{
    size_t len = strlen(key);
    for (const char *k = row->keys; k && *k;) {
        const char *sp = strchr(k, ' ');
        size_t kl = sp ? (size_t)(sp - k) : strlen(k);
        if (kl == len && strncmp(k, key, len) == 0) return true;
        if (!sp) break;
        k = sp + 1;
    }
    return false;
}

static void cell(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else fputc(*s, f);
    }
}

/* "`a`, `b`" for the keys, then the command; our defaults "`v`, `w`" from the schema. */
static void ours(FILE *f, const vn_official_flag *r, const vn_config *def, bool defaults)
{
    int n = 0;
    for (const char *k = r->keys; k && *k;) {
        const char *sp = strchr(k, ' ');
        size_t kl = sp ? (size_t)(sp - k) : strlen(k);
        char key[128], value[256];
        snprintf(key, sizeof key, "%.*s", (int)kl, k);
        fputs(n++ ? ", `" : "`", f);
        if (defaults && vn_config_get(def, key, value, sizeof value) >= 0) cell(f, value);
        else if (!defaults) cell(f, key);
        fputc('`', f);
        if (!sp) break;
        k = sp + 1;
    }
    if (!defaults && r->command) {
        fputs(n ? "; `" : "`", f);
        cell(f, r->command);
        fputc('`', f);
    }
}

int vn_official_markdown(FILE *f)
{
    static const char *const status[] = {"identical", "different", "absent"};
    vn_config *def = malloc(sizeof *def);
    if (!def) return VN_ERR_NOMEM;
    vn_config_init(def);
    fputs("| Official flag | Official default | Ours | Our default | Behaviour | How, or why |\n", f);
    fputs("|---|---|---|---|---|---|\n", f);
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        const vn_official_flag *r = &flags[i];
        fprintf(f, "| `%s` | ", r->flag);
        if (r->def[0]) {
            fputc('`', f);
            cell(f, r->def);
            fputc('`', f);
        } else {
            fputs("`''`", f);
        }
        fputs(" | ", f);
        if (r->keys || r->command) ours(f, r, def, false);
        else fputs("-", f);
        fputs(" | ", f);
        if (r->keys) ours(f, r, def, true);
        else fputs("-", f);
        fprintf(f, " | %s | ", status[r->status]);
        cell(f, r->note);
        fputs(" |\n", f);
    }
    free(def);
    return ferror(f) ? VN_ERR_IO : VN_OK;
}

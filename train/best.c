/* When to evaluate and which checkpoints are the best ones, as the official main.py: an
 * evaluation after epoch e when e > 0 and e % test_freq == 0 or e > test_epoch, and
 * `checkpoint-best` for the live model apart from `checkpoint-best-ema` for its EMA copies
 * (here one best-ema-N per copy). And what a non-finite step does (train.nonfinite), for
 * the classifier's and the detector's trainers. */
#include "train/train_impl.h"
#include "train/vn_trainer.h"

#include <stdio.h>
#include <unistd.h>

bool vn_eval_due(const vn_config *cfg, int64_t epoch, bool last)
{
    int64_t every = cfg->train.eval_every, from = cfg->train.eval_from_epoch;
    if (every <= 0) return false;
    if (last) return true;
    if (epoch <= 0) return false;
    return epoch % every == 0 || (from > 0 && epoch >= from);
}

bool vn_best_record(vn_train_state *st, int source, double top1, int64_t epoch)
{
    if (source >= VN_TRAIN_MAX_EMAS) return false;
    double *best = source < 0 ? &st->best_model_top1 : &st->best_ema_top1[source];
    int64_t *at = source < 0 ? &st->best_model_epoch : &st->best_ema_epoch[source];
    if (!(top1 > *best)) return false;
    *best = top1;
    *at = epoch;
    return true;
}

void vn_best_name(int source, char *buf, size_t len)
{
    if (source < 0) snprintf(buf, len, "best.safetensors");
    else snprintf(buf, len, "best-ema-%d.safetensors", source);
}

int vn_best_link(const char *ckpt, const char *dir, const char *name, const vn_ckpt_parts *p,
                 vn_error *err)
{
    char best[4096], tmp[4200];
    snprintf(best, sizeof best, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", best, (int)getpid());
    unlink(tmp);
    if (link(ckpt, tmp) == 0 && rename(tmp, best) == 0) return VN_OK;
    unlink(tmp);
    return vn_ckpt_save(best, p, err); /* no hard links here: write it again */
}

int vn__set_schedules(vn_optim *opt, const vn_schedule *lr_sched, const vn_schedule *wd_sched,
                      int64_t pos, vn_error *err)
{
    double lr = vn_schedule_value(lr_sched, pos), wd = vn_schedule_value(wd_sched, pos);
    if (vn_optim_set_lr(opt, lr) != VN_OK || vn_optim_set_weight_decay(opt, wd) != VN_OK)
        return vn_error_set(err, VN_ERR_INVALID, "step %lld: the schedules give lr %g and weight "
                            "decay %g; both must be finite and >= 0", (long long)pos, lr, wd);
    return VN_OK;
}

int vn__failed_eval_kept(int rc, const char *ckpt, int64_t epoch, vn_error *err)
{
    char msg[sizeof err->msg], again[96] = "";
    snprintf(msg, sizeof msg, "%s", err->msg);
    if (epoch >= 0)
        snprintf(again, sizeof again, ", where the evaluation of epoch %lld runs again", (long long)epoch);
    return vn_error_set(err, rc, "%s\nthe training so far is kept in %s: once the cause is fixed, "
                        "the run goes on from there%s (vanilla train with --resume auto, or the "
                        "same vanilla ablate command)", msg, ckpt, again);
}

int vn__nonfinite_skip(const vn_config *cfg, int64_t *skipped_in_row, int64_t epoch, int64_t step,
                       double lr, const char *last_ckpt, vn_error *err)
{
    (*skipped_in_row)++;
    if (cfg->train.nonfinite == VN_CONFIG_NONFINITE_STOP || *skipped_in_row > cfg->train.max_skip)
        return vn_error_set(err, VN_ERR_NUMERIC, "non-finite loss or gradient at epoch %lld, "
                            "step %lld (lr %.3g); stopped. The last good checkpoint is %s",
                            (long long)epoch, (long long)step, lr,
                            last_ckpt[0] ? last_ckpt : "(none written yet)");
    vn_log(VN_LOG_WARN, "non-finite loss or gradient at step %lld: step skipped (%lld in a row)",
           (long long)step, (long long)*skipped_in_row);
    return VN_OK;
}

/* Internals shared by the files of train/ (not installed, not for the commands): the one
 * writer of the model metadata, the description of plain weight files, the checkpoint
 * listing. */
#ifndef VN_TRAIN_IMPL_H
#define VN_TRAIN_IMPL_H

#include <stdio.h>

#include "io/vn_onnx.h"
#include "models/vn_yolo.h"
#include "optim/vn_schedule.h"
#include "train/vn_trainer.h"

/* The metadata every model file we write carries: "format", vanilla.model, vanilla.classes
 * (when class_names) and vanilla.data, the preprocessing, taken from cfg or, without one,
 * from data (when data->has_data). */
int vn__write_model_meta(vn_st_writer *w, const vn_vanillanet *m, const vn_config *cfg,
                         const vn_ckpt_info *data, const char *const *class_names, int n_classes,
                         vn_error *err);

/* The deploy VanillaNet's stem and stages as ONNX nodes from g's chain output, for a size x size
 * input (train/export_onnx.c): the classifier's export and the detector's backbone. feats (may
 * be NULL) gets the name of each feature (owned by g): 0 the stem's, i + 1 stage i's. */
int vn__onnx_vanillanet_features(vn_onnx *g, const vn_vanillanet *m, int size, const char **feats,
                                 vn_error *err);

/* The detector's description as vanilla.detector holds it (JSON, malloc'd; train/detect_ckpt.c). */
char *vn__detector_json(const vn_yolo *m);

/* The preprocessing of cfg's evaluation loader, in the fields of d that vanilla.data gives
 * (sets d->has_data). */
void vn__data_from_config(const vn_config *cfg, vn_ckpt_info *d);

/* Describes a plain state_dict (no vanilla metadata) with cfg's model (train/plain_weights.c). */
int vn__plain_info(const vn_st_file *f, const char *path, const vn_config *cfg, vn_ckpt_info *info,
                   vn_error *err);

/* Model state against a file's entry (train/plain_weights.c): same dtype and shape (conv
 * weights in the file's OIHW), and both described as "F32 [8, 3, 4, 4]". */
bool vn__state_entry_fits(const vn_state_item *e, const vn_st_entry *fe);
const char *vn__state_item_shape(const vn_state_item *e, char *buf, size_t len);
const char *vn__st_entry_shape(const vn_st_entry *fe, char *buf, size_t len);

/* Which weights key ("model", "model_ema", "model_ema.N", "a|b": the first held) names in a
 * file (train/model_key.c): *index -1 the live model, N >= 0 EMA copy N; a key the file does
 * not hold or cannot hold is an error naming path. */
int vn__model_key_pick(const char *path, const char *key, bool is_checkpoint, int n_emas,
                       int *index, vn_error *err);

/* One training per run folder: an exclusive flock on run_dir/.lock (holding the pid, for the
 * message), held until vn__run_unlock (or the process ends). VN_ERR_STATE naming the other
 * process when it is taken. */
int vn__run_lock(const char *run_dir, int *fd, vn_error *err);
/* A start that fails before training leaves no empty folders behind: vn__run_folder_note,
 * before the folders are made, records which of the run folder and its checkpoints/ do not
 * exist yet; vn__run_folder_undo, called while this process still holds the run folder's lock
 * (never without it: another start may have made the folders), removes those of them that
 * are still empty, the .lock with the folder. */
typedef struct vn__run_made {
    bool dir, ckdir;
} vn__run_made;
void vn__run_folder_note(const char *run_dir, vn__run_made *made);
void vn__run_folder_undo(const char *run_dir, const vn__run_made *made);
void vn__run_unlock(int fd);

/* A new run (no --resume) must not go into a folder that holds one: VN_ERR_INVALID saying
 * so when run_dir/checkpoints has checkpoints, VN_OK otherwise. */
int vn__fresh_run_check(const char *run_dir, vn_error *err);

/* The checkpoint names (ckpt-s<step>.safetensors) of run_dir/checkpoints, oldest first.
 * VN_ERR_NOT_FOUND without the folder (then *n is 0), VN_ERR_NOMEM; free with
 * vn__ckpt_list_free. */
int vn__ckpt_list(const char *run_dir, char ***names, int *n, vn_error *err);
void vn__ckpt_list_free(char **names, int n);

/* The file's optimizer entries (names, dtypes, shapes) match opt; nothing is written. */
int vn__ckpt_optim_check(const vn_st_file *f, const char *path, vn_optim *opt, vn_error *err);

/* The checkpoint `--resume WANT` names: "auto" is the newest of run_dir (none yet: path ""
 * and a line on out saying training starts from scratch), anything else is the path itself. */
int vn__resume_path(const char *want, const char *run_dir, FILE *out, char *path, size_t len,
                    vn_error *err);

/* The lr and weight decay of schedule position pos set on opt; a value the optimizer refuses
 * (negative or not finite) is an error naming it, never a step at the previous value. Both
 * trainers' rule (train/best.c). */
int vn__set_schedules(vn_optim *opt, const vn_schedule *lr_sched, const vn_schedule *wd_sched,
                      int64_t pos, vn_error *err);

/* The error of an evaluation that failed (rc, err) after the steps were saved in ckpt: err's
 * message and how to go on (epoch: the evaluation the resume runs again; -1 none, the one at
 * train.max_steps). Returns rc. */
int vn__failed_eval_kept(int rc, const char *ckpt, int64_t epoch, vn_error *err);

/* A step skipped for a non-finite loss or gradient (train.nonfinite): counts it in
 * *skipped_in_row and returns VN_OK to go on (skip mode, at most train.max_skip in a row) or
 * the VN_ERR_NUMERIC that stops the run, naming the step, the lr and the last good checkpoint
 * (last_ckpt, "" when none was written yet). Both trainers' rule (train/best.c). */
int vn__nonfinite_skip(const vn_config *cfg, int64_t *skipped_in_row, int64_t epoch, int64_t step,
                       double lr, const char *last_ckpt, vn_error *err);

#endif

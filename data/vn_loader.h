/* A deterministic, prefetching batch loader over an image folder.
 *
 * Determinism: everything random is derived from the config's seed, never from timing.
 *  - The epoch's order is a Fisher-Yates permutation from vn_rng(seed, epoch, PERM tag), so
 *    a resumed run rebuilds it from (seed, epoch) alone.
 *  - A sample's augmentation draws come from vn_rng(seed, epoch, dataset index).
 *  - Mixup/cutmix draws of a batch come from vn_rng(seed', epoch, first position of the
 *    batch in the epoch's order).
 *  - Workers (pthreads, never OpenMP) decode samples in any order, but each sample lands in
 *    its fixed slot and batches are handed out in order: a batch is byte-identical for 0,
 *    1, 2 or 4 workers and any prefetch depth.
 *
 * Bad files (unreadable, corrupt, truncated, not an image, too large): the slot of a bad
 * sample at position p is filled by the next readable sample of the permutation (positions
 * p+1, p+2, ..., wrapping around), with augmentation draws from vn_rng(seed'', epoch, p) so
 * that the stand-in is not a pixel copy of the same file at its own position. (Files are
 * not probed at open: that would read every file of ImageNet before training.) Whether a
 * file is bad does not depend on timing, so neither does the result. Each bad file is
 * reported once through vn_log(VN_LOG_WARN, "<path>: <reason> ...") when the first batch
 * that met it is handed out, and counted. With fail_fast, vn_loader_next returns an error
 * naming the file instead. When the bad files seen exceed max_bad_fraction of the dataset,
 * vn_loader_next returns an error saying so (counts, threshold, the last file and its
 * reason); bad files are counted in batch order, so the batch that trips the limit is
 * deterministic too.
 * With empty_bad_slots (evaluation) the slot of a bad file is left empty instead: label -1,
 * index -1, zero pixels; consumers skip such samples.
 * Files without an image extension (stray text files) are not samples at all.
 *
 * One thread consumes a loader (next / release / start_epoch); the workers are internal.
 *
 * Usage:
 *     vn_loader_config cfg;
 *     vn_loader_config_init(&cfg);           // ImageNet training defaults
 *     cfg.root = "data/train"; cfg.batch_size = 128; ...
 *     vn_loader *ld;
 *     if (vn_loader_open(&cfg, &ld, &err)) ...
 *     vn_loader_start_epoch(ld, epoch, position, &err);   // position 0, or a saved cursor
 *     vn_batch b;
 *     while ((rc = vn_loader_next(ld, &b, &err)) == VN_OK && b.size > 0) {
 *         ... use b.images (NHWC), b.labels or b.soft_targets ...
 *         save (b.epoch, b.next_position) as the resume cursor with the checkpoint
 *         vn_loader_release(ld, &b);
 *     }
 *     vn_loader_close(ld);
 */
#ifndef VN_LOADER_H
#define VN_LOADER_H

#include "autograd/vn_tensor.h"
#include "data/vn_dataset.h"
#include "data/vn_transform.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_augment {
    VN_AUGMENT_NONE = 0, /* eval transform: resize shorter side + center crop */
    VN_AUGMENT_RRC = 1,  /* RandomResizedCrop(scale, ratio) to input_size */
    VN_AUGMENT_RANDOM_CROP = 2 /* RandomCrop(input_size, padding 4): the official trainer's
                                  training crop at input sizes <= 32 */
} vn_augment;

typedef struct vn_loader_config {
    const char *root;     /* a split folder: <root>/<class>/<image> */
    /* Expected classes (e.g. the train split's, or a checkpoint's); labels follow this list.
     * NULL: the folder's own sorted class folders. */
    const char *const *class_names;
    int n_class_names;

    int input_size;       /* output images are input_size x input_size */
    int channels;         /* 3 (RGB) or 1 (gray) */
    vn_augment augment;
    float scale[2];       /* RRC area range, default (0.08, 1) */
    float ratio[2];       /* RRC aspect range, default (3/4, 4/3) */
    vn_interp interpolation;
    double crop_pct;      /* eval: shorter side to floor(input_size / crop_pct); 0.875 */
    vn_eval_resize eval_resize; /* geometry of the non-random path (eval, augment NONE) */
    float hflip;          /* flip probability (0.5 for training, 0 for eval) */
    float mean[3];
    float std[3];
    /* Training augmentations after crop and flip, in timm's order (data/vn_augment.h);
     * vn_loader_config_eval turns them off. */
    const char *auto_augment; /* timm RandAugment string ("rand-m7-mstd0.5-inc1"); NULL or
                                 "": off. Parsed at open, not kept. */
    float color_jitter;       /* brightness/contrast/saturation; only without auto_augment */
    float reprob;             /* random erasing probability; 0: off */
    int remode;               /* vn_erase_mode (default pixel) */
    int recount;              /* most erasing boxes per image (default 1) */

    float mixup_alpha;    /* 0 disables */
    float cutmix_alpha;   /* 0 disables */
    float mixup_switch_prob;
    float mixup_prob;
    float label_smoothing; /* smoothing of the mixed targets (only when mixing is on) */
    int num_classes;       /* soft-target width; 0: the number of classes found */

    int batch_size;
    bool drop_last;       /* training: drop the last partial batch */
    bool shuffle;         /* permute per epoch (else dataset order) */
    uint64_t seed;
    int workers;          /* decoding threads (pthreads); 0 decodes inside vn_loader_next */
    int prefetch;         /* batch buffers (>= 1), including those the caller holds: workers
                             run up to prefetch - held batches ahead */

    /* Data-parallel sharding by batch: of the batches of B consecutive positions from the
     * start position (batch g covers start + g*B ...), this loader hands out only those with
     * g % shard_count == shard_index, in order. shard_count <= 1: every batch. Positions,
     * augmentation and mixing draws are those of the unsharded order, so a batch is the same
     * bytes whichever shard takes it. */
    int shard_index, shard_count;

    bool fail_fast;       /* the first bad file stops the run */
    /* Evaluation: a bad file's slot stays empty (label -1, index -1, zero pixels) instead of
     * taking the next readable file, so that no image is counted twice. */
    bool empty_bad_slots;
    double max_bad_fraction; /* stop when more than this share of files is bad (0.01) */
    int64_t max_image_pixels; /* <= 0: VN_IMAGE_DEFAULT_MAX_PIXELS */
} vn_loader_config;

/* ImageNet training defaults: 224, RGB, RRC (0.08-1, 3/4-4/3), bilinear, crop_pct 0.875,
 * hflip 0.5, ImageNet mean/std, no mixup (switch 0.5, prob 1, smoothing 0.1 when enabled),
 * batch 64, drop_last, shuffle, seed 0, 2 workers, prefetch 3, max_bad_fraction 0.01. */
void vn_loader_config_init(vn_loader_config *cfg);
/* The matching evaluation settings of a training config: no augmentation, no flip, no
 * mixing, no shuffle, everything kept. */
void vn_loader_config_eval(vn_loader_config *cfg);

typedef struct vn_loader vn_loader;

typedef struct vn_batch {
    int size;              /* samples; 0 marks the end of the epoch */
    vn_tensor *images;     /* [size, H, W, C] float32, owned by the loader */
    int32_t *labels;       /* [size] (the unmixed labels; -1: an empty slot, see above) */
    float *soft_targets;   /* [size, num_classes] when mixup/cutmix is on, else NULL */
    int64_t *indices;      /* [size] dataset index of each sample actually used */
    int64_t epoch;
    int64_t position;      /* position in the epoch's order of the first sample */
    int64_t next_position; /* resume cursor after this batch: (epoch, next_position) */
    double mix_lam;        /* 1 when not mixed */
    bool mix_cutmix;       /* cutmix (box below) rather than mixup */
    int mix_box[4];        /* cutmix box: rows [0]..[1], columns [2]..[3] (ends excluded) */
    int slot_;             /* private */
} vn_batch;

int vn_loader_open(const vn_loader_config *cfg, vn_loader **out, vn_error *err);
/* Starts (or restarts) an epoch at `position` in its order (0, or a saved next_position).
 * Work in flight for a previous epoch is discarded. Batches still held stay valid until
 * released. */
int vn_loader_start_epoch(vn_loader *ld, int64_t epoch, int64_t position, vn_error *err);
/* The next batch in order, waiting for the workers if needed. VN_OK with batch->size == 0
 * at the end of the epoch. Errors: fail_fast on a bad file, too many bad files, holding
 * more than `prefetch` batches without releasing them (VN_ERR_STATE). After an error the
 * loader needs vn_loader_start_epoch again. */
int vn_loader_next(vn_loader *ld, vn_batch *batch, vn_error *err);
/* Gives the batch's memory back for reuse; the batch must not be used afterwards. */
void vn_loader_release(vn_loader *ld, vn_batch *batch);
void vn_loader_close(vn_loader *ld);

int64_t vn_loader_num_samples(const vn_loader *ld);
/* Batches in a full epoch (drop_last: floor(n / B), else ceil(n / B)). */
int64_t vn_loader_batches_per_epoch(const vn_loader *ld);
int vn_loader_num_classes(const vn_loader *ld);
const char *const *vn_loader_class_names(const vn_loader *ld);
const vn_dataset *vn_loader_dataset(const vn_loader *ld);
/* Seconds the caller spent blocked inside vn_loader_next (the "data wait" metric). */
double vn_loader_wait_seconds(const vn_loader *ld);
/* Distinct bad files reported so far. */
int64_t vn_loader_bad_files(const vn_loader *ld);

/* `vanilla data preview`: the first n samples of epoch 0 of cfg's training pipeline
 * (crop, flip, RandAugment / color jitter, erasing; mixup and cutmix are per batch and left
 * out), un-normalised to 8 bits (round(255 * (x * std + mean)), clipped), as a PNG grid of
 * ceil(sqrt(n)) columns with 2-pixel white gaps. *shown (may be NULL) receives the number of
 * tiles (fewer when the folder has fewer images). */
int vn_loader_preview(const vn_loader_config *cfg, int n, const char *png_path, int *shown,
                      vn_error *err);

/* One image for prediction: decode + the eval transform of cfg (input_size, channels,
 * interpolation, crop_pct, mean, std; augmentation fields ignored) into
 * input_size * input_size * channels floats (HWC). */
int vn_load_eval_image(const char *path, const vn_loader_config *cfg, float *out,
                       vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

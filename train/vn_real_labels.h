/* ImageNet-ReaL accuracy ("Are we done with ImageNet?", Beyer et al. 2020), as the official
 * trainer's --real_labels (timm 0.6.12 RealLabelsImagenet): real.json is a list whose entry
 * i holds the set of correct classes of ILSVRC2012_val_<i + 1, 8 digits>.JPEG (possibly
 * empty). Images with an empty set are left out; a prediction counts as right when it is
 * in the set (top-5: when any of the five is). */
#ifndef VN_REAL_LABELS_H
#define VN_REAL_LABELS_H

#include "data/vn_dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vn_real_labels vn_real_labels;

/* Reads real.json; errors name the file and the entry that is not a list of class ids. */
int vn_real_labels_load(const char *path, vn_real_labels **out, vn_error *err);
void vn_real_labels_free(vn_real_labels *rl);
/* Entries in the file (images it covers). */
int64_t vn_real_labels_count(const vn_real_labels *rl);

typedef struct vn_real_result {
    double top1, top5;  /* percentages over the images counted */
    int64_t counted;    /* images with a non-empty label set */
    int64_t skipped;    /* images whose set is empty */
} vn_real_result;

/* Scores logits [n_images, nc] (row i = dataset index i; rows holding NaN, images that could
 * not be read, are left out) against the labels of each file's base name. A file whose name
 * is not ILSVRC2012_val_NNNNNNNN.JPEG within the file's entries is an error naming it (timm
 * fails there too). Ties between logits go to the lower class index. */
int vn_real_accuracy(const vn_real_labels *rl, const vn_dataset *ds, const float *logits,
                     int nc, vn_real_result *res, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

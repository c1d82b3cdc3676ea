/* A small synthetic image-folder dataset for trainer and CLI tests: 4 classes of 16x16 gray
 * PNGs whose brightness level depends on the class, under noise and distracting stripes, so
 * a tiny network learns them in a few epochs. */
#ifndef VN_TEST_SYNTH_H
#define VN_TEST_SYNTH_H

#include <stdint.h>

/* Writes <root>/train/c<k>/<i>.png (n_train per class) and <root>/val/... (n_val per class).
 * Returns 0 on success. */
int vn_synth_dataset(const char *root, int n_train, int n_val, uint64_t seed);

#endif

#include "synth.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/vn_rng.h"
#include "data/vn_image.h"

static int write_split(const char *root, const char *split, int n, vn_rng *rng)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", root, split);
    mkdir(root, 0777);
    mkdir(dir, 0777);
    for (int k = 0; k < 4; k++) {
        char cdir[1100];
        snprintf(cdir, sizeof cdir, "%s/c%d", dir, k);
        mkdir(cdir, 0777);
        for (int i = 0; i < n; i++) {
            /* Noise (and stripes of random orientation and phase as a distractor) over a
             * brightness level that depends on the class: a feature that survives global
             * average pooling, so a tiny network learns it within a few epochs. */
            uint8_t px[16 * 16];
            int phase = (int)vn_rng_below(rng, 4), vertical = (int)vn_rng_below(rng, 2);
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 16; x++) {
                    int on = (((vertical ? x : y) + phase) / 2) % 2;
                    px[y * 16 + x] = (uint8_t)(k * 45 + on * 40 + (int)vn_rng_below(rng, 80));
                }
            char path[1200];
            snprintf(path, sizeof path, "%s/%03d.png", cdir, i);
            vn_error err = {0};
            if (vn_png_write(path, px, 16, 16, 1, 1, &err) != 0) {
                fprintf(stderr, "synth: %s\n", err.msg);
                return -1;
            }
        }
    }
    return 0;
}

int vn_synth_dataset(const char *root, int n_train, int n_val, uint64_t seed)
{
    vn_rng rng;
    vn_rng_seed(&rng, seed, 77, 0);
    if (write_split(root, "train", n_train, &rng)) return -1;
    return write_split(root, "val", n_val, &rng);
}

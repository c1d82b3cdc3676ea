/* libFuzzer target: MNIST IDX parsing (vn_idx_parse_memory, the checks vn_import_idx applies
 * to files). The first two bytes give the length of the labels file (little-endian, modulo
 * the bytes left); the labels file follows, then the images file. */
#include "data/vn_dataset.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t rest = size - 2;
    size_t llen = ((size_t)data[0] | (size_t)data[1] << 8) % (rest + 1);
    const uint8_t *labels = data + 2, *images = data + 2 + llen;
    vn_error err = {0};
    vn_idx_set set;
    if (vn_idx_parse_memory(images, rest - llen, "images.idx3", labels, llen, "labels.idx1", 10,
                            &set, &err) != VN_OK) {
        if (err.msg[0] == '\0') abort();
        return 0;
    }
    unsigned sum = 0;
    size_t img = (size_t)set.rows * (size_t)set.cols;
    for (int64_t i = 0; i < set.n; i++) {
        if (set.labels[i] >= 10) abort();
        sum += set.pixels[(size_t)i * img + img - 1];
    }
    (void)sum;
    return 0;
}

/* libFuzzer target: the PyTorch .pth importer (libzip archive or legacy chained pickles, the
 * restricted unpickler, storages, strides and offsets) on arbitrary bytes. A file that parses
 * is turned into a state_dict and serialized as safetensors, then read back: every tensor it
 * names must lie inside the serialized bytes. */
#include "io/vn_pth.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vn_error err = {0};
    vn_pth *p = NULL;
    if (vn_pth_read_memory(data, size, "fuzz.pth", &p, &err) != VN_OK) {
        if (p || err.msg[0] == '\0') abort(); /* a failure leaves *out NULL and says why */
        return 0;
    }
    vn_st_writer *w = vn_st_writer_new();
    if (!w) abort();
    vn_pth_stats stats = {0};
    vn_error e2 = {0};
    if (vn_pth_state_dict(p, NULL, w, &stats, &e2) == VN_OK) {
        void *buf = NULL;
        size_t len = 0;
        if (vn_st_serialize(w, 0, &buf, &len, &e2) == VN_OK) {
            vn_st_file *f = NULL;
            if (vn_st_open_memory(buf, len, "fuzz.safetensors", &f, &e2) != VN_OK) abort();
            if (vn_st_count(f) != stats.n_tensors) abort();
            vn_st_close(f);
            free(buf);
        } else if (e2.msg[0] == '\0') {
            abort();
        }
    } else if (e2.msg[0] == '\0') {
        abort();
    }
    vn_st_writer_free(w);
    vn_pth_free(p);
    return 0;
}

/* PyTorch .pth files read without Python: the zip archive torch.save writes since PyTorch 1.6
 * (<name>/data.pkl, <name>/data/<key> storage records, stored uncompressed) through libzip,
 * and the legacy format before it (chained pickles, then the storages' raw records),
 * and a restricted unpickler that understands exactly what state_dicts and the official
 * training checkpoints use: dicts and OrderedDicts, torch._utils._rebuild_tensor_v2 and
 * _rebuild_parameter, the typed storages (Float, Half, BFloat16, Double, Long, Int, Short,
 * Char, Byte, Bool) through persistent ids, ints, floats, strings, None, tuples, lists and
 * argparse.Namespace (main.py's "args"), kept as inert values. Any other global is refused by
 * name, and nothing in the file is ever executed. Strides and storage offsets are honoured
 * (views become contiguous tensors); every size, index and record length is checked. */
#ifndef VN_PTH_H
#define VN_PTH_H

#include "io/vn_safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vn_pth vn_pth;

/* Whether path begins as torch.save files do: a zip archive ("PK") or a legacy pickle of
 * protocol 2 (0x80 0x02). Only a hint for messages and dispatch; vn_pth_read decides. */
bool vn_pth_looks_like(const char *path);

/* Parses a whole file (zip or legacy). Errors name the file and the cause ("ckpt.pth: data.pkl
 * at byte 14: the pickle names the global 'posix.system', ..."). */
int vn_pth_read(const char *path, vn_pth **out, vn_error *err);
/* The same from memory (not copied; only needed during the call); the entry point for
 * fuzzing. label names the buffer in messages. */
int vn_pth_read_memory(const void *buf, size_t len, const char *label, vn_pth **out, vn_error *err);
void vn_pth_free(vn_pth *p);

typedef struct vn_pth_stats {
    char key[64];      /* the entry the state_dict came from ("" for the file itself) */
    int n_tensors;
    int n_converted;   /* float16 / bfloat16 / float64 tensors turned into float32 */
    int n_stripped;    /* names that lost a DataParallel "module." prefix */
    int n_views;       /* non-contiguous or offset tensors made contiguous */
    int64_t numel;
} vn_pth_stats;

/* Adds the state_dict held under `key` (NULL: the file itself when it maps names to tensors,
 * else "model", then "state_dict", "model_ema", "module") to w: floating tensors as F32,
 * integer and bool tensors as I64, in the file's order, "module." prefixes stripped. A
 * missing key or a non-tensor entry is an error listing what the file holds. */
int vn_pth_state_dict(const vn_pth *p, const char *key, vn_st_writer *w, vn_pth_stats *stats,
                      vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

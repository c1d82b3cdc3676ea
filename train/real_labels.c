/* ImageNet-ReaL labels (see vn_real_labels.h). */
#include "train/vn_real_labels.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct vn_real_labels {
    int64_t n;
    int64_t *start; /* n + 1 offsets into ids */
    int32_t *ids;
};

void vn_real_labels_free(vn_real_labels *rl)
{
    if (!rl) return;
    free(rl->start);
    free(rl->ids);
    free(rl);
}

int64_t vn_real_labels_count(const vn_real_labels *rl) { return rl ? rl->n : 0; }

static int fill(vn_real_labels *rl, json_t *a, const char *path, vn_error *err)
{
    size_t total = 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *e = json_array_get(a, i);
        if (!json_is_array(e))
            return vn_error_set(err, VN_ERR_FORMAT, "%s: entry %zu is not a list of class ids",
                                path, i);
        total += json_array_size(e);
    }
    rl->n = (int64_t)json_array_size(a);
    rl->start = malloc((size_t)(rl->n + 1) * sizeof *rl->start);
    rl->ids = malloc((total ? total : 1) * sizeof *rl->ids);
    if (!rl->start || !rl->ids) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int64_t k = 0;
    for (int64_t i = 0; i < rl->n; i++) {
        json_t *e = json_array_get(a, (size_t)i);
        rl->start[i] = k;
        for (size_t j = 0; j < json_array_size(e); j++) {
            json_t *v = json_array_get(e, j);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
                return vn_error_set(err, VN_ERR_FORMAT, "%s: entry %lld holds a value that is not "
                                    "a class id", path, (long long)i);
            rl->ids[k++] = (int32_t)json_integer_value(v);
        }
    }
    rl->start[rl->n] = k;
    return VN_OK;
}

int vn_real_labels_load(const char *path, vn_real_labels **out, vn_error *err)
{
    *out = NULL;
    json_error_t je;
    json_t *a = json_load_file(path, 0, &je);
    if (!a)
        return vn_error_set(err, VN_ERR_FORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    int rc = VN_OK;
    vn_real_labels *rl = calloc(1, sizeof *rl);
    if (!rl) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    else if (!json_is_array(a))
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: expected a JSON list (one list of class ids per "
                          "validation image)", path);
    else rc = fill(rl, a, path, err);
    json_decref(a);
    if (rc != VN_OK) {
        vn_real_labels_free(rl);
        return rc;
    }
    *out = rl;
    return VN_OK;
}

/* Entry of "ILSVRC2012_val_NNNNNNNN.JPEG" (the base name of rel), or -1. */
static int64_t entry_of(const char *rel)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    static const char pre[] = "ILSVRC2012_val_";
    if (strlen(base) != sizeof pre - 1 + 8 + 5 || strncmp(base, pre, sizeof pre - 1) != 0 ||
        strcmp(base + sizeof pre - 1 + 8, ".JPEG") != 0)
        return -1;
    int64_t v = 0;
    for (int i = 0; i < 8; i++) {
        char c = base[sizeof pre - 1 + i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    return v - 1;
}

/* Rank of the best five classes: ties go to the lower index. */
static int top5(const float *row, int nc, int out[5])
{
    int k = nc < 5 ? nc : 5;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < nc; c++) {
            bool used = false;
            for (int q = 0; q < j; q++) used |= out[q] == c;
            if (!used && (best < 0 || row[c] > row[best])) best = c;
        }
        out[j] = best;
    }
    return k;
}

int vn_real_accuracy(const vn_real_labels *rl, const vn_dataset *ds, const float *logits,
                     int nc, vn_real_result *res, vn_error *err)
{
    memset(res, 0, sizeof *res);
    int64_t right1 = 0, right5 = 0;
    for (int64_t i = 0; i < vn_dataset_size(ds); i++) {
        const char *rel = vn_dataset_relpath(ds, i);
        int64_t e = entry_of(rel);
        if (e < 0 || e >= rl->n)
            return vn_error_set(err, VN_ERR_NOT_FOUND, "%s: no ImageNet-ReaL entry for this file "
                                "(expected ILSVRC2012_val_NNNNNNNN.JPEG, NNNNNNNN from 1 to %lld)",
                                rel, (long long)rl->n);
        const float *row = logits + i * nc;
        if (isnan(row[0])) continue; /* not read: reported by the loader */
        const int32_t *set = rl->ids + rl->start[e];
        int64_t n_set = rl->start[e + 1] - rl->start[e];
        if (n_set == 0) {
            res->skipped++;
            continue;
        }
        int pred[5];
        int k = top5(row, nc, pred);
        for (int j = 0; j < k; j++) {
            bool in = false;
            for (int64_t q = 0; q < n_set; q++) in |= set[q] == pred[j];
            if (in) {
                right1 += j == 0;
                right5++;
                break;
            }
        }
        res->counted++;
    }
    res->top1 = res->counted ? 100.0 * (double)right1 / (double)res->counted : 0;
    res->top5 = res->counted ? 100.0 * (double)right5 / (double)res->counted : 0;
    return VN_OK;
}

/* Helpers for the CLI tests (tests/train/test_cli.sh):
 *   testtool synth ROOT N_TRAIN N_VAL      writes the synthetic dataset
 *   testtool compare A B NAME TOL          max |A.NAME - B.NAME| <= TOL (safetensors F32)
 *   testtool corrupt FILE                  flips one byte in the middle of the data
 *   testtool flip FILE TEXT                flips the lowest bit of the byte that follows the
 *                                          first TEXT in FILE ("\"mean\":[" turns the stored
 *                                          mean 0.3 into 1.3)
 *   testtool same A B                      every tensor of A is in B with the same bytes
 *                                          (and B has no other): 0 same, 1 differ
 *   testtool close A B RTOL [PREFIX]       every tensor of A (whose name starts with PREFIX)
 *                                          is in B: F32 within RTOL x the tensor's largest
 *                                          |value| (at least 1e-2: tensors below that are
 *                                          rounding noise, as the biases in front of a
 *                                          BatchNorm, whose gradient is 0, ~1e-8) element by
 *                                          element; other types equal */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/vn_safetensors.h"
#include "synth.h"

static int flip_after(const char *path, const char *text)
{
    FILE *f = fopen(path, "r+b");
    if (!f) return 1;
    size_t tl = strlen(text), n = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    long at = -1;
    for (size_t i = 0; buf && tl && i + tl < n && at < 0; i++)
        if (memcmp(buf + i, text, tl) == 0) at = (long)(i + tl);
    int rc = 1;
    if (at >= 0 && fseek(f, at, SEEK_SET) == 0) {
        fputc(buf[at] ^ 1, f);
        rc = 0;
    } else {
        fprintf(stderr, "flip: '%s' not found in %s\n", text, path);
    }
    free(buf);
    fclose(f);
    return rc;
}

/* testtool close: the worst relative difference over the tensors compared. */
static int close_files(const char *pa, const char *pb, double rtol, const char *prefix)
{
    vn_st_file *a = NULL, *b = NULL;
    vn_error err = {0};
    if (vn_st_open(pa, &a, &err) || vn_st_open(pb, &b, &err)) {
        fprintf(stderr, "close: %s\n", err.msg);
        return 1;
    }
    int bad = 0, n = 0;
    double worst = 0;
    const char *worst_name = "-";
    for (int i = 0; i < vn_st_count(a); i++) {
        const vn_st_entry *ea = vn_st_at(a, i), *eb = vn_st_find(b, ea->name);
        if (strncmp(ea->name, prefix, strlen(prefix)) != 0) continue;
        n++;
        if (!eb || eb->nbytes != ea->nbytes || eb->dtype != ea->dtype) {
            fprintf(stderr, "close: '%s' missing or of another shape in %s\n", ea->name, pb);
            bad = 1;
            continue;
        }
        if (ea->dtype != VN_DTYPE_F32) {
            if (memcmp(ea->data, eb->data, ea->nbytes)) {
                fprintf(stderr, "close: '%s' differs\n", ea->name);
                bad = 1;
            }
            continue;
        }
        const float *x = ea->data, *y = eb->data;
        double scale = 0, md = 0;
        for (int64_t k = 0; k < ea->numel; k++) {
            if (fabs(x[k]) > scale) scale = fabs(x[k]);
            if (fabs(y[k]) > scale) scale = fabs(y[k]);
            double d = fabs((double)x[k] - (double)y[k]);
            if (!(d <= md)) md = d;
        }
        double rel = md / (scale > 1e-2 ? scale : 1e-2);
        if (!(rel <= worst)) {
            worst = rel;
            worst_name = ea->name;
        }
        if (!(rel <= rtol)) {
            fprintf(stderr, "close: '%s' differs by %.3g of its largest value %.3g\n", ea->name, rel, scale);
            bad = 1;
        }
    }
    printf("close: %d tensors, worst relative difference %.3g (%s), tolerance %g: %s\n", n, worst,
           worst_name, rtol, bad ? "DIFFER" : "ok");
    vn_st_close(a);
    vn_st_close(b);
    return bad || n == 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "synth") == 0)
        return vn_synth_dataset(argv[2], atoi(argv[3]), atoi(argv[4]), 1) ? 1 : 0;
    if (argc == 6 && strcmp(argv[1], "compare") == 0) {
        vn_st_file *a = NULL, *b = NULL;
        vn_error err = {0};
        if (vn_st_open(argv[2], &a, &err) || vn_st_open(argv[3], &b, &err)) {
            fprintf(stderr, "compare: %s\n", err.msg);
            return 1;
        }
        const vn_st_entry *ea = vn_st_find(a, argv[4]), *eb = vn_st_find(b, argv[4]);
        if (!ea || !eb || ea->numel != eb->numel || ea->dtype != VN_DTYPE_F32) {
            fprintf(stderr, "compare: '%s' missing or shapes differ\n", argv[4]);
            return 1;
        }
        double md = 0;
        const float *pa = ea->data, *pb = eb->data;
        for (int64_t i = 0; i < ea->numel; i++) md = fmax(md, fabs((double)pa[i] - pb[i]));
        printf("compare %s: %lld values, max |diff| %.3g\n", argv[4], (long long)ea->numel, md);
        vn_st_close(a);
        vn_st_close(b);
        return md <= atof(argv[5]) ? 0 : 1;
    }
    if (argc == 3 && strcmp(argv[1], "corrupt") == 0) {
        FILE *f = fopen(argv[2], "r+b");
        if (!f) return 1;
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, len - len / 3, SEEK_SET);
        int c = fgetc(f);
        fseek(f, len - len / 3, SEEK_SET);
        fputc(c ^ 0x5a, f);
        fclose(f);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "flip") == 0) return flip_after(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "same") == 0) {
        vn_st_file *a = NULL, *b = NULL;
        vn_error err = {0};
        if (vn_st_open(argv[2], &a, &err) || vn_st_open(argv[3], &b, &err)) {
            fprintf(stderr, "same: %s\n", err.msg);
            return 1;
        }
        int differ = vn_st_count(a) != vn_st_count(b);
        for (int i = 0; !differ && i < vn_st_count(a); i++) {
            const vn_st_entry *ea = vn_st_at(a, i), *eb = vn_st_find(b, ea->name);
            differ = !eb || ea->nbytes != eb->nbytes || memcmp(ea->data, eb->data, ea->nbytes);
            if (differ) fprintf(stderr, "same: tensor '%s' differs\n", ea->name);
        }
        printf("same: %d tensors %s\n", vn_st_count(a), differ ? "DIFFER" : "identical");
        vn_st_close(a);
        vn_st_close(b);
        return differ;
    }
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "close") == 0)
        return close_files(argv[2], argv[3], atof(argv[4]), argc == 6 ? argv[5] : "");
    fprintf(stderr, "usage: testtool synth ROOT N_TRAIN N_VAL | compare A B NAME TOL | corrupt FILE | flip FILE TEXT | same A B\n");
    return 2;
}

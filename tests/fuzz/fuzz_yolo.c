/* libFuzzer target: YOLO detection data as a user hands it over. The first byte chooses the
 * input: even, a label file (`class cx cy w h` lines) of one image in a YOLO folder; odd, a
 * dataset YAML (path, train, val, names). Both are written to a private temporary folder and
 * read through the public entry points (vn_det_dataset_scan, vn_det_data_cfg_load). A label
 * file is either accepted with boxes that are all in range, or its image is skipped with a
 * "file:line: problem" report. */
#include "data/vn_detect_data.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { NC = 80 };
static char root[64];

static void write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
}

static void setup(void)
{
    char p[256];
    snprintf(root, sizeof root, "/tmp/fuzz_yolo.%d", (int)getpid());
    const char *dirs[] = {"", "/images", "/images/train", "/labels", "/labels/train"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(p, sizeof p, "%s%s", root, dirs[i]);
        if (mkdir(p, 0700) != 0 && access(p, F_OK) != 0) abort();
    }
    snprintf(p, sizeof p, "%s/images/train/a.png", root); /* scanning does not decode images */
    write_file(p, (const uint8_t *)"", 0);
}

static void check_labels(void)
{
    char p[256];
    snprintf(p, sizeof p, "%s/images/train", root);
    vn_error err = {0};
    vn_det_dataset *ds = NULL;
    if (vn_det_dataset_scan(p, NC, 1.0, &ds, &err) != VN_OK) {
        if (ds || err.msg[0] == '\0') abort();
        return;
    }
    int64_t n = vn_det_dataset_size(ds), skipped = vn_det_dataset_skipped_count(ds);
    if (n + skipped != 1) abort();
    if (skipped && !strstr(vn_det_dataset_skipped(ds, 0), "labels/train/a.txt:")) abort();
    for (int64_t i = 0; i < n; i++) {
        int nb = 0;
        const vn_det_box *b = vn_det_dataset_boxes(ds, i, &nb);
        for (int k = 0; k < nb; k++)
            if (b[k].cls < 0 || b[k].cls >= NC || !(b[k].cx >= 0 && b[k].cx <= 1) ||
                !(b[k].cy >= 0 && b[k].cy <= 1) || !(b[k].w >= 0 && b[k].w <= 1) ||
                !(b[k].h >= 0 && b[k].h <= 1))
                abort();
    }
    vn_det_dataset_free(ds);
}

static void check_yaml(void)
{
    char p[256];
    snprintf(p, sizeof p, "%s/data.yaml", root);
    vn_error err = {0};
    vn_det_data_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    if (vn_det_data_cfg_load(p, &cfg, &err) != VN_OK) {
        if (err.msg[0] == '\0') abort();
        vn_det_data_cfg_free(&cfg);
        return;
    }
    if (cfg.nc < 1 || cfg.nc > VN_DET_MAX_CLASSES || !cfg.names || !cfg.train || !cfg.val) abort();
    for (int i = 0; i < cfg.nc; i++)
        if (!cfg.names[i]) abort();
    vn_det_data_cfg_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0]) setup();
    if (size == 0) return 0;
    char p[256];
    if (data[0] & 1) {
        snprintf(p, sizeof p, "%s/data.yaml", root);
        write_file(p, data + 1, size - 1);
        check_yaml();
    } else {
        snprintf(p, sizeof p, "%s/labels/train/a.txt", root);
        write_file(p, data + 1, size - 1);
        check_labels();
    }
    return 0;
}

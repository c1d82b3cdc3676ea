/* Data pipeline throughput: decode + RandomResizedCrop(224) + flip + normalize through the
 * loader, for synthetic 500x375 JPEGs and 28x28 PNGs made in a temporary folder, with 1 and
 * 2 worker threads; images per second and per second per worker core. Also the cost of each
 * stage on one thread, and the official recipe's full train pipeline on the JPEGs (bicubic
 * RRC 224, flip, RandAugment rand-m9-mstd0.5-inc1, normalize, random erasing 0.25 pixel).
 *
 *   bench_data [--seconds S] [--workers N,M,...] [--import OUT_DIR]
 *   bench_data --folder [--tree DIR] [--classes N] [--per-class M] [--no-check]
 * --import times the import of Debian's Fashion-MNIST (/usr/share/datasets/fashion-mnist)
 * into OUT_DIR (delete OUT_DIR/.vn_import_done to import again). --workers: the worker
 * counts of the loader runs (default 1,2; at most 8 counts). --folder measures an
 * ImageNet-sized folder (bench_folder.c). */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/vn_dataset.h"
#include "data/vn_image.h"
#include "data/vn_loader.h"
#include "data/vn_transform.h"
#include "data/vn_augment.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU seconds of the whole process (all threads): images per CPU-second is the per-core
 * rate even when other programs share the cores. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    remove(p);
    return 0;
}

/* A photo-like picture: smooth shading, some edges, mild noise (JPEG size and decode cost
 * close to ImageNet's at quality 90). */
static void synth_photo(uint8_t *px, int w, int h, int seed)
{
    uint32_t r = 2463534242u + (uint32_t)seed * 7919u;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                r ^= r << 13;
                r ^= r >> 17;
                r ^= r << 5;
                int v = 128 + (int)(60.0 * ((x * (c + 1) + y * (3 - c) + seed * 13) % 200) / 200.0);
                v += ((x / (16 + seed % 9) + y / (12 + c)) % 2) * 40 - 20;
                v += (int)(r % 33) - 16;
                px[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

static int make_set(const char *root, bool jpeg, int n, double *avg_bytes)
{
    int w = jpeg ? 500 : 28, h = jpeg ? 375 : 28;
    uint8_t *px = malloc((size_t)w * h * 3);
    char path[4200];
    vn_error err = {0};
    double bytes = 0;
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/class%02d", root, i % 10);
        mkdir(path, 0777);
        snprintf(path, sizeof path, "%s/class%02d/%05d.%s", root, i % 10, i, jpeg ? "jpg" : "png");
        synth_photo(px, w, h, i);
        int rc = jpeg ? vn_jpeg_write(path, px, w, h, 3, 90, &err)
                      : vn_png_write(path, px, w, h, 3, 6, &err);
        if (rc) {
            fprintf(stderr, "%s\n", err.msg);
            free(px);
            return rc;
        }
        struct stat st;
        if (stat(path, &st) == 0) bytes += (double)st.st_size;
    }
    free(px);
    *avg_bytes = bytes / n;
    return 0;
}

/* Runs whole epochs through the loader for at least `seconds`; returns images/s (wall) and
 * images per CPU-second in *per_cpu. */
static double run_loader(const char *root, int workers, int batch, double seconds, double *wait,
                         double *per_cpu, bool official)
{
    vn_loader_config cfg;
    vn_loader_config_init(&cfg);
    if (official) {
        cfg.interpolation = VN_INTERP_BICUBIC;
        cfg.auto_augment = "rand-m9-mstd0.5-inc1";
        cfg.reprob = 0.25f;
        cfg.remode = VN_ERASE_PIXEL;
    }
    cfg.root = root;
    cfg.input_size = 224;
    cfg.batch_size = batch;
    cfg.workers = workers;
    cfg.prefetch = 3;
    vn_loader *ld = NULL;
    vn_error err = {0};
    if (vn_loader_open(&cfg, &ld, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    /* Warm-up epoch (page cache, allocations). */
    vn_batch b;
    vn_loader_start_epoch(ld, 0, 0, &err);
    while (vn_loader_next(ld, &b, &err) == VN_OK && b.size > 0) vn_loader_release(ld, &b);
    double w0 = vn_loader_wait_seconds(ld), t0 = now_s(), t = t0, c0 = cpu_s();
    int64_t images = 0;
    for (int64_t e = 1; t - t0 < seconds; e++) {
        vn_loader_start_epoch(ld, e, 0, &err);
        while (vn_loader_next(ld, &b, &err) == VN_OK && b.size > 0) {
            images += b.size;
            vn_loader_release(ld, &b);
        }
        t = now_s();
    }
    *wait = (vn_loader_wait_seconds(ld) - w0) / (t - t0);
    *per_cpu = (double)images / (cpu_s() - c0);
    vn_loader_close(ld);
    return (double)images / (t - t0);
}

/* One thread, no loader: milliseconds per image for decode, crop+resize, normalize+flip. */
static void stages(const char *root, int n)
{
    vn_dataset *ds = NULL;
    vn_error err = {0};
    if (vn_dataset_scan(root, NULL, 0, &ds, &err)) return;
    vn_decoder *dec = NULL;
    vn_decoder_create(&dec, &err);
    vn_image img = {0};
    vn_tf_scratch sc = {0};
    vn_normalizer nz;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    vn_normalizer_init(&nz, 3, mean, std);
    uint8_t *pix = malloc(224 * 224 * 3);
    float *out = malloc(224 * 224 * 3 * sizeof(float));
    float scale[2] = {0.08f, 1.0f}, ratio[2] = {0.75f, 4.0f / 3.0f};
    double td = 0, tr = 0, tn = 0;
    int64_t m = vn_dataset_size(ds) < n ? vn_dataset_size(ds) : n;
    for (int64_t i = 0; i < m; i++) {
        char path[4200];
        vn_dataset_path(ds, i, path, sizeof path);
        double a = now_s();
        if (vn_image_decode_file(dec, path, 3, 0, &img, NULL, &err)) continue;
        double b = now_s();
        vn_rng rng;
        vn_rng_seed(&rng, 1, 0, (uint64_t)i);
        vn_box box = vn_rrc_box_rng(img.width, img.height, scale, ratio, &rng);
        vn_resize(img.data, img.width, img.height, 3, &box, 224, 224, NULL, VN_INTERP_BILINEAR, pix,
                  &sc, &err);
        double c = now_s();
        vn_normalize_u8(&nz, pix, 224, 224, i % 2, out);
        double d = now_s();
        td += b - a;
        tr += c - b;
        tn += d - c;
    }
    printf("  one thread, wall time per image: decode %.3f ms, crop+resize %.3f ms, "
           "flip+normalize %.3f ms\n",
           1e3 * td / m, 1e3 * tr / m, 1e3 * tn / m);
    free(pix);
    free(out);
    vn_tf_scratch_free(&sc);
    vn_image_free(&img);
    vn_decoder_destroy(dec);
    vn_dataset_free(ds);
}

/* One thread: milliseconds per RandAugment call (m9, mstd 0.5, inc1) on 224x224 crops. */
static void ra_stage(const char *root, int n)
{
    vn_dataset *ds = NULL;
    vn_error err = {0};
    if (vn_dataset_scan(root, NULL, 0, &ds, &err)) return;
    vn_decoder *dec = NULL;
    vn_decoder_create(&dec, &err);
    vn_image img = {0};
    const float mean[3] = {0.485f, 0.456f, 0.406f};
    vn_randaug ra;
    vn_randaug_parse("rand-m9-mstd0.5-inc1", 224, 3, mean, VN_INTERP_BICUBIC, &ra, &err);
    uint8_t *pix = malloc(224 * 224 * 3), *tmp = malloc(224 * 224 * 3);
    double t = 0;
    int64_t m = vn_dataset_size(ds) < n ? vn_dataset_size(ds) : n;
    for (int64_t i = 0; i < m; i++) {
        char path[4200];
        vn_dataset_path(ds, i, path, sizeof path);
        if (vn_image_decode_file(dec, path, 3, 0, &img, NULL, &err)) continue;
        vn_box box = {0, 0, img.height, img.width};
        vn_resize(img.data, img.width, img.height, 3, &box, 224, 224, NULL, VN_INTERP_BICUBIC,
                  pix, NULL, &err);
        vn_rng rng;
        vn_rng_seed(&rng, 1, 0, (uint64_t)i);
        double a = now_s();
        vn_randaug_apply(&ra, (vn_pix){pix, 224, 224, 3}, tmp, &rng);
        t += now_s() - a;
    }
    printf("  one thread, wall time per image: RandAugment %.3f ms\n", 1e3 * t / m);
    free(pix);
    free(tmp);
    vn_image_free(&img);
    vn_decoder_destroy(dec);
    vn_dataset_free(ds);
}

static int time_import(const char *out)
{
    const char *src = "/usr/share/datasets/fashion-mnist";
    vn_import_result res;
    vn_error err = {0};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cores > 0 ? (int)cores : 1;
    if (vn_import_mnist(src, out, VN_MNIST_FASHION, threads, &res, &err)) {
        fprintf(stderr, "import failed: %s\n", err.msg);
        return 1;
    }
    if (res.skipped)
        printf("import: %s already imported (remove %s/.vn_import_done to time it again)\n",
               out, out);
    else
        printf("import of Fashion-MNIST (%lld + %lld PNGs, %d threads) into %s: %.2f s\n",
               (long long)res.n_train, (long long)res.n_val, threads, out, res.seconds);
    return 0;
}

int bench_folder_main(int argc, char **argv); /* bench_folder.c */

int main(int argc, char **argv)
{
    double seconds = 3.0;
    int workers[8] = {1, 2}, n_workers = 2;
    if (argc > 1 && !strcmp(argv[1], "--folder")) return bench_folder_main(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
            n_workers = 0;
            for (char *tok = strtok(argv[++i], ","); tok && n_workers < 8; tok = strtok(NULL, ","))
                if (atoi(tok) > 0) workers[n_workers++] = atoi(tok);
            if (!n_workers) {
                fprintf(stderr, "bench_data: --workers wants counts like 1,2,16\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--import") && i + 1 < argc) {
            return time_import(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--seconds S] [--workers N,M,...] [--import OUT_DIR] | "
                            "--folder ...\n",
                    argv[0]);
            return 2;
        }
    }
    const char *t = getenv("TMPDIR");
    if (!t || !t[0]) t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char root[4096];
    snprintf(root, sizeof root, "%s/vn_bench_data_XXXXXX", t);
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char jroot[4200], proot[4200];
    snprintf(jroot, sizeof jroot, "%s/jpeg", root);
    snprintf(proot, sizeof proot, "%s/png", root);
    mkdir(jroot, 0777);
    mkdir(proot, 0777);
    double jbytes, pbytes;
    int rc = make_set(jroot, true, 192, &jbytes);
    if (!rc) rc = make_set(proot, false, 4096, &pbytes);
    if (!rc) {
        printf("decode + RandomResizedCrop(224, bilinear) + flip + normalize, batches of 32\n");
        struct { const char *name, *dir; double bytes; } sets[2] = {
            {"500x375 JPEG (q90)", jroot, jbytes}, {"28x28 PNG", proot, pbytes}};
        for (int s = 0; s < 2; s++) {
            printf("%s, %.1f KB per file:\n", sets[s].name, sets[s].bytes / 1024);
            stages(sets[s].dir, s == 0 ? 64 : 1024);
            for (int k = 0; k < n_workers; k++) {
                int w = workers[k];
                double wait = 0, per_cpu = 0;
                double ips = run_loader(sets[s].dir, w, 32, seconds, &wait, &per_cpu, false);
                printf("  %d worker%s: %8.1f images/s wall, %8.1f images per CPU-second "
                       "(consumer waiting %.0f%% of the time)\n",
                       w, w > 1 ? "s" : " ", ips, per_cpu, 100 * wait);
            }
        }
        printf("full official train pipeline on the 500x375 JPEGs: decode, bicubic RRC 224, "
               "flip, RandAugment rand-m9-mstd0.5-inc1, normalize, random erasing 0.25:\n");
        ra_stage(jroot, 64);
        for (int k = 0; k < n_workers; k++) {
            int w = workers[k];
            double wait = 0, per_cpu = 0;
            double ips = run_loader(jroot, w, 32, seconds, &wait, &per_cpu, true);
            printf("  %d worker%s: %8.1f images/s wall, %8.1f images per CPU-second "
                   "(consumer waiting %.0f%% of the time)\n",
                   w, w > 1 ? "s" : " ", ips, per_cpu, 100 * wait);
        }
    }
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc ? 1 : 0;
}

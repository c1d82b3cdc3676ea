/* An ImageNet-sized folder: 1,000 classes x 1,281 files (the train split's 1,281,167 images,
 * rounded), made of hard links to a few small real JPEGs so that it costs directory entries
 * only. Times and memory of the dataset scan, of the check that `vanilla data check` runs, of
 * the loader's start-up (open + first batch) and of a resume in the middle of an epoch.
 *
 *   bench_data --folder [--tree DIR] [--classes N] [--per-class M] [--no-check]
 *
 * --tree DIR keeps the tree in DIR and reuses it on the next run (default: a temporary folder
 * under $TMPDIR or /tmp, removed at the end). Each measurement runs in a child process of its
 * own whose peak resident memory is reset first (/proc/self/clear_refs), so the memory figures
 * are that step's alone: "peak" is the highest resident size above the child's starting size,
 * "kept" what is still resident when the step is done (the index the step leaves behind);
 * "CPU-s" the CPU time the child has used so far. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/vn_dataset.h"
#include "data/vn_image.h"
#include "data/vn_loader.h"

#define N_SOURCES 64 /* JPEGs linked to; ext4 allows 65,000 links per file */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* VmRSS or VmHWM of this process in MB, from /proc/self/status. */
static double status_mb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') kb = atof(line + kl + 1);
    if (f) fclose(f);
    return kb / 1024.0;
}

static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static int remove_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    remove(p);
    return 0;
}

/* Small textured pictures: enough structure to be real JPEGs with a real decode cost. */
static int make_sources(const char *dir, vn_error *err)
{
    const int w = 64, h = 48;
    unsigned char px[64 * 48 * 3];
    for (int k = 0; k < N_SOURCES; k++) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++)
                    px[(y * w + x) * 3 + c] =
                        (unsigned char)((x * (c + 1) * 3 + y * (k % 7 + 1) * 5 + k * 29) % 256);
        char p[4200];
        snprintf(p, sizeof p, "%s/%02d.jpg", dir, k);
        int rc = vn_jpeg_write(p, px, w, h, 3, 90, err);
        if (rc) return rc;
    }
    return VN_OK;
}

/* Builds (or reuses) <tree>/train/<class>/<file>.JPEG; returns 0 on success. */
static int make_tree(const char *tree, int classes, int per_class)
{
    char marker[4200], want[64], have[64] = "";
    snprintf(marker, sizeof marker, "%s/.vn_tree_done", tree);
    snprintf(want, sizeof want, "%d x %d\n", classes, per_class);
    FILE *m = fopen(marker, "r");
    if (m) {
        if (!fgets(have, sizeof have, m)) have[0] = '\0';
        fclose(m);
    }
    if (!strcmp(have, want)) {
        printf("reusing the tree in %s (%d classes x %d files)\n", tree, classes, per_class);
        return 0;
    }
    nftw(tree, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    char src[4200], train[4200], path[4300], cls[4300];
    snprintf(src, sizeof src, "%s/src", tree);
    snprintf(train, sizeof train, "%s/train", tree);
    vn_error err = {0};
    if ((mkdir(tree, 0777) && errno != EEXIST) || mkdir(src, 0777) || mkdir(train, 0777)) {
        fprintf(stderr, "%s: cannot create: %s\n", tree, strerror(errno));
        return 1;
    }
    if (make_sources(src, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t0 = now_s();
    for (int c = 0; c < classes; c++) {
        int wnid = 1440764 + c * 997; /* ImageNet-like names: n01440764/n01440764_10026.JPEG */
        snprintf(cls, sizeof cls, "%s/n%08d", train, wnid);
        if (mkdir(cls, 0777)) {
            fprintf(stderr, "%s: %s\n", cls, strerror(errno));
            return 1;
        }
        for (int i = 0; i < per_class; i++) {
            char s[4300];
            snprintf(s, sizeof s, "%s/%02d.jpg", src, (c * per_class + i) % N_SOURCES);
            snprintf(path, sizeof path, "%s/n%08d_%d.JPEG", cls, wnid, 10000 + i * 7);
            if (link(s, path)) {
                fprintf(stderr, "link %s: %s\n", path, strerror(errno));
                return 1;
            }
        }
    }
    m = fopen(marker, "w");
    if (m) {
        fputs(want, m);
        fclose(m);
    }
    printf("made %s: %d classes x %d hard links to %d 64x48 JPEGs in %.1f s\n", tree, classes,
           per_class, N_SOURCES, now_s() - t0);
    return 0;
}

typedef enum step { STEP_WARM, STEP_SCAN, STEP_CHECK, STEP_LOADER } step;

static void loader_config(vn_loader_config *cfg, const char *root)
{
    vn_loader_config_init(cfg);
    cfg->root = root;
    /* A small input size keeps the batch buffers (3 x 256 x 32x32x3 floats, 9 MB) from
     * hiding the index in the memory figures; the start-up work does not depend on it. */
    cfg->input_size = 32;
    cfg->batch_size = 256;
    cfg->workers = 2;
}

/* CPU seconds of this process, all threads: with the cores shared, the wall time says how
 * busy the machine was, this what the step itself cost. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void print_mem(double base)
{
    printf(" | %.1f CPU-s | peak %+.0f MB, kept %+.0f MB", cpu_s(), status_mb("VmHWM") - base,
           status_mb("VmRSS") - base);
}

/* Start-up (open, epoch 0 at 0, first batch), then a resume at the middle of epoch 3. */
static int run_loader(const char *root, double base)
{
    vn_loader_config cfg;
    loader_config(&cfg, root);
    vn_loader *ld = NULL;
    vn_error err = {0};
    vn_batch b;
    double t0 = now_s();
    if (vn_loader_open(&cfg, &ld, &err)) goto fail;
    double t1 = now_s();
    if (vn_loader_start_epoch(ld, 0, 0, &err) || vn_loader_next(ld, &b, &err)) goto fail;
    double t2 = now_s();
    vn_loader_release(ld, &b);
    printf("loader start-up: open (scan + index) %.2f s, first batch of %d %.2f s, total %.2f s",
           t1 - t0, cfg.batch_size, t2 - t1, t2 - t0);
    print_mem(base);
    printf("\n");
    int64_t n = vn_loader_num_samples(ld), mid = n / 2 / cfg.batch_size * cfg.batch_size;
    double t3 = now_s();
    if (vn_loader_start_epoch(ld, 3, mid, &err)) goto fail;
    double t4 = now_s();
    if (vn_loader_next(ld, &b, &err)) goto fail;
    double t5 = now_s();
    printf("resume at epoch 3, position %lld of %lld: start_epoch (the epoch's order) %.3f s, "
           "first batch %.3f s, total %.3f s (%.2f s with the open of a new process)\n",
           (long long)b.position, (long long)n, t4 - t3, t5 - t4, t5 - t3, t5 - t3 + (t1 - t0));
    vn_loader_release(ld, &b);
    vn_loader_close(ld);
    return 0;
fail:
    fprintf(stderr, "loader: %s\n", err.msg);
    vn_loader_close(ld);
    return 1;
}

static int run_step(step s, const char *root)
{
    reset_peak();
    double base = status_mb("VmRSS");
    vn_error err = {0};
    double t0 = now_s();
    if (s == STEP_WARM || s == STEP_SCAN) {
        vn_dataset *ds = NULL;
        if (vn_dataset_scan(root, NULL, 0, &ds, &err)) goto fail;
        if (s == STEP_WARM) {
            vn_dataset_free(ds);
            return 0;
        }
        printf("scan: %lld files in %d classes in %.2f s", (long long)vn_dataset_size(ds),
               vn_dataset_num_classes(ds), now_s() - t0);
        print_mem(base);
        printf("\n");
        vn_dataset_free(ds);
    } else if (s == STEP_CHECK) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        vn_check_report rep;
        if (vn_dataset_check(root, cores > 0 ? (int)cores : 1, 0, &rep, &err)) goto fail;
        printf("data check (what `vanilla data check` runs, %ld threads): %lld images, %lld "
               "decodable, in %.1f s", cores, (long long)rep.n_images, (long long)rep.n_ok,
               now_s() - t0);
        print_mem(base);
        printf("\n");
        vn_check_report_free(&rep);
    } else {
        return run_loader(root, base);
    }
    return 0;
fail:
    fprintf(stderr, "%s\n", err.msg);
    return 1;
}

/* Each step in a child process of its own (fresh peak memory, nothing shared). */
static int in_child(step s, const char *root)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = run_step(s, root);
        fflush(stdout);
        _exit(rc);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int bench_folder_main(int argc, char **argv)
{
    const char *tree = NULL;
    int classes = 1000, per_class = 1281;
    bool check = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--folder")) continue;
        if (!strcmp(argv[i], "--tree") && i + 1 < argc) tree = argv[++i];
        else if (!strcmp(argv[i], "--classes") && i + 1 < argc) classes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--per-class") && i + 1 < argc) per_class = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-check")) check = false;
        else {
            fprintf(stderr, "usage: %s --folder [--tree DIR] [--classes N] [--per-class M] "
                    "[--no-check]\n", argv[0]);
            return 2;
        }
    }
    if (classes < 1 || per_class < 1) {
        fprintf(stderr, "--classes and --per-class must be positive\n");
        return 2;
    }
    char tmp[4096];
    if (!tree) {
        const char *t = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/vn_bench_folder_XXXXXX", t && t[0] ? t : "/tmp");
        if (!mkdtemp(tmp)) {
            perror("mkdtemp");
            return 1;
        }
    }
    const char *dir = tree ? tree : tmp;
    int rc = make_tree(dir, classes, per_class);
    char root[4200];
    snprintf(root, sizeof root, "%s/train", dir);
    /* A first scan, not reported, warms the cache (the tree may have been made long ago). */
    if (!rc) rc = in_child(STEP_WARM, root);
    if (!rc) rc = in_child(STEP_SCAN, root);
    if (!rc) rc = in_child(STEP_LOADER, root);
    if (!rc && check) rc = in_child(STEP_CHECK, root);
    if (!tree) nftw(tmp, remove_one, 64, FTW_DEPTH | FTW_PHYS);
    return rc;
}

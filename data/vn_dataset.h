/* Image folders in ImageNet / torchvision ImageFolder layout, a checker, and the IDX
 * (MNIST / Fashion-MNIST) importer.
 *
 * Layout: <root>/<class>/.../<image>. Classes are the sub-folders of root sorted by byte
 * order (as torchvision's sorted(os.scandir)), labels their index. Images are the files with
 * extension .png, .jpg or .jpeg (any case) found under a class folder, in the order of
 * torchvision's make_dataset: folders visited in sorted path order (os.walk sorted), files
 * sorted within each folder. Other files are skipped (and counted). The extension only
 * selects files; the format is detected from the file's magic bytes when decoding.
 * Unlike torchvision, an empty class folder is not an error: the class keeps its label (so
 * train and val agree), and a warning names it. */
#ifndef VN_DATASET_H
#define VN_DATASET_H

#include <stdio.h>

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vn_dataset vn_dataset;

/* Scans root. With class_names (n_class_names > 0), labels follow that list instead of the
 * folder names (for a val split or a checkpoint's classes): a folder not in the list is an
 * error naming it; a listed class without a folder has no images. Fails when no image is
 * found, with a message describing the expected layout. */
int vn_dataset_scan(const char *root, const char *const *class_names, int n_class_names,
                    vn_dataset **out, vn_error *err);
void vn_dataset_free(vn_dataset *ds);

const char *vn_dataset_root(const vn_dataset *ds);
int64_t vn_dataset_size(const vn_dataset *ds);
int vn_dataset_num_classes(const vn_dataset *ds);
/* Class names in label order; valid while ds lives. */
const char *const *vn_dataset_class_names(const vn_dataset *ds);
int32_t vn_dataset_label(const vn_dataset *ds, int64_t i);
/* Images per class (index = label). */
int64_t vn_dataset_class_count(const vn_dataset *ds, int label);
/* Path relative to root ("class/file.png") and full path (written into buf; returns buf, or
 * NULL when it does not fit). */
const char *vn_dataset_relpath(const vn_dataset *ds, int64_t i);
const char *vn_dataset_path(const vn_dataset *ds, int64_t i, char *buf, size_t len);
/* Files skipped for their extension (stray files), relative paths. */
int64_t vn_dataset_skipped_count(const vn_dataset *ds);
const char *vn_dataset_skipped(const vn_dataset *ds, int64_t i);

/* Check: decodes every image of a folder without training, and reports. */
typedef struct vn_check_item {
    char *path;   /* relative to root */
    char *reason; /* what is wrong or odd */
} vn_check_item;

typedef struct vn_check_report {
    int n_classes;
    char **class_names;
    int64_t *class_images; /* files per class with an image extension */
    int64_t *class_ok;     /* of those, decodable */
    int64_t n_images;      /* files with an image extension */
    int64_t n_ok;
    int64_t n_png, n_jpeg; /* decodable ones by detected format */
    int64_t n_gray;        /* single-channel (or gray+alpha) files */
    int min_width, min_height, max_width, max_height;
    vn_check_item *bad;    /* unreadable files and reasons */
    int64_t n_bad;
    vn_check_item *odd;    /* readable but unusual: wrong extension for the data, CMYK,
                              16-bit, palette, alpha channel */
    int64_t n_odd;
    vn_check_item *skipped; /* stray files without an image extension */
    int64_t n_skipped;
    double seconds;
} vn_check_report;

/* threads <= 0: 1. max_pixels <= 0: VN_IMAGE_DEFAULT_MAX_PIXELS. The report is filled even
 * when some files are bad; an error is returned only when root cannot be scanned. */
int vn_dataset_check(const char *root, int threads, int64_t max_pixels, vn_check_report *rep,
                     vn_error *err);
/* Human-readable summary; at most max_list entries of each list (<= 0: all). */
void vn_check_report_print(const vn_check_report *rep, FILE *f, int max_list);
void vn_check_report_free(vn_check_report *rep);

/* IDX import (MNIST-style files, gzip or plain, read through zlib's gzread). */
typedef enum vn_mnist_kind {
    VN_MNIST_DIGITS = 0,  /* class folders 0 .. 9 */
    VN_MNIST_FASHION = 1  /* T-shirt_top, Trouser, ..., Ankle_boot */
} vn_mnist_kind;

/* The ten folder-safe class names of a kind. */
const char *const *vn_mnist_class_names(vn_mnist_kind kind);

/* Reads and checks the header of an IDX file of unsigned bytes with ndim (1..3) dimensions
 * (magic 00 00 08 ndim), gzip or plain; dims receives the sizes. */
int vn_idx_read_header(const char *path, int ndim, uint32_t *dims, vn_error *err);

/* Converts one IDX pair (images idx3 ubyte N x H x W, labels idx1 ubyte N) into
 * <split_dir>/<class name>/<index, 5+ digits>.png (gray, zlib level `compression_level`).
 * Validates magic numbers, dimensions, counts and label range, naming the file. threads <= 0:
 * 1. *n_written (may be NULL) receives the number of images. */
int vn_import_idx(const char *images_path, const char *labels_path, const char *split_dir,
                  const char *const *class_names, int n_classes, int compression_level,
                  int threads, int64_t *n_written, vn_error *err);

/* An IDX pair held in memory (uncompressed), checked like vn_import_idx checks files: magic
 * numbers, plausible sizes (rows and columns 1..4096), equal counts, data long enough, labels
 * below n_classes. Labels name the buffers in messages. On success set points into the
 * buffers (pixels N x rows x cols, labels N); bytes after the last item are ignored. */
typedef struct vn_idx_set {
    int64_t n;
    int rows, cols;
    const uint8_t *pixels;
    const uint8_t *labels;
} vn_idx_set;
int vn_idx_parse_memory(const void *images, size_t images_len, const char *images_label,
                        const void *labels, size_t labels_len, const char *labels_label,
                        int n_classes, vn_idx_set *set, vn_error *err);

typedef struct vn_import_result {
    int64_t n_train;
    int64_t n_val;
    bool skipped;   /* a finished import was already there */
    double seconds;
} vn_import_result;

/* Imports <src_dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (also the
 * "train-images.idx3-ubyte" spelling) into <out_dir>/train and <out_dir>/val. A finished
 * import leaves <out_dir>/.vn_import_done; running again then does nothing. */
int vn_import_mnist(const char *src_dir, const char *out_dir, vn_mnist_kind kind, int threads,
                    vn_import_result *res, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

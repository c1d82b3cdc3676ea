/* ImageFolder scan: classes, files in torchvision's order, labels. */
#include "data/vn_dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* A growable list of strings in one pool (offsets, so the pool can move). */
typedef struct strlist {
    char *pool;
    size_t pool_len, pool_cap;
    int64_t *off;
    int64_t n, cap;
} strlist;

static int strlist_add(strlist *l, const char *s)
{
    size_t len = strlen(s) + 1;
    if (l->pool_len + len > l->pool_cap) {
        size_t cap = l->pool_cap ? l->pool_cap * 2 : 4096;
        while (cap < l->pool_len + len) cap *= 2;
        char *p = realloc(l->pool, cap);
        if (!p) return VN_ERR_NOMEM;
        l->pool = p;
        l->pool_cap = cap;
    }
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 256;
        int64_t *o = realloc(l->off, (size_t)cap * sizeof *o);
        if (!o) return VN_ERR_NOMEM;
        l->off = o;
        l->cap = cap;
    }
    memcpy(l->pool + l->pool_len, s, len);
    l->off[l->n++] = (int64_t)l->pool_len;
    l->pool_len += len;
    return VN_OK;
}

static const char *strlist_at(const strlist *l, int64_t i) { return l->pool + l->off[i]; }

static void strlist_free(strlist *l)
{
    free(l->pool);
    free(l->off);
    memset(l, 0, sizeof *l);
}

struct vn_dataset {
    char *root;
    int n_classes;
    char **classes;
    int64_t *class_counts;
    strlist files;    /* relative paths */
    int32_t *labels;
    int64_t labels_cap;
    strlist skipped;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    return !strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg");
}

/* Entries of a folder (no "." and ".."), each flagged as folder or regular file after
 * following symlinks. Returned names are malloc'ed, sorted by byte order. */
typedef struct entry {
    char *name;
    bool is_dir;
    bool is_file;
} entry;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static void free_entries(entry *e, int64_t n)
{
    for (int64_t i = 0; i < n; i++) free(e[i].name);
    free(e);
}

static int list_dir(const char *path, entry **out, int64_t *n_out, vn_error *err)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(path);
    if (!d)
        return vn_error_set(err, VN_ERR_IO, "%s: cannot open folder: %s", path, strerror(errno));
    int dfd = dirfd(d);
    entry *e = NULL;
    int64_t n = 0, cap = 0;
    int rc = VN_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, 0) != 0) continue; /* dangling link: not a file */
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            entry *p = realloc(e, (size_t)cap * sizeof *e);
            if (!p) {
                rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory listing %s", path);
                break;
            }
            e = p;
        }
        e[n].name = strdup(de->d_name);
        if (!e[n].name) {
            rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory listing %s", path);
            break;
        }
        e[n].is_dir = S_ISDIR(st.st_mode);
        e[n].is_file = S_ISREG(st.st_mode);
        n++;
    }
    closedir(d);
    if (rc) {
        free_entries(e, n);
        return rc;
    }
    if (n > 1) qsort(e, (size_t)n, sizeof *e, cmp_entry);
    *out = e;
    *n_out = n;
    return VN_OK;
}

static int join(char *buf, size_t len, const char *a, const char *b, vn_error *err)
{
    int n = b[0] ? snprintf(buf, len, "%s/%s", a, b) : snprintf(buf, len, "%s", a);
    if (n < 0 || (size_t)n >= len)
        return vn_error_set(err, VN_ERR_INVALID, "path too long: %s/%s", a, b);
    return VN_OK;
}

/* All folders under (and including) rel, relative to root, following symlinks; depth-limited
 * so that a link loop cannot recurse forever. */
static int collect_dirs(const char *root, const char *rel, int depth, strlist *dirs,
                        vn_error *err)
{
    if (depth > 64) {
        vn_log(VN_LOG_WARN, "%s/%s: folders nested deeper than 64 levels ignored (link loop?)",
               root, rel);
        return VN_OK;
    }
    if (strlist_add(dirs, rel)) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    char path[4096];
    int rc = join(path, sizeof path, root, rel, err);
    if (rc) return rc;
    entry *e;
    int64_t n;
    rc = list_dir(path, &e, &n, err);
    if (rc) return rc;
    for (int64_t i = 0; i < n && !rc; i++) {
        if (!e[i].is_dir) continue;
        char sub[4096];
        rc = join(sub, sizeof sub, rel, e[i].name, err);
        if (!rc) rc = collect_dirs(root, sub, depth + 1, dirs, err);
    }
    free_entries(e, n);
    return rc;
}

static int add_label(vn_dataset *ds, int32_t label)
{
    if (ds->files.n > ds->labels_cap) {
        int64_t cap = ds->labels_cap ? ds->labels_cap * 2 : 1024;
        while (cap < ds->files.n) cap *= 2;
        int32_t *p = realloc(ds->labels, (size_t)cap * sizeof *p);
        if (!p) return VN_ERR_NOMEM;
        ds->labels = p;
        ds->labels_cap = cap;
    }
    ds->labels[ds->files.n - 1] = label;
    return VN_OK;
}

static int scan_class(vn_dataset *ds, const char *cls, int32_t label, vn_error *err)
{
    strlist dirs = {0};
    int rc = collect_dirs(ds->root, cls, 0, &dirs, err);
    /* os.walk yields (dirpath, ...) tuples; sorted() orders them by dirpath string. */
    const char **order = NULL;
    if (!rc) {
        order = malloc(sizeof *order * (size_t)dirs.n);
        if (!order) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    if (!rc) {
        for (int64_t i = 0; i < dirs.n; i++) order[i] = strlist_at(&dirs, i);
        qsort(order, (size_t)dirs.n, sizeof *order, cmp_str);
    }
    for (int64_t d = 0; !rc && d < dirs.n; d++) {
        char path[4096];
        rc = join(path, sizeof path, ds->root, order[d], err);
        entry *e = NULL;
        int64_t n = 0;
        if (!rc) rc = list_dir(path, &e, &n, err);
        for (int64_t i = 0; !rc && i < n; i++) {
            if (!e[i].is_file) continue;
            char rel[4096];
            rc = join(rel, sizeof rel, order[d], e[i].name, err);
            if (rc) break;
            if (has_image_ext(e[i].name)) {
                if (strlist_add(&ds->files, rel) || add_label(ds, label))
                    rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory scanning %s", ds->root);
                else
                    ds->class_counts[label]++;
            } else if (strlist_add(&ds->skipped, rel)) {
                rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory scanning %s", ds->root);
            }
        }
        free_entries(e, n);
    }
    free(order);
    strlist_free(&dirs);
    return rc;
}

void vn_dataset_free(vn_dataset *ds)
{
    if (!ds) return;
    for (int i = 0; i < ds->n_classes; i++) free(ds->classes[i]);
    free(ds->classes);
    free(ds->class_counts);
    free(ds->labels);
    strlist_free(&ds->files);
    strlist_free(&ds->skipped);
    free(ds->root);
    free(ds);
}

int vn_dataset_scan(const char *root, const char *const *class_names, int n_class_names,
                    vn_dataset **out, vn_error *err)
{
    *out = NULL;
    struct stat st;
    if (stat(root, &st) != 0)
        return vn_error_set(err, VN_ERR_NOT_FOUND, "%s: %s", root, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return vn_error_set(err, VN_ERR_INVALID, "%s: not a folder", root);
    vn_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->root = strdup(root))) {
        free(ds);
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    /* A trailing slash would double in every path. */
    size_t rl = strlen(ds->root);
    while (rl > 1 && ds->root[rl - 1] == '/') ds->root[--rl] = '\0';

    entry *e = NULL;
    int64_t n = 0;
    int rc = list_dir(ds->root, &e, &n, err);
    if (rc) goto fail;
    /* Folder classes, sorted; hidden folders (".git", ".ipynb_checkpoints") are not classes. */
    int n_dirs = 0;
    for (int64_t i = 0; i < n; i++)
        if (e[i].is_dir && e[i].name[0] != '.') n_dirs++;
    ds->n_classes = n_class_names > 0 ? n_class_names : n_dirs;
    ds->classes = calloc((size_t)ds->n_classes + 1, sizeof *ds->classes);
    ds->class_counts = calloc((size_t)ds->n_classes + 1, sizeof *ds->class_counts);
    if (!ds->classes || !ds->class_counts) {
        rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (n_class_names > 0) {
        for (int c = 0; c < n_class_names; c++) {
            if (!class_names[c] || !class_names[c][0] || strchr(class_names[c], '/')) {
                rc = vn_error_set(err, VN_ERR_INVALID, "class name %d is empty or has a '/'", c);
                goto fail;
            }
            if (!(ds->classes[c] = strdup(class_names[c]))) {
                rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
    }
    int next = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!e[i].is_dir || e[i].name[0] == '.') {
            if (e[i].is_file && strlist_add(&ds->skipped, e[i].name)) {
                rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
                goto fail;
            }
            continue;
        }
        int label = -1;
        if (n_class_names > 0) {
            for (int c = 0; c < n_class_names && label < 0; c++)
                if (!strcmp(ds->classes[c], e[i].name)) label = c;
            if (label < 0) {
                rc = vn_error_set(err, VN_ERR_INVALID,
                                  "%s: folder '%s' is not one of the %d expected classes "
                                  "(first: '%s')",
                                  ds->root, e[i].name, n_class_names, class_names[0]);
                goto fail;
            }
        } else {
            label = next++;
            if (!(ds->classes[label] = strdup(e[i].name))) {
                rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
                goto fail;
            }
        }
        rc = scan_class(ds, e[i].name, label, err);
        if (rc) goto fail;
    }
    if (ds->files.n == 0) {
        rc = vn_error_set(err, VN_ERR_NOT_FOUND,
                          "%s: no images found (expected %s/<class>/<name>.png|.jpg|.jpeg; %d "
                          "class folders, %lld other files)",
                          ds->root, ds->root, n_dirs, (long long)ds->skipped.n);
        goto fail;
    }
    for (int c = 0; c < ds->n_classes; c++)
        if (ds->class_counts[c] == 0)
            vn_log(VN_LOG_WARN, "%s: class '%s' has no images", ds->root, ds->classes[c]);
    free_entries(e, n);
    *out = ds;
    return VN_OK;
fail:
    free_entries(e, n);
    vn_dataset_free(ds);
    return rc;
}

const char *vn_dataset_root(const vn_dataset *ds) { return ds->root; }
int64_t vn_dataset_size(const vn_dataset *ds) { return ds->files.n; }
int vn_dataset_num_classes(const vn_dataset *ds) { return ds->n_classes; }
const char *const *vn_dataset_class_names(const vn_dataset *ds)
{
    return (const char *const *)ds->classes;
}
int32_t vn_dataset_label(const vn_dataset *ds, int64_t i) { return ds->labels[i]; }
int64_t vn_dataset_class_count(const vn_dataset *ds, int label)
{
    return label >= 0 && label < ds->n_classes ? ds->class_counts[label] : 0;
}
const char *vn_dataset_relpath(const vn_dataset *ds, int64_t i)
{
    return strlist_at(&ds->files, i);
}

const char *vn_dataset_path(const vn_dataset *ds, int64_t i, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s", ds->root, strlist_at(&ds->files, i));
    return n >= 0 && (size_t)n < len ? buf : NULL;
}

int64_t vn_dataset_skipped_count(const vn_dataset *ds) { return ds->skipped.n; }
const char *vn_dataset_skipped(const vn_dataset *ds, int64_t i)
{
    return strlist_at(&ds->skipped, i);
}

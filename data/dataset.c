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

static bool has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    return !strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg");
}

/* The entries of one folder (no "." and ".."), each flagged as folder or regular file after
 * following symlinks, sorted by byte order. The names live in one arena per listing (one
 * allocation per folder, not one per file: an ImageNet class folder has 1,300 files). */
typedef struct entry {
    const char *name;
    bool is_dir;
    bool is_file;
} entry;

typedef struct listing {
    entry *e;
    int64_t n;
    char *names;
} listing;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static void listing_free(listing *l)
{
    free(l->e);
    free(l->names);
    memset(l, 0, sizeof *l);
}

/* Folder or regular file, from the directory entry when it says (no system call), else from
 * stat, which follows symlinks. False for anything that cannot be stat'ed (a dangling link). */
static bool entry_kind(int dfd, const struct dirent *de, bool *is_dir, bool *is_file)
{
#ifdef DT_DIR
    if (de->d_type == DT_DIR || de->d_type == DT_REG) {
        *is_dir = de->d_type == DT_DIR;
        *is_file = de->d_type == DT_REG;
        return true;
    }
#endif
    struct stat st;
    if (fstatat(dfd, de->d_name, &st, 0) != 0) return false;
    *is_dir = S_ISDIR(st.st_mode);
    *is_file = S_ISREG(st.st_mode);
    return true;
}

/* Appends one entry; its name is kept as an offset into the arena until the listing is
 * complete (the arena may move while it grows). */
static bool listing_push(listing *l, int64_t *cap, size_t *len, size_t *names_cap,
                         const char *name, bool is_dir, bool is_file)
{
    size_t k = strlen(name) + 1;
    if (*len + k > *names_cap) {
        size_t c = *names_cap ? *names_cap * 2 : 4096;
        while (c < *len + k) c *= 2;
        char *p = realloc(l->names, c);
        if (!p) return false;
        l->names = p;
        *names_cap = c;
    }
    if (l->n == *cap) {
        int64_t c = *cap ? *cap * 2 : 64;
        entry *p = realloc(l->e, (size_t)c * sizeof *p);
        if (!p) return false;
        l->e = p;
        *cap = c;
    }
    memcpy(l->names + *len, name, k);
    l->e[l->n++] = (entry){(const char *)(uintptr_t)*len, is_dir, is_file};
    *len += k;
    return true;
}

static int list_dir(const char *path, listing *out, vn_error *err)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(path);
    if (!d)
        return vn_error_set(err, VN_ERR_IO, "%s: cannot open folder: %s", path, strerror(errno));
    int dfd = dirfd(d);
    listing l = {0};
    int64_t cap = 0;
    size_t len = 0, names_cap = 0;
    int rc = VN_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        bool is_dir, is_file;
        if (!entry_kind(dfd, de, &is_dir, &is_file)) {
            /* A dangling link (or one that cannot be followed) is listed as a file: an image
             * name among them then fails to open when loaded and is reported by path, instead
             * of vanishing from the data set without a word. */
            is_dir = false;
            is_file = true;
        }
        if (!listing_push(&l, &cap, &len, &names_cap, de->d_name, is_dir, is_file)) {
            rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory listing %s", path);
            break;
        }
    }
    closedir(d);
    if (rc) {
        listing_free(&l);
        return rc;
    }
    for (int64_t i = 0; i < l.n; i++) l.e[i].name = l.names + (uintptr_t)l.e[i].name;
    if (l.n > 1) qsort(l.e, (size_t)l.n, sizeof *l.e, cmp_entry);
    *out = l;
    return VN_OK;
}

static int join(char *buf, size_t len, const char *a, const char *b, vn_error *err)
{
    int n = b[0] ? snprintf(buf, len, "%s/%s", a, b) : snprintf(buf, len, "%s", a);
    if (n < 0 || (size_t)n >= len)
        return vn_error_set(err, VN_ERR_INVALID, "path too long: %s/%s", a, b);
    return VN_OK;
}

/* The folders of one class: each listed once, kept until the class is done. */
typedef struct class_walk {
    strlist rel; /* relative to root, in the order visited */
    listing *lists;
    int64_t n, cap;
} class_walk;

static void class_walk_free(class_walk *w)
{
    for (int64_t i = 0; i < w->n; i++) listing_free(&w->lists[i]);
    free(w->lists);
    strlist_free(&w->rel);
}

/* Lists rel (relative to root) and, following symlinks, every folder under it, each exactly
 * once; depth-limited so that a link loop cannot recurse forever. */
static int walk_dirs(const char *root, const char *rel, int depth, class_walk *w, vn_error *err)
{
    if (depth > 64) {
        vn_log(VN_LOG_WARN, "%s/%s: folders nested deeper than 64 levels ignored (link loop?)",
               root, rel);
        return VN_OK;
    }
    char path[4096];
    int rc = join(path, sizeof path, root, rel, err);
    if (rc) return rc;
    if (w->n == w->cap) {
        int64_t cap = w->cap ? w->cap * 2 : 4;
        listing *p = realloc(w->lists, (size_t)cap * sizeof *p);
        if (!p) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        w->lists = p;
        w->cap = cap;
    }
    if (strlist_add(&w->rel, rel)) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int64_t me = w->n++;
    rc = list_dir(path, &w->lists[me], err);
    if (rc) {
        w->n--;
        return rc;
    }
    for (int64_t i = 0; i < w->lists[me].n && !rc; i++) {
        const entry *e = &w->lists[me].e[i];
        if (!e->is_dir) continue;
        char sub[4096];
        rc = join(sub, sizeof sub, rel, e->name, err);
        if (!rc) rc = walk_dirs(root, sub, depth + 1, w, err);
    }
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

/* The files of one folder's listing: images as samples of `label`, others as skipped. */
static int add_files(vn_dataset *ds, const char *rel, const listing *l, int32_t label,
                     vn_error *err)
{
    for (int64_t i = 0; i < l->n; i++) {
        if (!l->e[i].is_file) continue;
        char path[4096];
        int rc = join(path, sizeof path, rel, l->e[i].name, err);
        if (rc) return rc;
        if (has_image_ext(l->e[i].name)) {
            if (strlist_add(&ds->files, path) || add_label(ds, label))
                return vn_error_set(err, VN_ERR_NOMEM, "out of memory scanning %s", ds->root);
            ds->class_counts[label]++;
        } else if (strlist_add(&ds->skipped, path)) {
            return vn_error_set(err, VN_ERR_NOMEM, "out of memory scanning %s", ds->root);
        }
    }
    return VN_OK;
}

typedef struct walk_order {
    const char *rel;
    int64_t k;
} walk_order;

static int cmp_walk_order(const void *a, const void *b)
{
    return strcmp(((const walk_order *)a)->rel, ((const walk_order *)b)->rel);
}

static int scan_class(vn_dataset *ds, const char *cls, int32_t label, vn_error *err)
{
    class_walk w = {0};
    int rc = walk_dirs(ds->root, cls, 0, &w, err);
    /* os.walk yields (dirpath, ...) tuples; sorted() orders them by dirpath string. */
    walk_order *order = NULL;
    if (!rc) {
        order = malloc(sizeof *order * (size_t)(w.n ? w.n : 1));
        if (!order) rc = vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    if (!rc) {
        for (int64_t i = 0; i < w.n; i++) order[i] = (walk_order){strlist_at(&w.rel, i), i};
        if (w.n > 1) qsort(order, (size_t)w.n, sizeof *order, cmp_walk_order);
    }
    for (int64_t d = 0; !rc && d < w.n; d++)
        rc = add_files(ds, order[d].rel, &w.lists[order[d].k], label, err);
    free(order);
    class_walk_free(&w);
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

/* The class table: n_class_names given names, or room for one class per folder. */
static int init_classes(vn_dataset *ds, const char *const *class_names, int n_class_names,
                        int n_dirs, vn_error *err)
{
    ds->n_classes = n_class_names > 0 ? n_class_names : n_dirs;
    ds->classes = calloc((size_t)ds->n_classes + 1, sizeof *ds->classes);
    ds->class_counts = calloc((size_t)ds->n_classes + 1, sizeof *ds->class_counts);
    if (!ds->classes || !ds->class_counts) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    for (int c = 0; c < n_class_names; c++) {
        if (!class_names[c] || !class_names[c][0] || strchr(class_names[c], '/'))
            return vn_error_set(err, VN_ERR_INVALID, "class name %d is empty or has a '/'", c);
        if (!(ds->classes[c] = strdup(class_names[c])))
            return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    }
    return VN_OK;
}

/* Walks the class folders in sorted order; top-level files are recorded as skipped. */
static int scan_classes(vn_dataset *ds, const listing *top, const char *const *class_names,
                        int n_class_names, vn_error *err)
{
    const entry *e = top->e;
    int next = 0;
    for (int64_t i = 0; i < top->n; i++) {
        if (!e[i].is_dir || e[i].name[0] == '.') {
            if (e[i].is_file && strlist_add(&ds->skipped, e[i].name))
                return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
            continue;
        }
        if (!vn_utf8_valid(e[i].name)) {
            char esc[512];
            return vn_error_set(err, VN_ERR_INVALID,
                                "%s: class folder '%s' has a name that is not UTF-8 (checkpoints "
                                "store class names as UTF-8 text): rename it", ds->root,
                                vn_utf8_escape(e[i].name, esc, sizeof esc));
        }
        int label = -1;
        if (n_class_names > 0) {
            for (int c = 0; c < n_class_names && label < 0; c++)
                if (!strcmp(ds->classes[c], e[i].name)) label = c;
            if (label < 0)
                return vn_error_set(err, VN_ERR_INVALID,
                                    "%s: folder '%s' is not one of the %d expected classes "
                                    "(first: '%s')",
                                    ds->root, e[i].name, n_class_names, class_names[0]);
        } else {
            label = next++;
            if (!(ds->classes[label] = strdup(e[i].name)))
                return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        }
        int rc = scan_class(ds, e[i].name, label, err);
        if (rc) return rc;
    }
    return VN_OK;
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

    /* A folder that `vanilla data import` began and did not finish (it leaves its started
     * marker beside train/ and val/ until the end). */
    char mk[4200], done[4200];
    snprintf(mk, sizeof mk, "%s/../.vn_import_started", ds->root);
    snprintf(done, sizeof done, "%s/../.vn_import_done", ds->root);
    if (stat(mk, &st) == 0 && stat(done, &st) != 0)
        vn_log(VN_LOG_WARN, "%s: the import that writes this folder did not finish (%s/.. holds "
               ".vn_import_started, no .vn_import_done): images are missing; run the same "
               "`vanilla data import` again", ds->root, ds->root);

    listing top = {0};
    int rc = list_dir(ds->root, &top, err);
    if (rc) goto fail;
    /* Folder classes, sorted; hidden folders (".git", ".ipynb_checkpoints") are not classes. */
    int n_dirs = 0;
    for (int64_t i = 0; i < top.n; i++)
        if (top.e[i].is_dir && top.e[i].name[0] != '.') n_dirs++;
    rc = init_classes(ds, class_names, n_class_names, n_dirs, err);
    if (!rc) rc = scan_classes(ds, &top, class_names, n_class_names, err);
    if (rc) goto fail;
    if (ds->files.n == 0) {
        rc = vn_error_set(err, VN_ERR_NOT_FOUND,
                          "%s: no images found (expected %s/<class>/<name>.png|.jpg|.jpeg; %d "
                          "class folders, %lld other files)",
                          ds->root, ds->root, n_dirs, (long long)ds->skipped.n);
        goto fail;
    }
    for (int c = 0; c < ds->n_classes; c++)
        if (ds->class_counts[c] == 0) {
            char p[4096];
            struct stat cs;
            snprintf(p, sizeof p, "%s/%s", ds->root, ds->classes[c]);
            vn_log(VN_LOG_WARN, "%s: class '%s' has no images%s", ds->root, ds->classes[c],
                   stat(p, &cs) != 0 ? " (no folder of that name here)" : "");
        }
    listing_free(&top);
    *out = ds;
    return VN_OK;
fail:
    listing_free(&top);
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

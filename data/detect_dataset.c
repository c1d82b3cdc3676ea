/* YOLO-format detection datasets: the dataset YAML, the image list and the label files
 * (see data/vn_detect_data.h). */
#include "data/vn_detect_data.h"

#include <ctype.h>
#include <math.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "base/vn_fs.h"

#define REPORT_MAX 256

struct vn_det_dataset {
    int64_t n, cap;
    char **images;
    int64_t *start;
    int32_t *count;
    vn_det_box *boxes;
    int64_t n_boxes, cap_boxes;
    char **skipped;
    int64_t n_skipped, cap_skipped;
    int64_t n_label_files; /* label files found (an image without one has no boxes) */
    int64_t n_other;       /* image files of formats not read (.bmp, .webp, .tif, ...) */
    char *first_other;
};

/* ---- dataset YAML ---------------------------------------------------------------------- */

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* dir + "/" + rel unless rel is absolute. */
static char *join(const char *dir, const char *rel)
{
    if (rel[0] == '/' || !dir || !dir[0]) return dup_n(rel, strlen(rel));
    if (!strcmp(rel, ".")) return dup_n(dir, strlen(dir));
    size_t a = strlen(dir), b = strlen(rel);
    char *p = malloc(a + b + 2);
    if (p) snprintf(p, a + b + 2, "%s/%s", dir, rel);
    return p;
}

void vn_det_data_cfg_free(vn_det_data_cfg *c)
{
    free(c->root);
    free(c->train);
    free(c->val);
    for (int i = 0; c->names && i < c->nc; i++) free(c->names[i]);
    free(c->names);
    memset(c, 0, sizeof *c);
}

static const char *scalar(yaml_node_t *n) { return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL; }

/* names: a sequence, or a mapping of indices 0..n-1 (any order) to names. */
static int read_names(yaml_document_t *doc, yaml_node_t *n, const char *path,
                      vn_det_data_cfg *c, vn_error *err)
{
    int count = n->type == YAML_SEQUENCE_NODE ? (int)(n->data.sequence.items.top - n->data.sequence.items.start)
                : n->type == YAML_MAPPING_NODE ? (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start)
                                               : -1;
    if (count < 1 || count > VN_DET_MAX_CLASSES)
        return vn_error_set(err, VN_ERR_FORMAT, "%s:%d: names must be a list or a mapping of 1 to "
                            "%d class names", path, (int)n->start_mark.line + 1, VN_DET_MAX_CLASSES);
    for (int i = 0; c->names && i < c->nc; i++) free(c->names[i]); /* names given twice: */
    free(c->names);                                                  /* the last wins (PyYAML) */
    c->names = calloc((size_t)count, sizeof *c->names);
    if (!c->names) return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
    c->nc = count;
    for (int i = 0; i < count; i++) {
        yaml_node_t *v;
        long idx = i;
        if (n->type == YAML_SEQUENCE_NODE) {
            v = yaml_document_get_node(doc, n->data.sequence.items.start[i]);
        } else {
            yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
            const char *k = scalar(yaml_document_get_node(doc, pr->key));
            char *end;
            idx = k ? strtol(k, &end, 10) : -1;
            if (!k || *end || idx < 0 || idx >= count)
                return vn_error_set(err, VN_ERR_FORMAT, "%s:%d: names: key '%s' is not a class "
                                    "index 0..%d", path, (int)n->start_mark.line + 1,
                                    k ? k : "?", count - 1);
            v = yaml_document_get_node(doc, pr->value);
        }
        const char *s = scalar(v);
        if (!s || c->names[idx])
            return vn_error_set(err, VN_ERR_FORMAT, "%s: names: class %ld %s", path, idx,
                                s ? "is named twice" : "is not a plain name");
        if (!(c->names[idx] = dup_n(s, strlen(s)))) return vn_error_set(err, VN_ERR_NOMEM, "oom");
    }
    return VN_OK;
}

/* A split: a folder or a .txt list of images, or a sequence of them (kept one per line). */
static int read_split(yaml_document_t *doc, yaml_node_t *v, const char *path, const char *key,
                      char **dst, vn_error *err)
{
    const char *one = scalar(v);
    free(*dst);
    *dst = NULL;
    if (one) return (*dst = dup_n(one, strlen(one))) ? VN_OK : vn_error_set(err, VN_ERR_NOMEM, "oom");
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.start == v->data.sequence.items.top)
        return vn_error_set(err, VN_ERR_FORMAT, "%s:%d: %s must be a folder or .txt list of "
                            "images, or a list of them", path, (int)v->start_mark.line + 1, key);
    size_t len = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        const char *e = scalar(yaml_document_get_node(doc, *it));
        if (!e || !e[0] || strchr(e, '\n'))
            return vn_error_set(err, VN_ERR_FORMAT, "%s:%d: every entry of %s must be a folder or "
                                ".txt list of images", path, (int)v->start_mark.line + 1, key);
        len += strlen(e) + 1;
    }
    if (!(*dst = malloc(len))) return vn_error_set(err, VN_ERR_NOMEM, "oom");
    char *o = *dst;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        const char *e = scalar(yaml_document_get_node(doc, *it));
        size_t n = strlen(e);
        memcpy(o, e, n);
        o[n] = it + 1 < v->data.sequence.items.top ? '\n' : '\0';
        o += n + 1;
    }
    return VN_OK;
}

static int read_yaml(yaml_document_t *doc, const char *path, vn_det_data_cfg *c, char **rel_root,
                     vn_error *err)
{
    int nc_given = 0;
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root || root->type != YAML_MAPPING_NODE)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: a dataset YAML is a mapping with path, "
                            "train, val and names", path);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        char **dst = !k ? NULL : !strcmp(k, "path") ? rel_root : !strcmp(k, "train") ? &c->train
                     : !strcmp(k, "val") ? &c->val : NULL;
        if (k && !strcmp(k, "names")) {
            int rc = read_names(doc, v, path, c, err);
            if (rc != VN_OK) return rc;
        } else if (k && !strcmp(k, "nc")) {
            const char *s = scalar(v);
            char *end = NULL;
            long n = s ? strtol(s, &end, 10) : -1;
            if (!s || *end || n < 1 || n > VN_DET_MAX_CLASSES)
                return vn_error_set(err, VN_ERR_FORMAT, "%s:%d: nc must be a class count in 1..%d",
                                    path, (int)v->start_mark.line + 1, VN_DET_MAX_CLASSES);
            nc_given = (int)n;
        } else if (dst == rel_root && !scalar(v)) {
            return vn_error_set(err, VN_ERR_FORMAT, "%s:%d: path must be one folder", path,
                                (int)v->start_mark.line + 1);
        } else if (dst) {
            int rc = read_split(doc, v, path, k, dst, err);
            if (rc != VN_OK) return rc;
        } /* other keys (download, test) are ignored */
    }
    /* As Ultralytics' check_det_dataset: nc must agree with names; nc alone names the classes
     * class_0, class_1, ... */
    if (c->names && nc_given > 0 && nc_given != c->nc)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: names has %d entries and nc is %d: they must "
                            "match", path, c->nc, nc_given);
    if (!c->names && nc_given > 0) {
        c->names = calloc((size_t)nc_given, sizeof *c->names);
        if (!c->names) return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
        c->nc = nc_given;
        for (int i = 0; i < c->nc; i++) {
            char name[32];
            snprintf(name, sizeof name, "class_%d", i);
            if (!(c->names[i] = dup_n(name, strlen(name))))
                return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    if (!c->train || !c->val || !c->names)
        return vn_error_set(err, VN_ERR_FORMAT, "%s: missing %s (a dataset YAML needs train, val "
                            "and names or nc)", path, !c->train ? "train" : !c->val ? "val" : "names");
    return VN_OK;
}

/* The next entry of a one-per-line list at *q (malloc'd, NULL when out of memory); *q moves
 * past it, to NULL after the last. */
static char *next_entry(const char **q)
{
    const char *e = strchr(*q, '\n');
    char *one = dup_n(*q, e ? (size_t)(e - *q) : strlen(*q));
    *q = e ? e + 1 : NULL;
    return one;
}

/* join(root, line) for every line of list (a split given as a sequence), one per line. */
static char *join_lines(const char *root, const char *list)
{
    int lines = 1;
    for (const char *q = list; *q; q++) lines += *q == '\n';
    char *out = malloc(strlen(list) + (size_t)lines * (strlen(root) + 2) + 1), *o = out;
    for (const char *q = list; out && q;) {
        char *one = next_entry(&q), *j = one ? join(root, one) : NULL;
        free(one);
        if (!j) {
            free(out);
            return NULL;
        }
        o += sprintf(o, "%s%s", o == out ? "" : "\n", j);
        free(j);
    }
    return out;
}

int vn_det_data_cfg_load(const char *path, vn_det_data_cfg *c, vn_error *err)
{
    memset(c, 0, sizeof *c);
    uint8_t *text;
    size_t len;
    int rc = vn_read_file(path, &text, &len, err);
    if (rc != VN_OK) return rc;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s:%zu: %s", path, parser.problem_mark.line + 1,
                          parser.problem ? parser.problem : "YAML syntax error");
        yaml_parser_delete(&parser);
        free(text);
        return rc;
    }
    char *rel_root = NULL;
    rc = read_yaml(&doc, path, c, &rel_root, err);
    if (rc == VN_OK) {
        char *dir = dup_n(path, strlen(path)), *slash = dir ? strrchr(dir, '/') : NULL;
        if (dir) {
            if (slash) *slash = 0;
            else strcpy(dir, ".");
        }
        c->root = dir ? join(dir, rel_root ? rel_root : ".") : NULL;
        char *tr = c->root ? join_lines(c->root, c->train) : NULL;
        char *va = c->root ? join_lines(c->root, c->val) : NULL;
        free(c->train);
        free(c->val);
        c->train = tr;
        c->val = va;
        free(dir);
        if (!tr || !va) rc = vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", path);
    }
    free(rel_root);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(text);
    if (rc != VN_OK) vn_det_data_cfg_free(c);
    return rc;
}

/* ---- image list ---------------------------------------------------------------------------- */

/* 1: an image read here (png, jpg, jpeg); 2: an image format Ultralytics reads and vanilla
 * does not (counted and named once); 0: anything else. */
static int image_kind(const char *name)
{
    const char *dot = strrchr(name, '.'), *slash = strrchr(name, '/');
    if (!dot || (slash && dot < slash)) return 0;
    char ext[8] = {0};
    for (int i = 0; i < 6 && dot[1 + i]; i++) ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    if (!strcmp(ext, "png") || !strcmp(ext, "jpg") || !strcmp(ext, "jpeg")) return 1;
    static const char *const other[] = {"bmp", "webp", "tif", "tiff", "dng", "mpo", "pfm", "heic"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (!strcmp(ext, other[i])) return 2;
    return 0;
}


static void note_other(vn_det_dataset *ds, const char *path)
{
    if (!ds->n_other++) ds->first_other = dup_n(path, strlen(path));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int push_image(vn_det_dataset *ds, char *path)
{
    if (ds->n == ds->cap) {
        int64_t cap = ds->cap ? 2 * ds->cap : 256;
        char **p = realloc(ds->images, (size_t)cap * sizeof *p);
        if (!p) return VN_ERR_NOMEM;
        ds->images = p;
        ds->cap = cap;
    }
    ds->images[ds->n++] = path;
    return VN_OK;
}

/* Files and folders of dir in byte order; images appended, folders walked in that order. */
static int walk(vn_det_dataset *ds, const char *dir, int depth, vn_error *err)
{
    if (depth > 32) return vn_error_set(err, VN_ERR_FORMAT, "%s: folders nested too deep", dir);
    DIR *d = opendir(dir);
    if (!d) return vn_error_set(err, VN_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = VN_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) { rc = VN_ERR_NOMEM; break; }
            names = p;
        }
        if (!(names[n] = join(dir, e->d_name))) { rc = VN_ERR_NOMEM; break; }
        n++;
    }
    closedir(d);
    if (rc == VN_OK) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        int kind = rc == VN_OK ? image_kind(names[i]) : 0;
        if (rc == VN_OK && stat(names[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            rc = walk(ds, names[i], depth + 1, err);
        } else if (kind == 1) {
            rc = push_image(ds, names[i]);
            if (rc == VN_OK) continue; /* owned by ds now */
        } else if (kind == 2) {
            note_other(ds, names[i]);
        }
        free(names[i]);
    }
    free(names);
    if (rc == VN_ERR_NOMEM) return vn_error_set(err, rc, "%s: out of memory listing images", dir);
    return rc;
}

/* The label file of an image: its last "images" folder becomes "labels", the extension .txt. */
static char *label_path(const char *img)
{
    size_t len = strlen(img);
    char *p = malloc(len + 8);
    if (!p) return NULL;
    memcpy(p, img, len + 1);
    char *hit = NULL;
    for (char *s = strstr(p, "images/"); s; s = strstr(s + 1, "images/"))
        if (s == p || s[-1] == '/') hit = s;
    if (hit) memcpy(hit, "labels", 6);
    char *dot = strrchr(p, '.'), *slash = strrchr(p, '/');
    if (dot && (!slash || dot > slash)) strcpy(dot, ".txt");
    else strcat(p, ".txt");
    return p;
}

/* The longest label line read: a segment of about 40,000 points. */
#define LABEL_LINE_MAX (1 << 20)
/* The largest label file read (thousands of segments). */
#define LABEL_FILE_MAX (64 << 20)

/* ---- labels ------------------------------------------------------------------------------- */

static int push_box(vn_det_dataset *ds, vn_det_box b)
{
    if (ds->n_boxes == ds->cap_boxes) {
        int64_t cap = ds->cap_boxes ? 2 * ds->cap_boxes : 1024;
        vn_det_box *p = realloc(ds->boxes, (size_t)cap * sizeof *p);
        if (!p) return VN_ERR_NOMEM;
        ds->boxes = p;
        ds->cap_boxes = cap;
    }
    ds->boxes[ds->n_boxes++] = b;
    return VN_OK;
}

/* Parses one line into b; on a problem writes it to why and returns false. */
static bool parse_line(char *line, int nc, vn_det_box *b, char *why, size_t why_len)
{
    /* class cx cy w h, or an Ultralytics segment: class x1 y1 x2 y2 ... (3 points or more),
     * whose box is the points' extent (segments2boxes) */
    double v[5] = {0, 0, 0, 0, 0}, lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    int n = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
        char *end;
        errno = 0;
        double x = strtod(tok, &end);
        if (*end || errno || x != x) {
            snprintf(why, why_len, "'%.40s' is not a number", tok);
            return false;
        }
        if (n > 0 && !(x >= 0.0 && x <= 1.0)) {
            snprintf(why, why_len, "coordinate %.9g is outside [0, 1] (labels are normalised)", x);
            return false;
        }
        if (n < 5) v[n] = x;
        if (n > 0) {
            lo[(n - 1) % 2] = fmin(lo[(n - 1) % 2], x);
            hi[(n - 1) % 2] = fmax(hi[(n - 1) % 2], x);
        }
        n++;
    }
    bool segment = n >= 7 && n % 2 == 1;
    if (n != 5 && !segment) {
        snprintf(why, why_len, "%d fields, expected 5 (class cx cy w h) or a segment (class x1 y1 "
                 "x2 y2 ..., 3 points or more)", n);
        return false;
    }
    if (!(v[0] >= 0 && v[0] < nc) || v[0] != floor(v[0])) { /* range first: no huge cast */
        snprintf(why, why_len, "class %g is not one of 0..%d", v[0], nc - 1);
        return false;
    }
    if (segment) {
        v[1] = (lo[0] + hi[0]) / 2;
        v[2] = (lo[1] + hi[1]) / 2;
        v[3] = hi[0] - lo[0];
        v[4] = hi[1] - lo[1];
    }
    *b = (vn_det_box){(int32_t)v[0], (float)v[1], (float)v[2], (float)v[3], (float)v[4]};
    return true;
}

/* Reads the label file of image i; a bad line fills report ("file:line: problem"). */
static int read_labels(vn_det_dataset *ds, const char *lpath, int nc, char *report, size_t rlen,
                       vn_error *err)
{
    report[0] = 0;
    FILE *f = fopen(lpath, "r");
    if (!f) return errno == ENOENT ? VN_OK : vn_error_set(err, VN_ERR_IO, "%s: cannot open: %s",
                                                          lpath, strerror(errno));
    ds->n_label_files++;
    struct stat lst;
    if (fstat(fileno(f), &lst) == 0 && lst.st_size > LABEL_FILE_MAX) { /* no label file */
        snprintf(report, rlen, "%s: %lld bytes, more than a label file holds (%d MB at most)",
                 lpath, (long long)lst.st_size, LABEL_FILE_MAX >> 20);
        fclose(f);
        return VN_OK;
    }
    char *line = NULL, why[200];
    size_t cap = 0;
    int ln = 0, rc = VN_OK;
    int64_t first = ds->n_boxes;
    for (ssize_t len; (len = getline(&line, &cap, f)) >= 0;) {
        ln++;
        if (len > LABEL_LINE_MAX) { /* segments are long; this is no label line */
            snprintf(report, rlen, "%s:%d: line longer than %d bytes", lpath, ln, LABEL_LINE_MAX);
            break;
        }
        if ((size_t)len != strlen(line)) {
            snprintf(report, rlen, "%s:%d: a NUL byte in the line", lpath, ln);
            break;
        }
        bool blank = true;
        for (char *c = line; *c; c++) blank &= isspace((unsigned char)*c) != 0;
        if (blank) continue;
        vn_det_box b;
        if (!parse_line(line, nc, &b, why, sizeof why)) {
            snprintf(report, rlen, "%s:%d: %s", lpath, ln, why);
            break;
        }
        if ((rc = push_box(ds, b)) != VN_OK) break;
    }
    /* getline stopped before the end: a read error, or no memory for the line */
    if (!report[0] && rc == VN_OK && !feof(f)) rc = errno == ENOMEM ? VN_ERR_NOMEM : VN_ERR_IO;
    free(line);
    fclose(f);
    if (rc == VN_ERR_IO) return vn_error_set(err, rc, "%s: read error", lpath);
    if (report[0]) ds->n_boxes = first;
    if (rc != VN_OK) return vn_error_set(err, rc, "%s: out of memory", lpath);
    return VN_OK;
}

static int add_skipped(vn_det_dataset *ds, const char *msg)
{
    if (ds->n_skipped == ds->cap_skipped) {
        int64_t cap = ds->cap_skipped ? 2 * ds->cap_skipped : 16;
        char **p = realloc(ds->skipped, (size_t)cap * sizeof *p);
        if (!p) return VN_ERR_NOMEM;
        ds->skipped = p;
        ds->cap_skipped = cap;
    }
    if (!(ds->skipped[ds->n_skipped] = dup_n(msg, strlen(msg)))) return VN_ERR_NOMEM;
    ds->n_skipped++;
    return VN_OK;
}

void vn_det_dataset_free(vn_det_dataset *ds)
{
    if (!ds) return;
    for (int64_t i = 0; i < ds->n; i++) free(ds->images[i]);
    for (int64_t i = 0; i < ds->n_skipped; i++) free(ds->skipped[i]);
    free(ds->images);
    free(ds->skipped);
    free(ds->start);
    free(ds->count);
    free(ds->boxes);
    free(ds->first_other);
    free(ds);
}

/* Reads every label file; images with a bad one leave the list (compacted in place). */
static int read_all_labels(vn_det_dataset *ds, int nc, vn_error *err)
{
    ds->start = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *ds->start);
    ds->count = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *ds->count);
    if (!ds->start || !ds->count) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int64_t kept = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        char *lp = label_path(ds->images[i]), report[REPORT_MAX + PATH_MAX];
        if (!lp) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        int64_t first = ds->n_boxes;
        int rc = read_labels(ds, lp, nc, report, sizeof report, err);
        free(lp);
        if (rc != VN_OK) return rc;
        if (report[0]) {
            if (add_skipped(ds, report) != VN_OK) return vn_error_set(err, VN_ERR_NOMEM, "oom");
            free(ds->images[i]);
            continue;
        }
        ds->images[kept] = ds->images[i];
        ds->start[kept] = first;
        ds->count[kept] = (int32_t)(ds->n_boxes - first);
        kept++;
    }
    ds->n = kept;
    return VN_OK;
}

/* A .txt list of images (Ultralytics' train2017.txt): one path per line, "./x" relative to
 * the list's folder, others as written (collect_images sorts them, as Ultralytics sorts its
 * image files). */
static int read_list(vn_det_dataset *ds, const char *list, vn_error *err)
{
    uint8_t *text;
    size_t len;
    int rc = vn_read_file(list, &text, &len, err);
    if (rc != VN_OK) return rc;
    const char *slash = strrchr(list, '/');
    char *dir = slash ? dup_n(list, (size_t)(slash - list)) : dup_n(".", 1);
    char *t = (char *)text;
    for (size_t i = 0; rc == VN_OK && dir && i < len;) {
        size_t e = i;
        while (e < len && t[e] != '\n') e++;
        size_t a = i, b = e;
        while (a < b && isspace((unsigned char)t[a])) a++;
        while (b > a && isspace((unsigned char)t[b - 1])) b--;
        i = e + 1;
        if (a == b) continue;
        char *line = dup_n(t + a, b - a);
        char *path = line && strncmp(line, "./", 2) == 0 ? join(dir, line + 2) : line;
        if (path != line) free(line);
        int kind = path ? image_kind(path) : 0;
        if (!path) rc = VN_ERR_NOMEM;
        else if (kind == 1 && (rc = push_image(ds, path)) == VN_OK) continue;
        else if (rc == VN_OK && kind == 2) note_other(ds, path);
        free(path);
    }
    if (!dir) rc = VN_ERR_NOMEM;
    free(dir);
    free(text);
    if (rc == VN_ERR_NOMEM) return vn_error_set(err, rc, "%s: out of memory reading the list", list);
    return rc;
}

bool vn_det_split_exists(const char *split)
{
    for (const char *q = split; q;) {
        char *one = next_entry(&q);
        bool ok = one && access(one, F_OK) == 0;
        free(one);
        if (!ok) return false;
    }
    return true;
}

/* Every entry (one per line) of images: a folder walked, or a .txt list read. */
static int collect_images(vn_det_dataset *ds, const char *images, vn_error *err)
{
    int rc = VN_OK;
    bool sort = strchr(images, '\n') != NULL; /* several entries */
    for (const char *q = images; rc == VN_OK && q;) {
        char *one = next_entry(&q);
        if (!one) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
        struct stat st;
        if (stat(one, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = read_list(ds, one, err);
            sort = true;
        } else {
            rc = walk(ds, one, 0, err);
        }
        free(one);
    }
    /* several entries or a list: one sorted list, as Ultralytics sorts a split's image files
     * (a single folder keeps its walk's order, which runs have been trained in) */
    if (rc == VN_OK && sort) qsort(ds->images, (size_t)ds->n, sizeof *ds->images, cmp_str);
    return rc;
}

int vn_det_dataset_scan(const char *images_dir, int nc, double max_bad_fraction,
                        vn_det_dataset **out, vn_error *err)
{
    *out = NULL;
    vn_det_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    int rc = collect_images(ds, images_dir, err);
    if (rc == VN_OK && ds->n_other)
        vn_log(VN_LOG_WARN, "%s: %lld image files of formats vanilla does not read (PNG and JPEG "
               "only) are left out, e.g. %s", images_dir, (long long)ds->n_other,
               ds->first_other ? ds->first_other : "?");
    int64_t total = ds->n;
    if (rc == VN_OK && total == 0)
        rc = vn_error_set(err, VN_ERR_NOT_FOUND, "%s: no images (.png, .jpg, .jpeg); a YOLO "
                          "dataset has images/<split>/* and labels/<split>/*.txt", images_dir);
    if (rc == VN_OK) rc = read_all_labels(ds, nc, err);
    if (rc == VN_OK && ds->n_label_files == 0) {
        /* Not one label file: a wrong path, not a set of background images (those have
         * empty label files). */
        char *lp = total > 0 ? label_path(ds->n ? ds->images[0] : "") : NULL;
        rc = vn_error_set(err, VN_ERR_NOT_FOUND, "%s: none of the %lld images has a label file "
                          "(the first would be %s): a YOLO dataset has images/<split>/* and "
                          "labels/<split>/*.txt, one per image (empty for an image without "
                          "objects)", images_dir, (long long)total, lp ? lp : "?");
        free(lp);
    }
    if (rc == VN_OK && (double)ds->n_skipped > max_bad_fraction * (double)total)
        rc = vn_error_set(err, VN_ERR_FORMAT, "%s: %lld of %lld images have bad labels (more "
                          "than max_bad_fraction %g), first: %s", images_dir,
                          (long long)ds->n_skipped, (long long)total, max_bad_fraction,
                          ds->skipped[0]);
    if (rc != VN_OK) {
        vn_det_dataset_free(ds);
        return rc;
    }
    *out = ds;
    return VN_OK;
}

int64_t vn_det_dataset_size(const vn_det_dataset *ds) { return ds->n; }
const char *vn_det_dataset_image(const vn_det_dataset *ds, int64_t i) { return ds->images[i]; }
int64_t vn_det_dataset_skipped_count(const vn_det_dataset *ds) { return ds->n_skipped; }
const char *vn_det_dataset_skipped(const vn_det_dataset *ds, int64_t k) { return ds->skipped[k]; }

const vn_det_box *vn_det_dataset_boxes(const vn_det_dataset *ds, int64_t i, int *n)
{
    *n = ds->count[i];
    return *n ? ds->boxes + ds->start[i] : NULL; /* no boxes in the whole set: boxes is NULL */
}

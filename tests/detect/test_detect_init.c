/* model.init of a detector (train/detect_init.c): a tiny VanillaNet classifier and a tiny
 * detector written to files, then loaded into the detector the config describes. From a
 * classifier (vanilla checkpoint, its EMA, an official-names state_dict): the backbone equals
 * the classifier's bit for bit and the neck and head equal a fresh initialisation; from a
 * detector checkpoint (live and EMA weights) or weight file: every tensor equal; another nc:
 * Detect's class branch keeps its initialisation and is named in a warning; wrong widths,
 * merged files, a missing file: errors naming the tensors or the file, nothing loaded; an
 * official .pth read through io/vn_pth.h (tests/reference/gen_detect_init.py: main.py's
 * checkpoint, model and model_ema, equal to PyTorch's own safetensors of them; and the
 * two-stage fixture of gen_weights.py, which lacks the third stage a detector needs).
 * Through the trainer: the line it prints, and a step at lr 0 whose checkpoint holds the
 * classifier's backbone in the model and (within float rounding) in the EMA, which therefore
 * started from the loaded weights; a resumed run with model.init ends as a straight one. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/vn_fs.h"
#include "base/vn_rng.h"
#include "data/vn_detect_data.h"
#include "train/vn_detect.h"
#include "vn_test.h"

#define SEED 5

static const char *const BASE_YAML =
    "model: {task: detect, name: custom, dims: [8, 16, 16, 16], strides: [2, 2, 2], act_num: 1}\n"
    "detect: {imgsz: 64, width_multiple: 0.125, depth_multiple: 0.34, close_mosaic: 1}\n"
    "data: {mixup: 0, cutmix: 0}\n";

/* BASE_YAML with the assignments of sets ("key=value", NULL-terminated; NULL: none). */
static vn_config *config_of(const char *const *sets)
{
    vn_config *cfg = malloc(sizeof *cfg);
    ck_assert(cfg);
    vn_error err = {0};
    int rc = vn_config_from_text(cfg, BASE_YAML, strlen(BASE_YAML), "test config", &err);
    for (int i = 0; rc == VN_OK && sets && sets[i]; i++) rc = vn_config_set(cfg, sets[i], &err);
    if (rc == VN_OK) rc = vn_config_check(cfg, &err);
    ck_assert_msg(rc == VN_OK, "%s", err.msg);
    return cfg;
}

/* The detector the trainer builds from BASE_YAML (and one assignment, may be NULL) for nc
 * classes, initialised as the trainer does. */
static vn_yolo *detector(int nc, const char *set)
{
    const char *sets[2] = {set, NULL};
    vn_config *cfg = config_of(sets);
    vn_yolo_config yc;
    vn_error err = {0};
    vn_yolo *m = NULL;
    int rc = vn_detect_model_config(cfg, nc, &yc, &err);
    if (rc == VN_OK) rc = vn_yolo_create(&yc, &m, &err);
    ck_assert_msg(rc == VN_OK, "%s", err.msg);
    vn_yolo_init(m, SEED);
    free(cfg);
    return m;
}

/* Values far from any initialisation (BatchNorm statistics and counts included). */
static void randomize(const vn_state_list *l, uint64_t seed)
{
    vn_rng rng;
    vn_rng_seed(&rng, seed, 0x1d17, 0);
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *e = &l->items[i];
        if (e->kind == VN_STATE_COUNT) {
            *e->count = 100 + (int64_t)(vn_rng_uniform_double(&rng) * 100);
            continue;
        }
        for (int64_t k = 0; k < e->tensor->numel; k++)
            e->tensor->data[k] = (float)(0.5 + vn_rng_uniform_double(&rng));
    }
}

/* A classifier with the backbone of BASE_YAML (or other widths or strides), 10 classes,
 * randomised. */
static vn_vanillanet *classifier_strided(const int *dims, const int *strides, uint64_t seed)
{
    vn_vanillanet_config c;
    vn_error err = {0};
    ck_assert(vn_vanillanet_variant("vanillanet_5", &c, &err) == VN_OK);
    c.n_stages = 3;
    for (int i = 0; i < 4; i++) c.dims[i] = dims[i];
    for (int i = 0; i < 3; i++) c.strides[i] = strides[i];
    c.act_num = 1;
    c.num_classes = 10;
    vn_vanillanet *m = NULL;
    ck_assert_msg(vn_vanillanet_create(&c, false, &m, &err) == VN_OK, "%s", err.msg);
    randomize(&m->state, seed);
    return m;
}

static const int DIMS[4] = {8, 16, 16, 16}, STRIDES[3] = {2, 2, 2};

static vn_vanillanet *classifier(const int *dims, uint64_t seed)
{
    return classifier_strided(dims, STRIDES, seed);
}

static bool same_item(const vn_state_item *a, const vn_state_item *b)
{
    if (a->kind != b->kind) return false;
    if (a->kind == VN_STATE_COUNT) return *a->count == *b->count;
    return a->tensor->numel == b->tensor->numel &&
           memcmp(a->tensor->data, b->tensor->data, (size_t)a->tensor->numel * sizeof(float)) == 0;
}

/* Items of d under "model.0." equal src's (by the classifier's name); the rest equal ref's.
 * Returns the number of backbone items compared. */
static int check_backbone(const vn_yolo *d, const vn_vanillanet *src, const vn_yolo *ref)
{
    const vn_state_list *l = vn_yolo_state(d), *r = vn_yolo_state(ref);
    int n = 0;
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *e = &l->items[i];
        if (strncmp(e->name, "model.0.", 8) == 0) {
            const vn_state_item *s = vn_state_find(&src->state, e->name + 8);
            ck_assert_msg(s && same_item(e, s), "%s differs from the classifier's", e->name);
            n++;
        } else {
            ck_assert_msg(same_item(e, &r->items[i]), "%s differs from a fresh initialisation", e->name);
        }
    }
    return n;
}

/* Every item of d equals src's, but those whose name starts with skip (NULL: none), which
 * equal ref's. */
static void check_all(const vn_yolo *d, const vn_yolo *src, const vn_yolo *ref, const char *skip)
{
    const vn_state_list *l = vn_yolo_state(d);
    for (int i = 0; i < l->n; i++) {
        const vn_state_item *e = &l->items[i];
        bool fresh = skip && strncmp(e->name, skip, strlen(skip)) == 0;
        const vn_state_item *s = vn_state_find(vn_yolo_state(fresh ? ref : src), e->name);
        ck_assert_msg(s && same_item(e, s), "%s differs from the %s", e->name,
                      fresh ? "fresh initialisation" : "file's");
    }
}

static int count_prefix(const vn_state_list *l, const char *prefix)
{
    int n = 0;
    for (int i = 0; i < l->n; i++) n += strncmp(l->items[i].name, prefix, strlen(prefix)) == 0;
    return n;
}

static const char *const *class_names(void)
{
    static const char *const names[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    return names;
}

static void save_classifier_ckpt(const char *path, vn_vanillanet *m, vn_vanillanet *ema)
{
    vn_ckpt_parts p = {m, NULL, ema ? &ema : NULL, ema ? 1 : 0, NULL, NULL,
                       class_names(), 10};
    vn_error err = {0};
    ck_assert_msg(vn_ckpt_save(path, &p, &err) == VN_OK, "%s", err.msg);
}

static void save_plain(const char *path, const vn_state_list *l)
{
    vn_st_writer *w = vn_st_writer_new();
    vn_error err = {0};
    ck_assert(w);
    ck_assert_msg(vn_state_to_writer(l, "", w, &err) == VN_OK, "%s", err.msg);
    ck_assert_msg(vn_st_write(w, path, 0, &err) == VN_OK, "%s", err.msg);
    vn_st_writer_free(w);
}

static void save_detector(const char *path, vn_yolo *m, vn_yolo *ema, bool checkpoint)
{
    vn_detect_state st;
    memset(&st, 0, sizeof st);
    st.best_fitness = -1;
    int nc = vn_yolo_get_config(m)->nc;
    vn_detect_ckpt c = {m, NULL, checkpoint ? &st : NULL, NULL, class_names(),
                        nc, 64, ema, false};
    vn_error err = {0};
    ck_assert_msg(vn_detect_ckpt_save(path, &c, &err) == VN_OK, "%s", err.msg);
}

/* Warnings of the library, gathered for the checks. */
static char warnings[8192];
static void gather(vn_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    size_t len = strlen(warnings);
    snprintf(warnings + len, sizeof warnings - len, "%s\n", msg);
}

/* ---- from a classifier ------------------------------------------------------------------------ */

START_TEST(classifier_checkpoint_backbone)
{
    char dir[256];
    vn_test_mkdtemp(dir, sizeof dir, "detinit");
    vn_vanillanet *cls = classifier(DIMS, 11), *ema = classifier(DIMS, 12);
    const char *path = vn_test_in_dir(dir, "cls.safetensors");
    save_classifier_ckpt(path, cls, ema);
    vn_yolo *d = detector(3, NULL), *fresh = detector(3, NULL);
    vn_detect_init_result res;
    vn_error err = {0};
    ck_assert_msg(vn_detect_init_from(d, path, "model", &res, &err) == VN_OK, "%s", err.msg);
    int nb = check_backbone(d, cls, fresh);
    ck_assert_int_eq(nb, count_prefix(vn_yolo_state(d), "model.0."));
    ck_assert_int_eq(res.n_loaded, nb);
    ck_assert_int_eq(res.n_dropped, count_prefix(&cls->state, "cls"));
    ck_assert_int_gt(res.n_dropped, 0);
    ck_assert(!res.from_detector && !res.ema);
    char want[512];
    snprintf(want, sizeof want, "model.init %s: backbone of a classifier, %d tensors into model.0, "
             "%d classifier tensors dropped", path, nb, res.n_dropped);
    ck_assert_str_eq(res.line, want);
    printf("%s\n", res.line);

    /* The EMA copy of the checkpoint, by key. */
    vn_yolo *d2 = detector(3, NULL);
    ck_assert_msg(vn_detect_init_from(d2, path, "model_ema", &res, &err) == VN_OK, "%s", err.msg);
    check_backbone(d2, ema, fresh);
    ck_assert(res.ema);
    ck_assert_msg(strstr(res.line, "(EMA weights 0)"), "%s", res.line);
    /* A key the file does not hold. */
    ck_assert_int_ne(vn_detect_init_from(d2, path, "model_ema.3", &res, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "model_ema.3") && strstr(err.msg, path), "%s", err.msg);
    vn_yolo_destroy(d);
    vn_yolo_destroy(d2);
    vn_yolo_destroy(fresh);
    vn_vanillanet_destroy(cls);
    vn_vanillanet_destroy(ema);
    vn_test_rmtree(dir);
}
END_TEST

START_TEST(classifier_plain_state_dict)
{
    char dir[256];
    vn_test_mkdtemp(dir, sizeof dir, "detinit");
    vn_vanillanet *cls = classifier(DIMS, 13);
    const char *path = vn_test_in_dir(dir, "plain.safetensors");
    save_plain(path, &cls->state);
    vn_yolo *d = detector(3, NULL), *fresh = detector(3, NULL);
    vn_detect_init_result res;
    vn_error err = {0};
    ck_assert_msg(vn_detect_init_from(d, path, "", &res, &err) == VN_OK, "%s", err.msg);
    check_backbone(d, cls, fresh);
    ck_assert_msg(strstr(res.line, "backbone of a classifier (an official-names state_dict), "), "%s", res.line);
    /* A plain state_dict has no EMA weights. */
    ck_assert_int_ne(vn_detect_init_from(d, path, "model_ema", &res, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "holds no 'model_ema'"), "%s", err.msg);
    vn_yolo_destroy(d);
    vn_yolo_destroy(fresh);
    vn_vanillanet_destroy(cls);
    vn_test_rmtree(dir);
}
END_TEST

/* Other strides change no shape: loaded, with a warning. */
START_TEST(classifier_other_strides)
{
    char dir[256];
    vn_test_mkdtemp(dir, sizeof dir, "detinit");
    const int strides[3] = {2, 2, 1};
    vn_vanillanet *cls = classifier_strided(DIMS, strides, 16);
    const char *path = vn_test_in_dir(dir, "s221.safetensors");
    save_classifier_ckpt(path, cls, NULL);
    vn_yolo *d = detector(3, NULL), *fresh = detector(3, NULL);
    vn_detect_init_result res;
    vn_error err = {0};
    warnings[0] = 0;
    vn_log_set(gather, NULL);
    int rc = vn_detect_init_from(d, path, "model", &res, &err);
    vn_log_set(NULL, NULL);
    ck_assert_msg(rc == VN_OK, "%s", err.msg);
    check_backbone(d, cls, fresh);
    ck_assert_msg(strstr(warnings, "strides [2, 2, 1], the detector's backbone has [2, 2, 2]"), "%s", warnings);
    vn_yolo_destroy(d);
    vn_yolo_destroy(fresh);
    vn_vanillanet_destroy(cls);
    vn_test_rmtree(dir);
}
END_TEST

/* Another width in the last stage: every mismatched tensor named with both shapes, the model
 * left as it was. */
START_TEST(classifier_wrong_widths)
{
    char dir[256];
    vn_test_mkdtemp(dir, sizeof dir, "detinit");
    const int dims[4] = {8, 16, 16, 24};
    vn_vanillanet *cls = classifier(dims, 14);
    const char *path = vn_test_in_dir(dir, "wide.safetensors");
    save_classifier_ckpt(path, cls, NULL);
    vn_yolo *d = detector(3, NULL), *fresh = detector(3, NULL);
    vn_detect_init_result res;
    vn_error err = {0};
    ck_assert_int_eq(vn_detect_init_from(d, path, "model", &res, &err), VN_ERR_SHAPE);
    printf("%s\n", err.msg);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "does not fit the configured backbone"), "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "'model.stages.2.conv2.0.weight' is F32 [24, 16, 1, 1] in the file, "
                                  "F32 [16, 16, 1, 1] in the model"), "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "0 missing; 0 unexpected"), "%s", err.msg);
    check_all(d, fresh, fresh, NULL);
    vn_yolo_destroy(d);
    vn_yolo_destroy(fresh);
    vn_vanillanet_destroy(cls);
    vn_test_rmtree(dir);
}
END_TEST

/* Merged files: a deploy-form classifier and a merged detector. */
START_TEST(deploy_forms_refused)
{
    char dir[256];
    vn_test_mkdtemp(dir, sizeof dir, "detinit");
    vn_error err = {0};
    vn_vanillanet *cls = classifier(DIMS, 15);
    ck_assert_msg(vn_vanillanet_switch_to_deploy(cls, true, &err) == VN_OK, "%s", err.msg);
    const char *path = vn_test_in_dir(dir, "deploy.safetensors");
    save_plain(path, &cls->state);
    vn_yolo *d = detector(3, NULL), *fresh = detector(3, NULL);
    vn_detect_init_result res;
    ck_assert_int_ne(vn_detect_init_from(d, path, "model", &res, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "merged (deploy-form) VanillaNet") &&
                  strstr(err.msg, "cannot be split back"), "%s", err.msg);

    vn_yolo *merged = detector(3, NULL);
    ck_assert_msg(vn_yolo_switch_to_deploy(merged, true, &err) == VN_OK, "%s", err.msg);
    const char *dpath = vn_test_in_dir(dir, "det-merged.safetensors");
    save_detector(dpath, merged, NULL, false);
    ck_assert_int_ne(vn_detect_init_from(d, dpath, "model", &res, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, dpath) && strstr(err.msg, "merged (deploy-form) detector"), "%s", err.msg);
    check_all(d, fresh, fresh, NULL);
    vn_yolo_destroy(d);
    vn_yolo_destroy(fresh);
    vn_yolo_destroy(merged);
    vn_vanillanet_destroy(cls);
    vn_test_rmtree(dir);
}
END_TEST

START_TEST(missing_or_foreign_file)
{
    vn_yolo *d = detector(3, NULL);
    vn_detect_init_result res;
    vn_error err = {0};
    const char *path = "/nonexistent/detinit/weights.safetensors";
    ck_assert_int_ne(vn_detect_init_from(d, path, "model", &res, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "model.init") && strstr(err.msg, path), "%s", err.msg);
    /* A safetensors file of something else. */
    char dir[256];
    vn_test_mkdtemp(dir, sizeof dir, "detinit");
    const char *other = vn_test_in_dir(dir, "other.safetensors");
    vn_st_writer *w = vn_st_writer_new();
    const int64_t shape[1] = {2};
    const float v[2] = {1, 2};
    ck_assert(w && vn_st_add(w, "foo.weight", VN_DTYPE_F32, 1, shape, v, &err) == VN_OK);
    ck_assert_msg(vn_st_write(w, other, 0, &err) == VN_OK, "%s", err.msg);
    vn_st_writer_free(w);
    ck_assert_int_ne(vn_detect_init_from(d, other, "model", &res, &err), VN_OK);
    printf("%s\n", err.msg);
    ck_assert_msg(strstr(err.msg, other) && strstr(err.msg, "neither a detector written by vanilla nor a "
                                                   "VanillaNet classifier"), "%s", err.msg);
    vn_yolo_destroy(d);
    vn_test_rmtree(dir);
}
END_TEST

/* The official .pth fixture (tests/reference/gen_weights.py: dims 8, 16, 24, two stages) is
 * read through io/vn_pth.h; a detector needs three stages, so the one with widths
 * [8, 16, 24, 32] gets the stem and both stages from it and reports the third as missing. */
START_TEST(official_pth)
{
    const char *path = vn_test_fixture_path("weights/sd_train.pth");
    vn_yolo *d = detector(3, "model.dims=[8, 16, 24, 32]");
    vn_detect_init_result res;
    vn_error err = {0};
    ck_assert_int_eq(vn_detect_init_from(d, path, "model", &res, &err), VN_ERR_SHAPE);
    printf("%s\n", err.msg);
    ck_assert_msg(strstr(err.msg, "0 wrong shapes") && strstr(err.msg, "'stages.2.conv1.0.weight'") &&
                  strstr(err.msg, "0 unexpected"), "%s", err.msg);
    /* main.py's checkpoint: its model_ema entry, by key. */
    const char *ck = vn_test_fixture_path("weights/ckpt.pth");
    ck_assert_int_eq(vn_detect_init_from(d, ck, "model_ema", &res, &err), VN_ERR_SHAPE);
    ck_assert_msg(strstr(err.msg, "0 wrong shapes") && strstr(err.msg, "'stages.2.conv1.0.weight'"), "%s", err.msg);
    ck_assert_int_ne(vn_detect_init_from(d, ck, "no_such_entry", &res, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "no_such_entry"), "%s", err.msg);
    vn_yolo_destroy(d);
}
END_TEST

/* main.py's checkpoint of a three-stage classifier (tests/reference/gen_detect_init.py), read
 * from the .pth: its model and model_ema entries equal the same state_dicts that PyTorch wrote
 * as plain safetensors. */
START_TEST(official_pth_backbone)
{
    const char *keys[2] = {"model", "model_ema"};
    const char *plain[2] = {"detect/init_model.safetensors", "detect/init_model_ema.safetensors"};
    char pth[1024];
    snprintf(pth, sizeof pth, "%s", vn_test_fixture_path("detect/init_ckpt.pth"));
    vn_yolo *fresh = detector(3, NULL);
    for (int k = 0; k < 2; k++) {
        vn_yolo *a = detector(3, NULL), *b = detector(3, NULL);
        vn_detect_init_result res;
        vn_error err = {0};
        ck_assert_msg(vn_detect_init_from(a, pth, keys[k], &res, &err) == VN_OK, "%s", err.msg);
        printf("%s\n", res.line);
        char want[64];
        snprintf(want, sizeof want, "(the .pth's '%s'), ", keys[k]);
        ck_assert_msg(strstr(res.line, want) && strstr(res.line, "9 classifier tensors dropped"), "%s", res.line);
        ck_assert(res.ema == (k == 1));
        ck_assert_msg(vn_detect_init_from(b, vn_test_fixture_path(plain[k]), "model", &res, &err) == VN_OK,
                      "%s", err.msg);
        check_all(a, b, b, NULL);
        const vn_state_item *x = vn_state_find(vn_yolo_state(a), "model.0.stem1.0.weight");
        const vn_state_item *y = vn_state_find(vn_yolo_state(fresh), "model.0.stem1.0.weight");
        ck_assert(x && y && !same_item(x, y));
        vn_yolo_destroy(a);
        vn_yolo_destroy(b);
    }
    vn_yolo_destroy(fresh);
}
END_TEST

/* ---- from a detector ------------------------------------------------------------------------- */

START_TEST(detector_checkpoint)
{
    char dir[256];
    vn_test_mkdtemp(dir, sizeof dir, "detinit");
    vn_yolo *src = detector(3, NULL), *ema = detector(3, NULL), *fresh = detector(3, NULL);
    randomize(vn_yolo_state(src), 21);
    randomize(vn_yolo_state(ema), 22);
    const char *ck = vn_test_in_dir(dir, "det.safetensors");
    const char *wt = vn_test_in_dir(dir, "det-weights.safetensors");
    save_detector(ck, src, ema, true);
    save_detector(wt, ema, NULL, false);
    vn_detect_init_result res;
    vn_error err = {0};
    int n = vn_yolo_state(src)->n;

    vn_yolo *d = detector(3, NULL);
    ck_assert_msg(vn_detect_init_from(d, ck, "model", &res, &err) == VN_OK, "%s", err.msg);
    check_all(d, src, fresh, NULL);
    char want[512];
    snprintf(want, sizeof want, "model.init %s: all %d tensors of a detector", ck, n);
    ck_assert_str_eq(res.line, want);
    ck_assert(res.from_detector && !res.ema && res.n_kept == 0);

    ck_assert_msg(vn_detect_init_from(d, ck, "model_ema", &res, &err) == VN_OK, "%s", err.msg);
    check_all(d, ema, fresh, NULL);
    snprintf(want, sizeof want, "model.init %s: all %d tensors of a detector (EMA weights)", ck, n);
    ck_assert_str_eq(res.line, want);

    vn_yolo *d2 = detector(3, NULL);
    ck_assert_msg(vn_detect_init_from(d2, wt, "model", &res, &err) == VN_OK, "%s", err.msg);
    check_all(d2, ema, fresh, NULL);
    ck_assert_int_ne(vn_detect_init_from(d2, wt, "model_ema", &res, &err), VN_OK);
    ck_assert_msg(strstr(err.msg, "holds no 'model_ema'"), "%s", err.msg);
    vn_yolo_destroy(d);
    vn_yolo_destroy(d2);
    vn_yolo_destroy(src);
    vn_yolo_destroy(ema);
    vn_yolo_destroy(fresh);
    vn_test_rmtree(dir);
}
END_TEST

/* A detector of 3 classes into one of 5: Detect's last class convs keep their initialisation. */
START_TEST(detector_other_nc)
{
    char dir[256];
    vn_test_mkdtemp(dir, sizeof dir, "detinit");
    vn_yolo *src = detector(3, NULL), *fresh = detector(5, NULL), *d = detector(5, NULL);
    randomize(vn_yolo_state(src), 23);
    const char *ck = vn_test_in_dir(dir, "det3.safetensors");
    save_detector(ck, src, NULL, true);
    vn_detect_init_result res;
    vn_error err = {0};
    warnings[0] = 0;
    vn_log_set(gather, NULL);
    int rc = vn_detect_init_from(d, ck, "model", &res, &err);
    vn_log_set(NULL, NULL);
    ck_assert_msg(rc == VN_OK, "%s", err.msg);
    printf("%s\n%s", res.line, warnings);
    const vn_state_list *l = vn_yolo_state(d);
    for (int i = 0; i < l->n; i++) {
        const char *name = l->items[i].name;
        bool head = strncmp(name, "model.15.cv3.", 13) == 0 && strncmp(name + 14, ".2.", 3) == 0;
        const vn_state_item *s = vn_state_find(vn_yolo_state(head ? fresh : src), name);
        ck_assert_msg(s && same_item(&l->items[i], s), "%s", name);
    }
    ck_assert_int_eq(res.n_kept, 6);
    ck_assert_int_eq(res.n_loaded, l->n - 6);
    ck_assert_msg(strstr(warnings, "model.15.cv3.0.2.weight (now F32 [5, 32, 1, 1])") &&
                  strstr(warnings, "3 classes in the file, 5 configured"), "%s", warnings);
    ck_assert_msg(strstr(res.line, "Detect's class branch (6 tensors, 3 classes in the file)"), "%s", res.line);

    /* Any other mismatch is an error: another width of the neck. */
    vn_yolo *wide = detector(3, "detect.width_multiple=0.25");
    ck_assert_int_eq(vn_detect_init_from(wide, ck, "model", &res, &err), VN_ERR_SHAPE);
    printf("%s\n", err.msg);
    ck_assert_msg(strstr(err.msg, "does not fit the configured detector") &&
                  strstr(err.msg, "'model.1.cv2.conv.weight' is F32 ["), "%s", err.msg);
    vn_yolo_destroy(wide);
    vn_yolo_destroy(d);
    vn_yolo_destroy(src);
    vn_yolo_destroy(fresh);
    vn_test_rmtree(dir);
}
END_TEST

/* ---- through the trainer ---------------------------------------------------------------------- */

static void write_idx(const char *path, int ndim, int n)
{
    gzFile g = gzopen(path, "wb");
    ck_assert_msg(g, "cannot write %s", path);
    uint8_t head[16] = {0, 0, 8, (uint8_t)ndim, 0, 0, 0, (uint8_t)n, 0, 0, 0, 28, 0, 0, 0, 28};
    gzwrite(g, head, ndim == 3 ? 16 : 8);
    for (int i = 0; i < n; i++) {
        uint8_t px[28 * 28] = {0}, label = (uint8_t)(i % 10);
        if (ndim == 1) {
            gzwrite(g, &label, 1);
            continue;
        }
        for (int y = 4; y < 20 + i % 6; y++)
            for (int x = 5; x < 21; x++) px[y * 28 + x] = (uint8_t)(100 + 15 * (i % 10));
        gzwrite(g, px, sizeof px);
    }
    ck_assert(gzclose(g) == Z_OK);
}

static void make_set(const char *dir)
{
    char src[512];
    snprintf(src, sizeof src, "%s", vn_test_in_dir(dir, "src"));
    vn_error err = {0};
    ck_assert_msg(vn_mkdirs(src, &err) == VN_OK, "%s", err.msg);
    const char *files[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int i = 0; i < 4; i++) write_idx(vn_test_in_dir(src, files[i]), i % 2 ? 1 : 3, 20);
    vn_fmd_config fc;
    vn_fmd_config_default(&fc);
    fc.n_train = 8;
    fc.n_val = 2;
    fc.canvas = 64;
    fc.min_size = 16;
    fc.max_size = 32;
    fc.max_items = 2;
    fc.threads = 1;
    ck_assert_msg(vn_import_fashion_mnist_detect(src, vn_test_in_dir(dir, "fmd"), &fc, NULL, &err) == VN_OK,
                  "%s", err.msg);
}

/* Steps at lr 0 (weights unchanged) with EMA decay 0.99 and no ramp, up to step max_steps,
 * resumed from the run's latest checkpoint when resume; returns what the run printed. */
static char *train_steps(const char *dir, const char *out, const char *init, int max_steps, bool resume)
{
    char data[512], init_set[600], out_set[600], steps[64];
    snprintf(steps, sizeof steps, "train.max_steps=%d", max_steps);
    snprintf(data, sizeof data, "detect.data=%s/fmd/data.yaml", dir);
    snprintf(init_set, sizeof init_set, "model.init=%s", init);
    snprintf(out_set, sizeof out_set, "output.dir=%s", out);
    const char *const sets[] = {data, init_set, out_set, "detect.ema_decay=0.99", "detect.ema_tau=0",
                                "detect.warmup_bias_lr=0", "optim.name=adamw", "optim.lr=0",
                                "optim.min_lr=0", "optim.weight_decay=0", "optim.warmup_epochs=0",
                                "optim.update_freq=1", "train.epochs=1", "train.batch_size=4",
                                "train.threads=1", "train.eval_every=0", steps,
                                "output.keep_last=0", "output.tensorboard=false", NULL};
    vn_config *cfg = config_of(sets);
    char *log = NULL;
    size_t log_len = 0;
    FILE *f = open_memstream(&log, &log_len);
    ck_assert(f);
    vn_train_options opt = {0};
    opt.out = f;
    opt.resume = resume ? "auto" : NULL;
    vn_train_result res;
    vn_error err = {0};
    int rc = vn_detect_train(cfg, &opt, &res, &err);
    fclose(f);
    ck_assert_msg(rc == VN_OK, "%s\n%s", err.msg, log);
    ck_assert_int_eq(res.state.step, max_steps);
    free(cfg);
    return log;
}

/* Largest |file's prefix + name - classifier's model.name| over the backbone's parameters
 * (BatchNorm running statistics move in a training step) relative to the largest value. */
static double backbone_diff(const vn_st_file *ck, const char *prefix, const vn_st_file *cls)
{
    double worst = 0;
    int n = 0;
    for (int i = 0; i < vn_st_count(cls); i++) {
        const vn_st_entry *c = vn_st_at(cls, i);
        if (strncmp(c->name, "model.", 6) || !strncmp(c->name, "model.cls", 9) ||
            strstr(c->name, "running_") || strstr(c->name, "num_batches"))
            continue;
        char name[512];
        snprintf(name, sizeof name, "%smodel.0.%s", prefix, c->name + 6);
        const vn_st_entry *e = vn_st_find(ck, name);
        ck_assert_msg(e && e->numel == c->numel, "%s", name);
        const float *a = e->data, *b = c->data;
        for (int64_t k = 0; k < e->numel; k++) {
            double d = fabs((double)a[k] - b[k]) / (fabs(b[k]) + 1e-30);
            if (d > worst) worst = d;
        }
        n++;
    }
    ck_assert_int_gt(n, 10);
    return worst;
}

static vn_st_file *open_file(const char *path)
{
    vn_st_file *f = NULL;
    vn_error err = {0};
    ck_assert_msg(vn_st_open(path, &f, &err) == VN_OK, "%s", err.msg);
    return f;
}

START_TEST(trainer_starts_from_init)
{
    char dir[256];
    vn_test_mkdtemp(dir, sizeof dir, "detinit");
    make_set(dir);
    vn_vanillanet *cls = classifier(DIMS, 31);
    char cpath[512];
    snprintf(cpath, sizeof cpath, "%s", vn_test_in_dir(dir, "cls.safetensors"));
    save_classifier_ckpt(cpath, cls, NULL);
    char *log = train_steps(dir, vn_test_in_dir(dir, "run"), cpath, 1, false);
    printf("%s", log);
    ck_assert_msg(strstr(log, "backbone of a classifier, ") && strstr(log, cpath), "%s", log);
    free(log);
    log = train_steps(dir, vn_test_in_dir(dir, "scratch"), "", 1, false);
    ck_assert_msg(!strstr(log, "model.init"), "%s", log);
    free(log);

    vn_st_file *cf = open_file(cpath), *a = NULL, *b = NULL;
    char p[600];
    snprintf(p, sizeof p, "%s/run/checkpoints/ckpt-s0000000001.safetensors", dir);
    a = open_file(p);
    snprintf(p, sizeof p, "%s/scratch/checkpoints/ckpt-s0000000001.safetensors", dir);
    b = open_file(p);
    double live = backbone_diff(a, "", cf), ema = backbone_diff(a, "ema.", cf);
    double live0 = backbone_diff(b, "", cf), ema0 = backbone_diff(b, "ema.", cf);
    printf("backbone vs classifier after one step at lr 0: model %g, EMA %g (from scratch: %g, %g)\n",
           live, ema, live0, ema0);
    ck_assert_msg(live == 0, "the model's backbone moved from the classifier's: %g", live);
    ck_assert_msg(ema < 1e-6, "the EMA did not start from the loaded weights: %g", ema);
    ck_assert_msg(live0 > 0.1 && ema0 > 0.1, "a run from scratch has the classifier's weights?");
    vn_st_close(cf);
    vn_st_close(a);
    vn_st_close(b);

    /* On resume the checkpoint decides, as for the classifier: two steps straight and one
     * step then a resume give the same bytes (BatchNorm statistics, EMA, optimizer state). */
    free(train_steps(dir, vn_test_in_dir(dir, "run"), cpath, 2, true));
    free(train_steps(dir, vn_test_in_dir(dir, "straight"), cpath, 2, false));
    snprintf(p, sizeof p, "%s/run/checkpoints/ckpt-s0000000002.safetensors", dir);
    a = open_file(p);
    snprintf(p, sizeof p, "%s/straight/checkpoints/ckpt-s0000000002.safetensors", dir);
    b = open_file(p);
    ck_assert_int_eq(vn_st_count(a), vn_st_count(b));
    for (int i = 0; i < vn_st_count(a); i++) {
        const vn_st_entry *x = vn_st_at(a, i), *y = vn_st_find(b, x->name);
        ck_assert_msg(y && x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0,
                      "%s: the resumed run differs from the straight one", x->name);
    }
    vn_st_close(a);
    vn_st_close(b);
    vn_vanillanet_destroy(cls);
    vn_test_rmtree(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("detect_init");
    TCase *t = tcase_create("init");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, classifier_checkpoint_backbone);
    tcase_add_test(t, classifier_plain_state_dict);
    tcase_add_test(t, classifier_other_strides);
    tcase_add_test(t, classifier_wrong_widths);
    tcase_add_test(t, deploy_forms_refused);
    tcase_add_test(t, missing_or_foreign_file);
    tcase_add_test(t, official_pth);
    tcase_add_test(t, official_pth_backbone);
    tcase_add_test(t, detector_checkpoint);
    tcase_add_test(t, detector_other_nc);
    tcase_add_test(t, trainer_starts_from_init);
    suite_add_tcase(s, t);
    return s;
}

int main(void) { return vn_test_run(suite(), true); }

/* Helpers shared by the Check test suites. */
#ifndef VN_TEST_H
#define VN_TEST_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>

#include "autograd/vn_ctx.h"
#include "autograd/vn_ops.h"
#include "io/vn_safetensors.h"

/* Path of a committed fixture: $VN_FIXTURES/relpath (static buffer, copy if kept). */
const char *vn_test_fixture_path(const char *relpath);
/* Opens a fixture file; fails the test with the reader's message if it cannot. */
vn_st_file *vn_test_fixture(const char *relpath);
/* An F32 entry's data; fails the test when missing, not F32, or numel differs
 * (expect_numel < 0 skips the size check). */
const float *vn_test_f32(const vn_st_file *f, const char *name, int64_t expect_numel);
/* A model-lifetime tensor holding a copy of an F32 entry (same shape). */
vn_tensor *vn_test_tensor(const vn_st_file *f, const char *name, bool requires_grad);

/* Compares element-wise with |got - want| <= atol + rtol * |want|. On failure prints the
 * first 8 mismatches with their indices, the max abs error, and returns false. */
bool vn_test_close(const char *what, const float *got, const float *want, int64_t n,
                   double atol, double rtol);
/* max |got - want| / max |want| (the relative measure used for whole networks). */
double vn_test_rel_err(const float *got, const float *want, int64_t n);

/* Fills with uniform values in [lo, hi) from a seeded stream. */
void vn_test_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi);
/* A malloc'd copy of n floats (fails the test when out of memory). */
float *vn_test_dup(const float *p, int64_t n);

/* Gradient check. fwd builds the output from the inputs (it may call several ops).
 * For every input that requires grad, the analytic gradient of L = sum(out * r), with r a
 * fixed random tensor, is compared with central differences (L accumulated in double, step
 * eps) element by element: |analytic - numeric| <= tol * max(1, |numeric|).
 * Inputs with more than max_checked elements are checked on a deterministic sample of
 * max_checked elements. Prints the first mismatches; returns the largest error seen, or a
 * negative value if the forward failed. */
typedef vn_tensor *(*vn_test_fwd_fn)(vn_ctx *ctx, vn_tensor *const *in, void *user);
double vn_test_gradcheck(const char *what, vn_test_fwd_fn fwd, int n_in, vn_tensor *const *in,
                         void *user, double eps, double tol, int64_t max_checked);

/* Asserts gradcheck passes: err >= 0 && err <= tol. */
#define VN_CHECK_GRAD(what, fwd, n_in, in, user, eps, tol)                                  \
    do {                                                                                      \
        double vn_gc_err_ = vn_test_gradcheck((what), (fwd), (n_in), (in), (user), (eps),     \
                                              (tol), 4096);                                   \
        ck_assert_msg(vn_gc_err_ >= 0 && vn_gc_err_ <= (tol),                                \
                      "%s: gradient check failed (max error %g, tolerance %g)", (what),       \
                      vn_gc_err_, (double)(tol));                                             \
    } while (0)

/* A fresh empty folder $TMPDIR/vn_<tag>_XXXXXX (without TMPDIR: /dev/shm when writable, as
 * the tests make many small files, else /tmp) written into buf; fails the test if it cannot
 * be made. */
void vn_test_mkdtemp(char *buf, size_t len, const char *tag);
/* Writes text to a new file at path (fails the test if it cannot). */
void vn_test_write_text(const char *path, const char *text);
/* "dir/name" in one of four rotating static buffers (dir may be an earlier result). */
const char *vn_test_in_dir(const char *dir, const char *name);
/* How many times needle occurs in hay (overlapping occurrences counted). */
int vn_test_count(const char *hay, const char *needle);
/* Recursive delete (best effort). */
void vn_test_rmtree(const char *path);
/* Runs every test of s (forking per test unless fork is false), with the verbosity of
 * CK_VERBOSITY (normal by default); returns the process exit status. */
int vn_test_run(Suite *s, bool fork);

#endif

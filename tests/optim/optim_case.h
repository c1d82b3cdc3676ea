/* Loading the optimizer fixtures of tests/reference/gen_optim.py (shared by the optim
 * tests). A case file holds a parameter set, per-step gradients, base lr / weight decay per
 * step, the expected parameters after every step and the final optimizer state. */
#ifndef VN_TEST_OPTIM_CASE_H
#define VN_TEST_OPTIM_CASE_H

#include "vn_test.h"

#include "optim/vn_ema.h"
#include "optim/vn_grad.h"
#include "optim/vn_optim.h"
#include "optim/vn_schedule.h"

#define CASE_MAX_PARAMS 32

typedef struct optim_case {
    vn_st_file *f;
    const char *file;
    int n;
    char *names[CASE_MAX_PARAMS];
    vn_tensor *t[CASE_MAX_PARAMS];
    int64_t total; /* elements of all parameters */
    vn_optim_config cfg;
    int steps, update_freq;
    double clip_grad;
    bool sched_cosine;
} optim_case;

/* Metadata value; fails the test when missing. */
const char *case_meta(const optim_case *c, const char *key);
double case_meta_f(const optim_case *c, const char *key);
/* Opens the fixture and builds the parameters (with zeroed gradient buffers) and config. */
void case_load(optim_case *c, const char *file);
/* Fresh copies of the initial parameters (for a second run). */
void case_reset_params(optim_case *c);
void case_free(optim_case *c);

/* A F64 / I64 entry of a fixture (fails the test when missing or of another type). */
const double *fixture_f64(const vn_st_file *f, const char *name, int64_t numel);
const int64_t *fixture_i64(const vn_st_file *f, const char *name, int64_t numel);

/* Writes the gradients of step s (sum of micro-batches with +=, as backward) into the
 * parameters' gradient buffers, after zeroing them through the optimizer. */
void case_set_grads(optim_case *c, vn_optim *opt, int s);
/* Compares the parameters with "expect.<s>"; returns the max abs error, fails on mismatch. */
double case_check_params(const optim_case *c, int s, double atol, double rtol);

#endif

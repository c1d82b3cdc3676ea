#include "base/vn_base.h"
#include "base/vn_parallel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <omp.h>

/* OpenBLAS's own thread control; declared here so we do not depend on cblas.h variants. */
void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);

const char *vn_status_str(int status)
{
    switch (status) {
#define VN_X_CASE(name, value, text) \
    case value: return text;
        VN_STATUS_LIST(VN_X_CASE)
#undef VN_X_CASE
    default: return "unknown error";
    }
}

int vn_error_set(vn_error *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int vn_error_prefix(vn_error *err, const char *fmt, ...)
{
    if (!err) return 0;
    char prefix[VN_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n <= 0) return err->code;
    size_t plen = (size_t)n < sizeof prefix ? (size_t)n : sizeof prefix - 1;
    size_t cap = sizeof err->msg - 1;
    if (plen > cap) plen = cap;
    size_t old = strnlen(err->msg, cap);
    if (plen + old > cap) old = cap - plen;
    memmove(err->msg + plen, err->msg, old);
    memcpy(err->msg, prefix, plen);
    err->msg[plen + old] = '\0';
    return err->code;
}

void vn_error_clear(vn_error *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

static void default_log(vn_log_level level, const char *msg, void *user)
{
    (void)user;
    static const char *names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "vanilla: %s: %s\n", names[level < 4 ? level : 3], msg);
}

/* Configuration, not state: set once by the program, read by every thread. */
static vn_log_fn log_fn = default_log;
static void *log_user;
static vn_log_level log_level = VN_LOG_WARN;

void vn_log_set(vn_log_fn fn, void *user)
{
    log_fn = fn ? fn : default_log;
    log_user = user;
}

void vn_log_set_level(vn_log_level level) { log_level = level; }

void vn_log(vn_log_level level, const char *fmt, ...)
{
    if (level < log_level) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_fn(level, buf, log_user);
}

void vn__assert_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    fprintf(stderr, "vanilla: internal error at %s:%d: assertion '%s' failed: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* Whole CPUs a cgroup quota allows (cgroup v2 cpu.max "QUOTA PERIOD", v1 cfs files), rounded
 * up; 0 when there is no quota or it cannot be read. */
static int cgroup_cpu_limit(void)
{
    long long quota = -1, period = 0;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char q[32];
        if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max") != 0) quota = atoll(q);
        fclose(f);
    } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r"))) {
        if (fscanf(f, "%lld", &quota) != 1) quota = -1;
        fclose(f);
        if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r"))) {
            if (fscanf(f, "%lld", &period) != 1) period = 0;
            fclose(f);
        }
    }
    if (quota <= 0 || period <= 0) return 0;
    long long cpus = (quota + period - 1) / period;
    return cpus > 4096 ? 4096 : (int)cpus;
}

int vn_available_cores(void)
{
    int n = omp_get_num_procs(); /* the affinity mask's CPUs */
    int lim = cgroup_cpu_limit();
    if (lim > 0 && lim < n) n = lim;
    return n > 0 ? n : 1;
}

/* OpenBLAS's generic fallbacks: what its detection picks for a CPU newer than the build. */
static bool blas_core_is_generic(const char *core)
{
    return core && (!strcasecmp(core, "Prescott") || !strcasecmp(core, "Core2") ||
                    !strcasecmp(core, "Nehalem") || !strcasecmp(core, "Sandybridge"));
}

/* The kernel set to ask OpenBLAS for when it fell back to a generic one on a CPU that runs a
 * better one (the features each set needs, and that the OS saves their registers: libgcc's
 * checks include XGETBV); NULL when there is nothing better. */
static const char *blas_better_core(void)
{
    if (!blas_core_is_generic(openblas_get_corename())) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

void vn_runtime_setup(char **argv)
{
    bool again = false;
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT")) {
        if (setenv("OMP_WAIT_POLICY", "passive", 1) == 0) again = true;
    }
    if (!getenv("OPENBLAS_CORETYPE") && !getenv("VN_BLAS_AUTO")) {
        const char *better = blas_better_core();
        /* VN_BLAS_AUTO records the choice for `vanilla train`'s note (and ends any loop). */
        if (better && setenv("OPENBLAS_CORETYPE", better, 1) == 0 &&
            setenv("VN_BLAS_AUTO", openblas_get_corename(), 1) == 0)
            again = true;
    }
    if (!again) return;
    execv("/proc/self/exe", argv);
    /* No /proc: run on as loaded (libgomp and OpenBLAS have read their settings already). */
}

void vn_set_threads(int n)
{
    if (n <= 0) n = vn_available_cores();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    vn_par_set_threads(n);
}

int vn_get_threads(void) { return omp_get_max_threads(); }

const char *vn_blas_core(void) { return openblas_get_corename(); }

const char *vn_blas_advice(void)
{
    static char msg[256];
    const char *auto_from = getenv("VN_BLAS_AUTO");
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (blas_core_is_generic(auto_from) && forced && !blas_core_is_generic(openblas_get_corename())) {
        snprintf(msg, sizeof msg,
                 "OpenBLAS does not recognise this CPU (it picked its generic %s kernels); "
                 "running its %s kernels instead (set OPENBLAS_CORETYPE to choose)",
                 auto_from, openblas_get_corename());
        return msg;
    }
    if (forced) return NULL;
    const char *better = blas_better_core();
    if (!better) return NULL;
    snprintf(msg, sizeof msg,
             "OpenBLAS does not recognise this CPU and runs its generic kernels; "
             "OPENBLAS_CORETYPE=%s makes matrix products several times faster",
             better);
    return msg;
}

int64_t vn_shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

bool vn_shape_numel_checked(int ndim, const int64_t *shape, int64_t *n)
{
    int64_t c = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(c, shape[i], &c)) return false;
    /* Its bytes as floats (and a gradient's) must fit too. */
    if (c > (int64_t)(SIZE_MAX / sizeof(float) / 2) || c > INT64_MAX / 8) return false;
    *n = c;
    return true;
}

const char *vn_shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t pos = 0;
    pos += (size_t)snprintf(buf + pos, len - pos, "[");
    for (int i = 0; i < ndim && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (pos < len) snprintf(buf + pos, len - pos, "]");
    return buf;
}

/* The length of the well-formed UTF-8 sequence at s, 0 if there is none. */
static int utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    for (int k = 1; k < n; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))) return 0; /* overlong, surrogate */
    if (n == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))) return 0; /* overlong, > U+10FFFF */
    return n;
}

bool vn_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = utf8_seq(p);
        if (!n) return false;
        p += n;
    }
    return true;
}

const char *vn_utf8_escape(const char *s, char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    if (!len) return buf;
    while (*p && o + 1 < len) {
        int n = utf8_seq(p);
        if (n && o + (size_t)n < len) {
            memcpy(buf + o, p, (size_t)n);
            o += (size_t)n;
            p += n;
        } else if (!n && o + 4 < len) {
            snprintf(buf + o, len - o, "\\x%02x", *p++);
            o += 4;
        } else {
            break;
        }
    }
    buf[o] = '\0';
    return buf;
}

int vn_utf8_columns(const char *s)
{
    int cols = 0;
    for (; s && *s; s++) cols += ((unsigned char)*s & 0xc0) != 0x80; /* continuation bytes: none */
    return cols;
}

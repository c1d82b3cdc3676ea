/* Status codes, error messages and logging shared by every layer of the library. */
#ifndef VN_BASE_H
#define VN_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every fallible library function returns one of these (0 ok, negative on failure). */
#define VN_STATUS_LIST(X)                                              \
    X(VN_OK, 0, "ok")                                                  \
    X(VN_ERR_INVALID, -1, "invalid argument")                          \
    X(VN_ERR_SHAPE, -2, "shape mismatch")                              \
    X(VN_ERR_NOMEM, -3, "out of memory")                               \
    X(VN_ERR_IO, -4, "I/O error")                                      \
    X(VN_ERR_FORMAT, -5, "corrupt or unsupported file format")         \
    X(VN_ERR_STATE, -6, "operation not allowed in the current state")  \
    X(VN_ERR_NUMERIC, -7, "non-finite value")                          \
    X(VN_ERR_UNSUPPORTED, -8, "unsupported")                           \
    X(VN_ERR_NOT_FOUND, -9, "not found")                               \
    X(VN_ERR_INTERRUPTED, -10, "interrupted")

typedef enum vn_status {
#define VN_X_ENUM(name, value, text) name = value,
    VN_STATUS_LIST(VN_X_ENUM)
#undef VN_X_ENUM
} vn_status;

/* Short English text of a status code ("shape mismatch"). */
const char *vn_status_str(int status);

/* 64-bit FNV-1a: h (start from VN_FNV1A_BASIS) extended by len bytes; for identities that
 * are compared, never for security. */
#define VN_FNV1A_BASIS 0xcbf29ce484222325ull
static inline uint64_t vn_fnv1a(uint64_t h, const void *p, size_t len)
{
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* A message for the caller: what failed and why, naming files and keys where known.
 * Functions take a `vn_error *err` that may be NULL when the caller only wants the code. */
#define VN_ERROR_MSG_MAX 1024
typedef struct vn_error {
    int code;
    char msg[VN_ERROR_MSG_MAX];
} vn_error;

/* Fills *err (when not NULL) and returns code, so callers can `return vn_error_set(...)`. */
int vn_error_set(vn_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends context ("loading model.safetensors: ") to an existing message. Returns err->code,
 * 0 when err is NULL: return the failing status itself, not this, where err may be NULL. */
int vn_error_prefix(vn_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vn_error_clear(vn_error *err);

/* Logging through one function that callers can redirect. */
typedef enum vn_log_level {
    VN_LOG_DEBUG = 0,
    VN_LOG_INFO = 1,
    VN_LOG_WARN = 2,
    VN_LOG_ERROR = 3,
    VN_LOG_QUIET = 4
} vn_log_level;

typedef void (*vn_log_fn)(vn_log_level level, const char *msg, void *user);
/* Default: messages at or above VN_LOG_WARN go to stderr. */
void vn_log_set(vn_log_fn fn, void *user);
void vn_log_set_level(vn_log_level level);
void vn_log(vn_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Asserts are for programmer mistakes only: the message says what to fix. */
#define VN_ASSERT(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) vn__assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);        \
    } while (0)
_Noreturn void vn__assert_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Element count of a shape. */
int64_t vn_shape_numel(int ndim, const int64_t *shape);
/* The element count in *n when every dimension is >= 0 and the count's bytes as floats fit a
 * size_t and an int64; false otherwise (a shape from untrusted input, or a caller's mistake). */
bool vn_shape_numel_checked(int ndim, const int64_t *shape, int64_t *n);
/* Screen columns of UTF-8 text, one per character (for padding tables of names). */
int vn_utf8_columns(const char *s);
/* Whether s is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF),
 * as JSON text and jansson need. */
bool vn_utf8_valid(const char *s);
/* s with every byte that is not part of well-formed UTF-8 written as \xNN, into buf (cut to
 * len), for naming such a string in a message. Returns buf. */
const char *vn_utf8_escape(const char *s, char *buf, size_t len);
/* "[8, 56, 56, 512]" into buf; returns buf. */
const char *vn_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

/* Threads used by our parallel loops (vn_par_for and OpenMP) and by OpenBLAS. 0 = all cores:
 * the cores this process may run on (its affinity mask, as taskset and cpusets set it), and no
 * more than a cgroup CPU quota allows (a container started with --cpus=2 gets 2). */
void vn_set_threads(int n);
/* The cores vn_set_threads(0) picks. */
int vn_available_cores(void);

/* Run-time settings the libraries read when they are loaded (call first thing in main, with
 * main's argv):
 * - Passive OpenMP waiting. libgomp's default makes an idle thread spin for a while before it
 *   sleeps; with many short parallel regions and another busy process on the same cores, the
 *   spinning threads take the cores from the ones with work, and a training beside one busy
 *   neighbour ran at a tenth of its speed. Set (OMP_WAIT_POLICY=passive) unless
 *   OMP_WAIT_POLICY or GOMP_SPINCOUNT is set. Waking a sleeping thread costs 40-60 us on a
 *   VM, so the short loops of a training step run on vn_par_for's own workers, which yield
 *   their core instead (base/vn_parallel.h); OpenMP keeps the rest and OpenBLAS.
 * - OpenBLAS's kernels. An OpenBLAS older than the CPU (Debian 12's 0.3.21 on Intel family 6
 *   model 207) falls back to its generic SSE kernels, several times slower than the AVX2 or
 *   AVX-512 ones the same library carries. When it did and the CPU (and the OS) support
 *   better ones, OPENBLAS_CORETYPE is set to SkylakeX (AVX-512F/CD/BW/DQ/VL) or Haswell
 *   (AVX2 + FMA), and VN_BLAS_AUTO to the generic core's name; a user's OPENBLAS_CORETYPE is
 *   left alone, and any VN_BLAS_AUTO (VN_BLAS_AUTO=0) keeps OpenBLAS's own choice.
 * Both are read once, at load, so when one had to be set this executes the program again
 * (/proc/self/exe, same arguments and process id). Returns only when nothing had to be done
 * or the exec failed (then the libraries keep what they read). */
void vn_runtime_setup(char **argv);
int vn_get_threads(void);
/* The kernel set OpenBLAS chose for this CPU ("Haswell", "SkylakeX", "Prescott", ...), and,
 * when vn_runtime_setup chose better kernels than OpenBLAS's generic fallback, a one-line note
 * saying so; when the generic kernels run on a CPU with AVX2 and nobody chose, a one-line
 * advice naming OPENBLAS_CORETYPE; NULL otherwise. */
const char *vn_blas_core(void);
const char *vn_blas_advice(void);

#ifdef __cplusplus
}
#endif
#endif

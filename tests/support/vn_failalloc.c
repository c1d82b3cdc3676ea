/* ld --wrap targets for the allocation-failure hook (see vn_failalloc.h). */
#define _GNU_SOURCE
#include "vn_failalloc.h"

#include <execinfo.h>
#include <unistd.h>

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_strdup(const char *s);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);

static atomic_long counted;
static atomic_long fail_at;   /* 0: disarmed */
static atomic_bool sticky_mode;
static atomic_bool fired;

static bool should_fail(void)
{
    long n = atomic_fetch_add(&counted, 1) + 1;
    long at = atomic_load(&fail_at);
    if (at <= 0) return false;
    if (n == at || (n > at && atomic_load(&sticky_mode))) {
        atomic_store(&fired, true);
        /* VN_FAILALLOC_TRACE=1: where the failing allocation comes from (for debugging). */
        if (getenv("VN_FAILALLOC_TRACE")) {
            void *frames[16];
            backtrace_symbols_fd(frames, backtrace(frames, 16), 2);
            write(2, "--\n", 3);
        }
        errno = ENOMEM;
        return true;
    }
    return false;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return should_fail() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return should_fail() ? NULL : __real_aligned_alloc(align, n);
}
int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    if (should_fail()) return ENOMEM;
    return __real_posix_memalign(p, align, n);
}
char *__wrap_strdup(const char *s) { return should_fail() ? NULL : __real_strdup(s); }
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    /* Only anonymous mappings are allocations; file mappings are I/O. */
    if ((flags & MAP_ANONYMOUS) && should_fail()) return MAP_FAILED;
    return __real_mmap(addr, len, prot, flags, fd, off);
}

static atomic_bool json_spared;

void vn_failalloc_spare_json(bool spare) { atomic_store(&json_spared, spare); }

static void *json_alloc(size_t n)
{
    return atomic_load(&json_spared) ? __real_malloc(n) : __wrap_malloc(n);
}
static void json_release(void *p) { free(p); }

void vn_failalloc_arm(long n, bool sticky)
{
    json_set_alloc_funcs(json_alloc, json_release);
    atomic_store(&sticky_mode, sticky);
    atomic_store(&fired, false);
    atomic_store(&counted, 0);
    atomic_store(&fail_at, n < 1 ? 1 : n);
}

bool vn_failalloc_disarm(void)
{
    atomic_store(&fail_at, 0);
    return atomic_load(&fired);
}

long vn_failalloc_count(void) { return atomic_load(&counted); }

/* The storage-fault hook (see vn_failio.h). */
#include "vn_failio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

int __real_open(const char *path, int flags, ...);
ssize_t __real_write(int fd, const void *buf, size_t n);
size_t __real_fwrite(const void *p, size_t size, size_t n, FILE *f);
int __real_fflush(FILE *f);
int __real_fsync(int fd);
int __real_fclose(FILE *f);
int __real_rename(const char *from, const char *to);

static long counted, fail_at;
static int fail_errno;
static bool sticky_mode, fired;
static const char *last = "";

void vn_failio_arm(long n, int error, bool sticky)
{
    counted = 0;
    fail_at = n;
    fail_errno = error;
    sticky_mode = sticky;
    fired = false;
}

bool vn_failio_disarm(void)
{
    fail_at = 0;
    return fired;
}

const char *vn_failio_last(void) { return last; }

static bool should_fail(const char *what)
{
    long n = ++counted;
    if (fail_at <= 0 || !(n == fail_at || (n > fail_at && sticky_mode))) return false;
    fired = true;
    last = what;
    errno = fail_errno;
    return true;
}

int __wrap_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    /* Only opens that create or write count: reads are not storage faults here. */
    if ((flags & (O_WRONLY | O_RDWR | O_CREAT)) && should_fail("open")) return -1;
    return __real_open(path, flags, mode);
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    return should_fail("write") ? -1 : __real_write(fd, buf, n);
}

/* Streams in memory (open_memstream) are no storage: fileno is -1. */
static bool on_disk(FILE *f) { return fileno(f) >= 0; }

size_t __wrap_fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    if (!on_disk(f) || !should_fail("fwrite")) return __real_fwrite(p, size, n, f);
    /* A short write, as a full disk gives: part of the data went out. */
    size_t part = n / 2;
    if (part) __real_fwrite(p, size, part, f);
    errno = fail_errno;
    return part;
}

int __wrap_fflush(FILE *f)
{
    return f && on_disk(f) && should_fail("fflush") ? EOF : __real_fflush(f);
}
int __wrap_fsync(int fd) { return should_fail("fsync") ? -1 : __real_fsync(fd); }

int __wrap_fclose(FILE *f)
{
    if (!on_disk(f) || !should_fail("fclose")) return __real_fclose(f);
    int e = errno;
    __real_fclose(f);
    errno = e;
    return EOF;
}

int __wrap_rename(const char *from, const char *to)
{
    return should_fail("rename") ? -1 : __real_rename(from, to);
}

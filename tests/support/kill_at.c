/* LD_PRELOAD shim for the crash tests: kill -9 of the process at one exact instant, the
 * creation of a file (open with O_CREAT, fopen for writing) or hard link whose path contains
 * $KILL_AT, or a rename whose source path contains $KILL_AT_RENAME; or, with $FAIL_AT, such a
 * creation failing as on a full disk (ENOSPC). Compiled
 * by the test scripts with: cc -shared -fPIC -o kill_at.so kill_at.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static void kill_if_env(const char *var, const char *path)
{
    const char *k = getenv(var);
    if (k && k[0] && path && strstr(path, k)) raise(SIGKILL);
}

static void kill_if(const char *path) { kill_if_env("KILL_AT", path); }

static bool fail_if(const char *path)
{
    const char *k = getenv("FAIL_AT");
    if (!k || !k[0] || !path || !strstr(path, k)) return false;
    errno = ENOSPC;
    return true;
}

static int open_via(const char *name, const char *path, int flags, mode_t mode)
{
    if (flags & O_CREAT) kill_if(path);
    if ((flags & O_CREAT) && fail_if(path)) return -1;
    int (*f)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, name);
    return f(path, flags, mode);
}

/* open and open64: the mode argument taken when O_CREAT asks for one */
#define OPEN_HOOK(NAME)                                                                    \
    int NAME(const char *path, int flags, ...)                                             \
    {                                                                                      \
        va_list ap;                                                                        \
        va_start(ap, flags);                                                               \
        mode_t m = (flags & O_CREAT) ? va_arg(ap, mode_t) : 0;                             \
        va_end(ap);                                                                        \
        return open_via(#NAME, path, flags, m);                                            \
    }
OPEN_HOOK(open)
OPEN_HOOK(open64)

int link(const char *from, const char *to)
{
    kill_if(to);
    int (*f)(const char *, const char *) = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "link");
    return f(from, to);
}

int rename(const char *from, const char *to)
{
    kill_if_env("KILL_AT_RENAME", from);
    int (*f)(const char *, const char *) = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    return f(from, to);
}

/* fopen and fopen64 for writing */
#define FOPEN_HOOK(NAME)                                                                   \
    FILE *NAME(const char *path, const char *mode)                                         \
    {                                                                                      \
        if (mode[0] == 'w' || mode[0] == 'a') {                                            \
            kill_if(path);                                                                 \
            if (fail_if(path)) return NULL;                                                \
        }                                                                                  \
        FILE *(*f)(const char *, const char *) =                                           \
            (FILE * (*)(const char *, const char *))dlsym(RTLD_NEXT, #NAME);               \
        return f(path, mode);                                                              \
    }
FOPEN_HOOK(fopen)
FOPEN_HOOK(fopen64)

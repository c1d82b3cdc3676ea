/* File-system helpers and clocks shared by every floor above base/. */
#include "base/vn_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


int vn_mkdirs(const char *path, vn_error *err)
{
    if (!path || !path[0]) return vn_error_set(err, VN_ERR_INVALID, "empty directory path");
    size_t n = strlen(path);
    char *p = malloc(n + 1);
    if (!p) return vn_error_set(err, VN_ERR_NOMEM, "out of memory creating %s", path);
    memcpy(p, path, n + 1);
    /* Create each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char saved = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            int rc = vn_error_set(err, VN_ERR_IO, "cannot create directory %s: %s", p,
                                  strerror(e));
            free(p);
            return rc;
        }
        p[i] = saved;
    }
    free(p);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return vn_error_set(err, VN_ERR_IO, "%s exists and is not a directory", path);
    return VN_OK;
}

double vn_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double vn_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int vn_read_file(const char *path, uint8_t **data, size_t *len, vn_error *err)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return vn_error_set(err, VN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return vn_error_set(err, VN_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = n ? fread(buf, 1, n, f) : 0;
    int bad = got != n || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return vn_error_set(err, VN_ERR_IO, "%s: read error after %zu of %zu bytes", path, got, n);
    }
    *data = buf;
    *len = n;
    return VN_OK;
}

bool vn_fs_stale_tmp(const char *name)
{
    /* "<file>.tmp.<pid>", or a writer's temporary file of such a file ("<file>.tmp.<pid>.tmp.
     * <pid>", a checkpoint written under a temporary name): every pid in it gone. */
    size_t n = strlen(name);
    bool any = false;
    while (n > 0) { /* the ".tmp.<pid>" segments at the end, the last first */
        size_t d = n;
        while (d > 0 && name[d - 1] >= '0' && name[d - 1] <= '9') d--;
        if (d == n || d < 5 || strncmp(name + d - 5, ".tmp.", 5) != 0 || n - d > 9) break;
        long pid = strtol(name + d, NULL, 10);
        if (pid <= 0 || pid == (long)getpid() || !(kill((pid_t)pid, 0) != 0 && errno == ESRCH))
            return false;
        any = true;
        n = d - 5;
    }
    return any;
}

/* Removes the stale temporary files of dir whose names start with prefix (NULL: any). */
static int sweep(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    size_t pl = prefix ? strlen(prefix) : 0;
    int removed = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        if ((!prefix || strncmp(de->d_name, prefix, pl) == 0) && vn_fs_stale_tmp(de->d_name) &&
            unlinkat(dirfd(d), de->d_name, 0) == 0)
            removed++;
    if (d) closedir(d);
    return removed;
}

const char *vn_fs_parent(const char *path, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(buf, len, ".");
    else snprintf(buf, len, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    return buf;
}

void vn_fs_remove_stale_tmps(const char *path)
{
    char dir[4096], prefix[4096];
    const char *slash = strrchr(path, '/');
    snprintf(prefix, sizeof prefix, "%s.tmp.", slash ? slash + 1 : path);
    sweep(vn_fs_parent(path, dir, sizeof dir), prefix);
}

int vn_fs_sweep_stale_tmps(const char *dir) { return sweep(dir, NULL); }

bool vn_fs_dir_has_entries(const char *dir)
{
    DIR *d = opendir(dir);
    bool any = false;
    for (struct dirent *e; d && !any && (e = readdir(d));)
        any = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d) closedir(d);
    return any;
}

int vn_fs_write_atomic(const char *path, const void *buf, size_t len, bool sync)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return ENAMETOOLONG;
    FILE *f = fopen(tmp, "wb");
    if (!f) return errno ? errno : EIO;
    int e = 0;
    if (len && fwrite(buf, 1, len, f) != len) e = errno ? errno : EIO;
    if (!e && fflush(f) != 0) e = errno;
    if (!e && sync && fsync(fileno(f)) != 0) e = errno;
    if (fclose(f) != 0 && !e) e = errno;
    if (!e && rename(tmp, path) != 0) e = errno;
    if (e) unlink(tmp);
    return e;
}

int vn_fs_sync_parent(const char *path)
{
    char dir[4096];
    int fd = open(vn_fs_parent(path, dir, sizeof dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    /* Some file systems cannot sync a folder; the rename is then as durable as they allow. */
    int e = fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP ? errno : 0;
    close(fd);
    return e;
}

int vn_fs_rename_durable(const char *from, const char *to)
{
    if (rename(from, to) != 0) return errno;
    /* Renamed: a folder that cannot be synced is said, not an error (the file is in place). */
    int e = vn_fs_sync_parent(to);
    if (e) vn_log(VN_LOG_WARN, "%s: renamed into place, but syncing its folder failed: %s", to,
                  strerror(e));
    return 0;
}

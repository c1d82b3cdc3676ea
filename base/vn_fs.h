/* File-system helpers and clocks: the ground floor's only contact with the file system. */
#ifndef VN_FS_H
#define VN_FS_H

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mkdir -p: creates path and its missing parents (mode 0777 before umask). */
int vn_mkdirs(const char *path, vn_error *err);
/* Whole file into a malloc'ed buffer (*data, *len); names the path in errors. */
int vn_read_file(const char *path, uint8_t **data, size_t *len, vn_error *err);
/* Whether a file name is "<anything>.tmp.<pid>" of a process that no longer runs: what a
 * writer killed between creating its temporary file and renaming it leaves. */
bool vn_fs_stale_tmp(const char *name);
/* Removes path's stale temporary files ("<path>.tmp.<pid>" of dead processes), so that a
 * writer killed earlier leaves nothing behind once the file is written again. */
void vn_fs_remove_stale_tmps(const char *path);
/* Removes every "<name>.tmp.<pid>" of dir whose writer is gone (vn_fs_stale_tmp); returns how
 * many. For folders of many files written atomically (an import killed part way). */
int vn_fs_sweep_stale_tmps(const char *dir);
/* Whether dir holds anything but . and .. (false when it does not exist). */
bool vn_fs_dir_has_entries(const char *dir);
/* Writes buf to "<path>.tmp.<pid>" (fsynced when sync) and renames it over path: a full disk
 * or a kill leaves the earlier file, or the complete new one, never half of it. 0, or the
 * errno of the step that failed (the temporary file is then removed). */
int vn_fs_write_atomic(const char *path, const void *buf, size_t len, bool sync);
/* fsync of the folder holding path, so that a rename into it survives a crash: 0, or the
 * errno (a file system that cannot sync folders counts as done). */
int vn_fs_sync_parent(const char *path);
/* The folder path is in, into buf (len bytes): "." for a bare name, "/" for "/name"; returns
 * buf. */
const char *vn_fs_parent(const char *path, char *buf, size_t len);
/* rename(from, to), then an fsync of to's folder so that the rename survives a crash. 0, or
 * the errno of a failed rename (a folder that cannot be synced is only warned about). */
int vn_fs_rename_durable(const char *from, const char *to);
/* Seconds since the Unix epoch (CLOCK_REALTIME), with sub-second resolution. */
double vn_wall_time(void);
/* Seconds on CLOCK_MONOTONIC, for intervals. */
double vn_monotonic(void);

#ifdef __cplusplus
}
#endif
#endif

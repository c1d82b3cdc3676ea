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
/* Seconds since the Unix epoch (CLOCK_REALTIME), with sub-second resolution. */
double vn_wall_time(void);
/* Seconds on CLOCK_MONOTONIC, for intervals. */
double vn_monotonic(void);

#ifdef __cplusplus
}
#endif
#endif

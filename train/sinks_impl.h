/* Helpers shared by the metric sinks of train/ (metrics.c, tbwriter.c, progress.c). */
#ifndef VN_SINKS_IMPL_H
#define VN_SINKS_IMPL_H

#include "autograd/vn_base.h"

/* mkdir -p: creates path and its missing parents (mode 0777 before umask). */
int vn__sink_mkdirs(const char *path, vn_error *err);
/* Seconds since the Unix epoch (CLOCK_REALTIME), with sub-second resolution. */
double vn__sink_wall_time(void);
/* Seconds on CLOCK_MONOTONIC, for intervals. */
double vn__sink_monotonic(void);

#endif

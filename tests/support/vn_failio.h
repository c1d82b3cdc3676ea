/* Test-only storage-fault injection.
 *
 * Test programs that depend on `failio_dep` (tests/meson.build) link a static copy of the
 * library whose calls to open, write, fwrite, fflush, fsync, fclose and rename go through a
 * counter (ld --wrap). Arming it makes the n-th of those calls from now fail with the given
 * errno (ENOSPC, EIO, ...), once or from then on; a failing fclose still closes the file, a
 * failing rename leaves both names as they were. Reads are never failed. */
#ifndef VN_FAILIO_H
#define VN_FAILIO_H

#include <stdbool.h>

void vn_failio_arm(long n, int error, bool sticky);
/* Stops failing; returns true when a call was failed since the last arm. */
bool vn_failio_disarm(void);
/* The name of the call failed last ("fwrite", "rename", ...). */
const char *vn_failio_last(void);

#endif

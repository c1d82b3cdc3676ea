/* Test-only allocation-failure injection.
 *
 * Test programs that depend on `failalloc_dep` (tests/meson.build) link a static copy of the
 * library with malloc, calloc, realloc, posix_memalign, aligned_alloc, strdup and mmap
 * wrapped (ld --wrap), and jansson's allocator redirected, so that every allocation the
 * library makes goes through a counter. Arming it makes the n-th allocation from now fail
 * (return NULL / MAP_FAILED with ENOMEM), once or from then on. Allocations made inside other
 * shared libraries (libpng, libyaml, OpenBLAS) are not counted.
 *
 * A sweep: for n = 1, 2, ...: arm(n), run the operation, check it failed cleanly (or
 * succeeded), disarm; stop at the first n that did not fire. */
#ifndef VN_FAILALLOC_H
#define VN_FAILALLOC_H

#include <stdbool.h>

/* Makes the n-th allocation from now fail (n >= 1); with sticky, every later one fails too.
 * Resets the counter. */
void vn_failalloc_arm(long n, bool sticky);
/* Stops failing; returns true when an allocation was failed since the last arm. */
bool vn_failalloc_disarm(void);
/* With spare, jansson's allocations are neither counted nor failed. For sweeps over JSON
 * parsing: jansson 2.14's lexer ignores a failed growth of its token buffer, drops bytes of
 * the token and may then stop at assert(0) (load.c, lex_scan_string), a bug of the library
 * that no caller can handle. Writers (json_dumps and the calls building the tree) are swept. */
void vn_failalloc_spare_json(bool spare);
/* Allocations counted since the last arm (or since the start). */
long vn_failalloc_count(void);

#endif

/* Helpers shared by the io test files (tests/io/io_util.c). */
#ifndef IO_UTIL_H
#define IO_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "vn_test.h"

/* A fresh folder for one test (mkdtemp under $TMPDIR or /tmp), removed by tmp_teardown. */
extern char tmp_root[4096];
void tmp_setup(void);
void tmp_teardown(void);
/* tmp_root/name (static buffer: copy it if kept). */
const char *tmp_path(const char *name);

unsigned char *read_all(const char *path, size_t *len);
void write_all(const char *path, const void *buf, size_t len);
/* Entries of dir other than `keep` (printed: temporary files left behind). */
int count_other_files(const char *dir, const char *keep);
uint64_t le64(const unsigned char *p);

/* A file from header text and data_len bytes of data (i * 7 + 1). */
unsigned char *make_file(const char *header, size_t data_len, size_t *len);
/* Opening must fail with `code` and a message naming the label and containing `want`. */
void expect_fail(const void *buf, size_t len, const char *label, int code, const char *want);
float f16_to_float(uint16_t h);

/* The writer and atomic-write tests (test_safetensors_write.c). */
TCase *io_writer_tcase(void);

#endif

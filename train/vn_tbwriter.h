/* TensorBoard event files, written without TensorFlow or protobuf libraries.
 *
 * A file is a sequence of TFRecords. Each record is
 *   uint64 LE  length of data
 *   uint32 LE  masked CRC-32C of those 8 length bytes
 *   data       one serialized tensorflow.Event protobuf
 *   uint32 LE  masked CRC-32C of data
 * with mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 in uint32 arithmetic.
 *
 * The protobuf messages are encoded by hand; only these fields are written:
 *   Event      { double wall_time = 1; int64 step = 2; string file_version = 3;
 *                Summary summary = 5; SessionLog session_log = 6; }
 *   Summary    { repeated Value value = 1; }
 *   Value      { string tag = 1; float simple_value = 2; }
 *   SessionLog { SessionStatus status = 1; }   (START = 1)
 * The first record of every file is Event { wall_time, step 0, file_version "brain.Event:2" }.
 *
 * Writes go through a buffered FILE*; the writer flushes at most every couple of seconds by
 * itself (so TensorBoard sees curves grow during training) and on vn_tb_flush / vn_tb_close.
 * A failed write (disk full, ...) is reported through the return code and message and makes
 * the writer refuse further records, so a file never holds a torn record followed by more
 * data; the training process is never stopped by it. */
#ifndef VN_TBWRITER_H
#define VN_TBWRITER_H

#include <stdint.h>

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven. Pass crc = 0 to start;
 * pass a previous result to continue over more bytes: vn_crc32c(vn_crc32c(0, a, n), b, m)
 * equals the CRC of a followed by b. vn_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t vn_crc32c(uint32_t crc, const void *data, size_t n);
/* The TFRecord masking of a CRC (see above). */
uint32_t vn_crc32c_mask(uint32_t crc);

typedef struct vn_tb_writer vn_tb_writer;

/* Creates dir (and missing parents) and a new file
 * dir/events.out.tfevents.<unix seconds>.<hostname>, with ".1", ".2", ... appended when that
 * name already exists (files are never appended to or overwritten), then writes the
 * file_version record. */
int vn_tb_open(const char *dir, vn_tb_writer **out, vn_error *err);
/* The same at an exact path, created or truncated (for tests and special files). */
int vn_tb_open_path(const char *path, vn_tb_writer **out, vn_error *err);
/* Path of the events file (valid until vn_tb_close). */
const char *vn_tb_path(const vn_tb_writer *tb);

/* One Event holding one scalar. wall_time is in seconds since the Unix epoch; pass a value
 * <= 0 to use the current time. Non-finite values are written as they are (TensorBoard shows
 * NaN/Inf). */
int vn_tb_scalar(vn_tb_writer *tb, const char *tag, int64_t step, double value,
                 double wall_time, vn_error *err);
/* One Event holding n scalars with the same step (tags[i] = values[i]). */
int vn_tb_scalars(vn_tb_writer *tb, int64_t step, double wall_time, const char *const *tags,
                  const double *values, int n, vn_error *err);
/* An Event { session_log { status: START } } at step. TensorBoard (for brain.Event:2 files)
 * then discards every event of the run with a step >= this one seen before it, which is how
 * a resumed run hides the curves that a crashed run wrote past its last checkpoint. */
int vn_tb_session_start(vn_tb_writer *tb, int64_t step, double wall_time, vn_error *err);

int vn_tb_flush(vn_tb_writer *tb, vn_error *err);
/* Flushes, closes and frees (always frees, even when the flush fails). NULL is a no-op. */
int vn_tb_close(vn_tb_writer *tb, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

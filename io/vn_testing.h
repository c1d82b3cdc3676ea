/* For tests only (not installed): the restricted unpickler behind vn_pth, which the tests
 * drive directly with hand-made pickles. Programs use io/vn_pth.h. */
#ifndef VN_IO_TESTING_H
#define VN_IO_TESTING_H

#include "io/pickle_impl.h"

#endif

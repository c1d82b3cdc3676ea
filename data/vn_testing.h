/* For tests only (not installed): the transforms' crop helper, checked against torchvision's
 * padded RandomCrop byte for byte. Programs use data/vn_transform.h. */
#ifndef VN_DATA_TESTING_H
#define VN_DATA_TESTING_H

#include "data/crop_impl.h"

#endif

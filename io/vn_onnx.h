/* ONNX export of convolutional networks: nodes over one NCHW float input with a dynamic batch
 * axis, weights as initializers, written through protobuf-c with the official onnx.proto
 * (compiled at build time by protoc-c). Opset 13. The chain functions (conv, relu, ...) read
 * the current chain output, which every node then replaces by its own; vn_onnx_from moves the
 * chain to any earlier value and vn_onnx_node adds a node of any op over named inputs, so a
 * graph with branches and joins is a sequence of short chains. The last node's output is the
 * graph's output. */
#ifndef VN_ONNX_H
#define VN_ONNX_H

#include "base/vn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VN_ONNX_OPSET 13

typedef struct vn_onnx vn_onnx;

/* input: [batch, channels, height, width] with batch a named dynamic axis. */
vn_onnx *vn_onnx_new(const char *graph_name, const char *input_name, int channels, int height,
                     int width);
void vn_onnx_free(vn_onnx *g);

/* Conv with weight OIHW [out, in/groups, kh, kw] (copied) and bias [out] (may be NULL);
 * initializers are named <name>.weight and <name>.bias. */
int vn_onnx_conv(vn_onnx *g, const char *name, const float *weight, const float *bias, int out,
                 int in_per_group, int kh, int kw, int stride, int pad, int groups, vn_error *err);
int vn_onnx_relu(vn_onnx *g, const char *name, vn_error *err);
/* MaxPool kernel k, stride s, no padding, floor mode (PyTorch's MaxPool2d(k, s)). */
int vn_onnx_maxpool(vn_onnx *g, const char *name, int k, int s, vn_error *err);
int vn_onnx_global_avgpool(vn_onnx *g, const char *name, vn_error *err);
/* Flatten(axis 1): the graph output [batch, features]. */
int vn_onnx_flatten(vn_onnx *g, const char *name, vn_error *err);
/* The name of the current chain output (owned by g, valid until vn_onnx_free). */
const char *vn_onnx_last(const vn_onnx *g);
/* The chain continues from value (the input or an earlier node's output). */
int vn_onnx_from(vn_onnx *g, const char *value, vn_error *err);

typedef enum vn_onnx_attr_type {
    VN_ONNX_ATTR_INT,
    VN_ONNX_ATTR_INTS,
    VN_ONNX_ATTR_FLOAT,
    VN_ONNX_ATTR_STRING,
} vn_onnx_attr_type;

/* One node attribute: i (INT), ints[0..n) (INTS), f (FLOAT) or s (STRING). */
typedef struct vn_onnx_attr {
    const char *name;
    vn_onnx_attr_type type;
    int64_t i;
    const int64_t *ints;
    int n;
    float f;
    const char *s;
} vn_onnx_attr;

/* A node of op over n_in named inputs ("" for an omitted optional input) with one output
 * named name, which becomes the chain output. */
int vn_onnx_node(vn_onnx *g, const char *op, const char *name, int n_in, const char *const *in,
                 int n_attrs, const vn_onnx_attr *attrs, vn_error *err);
/* Constant tensors (initializers) of FLOAT and INT64 (copied). */
int vn_onnx_const_f32(vn_onnx *g, const char *name, int ndim, const int64_t *dims, const float *data,
                      vn_error *err);
int vn_onnx_const_i64(vn_onnx *g, const char *name, int ndim, const int64_t *dims,
                      const int64_t *data, vn_error *err);
/* metadata_props entry. */
int vn_onnx_meta(vn_onnx *g, const char *key, const char *value, vn_error *err);
/* Serialises the model (the last node's output is the graph output, named output_name,
 * [batch, out_features]) to path through a temporary file and a rename. */
int vn_onnx_write(vn_onnx *g, const char *path, const char *output_name, int out_features,
                  vn_error *err);
/* The same for an output [batch, dims[0], ..., dims[ndim - 1]]. */
int vn_onnx_write_dims(vn_onnx *g, const char *path, const char *output_name, int ndim,
                       const int64_t *dims, vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

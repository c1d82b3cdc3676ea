/* ONNX export of sequential convolutional networks: a chain of Conv, Relu, MaxPool,
 * GlobalAveragePool and Flatten nodes over one NCHW float input with a dynamic batch axis,
 * weights as initializers, written through protobuf-c with the official onnx.proto
 * (compiled at build time by protoc-c). Opset 13. Each node reads the previous node's output;
 * the last one is the graph's output. */
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
/* metadata_props entry. */
int vn_onnx_meta(vn_onnx *g, const char *key, const char *value, vn_error *err);
/* Serialises the model (the last node's output is the graph output, named output_name,
 * [batch, out_features]) to path through a temporary file and a rename. */
int vn_onnx_write(vn_onnx *g, const char *path, const char *output_name, int out_features,
                  vn_error *err);

#ifdef __cplusplus
}
#endif
#endif

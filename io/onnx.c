/* ONNX writer (see vn_onnx.h): protobuf-c messages built in memory, packed once. Every
 * allocation is recorded in the builder and released by vn_onnx_free. */
#include "io/vn_onnx.h"
#include "base/vn_fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/onnx.pb-c.h"

struct vn_onnx {
    void **allocs;
    int n_allocs, cap_allocs;
    Onnx__NodeProto **nodes;
    Onnx__TensorProto **inits;
    Onnx__StringStringEntryProto **meta;
    int n_nodes, n_inits, n_meta, cap_nodes, cap_inits, cap_meta;
    char *graph_name, *input_name, *last; /* last: the current chain output */
    int channels, height, width;
    bool failed;                           /* an allocation failed while building */
};

static void *keep(vn_onnx *g, void *p)
{
    if (!p) {
        g->failed = true;
        return NULL;
    }
    if (g->n_allocs == g->cap_allocs) {
        int cap = g->cap_allocs ? 2 * g->cap_allocs : 64;
        void **na = realloc(g->allocs, (size_t)cap * sizeof *na);
        if (!na) {
            free(p);
            g->failed = true;
            return NULL;
        }
        g->allocs = na;
        g->cap_allocs = cap;
    }
    g->allocs[g->n_allocs++] = p;
    return p;
}

static void *zalloc(vn_onnx *g, size_t n) { return keep(g, calloc(1, n ? n : 1)); }
static char *sdup(vn_onnx *g, const char *s) { return keep(g, strdup(s)); }

/* Appends p to a growing pointer array. */
static bool grow(vn_onnx *g, void ***arr, int *n, int *cap, void *p)
{
    if (!p) return false;
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        void **na = realloc(*arr, (size_t)nc * sizeof *na);
        if (!na) return g->failed = true, false;
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return true;
}

vn_onnx *vn_onnx_new(const char *graph_name, const char *input_name, int channels, int height,
                     int width)
{
    vn_onnx *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->graph_name = sdup(g, graph_name);
    g->input_name = sdup(g, input_name);
    g->last = g->input_name;
    g->channels = channels, g->height = height, g->width = width;
    if (g->failed) {
        vn_onnx_free(g);
        return NULL;
    }
    return g;
}

void vn_onnx_free(vn_onnx *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_allocs; i++) free(g->allocs[i]);
    free(g->allocs);
    free(g->nodes);
    free(g->inits);
    free(g->meta);
    free(g);
}

static Onnx__AttributeProto *attr_ints(vn_onnx *g, const char *name, int n, const int64_t *v)
{
    Onnx__AttributeProto *a = zalloc(g, sizeof *a);
    int64_t *ints = zalloc(g, (size_t)n * sizeof *ints);
    if (!a || !ints) return NULL;
    onnx__attribute_proto__init(a);
    a->name = sdup(g, name);
    a->has_type = true;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    memcpy(ints, v, (size_t)n * sizeof *ints);
    a->n_ints = (size_t)n;
    a->ints = ints;
    return a;
}

static Onnx__AttributeProto *attr_int(vn_onnx *g, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = zalloc(g, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = sdup(g, name);
    a->has_type = true;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = true;
    a->i = v;
    return a;
}

/* A node over the inputs in[0..n_in), producing "<name>", the new chain output. */
static Onnx__NodeProto *node_in(vn_onnx *g, const char *op, const char *name, int n_in,
                                const char *const *inputs, int n_attrs, Onnx__AttributeProto **attrs)
{
    Onnx__NodeProto *n = zalloc(g, sizeof *n);
    char **in = zalloc(g, (size_t)n_in * sizeof *in), **out = zalloc(g, sizeof *out);
    Onnx__AttributeProto **at = zalloc(g, (size_t)n_attrs * sizeof *at);
    if (!n || !in || !out || !at) return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < n_in; i++) in[i] = sdup(g, inputs[i]);
    out[0] = sdup(g, name);
    for (int i = 0; i < n_attrs; i++) {
        if (!attrs[i]) return NULL;
        at[i] = attrs[i];
    }
    n->n_input = (size_t)n_in;
    n->input = in;
    n->n_output = 1;
    n->output = out;
    n->name = sdup(g, name);
    n->op_type = sdup(g, op);
    n->n_attribute = (size_t)n_attrs;
    n->attribute = at;
    if (g->failed || !grow(g, (void ***)&g->nodes, &g->n_nodes, &g->cap_nodes, n)) return NULL;
    g->last = out[0];
    return n;
}

/* A node reading the chain output (plus extra inputs), producing "<name>". */
static Onnx__NodeProto *node(vn_onnx *g, const char *op, const char *name, int n_extra,
                             const char *const *extra, int n_attrs, Onnx__AttributeProto **attrs)
{
    const char **in = zalloc(g, (size_t)(1 + n_extra) * sizeof *in);
    if (!in) return NULL;
    in[0] = g->last;
    for (int i = 0; i < n_extra; i++) in[1 + i] = extra[i];
    return node_in(g, op, name, 1 + n_extra, in, n_attrs, attrs);
}

static int added(vn_onnx *g, const Onnx__NodeProto *n, const char *name, vn_error *err)
{
    if (n && !g->failed) return VN_OK;
    return vn_error_set(err, VN_ERR_NOMEM, "out of memory adding ONNX node '%s'", name);
}

static bool tensor_init(vn_onnx *g, const char *name, int data_type, size_t elem, const void *data,
                        int ndim, const int64_t *dims)
{
    Onnx__TensorProto *t = zalloc(g, sizeof *t);
    int64_t *d = zalloc(g, (size_t)ndim * sizeof *d), numel = 1;
    for (int i = 0; i < ndim; i++) numel *= dims[i];
    uint8_t *raw = zalloc(g, (size_t)numel * elem);
    if (!t || !d || !raw) return false;
    onnx__tensor_proto__init(t);
    if (ndim > 0) memcpy(d, dims, (size_t)ndim * sizeof *d); /* ndim 0: a scalar */
    memcpy(raw, data, (size_t)numel * elem); /* little-endian, as ONNX raw_data */
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = true;
    t->data_type = data_type;
    t->name = sdup(g, name);
    t->has_raw_data = true;
    t->raw_data.len = (size_t)numel * elem;
    t->raw_data.data = raw;
    return grow(g, (void ***)&g->inits, &g->n_inits, &g->cap_inits, t) && !g->failed;
}

static bool initializer(vn_onnx *g, const char *name, const float *data, int ndim, const int64_t *dims)
{
    return tensor_init(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, sizeof(float), data, ndim, dims);
}

int vn_onnx_const_f32(vn_onnx *g, const char *name, int ndim, const int64_t *dims, const float *data,
                      vn_error *err)
{
    if (initializer(g, name, data, ndim, dims)) return VN_OK;
    return vn_error_set(err, VN_ERR_NOMEM, "out of memory adding ONNX constant '%s'", name);
}

int vn_onnx_const_i64(vn_onnx *g, const char *name, int ndim, const int64_t *dims,
                      const int64_t *data, vn_error *err)
{
    if (tensor_init(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, sizeof(int64_t), data, ndim, dims))
        return VN_OK;
    return vn_error_set(err, VN_ERR_NOMEM, "out of memory adding ONNX constant '%s'", name);
}

int vn_onnx_conv(vn_onnx *g, const char *name, const float *weight, const float *bias, int out,
                 int in_per_group, int kh, int kw, int stride, int pad, int groups, vn_error *err)
{
    char wname[256], bname[256];
    snprintf(wname, sizeof wname, "%s.weight", name);
    snprintf(bname, sizeof bname, "%s.bias", name);
    int64_t wd[4] = {out, in_per_group, kh, kw}, bd[1] = {out};
    if (!initializer(g, wname, weight, 4, wd) || (bias && !initializer(g, bname, bias, 1, bd)))
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory adding ONNX weights '%s'", name);
    const int64_t k[2] = {kh, kw}, s[2] = {stride, stride}, p[4] = {pad, pad, pad, pad};
    Onnx__AttributeProto *attrs[5] = {attr_ints(g, "kernel_shape", 2, k), attr_ints(g, "strides", 2, s),
                                      attr_ints(g, "pads", 4, p), attr_int(g, "group", groups),
                                      attr_ints(g, "dilations", 2, (const int64_t[2]){1, 1})};
    const char *extra[2] = {wname, bname};
    return added(g, node(g, "Conv", name, bias ? 2 : 1, extra, 5, attrs), name, err);
}

int vn_onnx_relu(vn_onnx *g, const char *name, vn_error *err)
{
    return added(g, node(g, "Relu", name, 0, NULL, 0, NULL), name, err);
}

int vn_onnx_maxpool(vn_onnx *g, const char *name, int k, int s, vn_error *err)
{
    const int64_t kk[2] = {k, k}, ss[2] = {s, s};
    Onnx__AttributeProto *attrs[2] = {attr_ints(g, "kernel_shape", 2, kk), attr_ints(g, "strides", 2, ss)};
    return added(g, node(g, "MaxPool", name, 0, NULL, 2, attrs), name, err);
}

int vn_onnx_global_avgpool(vn_onnx *g, const char *name, vn_error *err)
{
    return added(g, node(g, "GlobalAveragePool", name, 0, NULL, 0, NULL), name, err);
}

int vn_onnx_flatten(vn_onnx *g, const char *name, vn_error *err)
{
    Onnx__AttributeProto *attrs[1] = {attr_int(g, "axis", 1)};
    return added(g, node(g, "Flatten", name, 0, NULL, 1, attrs), name, err);
}

const char *vn_onnx_last(const vn_onnx *g) { return g->last; }

int vn_onnx_from(vn_onnx *g, const char *value, vn_error *err)
{
    char *v = sdup(g, value);
    if (!v) return vn_error_set(err, VN_ERR_NOMEM, "out of memory");
    g->last = v;
    return VN_OK;
}

static Onnx__AttributeProto *attr_of(vn_onnx *g, const vn_onnx_attr *a)
{
    if (a->type == VN_ONNX_ATTR_INT) return attr_int(g, a->name, a->i);
    if (a->type == VN_ONNX_ATTR_INTS) return attr_ints(g, a->name, a->n, a->ints);
    Onnx__AttributeProto *p = zalloc(g, sizeof *p);
    if (!p) return NULL;
    onnx__attribute_proto__init(p);
    p->name = sdup(g, a->name);
    p->has_type = true;
    if (a->type == VN_ONNX_ATTR_FLOAT) {
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        p->has_f = true;
        p->f = a->f;
    } else {
        char *s = sdup(g, a->s);
        if (!s) return NULL;
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
        p->has_s = true;
        p->s.len = strlen(s);
        p->s.data = (uint8_t *)s;
    }
    return p;
}

int vn_onnx_node(vn_onnx *g, const char *op, const char *name, int n_in, const char *const *in,
                 int n_attrs, const vn_onnx_attr *attrs, vn_error *err)
{
    enum { MAX_ATTRS = 16 };
    Onnx__AttributeProto *at[MAX_ATTRS];
    if (n_attrs > MAX_ATTRS)
        return vn_error_set(err, VN_ERR_INVALID, "ONNX node '%s': %d attributes (at most %d)", name,
                            n_attrs, MAX_ATTRS);
    for (int i = 0; i < n_attrs; i++) at[i] = attr_of(g, &attrs[i]);
    return added(g, node_in(g, op, name, n_in, in, n_attrs, at), name, err);
}

int vn_onnx_meta(vn_onnx *g, const char *key, const char *value, vn_error *err)
{
    Onnx__StringStringEntryProto *e = zalloc(g, sizeof *e);
    if (e) {
        onnx__string_string_entry_proto__init(e);
        e->key = sdup(g, key);
        e->value = sdup(g, value);
    }
    if (!e || g->failed || !grow(g, (void ***)&g->meta, &g->n_meta, &g->cap_meta, e))
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory adding ONNX metadata");
    return VN_OK;
}

/* A float tensor value [batch, d1, d2, ...] with a dynamic batch axis. */
static Onnx__ValueInfoProto *value_info(vn_onnx *g, const char *name, int ndim, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = zalloc(g, sizeof *v);
    Onnx__TypeProto *t = zalloc(g, sizeof *t);
    Onnx__TypeProto__Tensor *tt = zalloc(g, sizeof *tt);
    Onnx__TensorShapeProto *sh = zalloc(g, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = zalloc(g, (size_t)(ndim + 1) * sizeof *dd);
    if (!v || !t || !tt || !sh || !dd) return NULL;
    for (int i = 0; i <= ndim; i++) {
        if (!(dd[i] = zalloc(g, sizeof **dd))) return NULL;
        onnx__tensor_shape_proto__dimension__init(dd[i]);
        if (i == 0) {
            dd[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dd[i]->dim_param = sdup(g, "batch");
        } else {
            dd[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dd[i]->dim_value = dims[i - 1];
        }
    }
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)(ndim + 1);
    sh->dim = dd;
    tt->has_elem_type = true;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->name = sdup(g, name);
    v->type = t;
    return g->failed ? NULL : v;
}

static int write_all(const char *path, const uint8_t *buf, size_t len, vn_error *err)
{
    vn_fs_remove_stale_tmps(path); /* left by a writer of this file killed before its rename */
    int e = vn_fs_write_atomic(path, buf, len, true);
    return e ? vn_error_set(err, VN_ERR_IO, "writing '%s.tmp.%ld' failed: %s", path,
                            (long)getpid(), strerror(e))
             : VN_OK;
}

int vn_onnx_write(vn_onnx *g, const char *path, const char *output_name, int out_features,
                  vn_error *err)
{
    const int64_t dims[1] = {out_features};
    return vn_onnx_write_dims(g, path, output_name, 1, dims, err);
}

int vn_onnx_write_dims(vn_onnx *g, const char *path, const char *output_name, int ndim,
                       const int64_t *dims, vn_error *err)
{
    if (g->n_nodes == 0) return vn_error_set(err, VN_ERR_INVALID, "%s: an empty ONNX graph", path);
    /* The chain's last output takes the requested name. */
    Onnx__NodeProto *last = g->nodes[g->n_nodes - 1];
    last->output[0] = sdup(g, output_name);
    const int64_t in_dims[3] = {g->channels, g->height, g->width};
    Onnx__ValueInfoProto *in = value_info(g, g->input_name, 3, in_dims);
    Onnx__ValueInfoProto *out = value_info(g, output_name, ndim, dims);
    Onnx__GraphProto *graph = zalloc(g, sizeof *graph);
    Onnx__ModelProto *model = zalloc(g, sizeof *model);
    Onnx__OperatorSetIdProto *opset = zalloc(g, sizeof *opset);
    Onnx__OperatorSetIdProto **opsets = zalloc(g, sizeof *opsets);
    Onnx__ValueInfoProto **ins = zalloc(g, sizeof *ins), **outs = zalloc(g, sizeof *outs);
    if (!in || !out || !graph || !model || !opset || !opsets || !ins || !outs || g->failed)
        return vn_error_set(err, VN_ERR_NOMEM, "out of memory building the ONNX model");
    onnx__graph_proto__init(graph);
    graph->name = g->graph_name;
    graph->n_node = (size_t)g->n_nodes;
    graph->node = g->nodes;
    graph->n_initializer = (size_t)g->n_inits;
    graph->initializer = g->inits;
    ins[0] = in, outs[0] = out;
    graph->n_input = 1, graph->input = ins;
    graph->n_output = 1, graph->output = outs;
    onnx__operator_set_id_proto__init(opset);
    opset->domain = sdup(g, "");
    opset->has_version = true;
    opset->version = VN_ONNX_OPSET;
    opsets[0] = opset;
    onnx__model_proto__init(model);
    model->has_ir_version = true;
    model->ir_version = 7; /* the IR of opset 13 */
    model->n_opset_import = 1;
    model->opset_import = opsets;
    model->producer_name = sdup(g, "vanilla");
    model->producer_version = sdup(g, "0.1.0");
    model->graph = graph;
    model->n_metadata_props = (size_t)g->n_meta;
    model->metadata_props = g->meta;
    if (g->failed) return vn_error_set(err, VN_ERR_NOMEM, "out of memory building the ONNX model");
    size_t len = onnx__model_proto__get_packed_size(model);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return vn_error_set(err, VN_ERR_NOMEM, "out of memory packing %zu bytes of ONNX", len);
    onnx__model_proto__pack(model, buf);
    int rc = write_all(path, buf, len, err);
    free(buf);
    return rc;
}

/* VanillaNet (Chen et al., NeurIPS 2023), matching the official PyTorch model: the same
 * layers, state_dict names, initialisation, deep-training activation and deploy merge. */
#ifndef VN_VANILLANET_H
#define VN_VANILLANET_H

#include <stdio.h>

#include "layers/vn_layers.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VN_MAX_STAGES 16
/* The stem's patchify conv is 4x4: stride 4, or stride 3 with padding 1 under ada_pool. */
#define VN_VANILLANET_STEM_KERNEL 4

typedef enum vn_shortcut {
    VN_SHORTCUT_NONE = 0,
    /* The paper's ablation: identity where shapes allow, else a 1x1 conv (with bias) followed
     * by the block's pooling; added to the block's output before its activation. */
    VN_SHORTCUT_IDENTITY = 1
} vn_shortcut;

typedef struct vn_vanillanet_config {
    int n_stages;                   /* len(strides); dims has n_stages + 1 entries */
    int dims[VN_MAX_STAGES + 1];
    int strides[VN_MAX_STAGES];
    bool ada_pool_enabled;          /* official ada_pool list given (changes the stem too) */
    int ada_pool[VN_MAX_STAGES];    /* output size of AdaptiveMaxPool2d where stride > 1 */
    int act_num;
    int in_chans;
    int num_classes;
    float drop_rate;
    vn_shortcut shortcut;
} vn_vanillanet_config;

/* Fills cfg with a released variant: "vanillanet_5" ... "vanillanet_13",
 * "vanillanet_13_x1_5", "vanillanet_13_x1_5_ada_pool"; in_chans 3, num_classes 1000,
 * act_num 3, drop_rate 0, no shortcut. */
int vn_vanillanet_variant(const char *name, vn_vanillanet_config *cfg, vn_error *err);
/* NULL-terminated list of the variant names. */
const char *const *vn_vanillanet_variant_names(void);
/* Checks a (custom) configuration; the message names the bad field. */
int vn_vanillanet_config_check(const vn_vanillanet_config *cfg, vn_error *err);

typedef struct vn_vanilla_block {
    int dim, dim_out, stride, ada_pool;
    vn_conv2d_layer conv1, conv2; /* train */
    vn_bn_layer bn1, bn2;         /* train */
    vn_conv2d_layer conv;         /* deploy */
    vn_conv2d_layer shortcut;     /* when shortcut_conv */
    bool shortcut_identity, shortcut_conv;
    vn_series_act act;
} vn_vanilla_block;

/* One block on its own (the model uses the same functions). */
int vn_vanilla_block_init(vn_vanilla_block *b, int dim, int dim_out, int stride, int ada_pool,
                          int act_num, vn_shortcut shortcut, bool deploy);
void vn_vanilla_block_free(vn_vanilla_block *b);
int vn_vanilla_block_register(vn_vanilla_block *b, vn_state_list *l, const char *prefix,
                              bool deploy);
vn_tensor *vn_vanilla_block_forward(vn_ctx *ctx, vn_vanilla_block *b, vn_tensor *x,
                                    float act_learn, bool training);

typedef struct vn_vanillanet {
    vn_vanillanet_config cfg;
    bool deploy;
    bool training;   /* train mode (batch statistics, dropout) vs eval mode */
    float act_learn; /* leaky ReLU slope of stem, blocks and classifier: 0 relu .. 1 identity */
    /* stem: train stem1 = conv 4x4 + BN, stem2 = conv 1x1 + BN + act; deploy: conv + act */
    vn_conv2d_layer stem1, stem2;
    vn_bn_layer stem1_bn, stem2_bn;
    vn_series_act stem_act;
    vn_vanilla_block *stages;
    /* classifier: train cls1 = avgpool, dropout, conv 1x1 + BN; cls2 = conv 1x1;
     * deploy: avgpool, dropout, conv 1x1 (kept in cls1) */
    vn_conv2d_layer cls1, cls2;
    vn_bn_layer cls1_bn;
    vn_state_list state; /* official state_dict order and names */
} vn_vanillanet;

/* Builds a model in train (deploy = false) or deploy layout with zero weights, BN at
 * identity and act_learn 1 (as the official constructor); call vn_vanillanet_init next. */
int vn_vanillanet_create(const vn_vanillanet_config *cfg, bool deploy, vn_vanillanet **out,
                         vn_error *err);
void vn_vanillanet_destroy(vn_vanillanet *m);
/* Official initialisation: every conv weight (and the activation's depthwise weight)
 * trunc_normal(std 0.02, absolute bounds +-2), conv biases 0, BN weight 1 and bias 0,
 * running statistics reset. Reproducible from the seed. */
void vn_vanillanet_init(vn_vanillanet *m, uint64_t seed);
/* change_act: the leaky ReLU slope of the stem, every block and the classifier. */
void vn_vanillanet_change_act(vn_vanillanet *m, float act_learn);
void vn_vanillanet_set_training(vn_vanillanet *m, bool training);

/* x: [N, H, W, in_chans] -> logits [N, num_classes]. NULL on error (see vn_ctx_error). */
vn_tensor *vn_vanillanet_forward(vn_ctx *ctx, vn_vanillanet *m, vn_tensor *x);
/* Backbone mode: feats[0] is the stem output, feats[1 + i] the output of stage i
 * ([N, h, w, channels[k]]); fills n_stages + 1 entries. */
int vn_vanillanet_forward_features(vn_ctx *ctx, vn_vanillanet *m, vn_tensor *x,
                                   vn_tensor **feats, int *channels);

/* Merges BN into convs, conv2 . conv1 in every block, stem1 + stem2 and cls1 + cls2 into
 * single convs. The deploy layers are computed beside the training ones and replace them only
 * when all are done: on failure (out of memory) the model is unchanged and still trains.
 * Refused when act_learn != 1 (the merge is then inexact) unless force is set, and always
 * refused with shortcuts. Tensors of the training form (and optimizers holding them) are
 * freed on success. */
int vn_vanillanet_switch_to_deploy(vn_vanillanet *m, bool force, vn_error *err);

/* Parameter count of a configuration without allocating it. */
int64_t vn_vanillanet_count_params(const vn_vanillanet_config *cfg, bool deploy);

/* Weight files: safetensors with the official names and OIHW weights. Loading checks every
 * name, dtype and shape (strict) and changes nothing on a mismatch. */
int vn_vanillanet_save(const vn_vanillanet *m, const char *path, vn_error *err);
int vn_vanillanet_load(vn_vanillanet *m, const char *path, vn_error *err);
/* Builds the model described in a weight file's metadata (written by vn_vanillanet_save)
 * and loads its weights. */
int vn_vanillanet_open(const char *path, vn_vanillanet **out, vn_error *err);
/* The configuration as JSON (malloc'd) and back; used in file metadata. */
char *vn_vanillanet_config_json(const vn_vanillanet_config *c, bool deploy);
int vn_vanillanet_config_from_json(const char *text, const char *label, vn_vanillanet_config *c,
                                   bool *deploy, vn_error *err);

/* ---- model report (`vanilla info`) ---------------------------------------------------- */

typedef struct vn_report_row {
    char name[48];      /* "stem1.0", "stages.2.act", "cls.2" */
    char what[48];      /* "conv 4x4/4", "batchnorm", "maxpool 2", ... */
    int64_t out[4];     /* N=1, H, W, C */
    int64_t params;     /* trainable parameters */
    int64_t macs;       /* multiply-adds */
} vn_report_row;

typedef struct vn_report {
    vn_report_row *rows;
    int n;
    int64_t total_params, total_macs;
} vn_report;

/* Per-layer output shapes (batch 1), parameters and multiply-adds for an input of h x w, in
 * train or deploy form, computed from the configuration alone (nothing is allocated).
 * Convolutions count Ho*Wo*Cout*(Cin/groups)*KH*KW; BatchNorm, pooling and activations
 * count no multiply-adds. Fails when the input is too small for the network. */
int vn_vanillanet_report(const vn_vanillanet_config *cfg, bool deploy, int h, int w,
                         vn_report *out, vn_error *err);
void vn_report_free(vn_report *r);
/* Prints the report as an aligned table. */
void vn_report_print(const vn_report *r, FILE *fp);

#ifdef __cplusplus
}
#endif
#endif

/* The VanillaNet plan: the architecture written down once, as an ordered list of layer specs
 * built from a configuration in training or deploy form. Everything that needs to know the
 * architecture reads the plan instead of spelling it out again:
 *   - vn_vanillanet_create and vn_vanilla_block_init allocate one layer per spec with state;
 *   - registration walks it for the official state_dict names and order;
 *   - vn_vanillanet_count_params and the report (shapes, parameters, multiply-adds) sum it;
 *   - the deploy merge pairs each deploy spec with the training specs of the same unit.
 * The forward pass (vanillanet.c) is written out by hand; it reads the layers the plan
 * allocated and follows the same order.
 *
 * A new variant built from the same blocks is a row in the table of variants.c. A new layer:
 * add its spec where it belongs in the builder (plan.c: kind, slot, state name, sizes, and the
 * unit it merges with), a field for it in vn_vanillanet or vn_vanilla_block with its vn__slot,
 * and its call in the forward. A new kind of layer also needs one case in each switch over
 * vn__layer_kind (vn__spec_has_state and vn__spec_params in plan.c, vn__spec_alloc and
 * vn__spec_register in vanillanet.c, the report's layer() and deploy.c's fill_deploy): none
 * has a default, so -Wswitch names every one that is missing.
 *
 * Private to models/ (vn__ names); the public API is models/vn_vanillanet.h. */
#ifndef VN_MODELS_PLAN_H
#define VN_MODELS_PLAN_H

#include "models/vn_vanillanet.h"

typedef enum vn__layer_kind {
    VN__LAYER_CONV,     /* vn_conv2d_layer */
    VN__LAYER_BN,       /* vn_bn_layer (eps VN_VANILLANET_BN_EPS) */
    VN__LAYER_ACT,      /* vn_series_act: relu, depthwise conv, BN (train) or bias (deploy) */
    VN__LAYER_POOL,     /* a block's max pool by its stride, or adaptive max pool to ada_pool */
    VN__LAYER_SHORTCUT, /* identity, or a 1x1 conv with bias followed by the block's pooling */
    VN__LAYER_AVGPOOL   /* the classifier's global average pool */
} vn__layer_kind;

/* The field of the model (or of the block `stage`) that holds a spec's layer. */
typedef enum vn__slot {
    VN__SLOT_NONE,
    VN__SLOT_STEM1, VN__SLOT_STEM1_BN, VN__SLOT_STEM2, VN__SLOT_STEM2_BN, VN__SLOT_STEM_ACT,
    VN__SLOT_CONV1, VN__SLOT_BN1, VN__SLOT_CONV2, VN__SLOT_BN2, VN__SLOT_CONV,
    VN__SLOT_SHORTCUT, VN__SLOT_ACT,
    VN__SLOT_CLS1, VN__SLOT_CLS1_BN, VN__SLOT_CLS2
} vn__slot;

typedef struct vn__layer_spec {
    vn__layer_kind kind;
    vn__slot slot;
    int stage;      /* block index for the block's layers, -1 for the stem and the classifier */
    /* Merge unit: the training specs of a unit merge into the deploy spec of the same unit
     * (stem convs, each block's convs, each activation, the classifier's convs). */
    int unit;
    char name[24];  /* state_dict prefix (without the dot) inside the block or the model */
    int in_ch, out_ch;           /* CONV, SHORTCUT; BN and ACT: channels in both */
    int kernel;                  /* CONV, SHORTCUT: square kernel; ACT: 2 * act_num + 1 */
    vn_conv_params conv;         /* CONV, SHORTCUT */
    bool bias;                   /* CONV, SHORTCUT; ACT: deploy form (bias instead of BN) */
    int act_num;                 /* ACT */
    int stride, ada_pool;        /* POOL, SHORTCUT: the block's stride and adaptive size */
} vn__layer_spec;

/* Stem + VN_MAX_STAGES blocks (at most 7 specs each) + classifier. */
#define VN__PLAN_MAX (8 + 7 * VN_MAX_STAGES + 8)

typedef struct vn__plan {
    bool deploy;
    int n, units;
    vn__layer_spec layers[VN__PLAN_MAX];
} vn__plan;

/* The whole network; cfg must have passed vn_vanillanet_config_check. */
void vn__plan_build(vn__plan *p, const vn_vanillanet_config *cfg, bool deploy);
/* Appends one block (as in a model, or standalone with stage 0). */
void vn__plan_block(vn__plan *p, int stage, int dim, int dim_out, int stride, int ada_pool,
                    int act_num, vn_shortcut shortcut);

/* A shortcut spec that is the identity (same channels, stride 1): no layer. */
bool vn__spec_is_identity(const vn__layer_spec *s);
/* Whether a spec owns tensors (a layer to allocate, register and merge). */
bool vn__spec_has_state(const vn__layer_spec *s);
/* Trainable parameters of one spec (BN: weight and bias). */
int64_t vn__spec_params(const vn__layer_spec *s);
/* The layer struct of a spec: a field of m (stem, classifier) or of the block: b, or
 * m->stages[s->stage] when b is NULL. */
void *vn__spec_layer(vn_vanillanet *m, vn_vanilla_block *b, const vn__layer_spec *s);
/* Allocates the layer of a spec (zero weights, BN at identity); a shortcut spec sets the
 * block's shortcut flags. */
int vn__spec_alloc(vn_vanillanet *m, vn_vanilla_block *b, const vn__layer_spec *s, bool deploy);
/* Registers the layer's tensors under prefix + name + ".". */
int vn__spec_register(vn_vanillanet *m, vn_vanilla_block *b, const vn__layer_spec *s,
                      const char *prefix, vn_state_list *l);

/* Builds m->state from the plan (official state_dict order and names). */
int vn__vanillanet_register(vn_vanillanet *m);
void vn__vanillanet_free_layers(vn_vanillanet *m);

#endif

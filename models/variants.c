/* The released VanillaNet variants and configuration checks. */
#include "models/vn_vanillanet.h"

#include <stdio.h>
#include <string.h>

typedef struct variant {
    const char *name;
    int n_stages;
    int dims[VN_MAX_STAGES + 1];
    int strides[VN_MAX_STAGES];
    int ada_pool[VN_MAX_STAGES];
    bool ada;
} variant;

#define D2K 2048
static const variant variants[] = {
    {"vanillanet_5", 3, {512, 1024, 2048, 4096}, {2, 2, 2}, {0}, false},
    {"vanillanet_6", 4, {512, 1024, 2048, 4096, 4096}, {2, 2, 2, 1}, {0}, false},
    {"vanillanet_7", 5, {512, 512, 1024, 2048, 4096, 4096}, {1, 2, 2, 2, 1}, {0}, false},
    {"vanillanet_8", 6, {512, 512, 1024, 2048, 2048, 4096, 4096}, {1, 2, 2, 1, 2, 1}, {0}, false},
    {"vanillanet_9", 7, {512, 512, 1024, D2K, D2K, D2K, 4096, 4096}, {1, 2, 2, 1, 1, 2, 1}, {0}, false},
    {"vanillanet_10", 8, {512, 512, 1024, D2K, D2K, D2K, D2K, 4096, 4096},
     {1, 2, 2, 1, 1, 1, 2, 1}, {0}, false},
    {"vanillanet_11", 9, {512, 512, 1024, D2K, D2K, D2K, D2K, D2K, 4096, 4096},
     {1, 2, 2, 1, 1, 1, 1, 2, 1}, {0}, false},
    {"vanillanet_12", 10, {512, 512, 1024, D2K, D2K, D2K, D2K, D2K, D2K, 4096, 4096},
     {1, 2, 2, 1, 1, 1, 1, 1, 2, 1}, {0}, false},
    {"vanillanet_13", 11, {512, 512, 1024, D2K, D2K, D2K, D2K, D2K, D2K, D2K, 4096, 4096},
     {1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1}, {0}, false},
    {"vanillanet_13_x1_5", 11,
     {768, 768, 1536, 3072, 3072, 3072, 3072, 3072, 3072, 3072, 6144, 6144},
     {1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1}, {0}, false},
    {"vanillanet_13_x1_5_ada_pool", 11,
     {768, 768, 1536, 3072, 3072, 3072, 3072, 3072, 3072, 3072, 6144, 6144},
     {1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1}, {0, 38, 19, 0, 0, 0, 0, 0, 0, 10, 0}, true},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

static const char *const variant_names[] = {
    "vanillanet_5", "vanillanet_6", "vanillanet_7", "vanillanet_8", "vanillanet_9",
    "vanillanet_10", "vanillanet_11", "vanillanet_12", "vanillanet_13", "vanillanet_13_x1_5",
    "vanillanet_13_x1_5_ada_pool", NULL};
_Static_assert(sizeof variant_names / sizeof variant_names[0] == N_VARIANTS + 1,
               "variant names and table must agree");

const char *const *vn_vanillanet_variant_names(void) { return variant_names; }

int vn_vanillanet_variant(const char *name, vn_vanillanet_config *cfg, vn_error *err)
{
    if (!name || !cfg) return vn_error_set(err, VN_ERR_INVALID, "vn_vanillanet_variant: NULL %s",
                                           name ? "config" : "name");
    for (int i = 0; i < N_VARIANTS; i++) {
        const variant *v = &variants[i];
        if (strcmp(v->name, name) != 0) continue;
        memset(cfg, 0, sizeof *cfg);
        cfg->n_stages = v->n_stages;
        memcpy(cfg->dims, v->dims, sizeof cfg->dims);
        memcpy(cfg->strides, v->strides, sizeof cfg->strides);
        memcpy(cfg->ada_pool, v->ada_pool, sizeof cfg->ada_pool);
        cfg->ada_pool_enabled = v->ada;
        cfg->act_num = 3;
        cfg->in_chans = 3;
        cfg->num_classes = 1000;
        cfg->drop_rate = 0.0f;
        cfg->shortcut = VN_SHORTCUT_NONE;
        return VN_OK;
    }
    char list[512] = "";
    for (int i = 0; i < N_VARIANTS; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, variants[i].name, sizeof list - strlen(list) - 1);
    }
    return vn_error_set(err, VN_ERR_NOT_FOUND, "unknown model '%s' (known: %s)", name, list);
}

int vn_vanillanet_config_check(const vn_vanillanet_config *c, vn_error *err)
{
    if (c->n_stages < 1 || c->n_stages > VN_MAX_STAGES)
        return vn_error_set(err, VN_ERR_INVALID, "model: strides has %d entries (1..%d allowed)",
                            c->n_stages, VN_MAX_STAGES);
    for (int i = 0; i <= c->n_stages; i++)
        if (c->dims[i] < 1 || c->dims[i] > 65536)
            return vn_error_set(err, VN_ERR_INVALID, "model: dims[%d] = %d (1..65536 allowed)", i,
                                c->dims[i]);
    for (int i = 0; i < c->n_stages; i++) {
        if (c->strides[i] < 1 || c->strides[i] > 16)
            return vn_error_set(err, VN_ERR_INVALID, "model: strides[%d] = %d (1..16 allowed)", i,
                                c->strides[i]);
        /* 0 on a pooling stage is the plain MaxPool2d(stride), as the official Block's
         * `if not ada_pool`. */
        if (c->ada_pool_enabled && c->ada_pool[i] < 0)
            return vn_error_set(err, VN_ERR_INVALID, "model: ada_pool[%d] = %d (an output size, or "
                                "0 for the plain pool)", i, c->ada_pool[i]);
    }
    if (c->act_num < 0 || c->act_num > 16)
        return vn_error_set(err, VN_ERR_INVALID, "model: act_num = %d (0..16 allowed)", c->act_num);
    if (c->in_chans < 1 || c->in_chans > 64)
        return vn_error_set(err, VN_ERR_INVALID, "model: in_chans = %d (1..64 allowed)", c->in_chans);
    if (c->num_classes < 1)
        return vn_error_set(err, VN_ERR_INVALID, "model: num_classes = %d (must be >= 1)",
                            c->num_classes);
    if (!(c->drop_rate >= 0.0f && c->drop_rate < 1.0f))
        return vn_error_set(err, VN_ERR_INVALID, "model: drop_rate = %g (0 <= p < 1)",
                            (double)c->drop_rate);
    if (c->shortcut != VN_SHORTCUT_NONE && c->shortcut != VN_SHORTCUT_IDENTITY)
        return vn_error_set(err, VN_ERR_INVALID, "model: unknown shortcut mode %d", (int)c->shortcut);
    return VN_OK;
}

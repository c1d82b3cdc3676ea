/* Every command-line flag of the official VanillaNet trainer (huawei-noah/VanillaNet
 * main.py), with its default, what stands for it here (config keys or a command) and whether
 * the behaviour is identical, different (how) or absent (why). One table, read by
 * `vanilla config official` (the README section "Coming from the official scripts") and by a
 * test that keeps it in step with the config schema's `official` column. */
#ifndef VN_OFFICIAL_H
#define VN_OFFICIAL_H

#include <stdio.h>

#include "train/vn_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vn_official_status {
    VN_OFFICIAL_SAME = 0, /* identical behaviour (defaults may differ: both are listed) */
    VN_OFFICIAL_DIFFERENT,
    VN_OFFICIAL_ABSENT
} vn_official_status;

typedef struct vn_official_flag {
    const char *flag;        /* "--lr" */
    const char *def;         /* the official default, as main.py's argparse has it */
    const char *keys;        /* config keys standing for it, space-separated, or NULL */
    const char *command;     /* a command or option standing for it ("vanilla eval"), or NULL */
    vn_official_status status;
    const char *note;        /* how it differs, why it is absent, or a remark */
} vn_official_flag;

/* The table, in main.py's order; *n receives its length. */
const vn_official_flag *vn_official_flags(size_t *n);
/* The row of a flag ("--lr"), or NULL. */
const vn_official_flag *vn_official_find(const char *flag);
/* Whether row lists key (a full config key) among its keys. */
bool vn_official_has_key(const vn_official_flag *row, const char *key);
/* The README table: flag, official default, ours, our default (from the schema), behaviour. */
int vn_official_markdown(FILE *f);

#ifdef __cplusplus
}
#endif
#endif

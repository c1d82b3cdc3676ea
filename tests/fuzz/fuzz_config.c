/* libFuzzer target: the YAML config loader and --set parsing. The input is YAML text up to
 * the first NUL byte, then NUL-separated "section.key=value" overrides (the first 8). A failed load or
 * --set leaves the config unchanged; a config that loads writes YAML that loads back to an
 * equal config. */
#include "train/vn_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static vn_config cfg, before, back; /* large: kept off the stack */

/* At most 8 overrides per input (and empty ones skipped) keep an execution fast: each is
 * checked against a copy of the whole config. */
static void apply_sets(const char *p, const char *end)
{
    for (int count = 0; p < end && count < 8; count++) {
        size_t n = strnlen(p, (size_t)(end - p));
        if (n == 0) {
            p++;
            count--;
            continue;
        }
        char *a = malloc(n + 1);
        if (!a) abort();
        memcpy(a, p, n);
        a[n] = '\0';
        vn_error err = {0};
        before = cfg;
        if (vn_config_set(&cfg, a, &err) != VN_OK &&
            (err.msg[0] == '\0' || !vn_config_equal(&cfg, &before)))
            abort();
        free(a);
        p += n + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t ylen = strnlen(text, size);
    vn_error err = {0};
    vn_config_init(&cfg);
    before = cfg;
    if (vn_config_load_text(&cfg, text, ylen, "fuzz.yaml", &err) != VN_OK) {
        if (err.msg[0] == '\0' || !vn_config_equal(&cfg, &before)) abort();
    }
    apply_sets(text + ylen + 1, text + size);
    (void)vn_config_check(&cfg, &err);
    char *yaml = vn_config_to_yaml(&cfg, 0);
    if (!yaml) abort();
    vn_config_init(&back);
    if (vn_config_load_text(&back, yaml, strlen(yaml), "written.yaml", &err) != VN_OK ||
        !vn_config_equal(&cfg, &back))
        abort();
    free(yaml);
    return 0;
}

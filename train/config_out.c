/* Config output and comparison: YAML (`vanilla config show`, the run directory's copy), the
 * markdown reference, the hash stored in checkpoints and the diff printed on resume. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/config_impl.h"

/* Big enough for any value: 32 floats of at most ~25 characters, or a quoted path whose
 * every byte is escaped as \xNN. */
#define VALUE_MAX (4 * VN_CONFIG_STR_MAX + 64)

int vn_config_write_yaml(const vn_config *cfg, FILE *f, unsigned flags)
{
    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    char *value = malloc(VALUE_MAX);
    if (!value) return VN_ERR_NOMEM;
    char hash[17];
    vn_config_hash_hex(cfg, hash);
    fprintf(f, "# vanilla config (hash %s)\n", hash);
    const char *section = NULL;
    for (size_t i = 0; i < n; i++) {
        const vn_config_key *k = &s[i];
        if (!section || strcmp(section, k->section) != 0) {
            fprintf(f, "%s%s:\n", section ? "\n" : "", k->section);
            section = k->section;
        }
        if (flags & VN_CONFIG_WRITE_HELP) {
            char desc[512];
            vn__config_describe(k, desc, sizeof desc);
            fprintf(f, "  # %s [%s%s]\n", k->help, desc,
                    (k->flags & VN_CONFIG_NOT_HASHED) ? "; not hashed" : "");
        }
        vn__config_format(cfg, k, value, VALUE_MAX);
        fprintf(f, "  %s: %s", k->name, value);
        if ((flags & VN_CONFIG_WRITE_ORIGIN) && cfg->origin[i].source != VN_CONFIG_FROM_DEFAULT) {
            char o[VN_CONFIG_STR_MAX + 32];
            fprintf(f, "  # from %s", vn_config_origin_str(cfg, i, o, sizeof o));
        }
        fputc('\n', f);
    }
    free(value);
    return ferror(f) ? VN_ERR_IO : VN_OK;
}

char *vn_config_to_yaml(const vn_config *cfg, unsigned flags)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    int rc = vn_config_write_yaml(cfg, f, flags);
    if (fclose(f) != 0 || rc != VN_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

int vn_config_save(const vn_config *cfg, const char *path, vn_error *err)
{
    char tmp[VN_CONFIG_STR_MAX + 16];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return vn_error_set(err, VN_ERR_INVALID, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return vn_error_set(err, VN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int rc = vn_config_write_yaml(cfg, f, VN_CONFIG_WRITE_HELP);
    if (rc == VN_ERR_NOMEM) {
        fclose(f);
        remove(tmp);
        return vn_error_set(err, rc, "%s: out of memory", path);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || rc != VN_OK) {
        int e = errno;
        fclose(f);
        remove(tmp);
        return vn_error_set(err, VN_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
    }
    if (fclose(f) != 0) {
        remove(tmp);
        return vn_error_set(err, VN_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return vn_error_set(err, VN_ERR_IO, "%s: cannot rename from %s: %s", path, tmp,
                            strerror(e));
    }
    return VN_OK;
}

/* Markdown table cells: '|' would end the cell. */
static void md_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else fputc(*s, f);
    }
}

int vn_config_schema_markdown(FILE *f)
{
    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    vn_config *def = malloc(sizeof *def);
    char *value = malloc(VALUE_MAX);
    if (!def || !value) {
        free(def);
        free(value);
        return VN_ERR_NOMEM;
    }
    vn_config_init(def);
    fputs("| Key | Type | Default | Allowed | Hashed | Official flag | Meaning |\n", f);
    fputs("|---|---|---|---|---|---|---|\n", f);
    for (size_t i = 0; i < n; i++) {
        const vn_config_key *k = &s[i];
        char desc[512];
        vn__config_describe(k, desc, sizeof desc);
        vn__config_format(def, k, value, VALUE_MAX);
        fprintf(f, "| `%s` | %s | `", k->full, vn_config_type_name(k->type));
        md_cell(f, value);
        fputs("` | ", f);
        md_cell(f, desc);
        fprintf(f, " | %s | ", (k->flags & VN_CONFIG_NOT_HASHED) ? "no" : "yes");
        if (k->official) fprintf(f, "`%s`", k->official);
        fputs(" | ", f);
        md_cell(f, k->help);
        fputs(" |\n", f);
    }
    free(def);
    free(value);
    return ferror(f) ? VN_ERR_IO : VN_OK;
}

/* ---- hash and diff ---------------------------------------------------------------------- */

static int by_full_name(const void *a, const void *b)
{
    const vn_config_key *const *x = a, *const *y = b;
    return strcmp((*x)->full, (*y)->full);
}

uint64_t vn_config_hash(const vn_config *cfg)
{
    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    const vn_config_key *sorted[VN_CONFIG_MAX_KEYS];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!(s[i].flags & VN_CONFIG_NOT_HASHED)) sorted[m++] = &s[i];
    /* By name, so reordering the table does not change the hash of the same settings. */
    qsort(sorted, m, sizeof sorted[0], by_full_name);
    uint64_t h = VN_FNV1A_BASIS;
    char value[VALUE_MAX];
    for (size_t i = 0; i < m; i++) {
        vn__config_format(cfg, sorted[i], value, sizeof value);
        h = vn_fnv1a(h, sorted[i]->full, strlen(sorted[i]->full));
        h = vn_fnv1a(h, ": ", 2);
        h = vn_fnv1a(h, value, strlen(value));
        h = vn_fnv1a(h, "\n", 1);
    }
    return h;
}

void vn_config_hash_hex(const vn_config *cfg, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)vn_config_hash(cfg));
}

int vn_config_diff(const vn_config *a, const vn_config *b, bool hashed_only, FILE *f)
{
    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    char *va = malloc(VALUE_MAX), *vb = malloc(VALUE_MAX);
    int count = 0;
    if (!va || !vb) {
        free(va);
        free(vb);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (hashed_only && (s[i].flags & VN_CONFIG_NOT_HASHED)) continue;
        vn__config_format(a, &s[i], va, VALUE_MAX);
        vn__config_format(b, &s[i], vb, VALUE_MAX);
        if (strcmp(va, vb) != 0) {
            count++;
            if (f) fprintf(f, "%s: %s -> %s\n", s[i].full, va, vb);
        }
    }
    free(va);
    free(vb);
    return count;
}

char *vn_config_diff_text(const vn_config *a, const vn_config *b, bool hashed_only)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    int count = vn_config_diff(a, b, hashed_only, f);
    if (fclose(f) != 0 || count < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

bool vn_config_equal(const vn_config *a, const vn_config *b)
{
    return vn_config_diff(a, b, false, NULL) == 0;
}

int vn_config_resume_check(const vn_config *stored, const vn_config *current, bool force,
                           vn_error *err)
{
    char *d = vn_config_diff_text(stored, current, true);
    if (!d) return vn_error_set(err, VN_ERR_NOMEM, "comparing configs: out of memory");
    int changed = 0;
    for (const char *p = d; *p; p++) changed += *p == '\n';
    if (changed == 0) {
        free(d);
        return VN_OK;
    }
    /* At most 8 changes in the message (it has a fixed size); the rest are counted. */
    char list[768];
    size_t pos = 0;
    int shown = 0;
    list[0] = '\0';
    for (const char *p = d; *p && shown < 8; shown++) {
        const char *nl = strchr(p, '\n');
        int n = snprintf(list + pos, sizeof list - pos, "  %.*s\n", (int)(nl - p), p);
        if (n < 0 || (size_t)n >= sizeof list - pos) break;
        pos += (size_t)n;
        p = nl + 1;
    }
    char more[48] = "";
    if (changed > shown) snprintf(more, sizeof more, "  ... and %d more\n", changed - shown);
    free(d);
    if (force) {
        vn_log(VN_LOG_WARN, "resuming with a config that differs from the checkpoint's (--force):\n%s%s",
               list, more);
        return VN_OK;
    }
    return vn_error_set(err, VN_ERR_STATE,
                        "the config differs from the checkpoint's in %d setting%s that change "
                        "the result:\n%s%sresume with the checkpoint's config, or pass --force "
                        "to accept the change", changed, changed == 1 ? "" : "s", list, more);
}

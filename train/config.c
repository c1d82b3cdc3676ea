/* Config values: defaults, conversion and validation of user text against the schema,
 * --set overrides, rules spanning several keys, canonical formatting, key suggestions. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "train/config_impl.h"
#include "data/vn_augment.h"

/* ---- schema look-ups ----------------------------------------------------------------- */

const vn_config_key *vn_config_find(const char *full, size_t *index)
{
    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    if (!full) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s[i].full, full) == 0) {
            if (index) *index = i;
            return &s[i];
        }
    }
    return NULL;
}

const char *vn_config_type_name(vn_config_type t)
{
    switch (t) {
    case VN_CONFIG_BOOL: return "bool";
    case VN_CONFIG_INT: return "int";
    case VN_CONFIG_FLOAT: return "float";
    case VN_CONFIG_STRING: return "string";
    case VN_CONFIG_ENUM: return "enum";
    case VN_CONFIG_INT_LIST: return "int list";
    case VN_CONFIG_FLOAT_LIST: return "float list";
    }
    return "?";
}

const char *vn_config_enum_name(const char *key, int value)
{
    const vn_config_key *k = vn_config_find(key, NULL);
    if (!k || k->type != VN_CONFIG_ENUM || value < 0) return NULL;
    for (int i = 0; k->choices[i]; i++)
        if (i == value) return k->choices[i];
    return NULL;
}

bool vn__config_is_section(const char *name, size_t len)
{
    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    for (size_t i = 0; i < n; i++)
        if (strlen(s[i].section) == len && strncmp(s[i].section, name, len) == 0) return true;
    return false;
}

/* ---- suggestions ------------------------------------------------------------------------ */

/* Levenshtein distance; long strings count as far apart. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 1000;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (tolower((unsigned char)a[i - 1]) !=
                                  tolower((unsigned char)b[j - 1]));
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            if (up + 1 < best) best = up + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Close enough to be a typo: a couple of edits, more for long names. */
static bool near(size_t d, const char *s)
{
    size_t len = strlen(s);
    return d <= 2 || d * 3 <= len;
}

/* The nearest of a set of names to a word, offered one at a time (the first of equals). */
typedef struct nearest {
    const char *word, *best;
    size_t d;
} nearest;

static void nearest_offer(nearest *nb, const char *name)
{
    size_t d = edit_distance(nb->word, name);
    if (d < nb->d) {
        nb->d = d;
        nb->best = name;
    }
}

/* The nearest name when it is close enough to be a typo of the word, else NULL. */
static const char *nearest_found(const nearest *nb)
{
    return nb->best && near(nb->d, nb->word) ? nb->best : NULL;
}

static bool aka_has(const char *aka, const char *name)
{
    if (!aka) return false;
    size_t ln = strlen(name);
    const char *p = aka;
    while (*p) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        if ((size_t)(e - p) == ln && strncmp(p, name, ln) == 0) return true;
        p = e;
    }
    return false;
}

const char *vn__config_suggest_key(const char *section, const char *name)
{
    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    char full[160];
    snprintf(full, sizeof full, "%s.%s", section ? section : "", name);
    /* The official trainer's flag or another common name, then the same key name in another
     * section, then the nearest spelling. */
    for (size_t i = 0; i < n; i++)
        if ((s[i].official && strcmp(s[i].official + 2, name) == 0) || aka_has(s[i].aka, name))
            return s[i].full;
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0) return s[i].full;
    nearest nb = {full, NULL, (size_t)-1};
    for (size_t i = 0; i < n; i++) nearest_offer(&nb, s[i].full);
    return nearest_found(&nb);
}

const char *vn__config_suggest_section(const char *name)
{
    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    nearest nb = {name, NULL, (size_t)-1};
    for (size_t i = 0; i < n; i++) nearest_offer(&nb, s[i].section);
    return nearest_found(&nb);
}

static const char *suggest_choice(const vn_config_key *k, const char *text)
{
    nearest nb = {text, NULL, (size_t)-1};
    for (int i = 0; k->choices[i]; i++) nearest_offer(&nb, k->choices[i]);
    return nearest_found(&nb);
}

/* ---- formatting ------------------------------------------------------------------------ */

/* The shortest text that reads back as exactly v, spelled as a YAML 1.1 float (a '.' in the
 * mantissa, as PyYAML requires): 0.0035, 1.0e-08, 300.0. */
static void format_double(double v, char *buf, size_t len)
{
    char tmp[48];
    if (v == 0) v = 0; /* -0.0 prints as 0.0: the two are the same setting */
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*g", p, v);
        if (strtod(tmp, NULL) == v) break;
    }
    if (!strchr(tmp, '.') && isfinite(v)) {
        char *e = strchr(tmp, 'e');
        char out[56];
        if (e)
            snprintf(out, sizeof out, "%.*s.0%s", (int)(e - tmp), tmp, e);
        else
            snprintf(out, sizeof out, "%s.0", tmp);
        snprintf(buf, len, "%s", out);
        return;
    }
    snprintf(buf, len, "%s", tmp);
}

/* Appends with snprintf semantics: *pos counts what the full text needs. */
static void put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*pos < len ? buf + *pos : NULL, *pos < len ? len - *pos : 0, fmt, ap);
    va_end(ap);
    if (n > 0) *pos += (size_t)n;
}

/* A YAML double-quoted scalar: backslash, quote and non-printable characters escaped. */
static void put_quoted(char *buf, size_t len, size_t *pos, const char *s)
{
    put(buf, len, pos, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(buf, len, pos, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            put(buf, len, pos, "\\x%02x", *p);
        else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            /* C1 controls (U+0080..U+009F) are not printable in YAML either */
            put(buf, len, pos, "\\u%04x", p[1]);
            p++;
        } else
            put(buf, len, pos, "%c", *p);
    }
    put(buf, len, pos, "\"");
}

static const void *cfield(const vn_config *cfg, const vn_config_key *k)
{
    return (const char *)cfg + k->offset;
}

static void *field(vn_config *cfg, const vn_config_key *k)
{
    return (char *)cfg + k->offset;
}

int vn__config_format(const vn_config *cfg, const vn_config_key *k, char *buf, size_t len)
{
    size_t pos = 0;
    char num[64];
    const void *f = cfield(cfg, k);
    if (len) buf[0] = '\0';
    switch (k->type) {
    case VN_CONFIG_BOOL: put(buf, len, &pos, "%s", *(const bool *)f ? "true" : "false"); break;
    case VN_CONFIG_INT: put(buf, len, &pos, "%" PRId64, *(const int64_t *)f); break;
    case VN_CONFIG_FLOAT:
        format_double(*(const double *)f, num, sizeof num);
        put(buf, len, &pos, "%s", num);
        break;
    case VN_CONFIG_STRING: put_quoted(buf, len, &pos, (const char *)f); break;
    case VN_CONFIG_ENUM: {
        int e = *(const int *)f;
        const char *name = NULL;
        for (int i = 0; k->choices[i]; i++)
            if (i == e) name = k->choices[i];
        put(buf, len, &pos, "%s", name ? name : "?");
        break;
    }
    case VN_CONFIG_INT_LIST: {
        const vn_config_ints *l = f;
        put(buf, len, &pos, "[");
        for (int i = 0; i < l->n; i++) put(buf, len, &pos, "%s%" PRId64, i ? ", " : "", l->v[i]);
        put(buf, len, &pos, "]");
        break;
    }
    case VN_CONFIG_FLOAT_LIST: {
        const vn_config_floats *l = f;
        put(buf, len, &pos, "[");
        for (int i = 0; i < l->n; i++) {
            format_double(l->v[i], num, sizeof num);
            put(buf, len, &pos, "%s%s", i ? ", " : "", num);
        }
        put(buf, len, &pos, "]");
        break;
    }
    }
    return (int)pos;
}

int vn_config_get(const vn_config *cfg, const char *key, char *buf, size_t len)
{
    const vn_config_key *k = vn_config_find(key, NULL);
    if (!k) return -1;
    return vn__config_format(cfg, k, buf, len);
}

static void format_bound(const vn_config_key *k, double v, char *buf, size_t len)
{
    bool ints = k->type == VN_CONFIG_INT || k->type == VN_CONFIG_INT_LIST;
    if (isinf(v))
        snprintf(buf, len, "%sinf", v < 0 ? "-" : "");
    else if (ints)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%g", v);
}

static void format_range(const vn_config_key *k, char *buf, size_t len)
{
    char lo[32], hi[32];
    format_bound(k, k->min, lo, sizeof lo);
    format_bound(k, k->max, hi, sizeof hi);
    bool lo_open = (k->flags & VN_CONFIG_MIN_OPEN) || isinf(k->min);
    bool hi_open = (k->flags & VN_CONFIG_MAX_OPEN) || isinf(k->max);
    snprintf(buf, len, "%c%s, %s%c", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
}

void vn__config_describe(const vn_config_key *k, char *buf, size_t len)
{
    size_t pos = 0;
    char range[80] = "";
    if (len) buf[0] = '\0';
    if (k->has_range) format_range(k, range, sizeof range);
    switch (k->type) {
    case VN_CONFIG_BOOL: put(buf, len, &pos, "true or false"); break;
    case VN_CONFIG_INT:
    case VN_CONFIG_FLOAT:
        put(buf, len, &pos, "%s", k->type == VN_CONFIG_INT ? "integer" : "number");
        if (k->has_range) put(buf, len, &pos, " in %s", range);
        break;
    case VN_CONFIG_STRING: put(buf, len, &pos, "%s", (k->flags & VN_CONFIG_NONEMPTY) ?
                                                        "non-empty string" : "string"); break;
    case VN_CONFIG_ENUM:
        put(buf, len, &pos, "one of: ");
        for (int i = 0; k->choices[i]; i++) put(buf, len, &pos, "%s%s", i ? ", " : "", k->choices[i]);
        break;
    case VN_CONFIG_INT_LIST:
    case VN_CONFIG_FLOAT_LIST: {
        const char *what = k->type == VN_CONFIG_INT_LIST ? "integers" : "numbers";
        if (k->min_len == k->max_len)
            put(buf, len, &pos, "%d %s", k->min_len, what);
        else
            put(buf, len, &pos, "%d to %d %s", k->min_len, k->max_len, what);
        if (k->has_range) put(buf, len, &pos, " in %s", range);
        break;
    }
    }
}

const char *vn_config_origin_str(const vn_config *cfg, size_t index, char *buf, size_t len)
{
    if (index >= VN_CONFIG_MAX_KEYS) {
        snprintf(buf, len, "?");
        return buf;
    }
    const vn_config_origin *o = &cfg->origin[index];
    if (o->source == VN_CONFIG_FROM_SET)
        snprintf(buf, len, "--set");
    else if (o->source >= 0 && o->source < cfg->n_files)
        snprintf(buf, len, "%s:%d:%d", cfg->files[o->source], (int)o->line, (int)o->column);
    else
        snprintf(buf, len, "default");
    return buf;
}

/* ---- converting user text --------------------------------------------------------------- */

/* The user's text for a message: quoted, escaped, shortened. */
static void show(const vn__cfg_scalar *s, char *buf, size_t len)
{
    size_t pos = 0;
    put(buf, len, &pos, "\"");
    for (size_t i = 0; i < s->len && i < 48; i++) {
        unsigned char c = (unsigned char)s->text[i];
        if (c == '"' || c == '\\') put(buf, len, &pos, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) put(buf, len, &pos, "\\x%02x", c);
        else put(buf, len, &pos, "%c", c);
    }
    put(buf, len, &pos, s->len > 48 ? "...\"" : "\"");
}

static bool is_null(const vn__cfg_scalar *s)
{
    if (!s->plain) return false;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if (s->len == strlen(nulls[i]) && strncmp(s->text, nulls[i], s->len) == 0) return true;
    return false;
}

/* Copies a number-like scalar without surrounding blanks into buf; false if it will not fit
 * or holds a NUL. */
static bool trimmed(const vn__cfg_scalar *s, char *buf, size_t len)
{
    const char *p = s->text, *e = s->text + s->len;
    while (p < e && (*p == ' ' || *p == '\t')) p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if ((size_t)(e - p) >= len || memchr(p, '\0', (size_t)(e - p))) return false;
    memcpy(buf, p, (size_t)(e - p));
    buf[e - p] = '\0';
    return true;
}

static bool looks_nonfinite(const char *t)
{
    if (*t == '+' || *t == '-') t++;
    if (*t == '.') t++;
    return strcasecmp(t, "inf") == 0 || strcasecmp(t, "infinity") == 0 ||
           strcasecmp(t, "nan") == 0;
}

/* Decimal only: no hex, no inf/nan words, at least one digit. */
static bool parse_double(const char *t, double *out)
{
    bool digit = false;
    for (const char *p = t; *p; p++) {
        if (isdigit((unsigned char)*p)) digit = true;
        else if (!strchr("+-.eE", *p)) return false;
    }
    if (!digit) return false;
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    if (*end != '\0' || end == t) return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *t, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(t, yes[i]) == 0) return *out = true, true;
        if (strcasecmp(t, no[i]) == 0) return *out = false, true;
    }
    return false;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t extra;
        unsigned min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xe0) == 0xc0) { extra = 1; min = 0x80; c &= 0x1f; }
        else if ((c & 0xf0) == 0xe0) { extra = 2; min = 0x800; c &= 0x0f; }
        else if ((c & 0xf8) == 0xf0) { extra = 3; min = 0x10000; c &= 0x07; }
        else return false;
        if (n - i <= extra) return false; /* truncated sequence */
        for (size_t j = 1; j <= extra; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return false;
            c = (c << 6) | (s[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
        i += extra + 1;
    }
    return true;
}

typedef enum { ELEM_BOOL, ELEM_INT, ELEM_FLOAT, ELEM_ENUM } elem_kind;

typedef union elem {
    bool b;
    int64_t i;
    double d;
    int e;
} elem;

/* Writes "is out of range ..." into why when v is outside the key's range. */
static bool in_range(const vn_config_key *k, double v, const char *text, char *why, size_t n)
{
    if (!k->has_range) return true;
    bool ok = (k->flags & VN_CONFIG_MIN_OPEN) ? v > k->min : v >= k->min;
    ok = ok && ((k->flags & VN_CONFIG_MAX_OPEN) ? v < k->max : v <= k->max);
    if (!ok) {
        char range[80];
        format_range(k, range, sizeof range);
        snprintf(why, n, "%s is out of range %s", text, range);
    }
    return ok;
}

static bool parse_elem(const vn_config_key *k, elem_kind kind, const vn__cfg_scalar *s, elem *out,
                       char *why, size_t n)
{
    char t[96], shown[128];
    show(s, shown, sizeof shown);
    const char *what = kind == ELEM_BOOL ? "true or false" :
                       kind == ELEM_INT ? "an integer" :
                       kind == ELEM_FLOAT ? "a number" : "a name";
    if (is_null(s)) {
        snprintf(why, n, "expected %s, got %s", what, s->len ? shown : "nothing");
        return false;
    }
    if (!trimmed(s, t, sizeof t)) {
        snprintf(why, n, "expected %s, got %s", what, shown);
        return false;
    }
    switch (kind) {
    case ELEM_BOOL:
        if (!parse_bool(t, &out->b)) {
            snprintf(why, n, "expected true or false (or yes/no, on/off), got %s", shown);
            return false;
        }
        return true;
    case ELEM_INT: {
        const char *p = t + (*t == '+' || *t == '-');
        bool digits = *p != '\0';
        for (; *p; p++) digits = digits && isdigit((unsigned char)*p);
        double d;
        if (digits) {
            errno = 0;
            long long v = strtoll(t, NULL, 10);
            if (errno == ERANGE) {
                snprintf(why, n, "%s is too large for an integer", t);
                return false;
            }
            out->i = v;
        } else if (parse_double(t, &d) && isfinite(d) && d == floor(d) && fabs(d) < 9.2e18) {
            out->i = (int64_t)d; /* 1e6 or 300.0 */
        } else {
            snprintf(why, n, "expected an integer, got %s", shown);
            return false;
        }
        return in_range(k, (double)out->i, t, why, n);
    }
    case ELEM_FLOAT: {
        if (looks_nonfinite(t)) {
            snprintf(why, n, "expected a finite number, got %s", shown);
            return false;
        }
        if (!parse_double(t, &out->d)) {
            snprintf(why, n, "expected a number, got %s", shown);
            return false;
        }
        if (!isfinite(out->d)) {
            snprintf(why, n, "%s is too large", t);
            return false;
        }
        return in_range(k, out->d, t, why, n);
    }
    case ELEM_ENUM: {
        for (int i = 0; k->choices[i]; i++) {
            if (strcasecmp(t, k->choices[i]) == 0) {
                out->e = i;
                return true;
            }
        }
        char choices[512];
        size_t pos = 0;
        for (int i = 0; k->choices[i]; i++)
            put(choices, sizeof choices, &pos, "%s%s", i ? ", " : "", k->choices[i]);
        const char *sug = suggest_choice(k, t);
        if (sug)
            snprintf(why, n, "%s is not one of: %s (did you mean '%s'?)", shown, choices, sug);
        else
            snprintf(why, n, "%s is not one of: %s", shown, choices);
        return false;
    }
    }
    return false;
}

static void where_text(const vn__cfg_where *w, const vn__cfg_scalar *s, char *buf, size_t len)
{
    if (w->set)
        snprintf(buf, len, "--set %.160s%s", w->set, strlen(w->set) > 160 ? "..." : "");
    else if (w->file && s->line > 0)
        snprintf(buf, len, "%s:%d:%d", w->file, s->line, s->col);
    else if (w->file)
        snprintf(buf, len, "%s", w->file);
    else
        snprintf(buf, len, "schema default");
}

static int fail(const vn__cfg_where *w, const vn__cfg_scalar *s, const vn_config_key *k, long item,
                const char *why, vn_error *err)
{
    char where[VN_CONFIG_STR_MAX + 64];
    where_text(w, s, where, sizeof where);
    if (item >= 0)
        return vn_error_set(err, VN_ERR_INVALID, "%s: %s[%ld]: %s", where, k->full, item, why);
    return vn_error_set(err, VN_ERR_INVALID, "%s: %s: %s", where, k->full, why);
}

/* A list key: a list (or null, the empty list) of the allowed length, each item in range. */
static int assign_list(vn_config *cfg, const vn_config_key *k, const vn__cfg_value *v,
                       const vn__cfg_where *w, vn_error *err)
{
    const vn__cfg_scalar *s = &v->scalar;
    char why[700], shown[128];
    const char *what = k->type == VN_CONFIG_INT_LIST ? "integers" : "numbers";
    size_t n_items = v->is_list ? v->n_items : 0;
    if (!v->is_list && !is_null(s)) {
        show(s, shown, sizeof shown);
        snprintf(why, sizeof why, "expected a list of %s like [%s], got the single value %s",
                 what, k->type == VN_CONFIG_INT_LIST ? "1, 2" : "0.5, 1.0", shown);
        return fail(w, s, k, -1, why, err);
    }
    if (n_items < (size_t)k->min_len || n_items > (size_t)k->max_len) {
        if (k->min_len == k->max_len)
            snprintf(why, sizeof why, "expected %d %s, got %zu", k->min_len, what, n_items);
        else
            snprintf(why, sizeof why, "expected %d to %d %s, got %zu", k->min_len,
                     k->max_len, what, n_items);
        return fail(w, s, k, -1, why, err);
    }
    elem_kind kind = k->type == VN_CONFIG_INT_LIST ? ELEM_INT : ELEM_FLOAT;
    elem vals[VN_CONFIG_LIST_MAX];
    for (size_t i = 0; i < n_items; i++)
        if (!parse_elem(k, kind, &v->items[i], &vals[i], why, sizeof why))
            return fail(w, &v->items[i], k, (long)i, why, err);
    if (k->type == VN_CONFIG_INT_LIST) {
        vn_config_ints *l = field(cfg, k);
        l->n = (int)n_items;
        for (size_t i = 0; i < n_items; i++) l->v[i] = vals[i].i;
    } else {
        vn_config_floats *l = field(cfg, k);
        l->n = (int)n_items;
        for (size_t i = 0; i < n_items; i++) l->v[i] = vals[i].d;
    }
    return VN_OK;
}

/* A string key: no NUL, valid UTF-8, within the field's size, not empty where required. */
static int assign_string(vn_config *cfg, const vn_config_key *k, const vn__cfg_scalar *s,
                         const vn__cfg_where *w, vn_error *err)
{
    char why[700];
    size_t len = is_null(s) ? 0 : s->len;
    if (memchr(s->text, '\0', len)) return fail(w, s, k, -1, "contains a NUL character", err);
    if (!valid_utf8((const unsigned char *)s->text, len))
        return fail(w, s, k, -1, "is not valid UTF-8", err);
    if (len >= k->size) {
        snprintf(why, sizeof why, "is %zu bytes long, more than the %zu allowed", len,
                 k->size - 1);
        return fail(w, s, k, -1, why, err);
    }
    if (len == 0 && (k->flags & VN_CONFIG_NONEMPTY))
        return fail(w, s, k, -1, "must not be empty", err);
    char *dst = field(cfg, k);
    memcpy(dst, s->text, len);
    dst[len] = '\0';
    return VN_OK;
}

/* A bool, integer, float or enum key: one value, parsed and range-checked. */
static int assign_scalar(vn_config *cfg, const vn_config_key *k, const vn__cfg_scalar *s,
                         const vn__cfg_where *w, vn_error *err)
{
    char why[700];
    elem_kind kind = k->type == VN_CONFIG_BOOL ? ELEM_BOOL :
                     k->type == VN_CONFIG_INT ? ELEM_INT :
                     k->type == VN_CONFIG_FLOAT ? ELEM_FLOAT : ELEM_ENUM;
    elem e;
    if (!parse_elem(k, kind, s, &e, why, sizeof why)) return fail(w, s, k, -1, why, err);
    void *f = field(cfg, k);
    switch (kind) {
    case ELEM_BOOL: *(bool *)f = e.b; break;
    case ELEM_INT: *(int64_t *)f = e.i; break;
    case ELEM_FLOAT: *(double *)f = e.d; break;
    case ELEM_ENUM: *(int *)f = e.e; break;
    }
    return VN_OK;
}

int vn__config_assign(vn_config *cfg, size_t index, const vn__cfg_value *v,
                      const vn__cfg_where *w, vn_error *err)
{
    size_t n_keys;
    const vn_config_key *k = &vn_config_schema(&n_keys)[index];
    const vn__cfg_scalar *s = &v->scalar;
    int rc;
    if (k->type == VN_CONFIG_INT_LIST || k->type == VN_CONFIG_FLOAT_LIST) {
        rc = assign_list(cfg, k, v, w, err);
    } else if (v->is_list) {
        char desc[512], why[700];
        vn__config_describe(k, desc, sizeof desc);
        snprintf(why, sizeof why, "expected one value (%s), got a list", desc);
        rc = fail(w, s, k, -1, why, err);
    } else if (k->type == VN_CONFIG_STRING) {
        rc = assign_string(cfg, k, s, w, err);
    } else {
        rc = assign_scalar(cfg, k, s, w, err);
    }
    if (rc != VN_OK) return rc;
    cfg->origin[index].source = w->source;
    cfg->origin[index].line = s->line;
    cfg->origin[index].column = s->col;
    return VN_OK;
}

/* ---- defaults ------------------------------------------------------------------------- */

/* A value written in YAML flow style on one line ("[1, 2]", "\"x\"", "3"), as defaults and
 * --set values are: lists split on commas (no nesting, no quoted commas: lists hold numbers),
 * a quoted scalar unquoted (no escapes are needed for what we write there). */
static int assign_text(vn_config *cfg, size_t index, const char *text, const vn__cfg_where *w,
                       vn_error *err)
{
    const vn_config_key *k = &vn_config_schema(NULL)[index];
    bool list = k->type == VN_CONFIG_INT_LIST || k->type == VN_CONFIG_FLOAT_LIST;
    size_t len = strlen(text);
    vn__cfg_value v = {0};
    vn__cfg_scalar items[VN_CONFIG_LIST_MAX + 1];
    v.scalar = (vn__cfg_scalar){text, len, true, 0, 0};
    if (len >= 2 && (text[0] == '"' || text[0] == '\'') && text[len - 1] == text[0]) {
        v.scalar = (vn__cfg_scalar){text + 1, len - 2, false, 0, 0};
    } else if (list) {
        const char *p = text, *e = text + len;
        while (p < e && (*p == ' ' || *p == '\t')) p++;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) e--;
        bool bracketed = e - p >= 2 && *p == '[' && e[-1] == ']';
        if (bracketed) p++, e--;
        v.is_list = true;
        size_t n = 0;
        while (p < e && (*p == ' ' || *p == '\t')) p++;
        if (p < e) {
            for (;;) {
                const char *c = memchr(p, ',', (size_t)(e - p));
                const char *end = c ? c : e;
                if (n <= VN_CONFIG_LIST_MAX) items[n] = (vn__cfg_scalar){p, (size_t)(end - p), true, 0, 0};
                n++;
                if (!c) break;
                p = c + 1;
            }
        }
        if (n > VN_CONFIG_LIST_MAX) {
            char why[160];
            snprintf(why, sizeof why, "expected at most %d values, got %zu", k->max_len, n);
            return fail(w, &v.scalar, k, -1, why, err);
        }
        v.items = items;
        v.n_items = n;
    }
    return vn__config_assign(cfg, index, &v, w, err);
}

void vn_config_init(vn_config *cfg)
{
    size_t n;
    const vn_config_key *s = vn_config_schema(&n);
    memset(cfg, 0, sizeof *cfg);
    VN_ASSERT(n <= VN_CONFIG_MAX_KEYS, "raise VN_CONFIG_MAX_KEYS to at least %zu", n);
    for (size_t i = 0; i < n; i++) {
        const vn_config_key *k = &s[i];
        bool list = k->type == VN_CONFIG_INT_LIST || k->type == VN_CONFIG_FLOAT_LIST;
        VN_ASSERT(k->def && k->help, "schema row %s needs a default and a help", k->full);
        VN_ASSERT(!list || (k->min_len >= 0 && k->min_len <= k->max_len &&
                            k->max_len <= VN_CONFIG_LIST_MAX),
                  "schema row %s: list lengths must satisfy 0 <= min_len <= max_len <= %d",
                  k->full, VN_CONFIG_LIST_MAX);
        VN_ASSERT(k->type != VN_CONFIG_ENUM || k->choices, "schema row %s needs choices",
                  k->full);
        VN_ASSERT(k->type != VN_CONFIG_STRING || k->size == VN_CONFIG_STR_MAX,
                  "schema row %s: strings are char[VN_CONFIG_STR_MAX]", k->full);
        for (size_t j = 0; j < i; j++)
            VN_ASSERT(strcmp(s[j].full, k->full) != 0, "schema key %s appears twice", k->full);
        vn__cfg_where w = {.source = VN_CONFIG_FROM_DEFAULT};
        vn_error err;
        int rc = assign_text(cfg, i, k->def, &w, &err);
        VN_ASSERT(rc == VN_OK, "bad default in the schema: %s", err.msg);
        cfg->origin[i] = (vn_config_origin){VN_CONFIG_FROM_DEFAULT, 0, 0};
    }
}

/* ---- --set ---------------------------------------------------------------------------- */

/* Messages show at most 160 bytes of an assignment, so that the reason always fits. */
#define CLIP_MORE(s) (strlen(s) > 160 ? "..." : "")

int vn_config_set(vn_config *cfg, const char *assignment, vn_error *err)
{
    if (!assignment) return vn_error_set(err, VN_ERR_INVALID, "--set: missing section.key=value");
    const char *eq = strchr(assignment, '=');
    if (!eq)
        return vn_error_set(err, VN_ERR_INVALID,
                            "--set %.160s%s: expected section.key=value (like optim.lr=0.001)",
                            assignment, CLIP_MORE(assignment));
    char key[160];
    const char *kb = assignment, *ke = eq;
    while (kb < ke && isspace((unsigned char)*kb)) kb++;
    while (ke > kb && isspace((unsigned char)ke[-1])) ke--;
    if ((size_t)(ke - kb) >= sizeof key)
        return vn_error_set(err, VN_ERR_INVALID, "--set %.160s%s: unknown key (too long)", assignment,
                            CLIP_MORE(assignment));
    memcpy(key, kb, (size_t)(ke - kb));
    key[ke - kb] = '\0';
    size_t index;
    if (!vn_config_find(key, &index)) {
        char section[160];
        const char *dot = strchr(key, '.');
        snprintf(section, sizeof section, "%.*s", dot ? (int)(dot - key) : 0, key);
        const char *sug = vn__config_suggest_key(section, dot ? dot + 1 : key);
        if (sug)
            return vn_error_set(err, VN_ERR_INVALID, "--set %.160s%s: unknown key '%s' (did you mean '%s'?)",
                                assignment, CLIP_MORE(assignment), key, sug);
        return vn_error_set(err, VN_ERR_INVALID, "--set %.160s%s: unknown key '%s'%s", assignment,
                            CLIP_MORE(assignment), key,
                            dot ? "" : " (keys are written section.key)");
    }
    vn_config_key const *k = &vn_config_schema(NULL)[index];
    const char *value = eq + 1;
    if (k->type == VN_CONFIG_STRING) {
        /* Taken literally, so paths need no quoting; only matching quotes around it go. */
        size_t len = strlen(value);
        vn__cfg_value v = {.scalar = {value, len, true, 0, 0}};
        if (len >= 2 && (value[0] == '"' || value[0] == '\'') && value[len - 1] == value[0])
            v.scalar = (vn__cfg_scalar){value + 1, len - 2, false, 0, 0};
        vn__cfg_where w = {.set = assignment, .source = VN_CONFIG_FROM_SET};
        return vn__config_assign(cfg, index, &v, &w, err);
    }
    vn__cfg_where w = {.set = assignment, .source = VN_CONFIG_FROM_SET};
    return assign_text(cfg, index, value, &w, err);
}

/* ---- rules across keys ----------------------------------------------------------------- */

/* "file:line:col: " (or "--set: ") of the key the user most likely has to change: the first
 * one unless only the second was set explicitly. */
static const char *blame(const vn_config *cfg, const char *a, const char *b, char *buf, size_t len)
{
    size_t ia = 0, ib = 0;
    vn_config_find(a, &ia);
    size_t pick = ia;
    if (b && vn_config_find(b, &ib) && cfg->origin[ia].source == VN_CONFIG_FROM_DEFAULT &&
        cfg->origin[ib].source != VN_CONFIG_FROM_DEFAULT)
        pick = ib;
    if (cfg->origin[pick].source == VN_CONFIG_FROM_DEFAULT) {
        if (len) buf[0] = '\0';
        return buf;
    }
    char o[VN_CONFIG_STR_MAX + 64];
    vn_config_origin_str(cfg, pick, o, sizeof o);
    snprintf(buf, len, "%s: ", o);
    return buf;
}

#define CHECK_FAIL(a, b, ...)                                                      \
    do {                                                                           \
        char at_[VN_CONFIG_STR_MAX + 80], msg_[600];                               \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                  \
        return vn_error_set(err, VN_ERR_INVALID, "%s%s", blame(cfg, a, b, at_, sizeof at_), \
                            msg_);                                                 \
    } while (0)

int vn_config_check(const vn_config *cfg, vn_error *err)
{
    const vn_config_model *m = &cfg->model;
    const vn_config_data *d = &cfg->data;
    if (m->name == VN_CONFIG_MODEL_CUSTOM && (m->dims.n == 0 || m->strides.n == 0))
        CHECK_FAIL("model.name", NULL,
                   "model.name: custom needs model.dims and model.strides (len(dims) = "
                   "len(strides) + 1)");
    if (m->dims.n > 0 && m->strides.n > 0 && m->dims.n != m->strides.n + 1)
        CHECK_FAIL("model.dims", "model.strides",
                   "model.dims has %d values but model.strides has %d: dims needs one more "
                   "(the stem's) than strides", m->dims.n, m->strides.n);
    if (m->ada_pool.n > 0 && m->strides.n > 0 && m->ada_pool.n != m->strides.n)
        CHECK_FAIL("model.ada_pool", "model.strides",
                   "model.ada_pool has %d values but model.strides has %d: one per stage",
                   m->ada_pool.n, m->strides.n);
    int channels = d->grayscale ? 1 : 3;
    if (m->in_chans != channels)
        CHECK_FAIL("model.in_chans", "data.grayscale",
                   "model.in_chans is %" PRId64 " but data.grayscale: %s gives %d-channel "
                   "images; set model.in_chans: %d", m->in_chans,
                   d->grayscale ? "true" : "false", channels, channels);
    if (d->mean.n != channels)
        CHECK_FAIL("data.mean", "data.grayscale",
                   "data.mean has %d values for %d-channel images (data.grayscale: %s)",
                   d->mean.n, channels, d->grayscale ? "true" : "false");
    if (d->std.n != channels)
        CHECK_FAIL("data.std", "data.grayscale",
                   "data.std has %d values for %d-channel images (data.grayscale: %s)",
                   d->std.n, channels, d->grayscale ? "true" : "false");
    if (d->scale.v[0] > d->scale.v[1])
        CHECK_FAIL("data.scale", NULL, "data.scale: the lower bound %g exceeds the upper %g",
                   d->scale.v[0], d->scale.v[1]);
    if (d->ratio.v[0] > d->ratio.v[1])
        CHECK_FAIL("data.ratio", NULL, "data.ratio: the lower bound %g exceeds the upper %g",
                   d->ratio.v[0], d->ratio.v[1]);
    if (d->auto_augment[0]) {
        vn_randaug ra;
        vn_error e2 = {0};
        const float mean[3] = {0.5f, 0.5f, 0.5f}; /* the fill does not matter here */
        if (vn_randaug_parse(d->auto_augment, (int)d->input_size, channels, mean,
                             VN_INTERP_BICUBIC, &ra, &e2))
            CHECK_FAIL("data.auto_augment", NULL, "%s", e2.msg);
    }
    bool mixing = (d->mixup > 0 || d->cutmix > 0) && d->mixup_prob > 0;
    if (mixing && cfg->train.batch_size % 2 != 0)
        CHECK_FAIL("train.batch_size", "data.mixup",
                   "train.batch_size %" PRId64 " is odd, but mixup/cutmix pair each sample with "
                   "another of its batch: use an even batch or set data.mixup: 0 and "
                   "data.cutmix: 0", cfg->train.batch_size);
    if (cfg->optim.weight_decay_end < 0 && cfg->optim.weight_decay_end != -1)
        CHECK_FAIL("optim.weight_decay_end", NULL,
                   "optim.weight_decay_end must be >= 0, or -1 for a constant weight decay");
    if (m->task == VN_CONFIG_TASK_DETECT && cfg->detect.imgsz % 32 != 0)
        CHECK_FAIL("detect.imgsz", NULL,
                   "detect.imgsz %" PRId64 " is not a multiple of 32 (the detector's largest "
                   "stride)", cfg->detect.imgsz);
    if (cfg->optim.warmup_epochs > cfg->train.epochs)
        CHECK_FAIL("optim.warmup_epochs", "train.epochs",
                   "optim.warmup_epochs (%" PRId64 ") is longer than train.epochs (%" PRId64 ")",
                   cfg->optim.warmup_epochs, cfg->train.epochs);
    return VN_OK;
}

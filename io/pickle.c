/* A restricted unpickler for torch.save's data.pkl (see pickle_impl.h). Opcodes follow the
 * pickle protocol as CPython's Lib/pickle.py defines it (protocols 2 to 5); only the subset
 * that state_dicts and checkpoints use is accepted, every other opcode is an error naming it
 * and its offset. Every read is bounds-checked; sizes, memo indices and the stack are capped. */
#include "io/pickle_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STACK (1 << 20)
#define MAX_MEMO (1 << 22)
#define MAX_ITEMS (1 << 24)

struct vn__pk_arena {
    vn__pk_value **all;
    int64_t n, cap;
};

typedef struct unpickler {
    const uint8_t *buf;
    size_t len, pos;
    const char *label;
    size_t base; /* the pickle's offset in the file: a legacy torch.save chains several */
    bool chained; /* one of those (messages count bytes from the file's start) */
    vn__pk_arena *arena;
    vn__pk_value **stack;
    int64_t sp, scap;
    vn__pk_value **memo;
    int64_t memo_cap, memo_n;
    vn__pk_persistent_fn persistent;
    void *user;
    vn_error *err;
} unpickler;

void vn__pk_arena_free(vn__pk_arena *a)
{
    if (!a) return;
    for (int64_t i = 0; i < a->n; i++) {
        free(a->all[i]->s);
        free(a->all[i]->items);
        free(a->all[i]);
    }
    free(a->all);
    free(a);
}

static int fail(unpickler *u, const char *what)
{
    if (u->base || u->chained)
        return vn_error_set(u->err, VN_ERR_FORMAT, "%s: the pickle at byte %zu of the file: %s",
                            u->label, u->base + u->pos, what);
    return vn_error_set(u->err, VN_ERR_FORMAT, "%s: data.pkl at byte %zu: %s", u->label, u->pos, what);
}

static vn__pk_value *new_value(unpickler *u, vn__pk_kind kind)
{
    vn__pk_arena *a = u->arena;
    if (a->n == a->cap) {
        int64_t cap = a->cap ? 2 * a->cap : 256;
        if (cap > MAX_ITEMS) return NULL;
        vn__pk_value **nv = realloc(a->all, (size_t)cap * sizeof *nv);
        if (!nv) return NULL;
        a->all = nv;
        a->cap = cap;
    }
    vn__pk_value *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    a->all[a->n++] = v;
    return v;
}

static int push(unpickler *u, vn__pk_value *v)
{
    if (!v) return vn_error_set(u->err, VN_ERR_NOMEM, "%s: out of memory (or too many values) "
                                "in data.pkl", u->label);
    if (u->sp == u->scap) {
        int64_t cap = u->scap ? 2 * u->scap : 64;
        if (cap > MAX_STACK) return fail(u, "pickle stack too deep");
        vn__pk_value **ns = realloc(u->stack, (size_t)cap * sizeof *ns);
        if (!ns) return vn_error_set(u->err, VN_ERR_NOMEM, "%s: out of memory", u->label);
        u->stack = ns;
        u->scap = cap;
    }
    u->stack[u->sp++] = v;
    return VN_OK;
}

static vn__pk_value *pop(unpickler *u)
{
    if (u->sp == 0 || u->stack[u->sp - 1]->kind == VN__PK_MARK) return NULL;
    return u->stack[--u->sp];
}

static int append_item(unpickler *u, vn__pk_value *c, vn__pk_value *item)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 4;
        if (cap > MAX_ITEMS) return fail(u, "container too large");
        vn__pk_value **ni = realloc(c->items, (size_t)cap * sizeof *ni);
        if (!ni) return vn_error_set(u->err, VN_ERR_NOMEM, "%s: out of memory", u->label);
        c->items = ni;
        c->cap = cap;
    }
    c->items[c->n++] = item;
    return VN_OK;
}

/* Index of the topmost mark, or -1. */
static int64_t find_mark(const unpickler *u)
{
    for (int64_t i = u->sp - 1; i >= 0; i--)
        if (u->stack[i]->kind == VN__PK_MARK) return i;
    return -1;
}

static int need(unpickler *u, size_t n)
{
    return u->len - u->pos >= n ? VN_OK : fail(u, "truncated");
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int push_string(unpickler *u, vn__pk_kind kind, size_t n)
{
    if (need(u, n)) return u->err ? u->err->code : VN_ERR_FORMAT;
    vn__pk_value *v = new_value(u, kind);
    if (v && !(v->s = malloc(n + 1))) v = NULL;
    if (v) {
        memcpy(v->s, u->buf + u->pos, n);
        v->s[n] = 0;
        v->len = n;
    }
    u->pos += n;
    return push(u, v);
}

static int push_int(unpickler *u, vn__pk_kind kind, int64_t i)
{
    vn__pk_value *v = new_value(u, kind);
    if (v) v->i = i;
    return push(u, v);
}

static const struct {
    const char *module, *name;
    vn__pk_global g;
    vn_dtype dtype;
} allowed[] = {
    {"collections", "OrderedDict", VN__G_ORDERED_DICT, VN_DTYPE_F32},
    {"torch._utils", "_rebuild_tensor_v2", VN__G_REBUILD_TENSOR, VN_DTYPE_F32},
    {"torch._utils", "_rebuild_parameter", VN__G_REBUILD_PARAMETER, VN_DTYPE_F32},
    {"argparse", "Namespace", VN__G_NAMESPACE, VN_DTYPE_F32},
    {"torch", "FloatStorage", VN__G_STORAGE_TYPE, VN_DTYPE_F32},
    {"torch", "HalfStorage", VN__G_STORAGE_TYPE, VN_DTYPE_F16},
    {"torch", "BFloat16Storage", VN__G_STORAGE_TYPE, VN_DTYPE_BF16},
    {"torch", "DoubleStorage", VN__G_STORAGE_TYPE, VN_DTYPE_F64},
    {"torch", "LongStorage", VN__G_STORAGE_TYPE, VN_DTYPE_I64},
    {"torch", "IntStorage", VN__G_STORAGE_TYPE, VN_DTYPE_I32},
    {"torch", "ShortStorage", VN__G_STORAGE_TYPE, VN_DTYPE_I16},
    {"torch", "CharStorage", VN__G_STORAGE_TYPE, VN_DTYPE_I8},
    {"torch", "ByteStorage", VN__G_STORAGE_TYPE, VN_DTYPE_U8},
    {"torch", "BoolStorage", VN__G_STORAGE_TYPE, VN_DTYPE_BOOL},
};

static int push_global(unpickler *u, const char *module, size_t mlen, const char *name, size_t nlen)
{
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) {
        if (strlen(allowed[i].module) != mlen || memcmp(allowed[i].module, module, mlen) != 0 ||
            strlen(allowed[i].name) != nlen || memcmp(allowed[i].name, name, nlen) != 0)
            continue;
        vn__pk_value *v = new_value(u, VN__PK_GLOBAL);
        if (v) v->global = allowed[i].g, v->dtype = allowed[i].dtype;
        return push(u, v);
    }
    char what[256];
    snprintf(what, sizeof what, "the pickle names the global '%.*s.%.*s', which a state_dict never "
             "needs; refused (vanilla never runs code from a weight file)",
             (int)(mlen > 96 ? 96 : mlen), module, (int)(nlen > 96 ? 96 : nlen), name);
    return fail(u, what);
}

static int op_global(unpickler *u)
{
    const uint8_t *p = u->buf + u->pos, *end = u->buf + u->len;
    const uint8_t *nl1 = memchr(p, '\n', (size_t)(end - p));
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (!nl2) return fail(u, "GLOBAL without two lines");
    u->pos = (size_t)(nl2 + 1 - u->buf);
    return push_global(u, (const char *)p, (size_t)(nl1 - p), (const char *)nl1 + 1, (size_t)(nl2 - nl1 - 1));
}

static int op_stack_global(unpickler *u)
{
    vn__pk_value *name = pop(u), *module = pop(u);
    if (!name || !module || name->kind != VN__PK_STR || module->kind != VN__PK_STR)
        return fail(u, "STACK_GLOBAL needs two strings");
    return push_global(u, module->s, module->len, name->s, name->len);
}

static int memo_put(unpickler *u, uint64_t idx)
{
    if (u->sp == 0) return fail(u, "memo store on an empty stack");
    if (idx >= MAX_MEMO) return fail(u, "memo index too large");
    if ((int64_t)idx >= u->memo_cap) {
        int64_t cap = u->memo_cap ? u->memo_cap : 64;
        while (cap <= (int64_t)idx) cap *= 2;
        vn__pk_value **nm = realloc(u->memo, (size_t)cap * sizeof *nm);
        if (!nm) return vn_error_set(u->err, VN_ERR_NOMEM, "%s: out of memory", u->label);
        memset(nm + u->memo_cap, 0, (size_t)(cap - u->memo_cap) * sizeof *nm);
        u->memo = nm;
        u->memo_cap = cap;
    }
    u->memo[idx] = u->stack[u->sp - 1];
    if ((int64_t)idx >= u->memo_n) u->memo_n = (int64_t)idx + 1;
    return VN_OK;
}

static int memo_get(unpickler *u, uint64_t idx)
{
    if ((int64_t)idx >= u->memo_cap || !u->memo[idx]) return fail(u, "memo fetch of an unset index");
    return push(u, u->memo[idx]);
}

/* TUPLE, LIST (APPENDS), SETITEMS: the items above the topmost mark. */
static int collect(unpickler *u, vn__pk_value *c, int64_t from)
{
    for (int64_t i = from; i < u->sp; i++) {
        int rc = append_item(u, c, u->stack[i]);
        if (rc != VN_OK) return rc;
    }
    return VN_OK;
}

static int op_tuple_mark(unpickler *u)
{
    int64_t m = find_mark(u);
    if (m < 0) return fail(u, "TUPLE without a mark");
    vn__pk_value *t = new_value(u, VN__PK_TUPLE);
    if (!t) return push(u, NULL);
    int rc = collect(u, t, m + 1);
    u->sp = m;
    return rc != VN_OK ? rc : push(u, t);
}

static int op_tuple_n(unpickler *u, int n)
{
    if (u->sp < n) return fail(u, "TUPLE1/2/3 on a short stack");
    for (int i = 0; i < n; i++)
        if (u->stack[u->sp - 1 - i]->kind == VN__PK_MARK) return fail(u, "TUPLE over a mark");
    vn__pk_value *t = new_value(u, VN__PK_TUPLE);
    if (!t) return push(u, NULL);
    int rc = collect(u, t, u->sp - n);
    u->sp -= n;
    return rc != VN_OK ? rc : push(u, t);
}

/* The container below the items: below the topmost mark (marked), else below the last n. */
static int items_span(unpickler *u, bool marked, int n, int64_t *ci, int64_t *first)
{
    if (marked) {
        int64_t m = find_mark(u);
        if (m < 1) return -1;
        *ci = m - 1, *first = m + 1;
    } else {
        if (u->sp < n + 1) return -1;
        *ci = u->sp - n - 1, *first = u->sp - n;
    }
    for (int64_t i = *first; i < u->sp; i++)
        if (u->stack[i]->kind == VN__PK_MARK) return -1;
    return 0;
}

static int op_appends(unpickler *u, bool marked)
{
    int64_t ci, first;
    if (items_span(u, marked, 1, &ci, &first) || u->stack[ci]->kind != VN__PK_LIST)
        return fail(u, "APPEND(S) without a list");
    int rc = collect(u, u->stack[ci], first);
    u->sp = ci + 1;
    return rc;
}

static int op_setitems(unpickler *u, bool marked)
{
    int64_t ci, first;
    if (items_span(u, marked, 2, &ci, &first) || (u->sp - first) % 2 ||
        (u->stack[ci]->kind != VN__PK_DICT && u->stack[ci]->kind != VN__PK_OBJECT))
        return fail(u, "SETITEM(S) without a dict or with an odd count");
    int rc = collect(u, u->stack[ci], first);
    u->sp = ci + 1;
    return rc;
}

static int int_of(const vn__pk_value *v, int64_t *out)
{
    if (!v || (v->kind != VN__PK_INT && v->kind != VN__PK_BOOL)) return -1;
    *out = v->i;
    return 0;
}

/* torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, meta]) */
static int rebuild_tensor(unpickler *u, const vn__pk_value *args)
{
    if (args->kind != VN__PK_TUPLE || args->n < 4) return fail(u, "_rebuild_tensor_v2 with too few arguments");
    const vn__pk_value *st = args->items[0], *size = args->items[2], *stride = args->items[3];
    vn__pk_value *t = new_value(u, VN__PK_TENSOR);
    if (!t) return push(u, NULL);
    if (st->kind != VN__PK_STORAGE || int_of(args->items[1], &t->offset) || t->offset < 0 ||
        size->kind != VN__PK_TUPLE || stride->kind != VN__PK_TUPLE || size->n != stride->n ||
        size->n > VN__PK_MAX_DIMS)
        return fail(u, "_rebuild_tensor_v2 with malformed storage, offset, size or stride");
    t->storage = (vn__pk_value *)st;
    t->ndim = size->n;
    int64_t last = t->offset, numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (int_of(size->items[d], &t->shape[d]) || int_of(stride->items[d], &t->stride[d]) ||
            t->shape[d] < 0 || t->stride[d] < 0 || t->shape[d] > (INT64_C(1) << 40) ||
            t->stride[d] > (INT64_C(1) << 40))
            return fail(u, "tensor with a negative or huge size or stride");
        /* Bounds before each product: numel <= 2^40, last <= 2^46, no overflow. */
        if (t->shape[d] == 0) numel = 0;
        else if (numel) {
            if (numel > (INT64_C(1) << 40) / t->shape[d] ||
                (t->shape[d] > 1 && t->stride[d] > ((INT64_C(1) << 46) - last) / (t->shape[d] - 1)))
                return fail(u, "tensor too large");
            numel *= t->shape[d];
            last += (t->shape[d] - 1) * t->stride[d];
        }
    }
    if (numel > 0 && last >= st->numel) {
        char what[256];
        snprintf(what, sizeof what, "a tensor's shape and strides reach element %lld of a storage "
                 "of %lld elements (storage record too short or wrong shape)",
                 (long long)last, (long long)st->numel);
        return fail(u, what);
    }
    return push(u, t);
}

static int op_reduce(unpickler *u)
{
    vn__pk_value *args = pop(u), *fn = pop(u);
    if (!args || !fn || fn->kind != VN__PK_GLOBAL || args->kind != VN__PK_TUPLE)
        return fail(u, "REDUCE needs a callable and an argument tuple");
    if (fn->global == VN__G_REBUILD_TENSOR) return rebuild_tensor(u, args);
    if (fn->global == VN__G_REBUILD_PARAMETER) {
        if (args->n < 1 || args->items[0]->kind != VN__PK_TENSOR) return fail(u, "_rebuild_parameter without a tensor");
        return push(u, args->items[0]);
    }
    if (fn->global == VN__G_ORDERED_DICT) {
        vn__pk_value *d = new_value(u, VN__PK_DICT);
        if (!d) return push(u, NULL);
        if (args->n == 1 && (args->items[0]->kind == VN__PK_LIST || args->items[0]->kind == VN__PK_TUPLE)) {
            const vn__pk_value *pairs = args->items[0];
            for (int i = 0; i < pairs->n; i++) {
                const vn__pk_value *p = pairs->items[i];
                if ((p->kind != VN__PK_TUPLE && p->kind != VN__PK_LIST) || p->n != 2)
                    return fail(u, "OrderedDict from something other than pairs");
                int rc = append_item(u, d, p->items[0]);
                if (rc == VN_OK) rc = append_item(u, d, p->items[1]);
                if (rc != VN_OK) return rc;
            }
        } else if (args->n != 0) {
            return fail(u, "OrderedDict with unexpected arguments");
        }
        return push(u, d);
    }
    return fail(u, "REDUCE calls a type that is not callable here (a storage type or Namespace)");
}

static int op_newobj(unpickler *u)
{
    vn__pk_value *args = pop(u), *cls = pop(u);
    if (!args || !cls || cls->kind != VN__PK_GLOBAL) return fail(u, "NEWOBJ needs a class and arguments");
    if (cls->global == VN__G_NAMESPACE) return push(u, new_value(u, VN__PK_OBJECT));
    if (cls->global == VN__G_ORDERED_DICT) return push(u, new_value(u, VN__PK_DICT));
    return fail(u, "NEWOBJ of a class other than argparse.Namespace or OrderedDict");
}

/* BUILD: a Namespace takes its attribute dict; OrderedDict's _metadata and tensor states
 * carry nothing a state_dict needs and are dropped. */
static int op_build(unpickler *u)
{
    vn__pk_value *state = pop(u);
    if (!state || u->sp == 0) return fail(u, "BUILD on an empty stack");
    vn__pk_value *obj = u->stack[u->sp - 1];
    if (obj->kind == VN__PK_OBJECT && state->kind == VN__PK_DICT) {
        for (int i = 0; i < state->n; i++) {
            int rc = append_item(u, obj, state->items[i]);
            if (rc != VN_OK) return rc;
        }
        return VN_OK;
    }
    if (obj->kind == VN__PK_DICT || obj->kind == VN__PK_OBJECT || obj->kind == VN__PK_TENSOR) return VN_OK;
    return fail(u, "BUILD on a value that has no state");
}

/* ('storage', storage_type, key, location, numel) */
static int op_persid(unpickler *u)
{
    vn__pk_value *pid = pop(u);
    int64_t numel = 0;
    if (!pid || pid->kind != VN__PK_TUPLE || pid->n < 5 || pid->items[0]->kind != VN__PK_STR ||
        strcmp(pid->items[0]->s, "storage") != 0 || pid->items[1]->kind != VN__PK_GLOBAL ||
        pid->items[1]->global != VN__G_STORAGE_TYPE || pid->items[2]->kind != VN__PK_STR ||
        int_of(pid->items[4], &numel) || numel < 0)
        return fail(u, "persistent id is not ('storage', <storage type>, key, location, numel)");
    vn__pk_value *st = new_value(u, VN__PK_STORAGE);
    if (!st) return push(u, NULL);
    st->dtype = pid->items[1]->dtype;
    int rc = u->persistent ? u->persistent(u->user, st->dtype, pid->items[2]->s, numel, st, u->err)
                           : fail(u, "persistent id outside a .pth archive");
    return rc != VN_OK ? rc : push(u, st);
}

static int op_long(unpickler *u, size_t n)
{
    if (n > 8) return fail(u, "integer wider than 64 bits");
    if (need(u, n)) return VN_ERR_FORMAT;
    uint64_t v = le(u->buf + u->pos, (int)n);
    if (n > 0 && n < 8 && (u->buf[u->pos + n - 1] & 0x80)) v |= ~UINT64_C(0) << (8 * n);
    u->pos += n;
    return push_int(u, VN__PK_INT, (int64_t)v);
}

static int op_float(unpickler *u)
{
    if (need(u, 8)) return VN_ERR_FORMAT;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = bits << 8 | u->buf[u->pos + i];
    u->pos += 8;
    vn__pk_value *v = new_value(u, VN__PK_FLOAT);
    if (v) memcpy(&v->f, &bits, sizeof v->f);
    return push(u, v);
}

/* Reads a little-endian length of n bytes, then a string of that length. */
static int op_sized(unpickler *u, int n, vn__pk_kind kind)
{
    if (need(u, (size_t)n)) return VN_ERR_FORMAT;
    uint64_t len = le(u->buf + u->pos, n);
    u->pos += (size_t)n;
    if (len > u->len - u->pos) return fail(u, "string longer than the data");
    return push_string(u, kind, (size_t)len);
}

static int op_memo(unpickler *u, int n)
{
    if (need(u, (size_t)n)) return VN_ERR_FORMAT;
    uint64_t idx = le(u->buf + u->pos, n);
    u->pos += (size_t)n;
    return memo_put(u, idx);
}

static int op_get(unpickler *u, int n)
{
    if (need(u, (size_t)n)) return VN_ERR_FORMAT;
    uint64_t idx = le(u->buf + u->pos, n);
    u->pos += (size_t)n;
    return memo_get(u, idx);
}

static int op_simple(unpickler *u, uint8_t op)
{
    switch (op) {
    case 'N': return push(u, new_value(u, VN__PK_NONE));
    case 0x88: return push_int(u, VN__PK_BOOL, 1);
    case 0x89: return push_int(u, VN__PK_BOOL, 0);
    case '}': return push(u, new_value(u, VN__PK_DICT));
    case ']': return push(u, new_value(u, VN__PK_LIST));
    case ')': return push(u, new_value(u, VN__PK_TUPLE));
    case '(': return push(u, new_value(u, VN__PK_MARK));
    case 't': return op_tuple_mark(u);
    case 0x85: return op_tuple_n(u, 1);
    case 0x86: return op_tuple_n(u, 2);
    case 0x87: return op_tuple_n(u, 3);
    case 'a': return op_appends(u, false);
    case 'e': return op_appends(u, true);
    case 's': return op_setitems(u, false);
    case 'u': return op_setitems(u, true);
    case 'R': return op_reduce(u);
    case 0x81: return op_newobj(u);
    case 'b': return op_build(u);
    case 'Q': return op_persid(u);
    case 'c': return op_global(u);
    case 0x93: return op_stack_global(u);
    case 0x94: return memo_put(u, (uint64_t)u->memo_n);
    default: return 1; /* not a simple opcode */
    }
}

static int op_data(unpickler *u, uint8_t op)
{
    switch (op) {
    case 'K': return need(u, 1) ? VN_ERR_FORMAT : push_int(u, VN__PK_INT, u->buf[u->pos++]);
    case 'M': {
        if (need(u, 2)) return VN_ERR_FORMAT;
        int64_t v = (int64_t)le(u->buf + u->pos, 2);
        u->pos += 2;
        return push_int(u, VN__PK_INT, v);
    }
    case 'J': {
        if (need(u, 4)) return VN_ERR_FORMAT;
        int64_t v = (int32_t)(uint32_t)le(u->buf + u->pos, 4);
        u->pos += 4;
        return push_int(u, VN__PK_INT, v);
    }
    case 0x8a: return need(u, 1) ? VN_ERR_FORMAT : op_long(u, u->buf[u->pos++]);
    case 0x8b: {
        if (need(u, 4)) return VN_ERR_FORMAT;
        uint64_t n = le(u->buf + u->pos, 4);
        u->pos += 4;
        return op_long(u, (size_t)n);
    }
    case 'G': return op_float(u);
    case 'X': return op_sized(u, 4, VN__PK_STR);
    case 0x8c: return op_sized(u, 1, VN__PK_STR);
    case 0x8d: return op_sized(u, 8, VN__PK_STR);
    case 'U': return op_sized(u, 1, VN__PK_STR);
    case 'T': return op_sized(u, 4, VN__PK_STR);
    case 'C': return op_sized(u, 1, VN__PK_BYTES);
    case 'B': return op_sized(u, 4, VN__PK_BYTES);
    case 'q': return op_memo(u, 1);
    case 'r': return op_memo(u, 4);
    case 'h': return op_get(u, 1);
    case 'j': return op_get(u, 4);
    case 0x95: return need(u, 8) ? VN_ERR_FORMAT : (u->pos += 8, VN_OK); /* FRAME: a hint */
    default: {
        char what[96];
        snprintf(what, sizeof what, "opcode 0x%02x is not one torch.save uses for state_dicts", op);
        return fail(u, what);
    }
    }
}

static int op_stack(unpickler *u, uint8_t op)
{
    if (op == '0') return pop(u) ? VN_OK : fail(u, "POP on an empty stack");
    if (op == '2') return u->sp ? push(u, u->stack[u->sp - 1]) : fail(u, "DUP on an empty stack");
    int64_t m = find_mark(u); /* '1': POP_MARK */
    if (m < 0) return fail(u, "POP_MARK without a mark");
    u->sp = m;
    return VN_OK;
}

static int run(unpickler *u, vn__pk_value **root, bool whole)
{
    if (u->len < 2 || u->buf[0] != 0x80 || u->buf[1] < 2 || u->buf[1] > 5)
        return fail(u, "not a pickle of protocol 2 to 5");
    u->pos = 2;
    while (u->pos < u->len) {
        uint8_t op = u->buf[u->pos++];
        if (op == '.') {
            if (u->sp != 1 || u->stack[0]->kind == VN__PK_MARK) return fail(u, "STOP with a stack that is not one value");
            if (whole && u->pos != u->len) return fail(u, "data after the pickle's STOP");
            *root = u->stack[0];
            return VN_OK;
        }
        int rc;
        if (op == '0' || op == '1' || op == '2') rc = op_stack(u, op);
        else if ((rc = op_simple(u, op)) == 1) rc = op_data(u, op);
        if (rc != VN_OK) return u->err && u->err->code ? u->err->code : fail(u, "bad data");
    }
    return fail(u, "truncated (no STOP)");
}

static int load(const uint8_t *buf, size_t len, const char *label, size_t base,
                vn__pk_persistent_fn fn, void *user, vn__pk_arena **arena, vn__pk_value **root,
                size_t *used, vn_error *err)
{
    vn_error local = {0};
    unpickler u = {.buf = buf, .len = len, .label = label, .base = base, .chained = used != NULL,
                   .persistent = fn, .user = user, .err = err ? err : &local};
    u.err->code = 0;
    *root = NULL;
    bool own = !*arena;
    if (own && !(*arena = calloc(1, sizeof **arena)))
        return vn_error_set(err, VN_ERR_NOMEM, "%s: out of memory", label);
    u.arena = *arena;
    int rc = run(&u, root, used == NULL);
    if (used) *used = u.pos;
    free(u.stack);
    free(u.memo);
    if (rc != VN_OK) {
        if (own) {
            vn__pk_arena_free(*arena);
            *arena = NULL;
        }
        *root = NULL;
    }
    return rc;
}

int vn__pk_load(const uint8_t *buf, size_t len, const char *label, vn__pk_persistent_fn fn,
                void *user, vn__pk_arena **arena, vn__pk_value **root, vn_error *err)
{
    *arena = NULL;
    return load(buf, len, label, 0, fn, user, arena, root, NULL, err);
}

int vn__pk_load_prefix(const uint8_t *buf, size_t len, const char *label, size_t base,
                       vn__pk_persistent_fn fn, void *user, vn__pk_arena **arena,
                       vn__pk_value **root, size_t *used, vn_error *err)
{
    return load(buf, len, label, base, fn, user, arena, root, used, err);
}

vn__pk_value *vn__pk_dict_get(const vn__pk_value *d, const char *key)
{
    if (!d || (d->kind != VN__PK_DICT && d->kind != VN__PK_OBJECT)) return NULL;
    for (int i = 0; i + 1 < d->n; i += 2)
        if (d->items[i]->kind == VN__PK_STR && strcmp(d->items[i]->s, key) == 0) return d->items[i + 1];
    return NULL;
}

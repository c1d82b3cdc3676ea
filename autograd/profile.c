/* The op profile table (vn_profile.h); dispatch.c adds to it. */
#include "autograd/ops_impl.h"
#include "autograd/vn_profile.h"
#include "base/vn_fs.h"

#include <stdlib.h>
#include <string.h>

#define N_DIRS 3
/* Rows per op: slot 0 for nodes without a variant, then up to 5 variants (the conv kinds and
 * the depthwise conv of relu(x)). */
#define N_VARIANTS 6

static bool prof_on;
static const char *var_name[VN_OP_COUNT][N_VARIANTS];
static double prof_s[VN_OP_COUNT][N_VARIANTS][N_DIRS];
static int64_t prof_n[VN_OP_COUNT][N_VARIANTS][N_DIRS];

void vn_profile_enable(bool on) { prof_on = on; }
bool vn_profile_enabled(void) { return prof_on; }

void vn_profile_reset(void)
{
    memset(prof_s, 0, sizeof prof_s);
    memset(prof_n, 0, sizeof prof_n);
    memset(var_name, 0, sizeof var_name);
}

/* The slot of (op, variant): variants are static strings, told apart by address. */
static int variant_slot(int op, const char *variant)
{
    if (!variant) return 0;
    for (int v = 1; v < N_VARIANTS; v++) {
        if (var_name[op][v] == variant) return v;
        if (!var_name[op][v]) {
            var_name[op][v] = variant;
            return v;
        }
    }
    return 0; /* more variants than slots: counted with the plain op */
}

/* Kernels can run others inside them (a backward recomputing a freed input): each row gets
 * its own time, without its nested calls', through a stack of the time nested calls took. */
#define MAX_DEPTH 64
static double nested_s[MAX_DEPTH];
static int depth;

double vn__profile_start(void)
{
    if (!prof_on) return 0.0;
    if (depth < MAX_DEPTH) nested_s[depth] = 0.0;
    depth++;
    return vn_monotonic();
}

void vn__profile_add(int op, const char *variant, int dir, double t0)
{
    if (t0 == 0.0) return; /* started while profiling was off */
    double el = vn_monotonic() - t0, inner = 0.0;
    depth--;
    if (depth < MAX_DEPTH) inner = nested_s[depth];
    if (depth > 0 && depth - 1 < MAX_DEPTH) nested_s[depth - 1] += el;
    if (!prof_on || (unsigned)op >= VN_OP_COUNT || (unsigned)dir >= N_DIRS) return;
    int v = variant_slot(op, variant);
    prof_s[op][v][dir] += el - inner;
    prof_n[op][v][dir]++;
}

void vn_profile_get(int op, vn_profile_dir dir, double *seconds, int64_t *calls)
{
    *seconds = 0.0;
    *calls = 0;
    if ((unsigned)op >= VN_OP_COUNT || (unsigned)dir >= N_DIRS) return;
    for (int v = 0; v < N_VARIANTS; v++) {
        *seconds += prof_s[op][v][dir];
        *calls += prof_n[op][v][dir];
    }
}

typedef struct row {
    int op, var, dir;
    double s;
} row;

static int by_time(const void *a, const void *b)
{
    const row *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? 1 : -1;
    if (x->op != y->op) return x->op - y->op; /* a fixed order for ties */
    return x->var != y->var ? x->var - y->var : x->dir - y->dir;
}

double vn_profile_report(FILE *fp, double wall_s)
{
    static const char *const dirs[N_DIRS] = {"forward", "backward", "recompute"};
    row rows[VN_OP_COUNT * N_VARIANTS * N_DIRS];
    int n = 0;
    double total = 0;
    for (int op = 0; op < VN_OP_COUNT; op++)
        for (int v = 0; v < N_VARIANTS; v++)
            for (int d = 0; d < N_DIRS; d++)
                if (prof_n[op][v][d] > 0) {
                    rows[n++] = (row){op, v, d, prof_s[op][v][d]};
                    total += prof_s[op][v][d];
                }
    qsort(rows, (size_t)n, sizeof *rows, by_time);
    fprintf(fp, "%-25s %-9s %9s %11s %10s %7s%s\n", "op", "direction", "calls", "total ms",
            "ms/call", "share", wall_s > 0 ? "  of wall" : "");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        int64_t c = prof_n[r->op][r->var][r->dir];
        char name[64];
        snprintf(name, sizeof name, "%s%s%s", vn_op_name((vn_op)r->op), r->var ? " " : "",
                 r->var ? var_name[r->op][r->var] : "");
        fprintf(fp, "%-25s %-9s %9lld %11.1f %10.3f %6.1f%%", name, dirs[r->dir], (long long)c, 1e3 * r->s, 1e3 * r->s / (double)c,
                total > 0 ? 100.0 * r->s / total : 0.0);
        if (wall_s > 0) fprintf(fp, "  %6.1f%%", 100.0 * r->s / wall_s);
        fputc('\n', fp);
    }
    fprintf(fp, "%-25s %-9s %9s %11.1f\n", "total", "", "", 1e3 * total);
    if (wall_s > 0)
        fprintf(fp, "ops: %.1f%% of %.2f s of wall time; the rest (%.2f s) is outside the tape: "
                "optimizer, EMA, data, bookkeeping\n", 100.0 * total / wall_s, wall_s,
                wall_s - total > 0 ? wall_s - total : 0.0);
    return total;
}

/* The op profile table (vn_profile.h); dispatch.c adds to it. */
#include "autograd/ops_impl.h"
#include "autograd/vn_profile.h"
#include "base/vn_fs.h"

#include <stdlib.h>
#include <string.h>

#define N_DIRS 3

static bool prof_on;
static double prof_s[VN_OP_COUNT][N_DIRS];
static int64_t prof_n[VN_OP_COUNT][N_DIRS];

void vn_profile_enable(bool on) { prof_on = on; }
bool vn_profile_enabled(void) { return prof_on; }

void vn_profile_reset(void)
{
    memset(prof_s, 0, sizeof prof_s);
    memset(prof_n, 0, sizeof prof_n);
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

void vn__profile_add(int op, int dir, double t0)
{
    if (t0 == 0.0) return; /* started while profiling was off */
    double el = vn_monotonic() - t0, inner = 0.0;
    depth--;
    if (depth < MAX_DEPTH) inner = nested_s[depth];
    if (depth > 0 && depth - 1 < MAX_DEPTH) nested_s[depth - 1] += el;
    if (!prof_on || (unsigned)op >= VN_OP_COUNT || (unsigned)dir >= N_DIRS) return;
    prof_s[op][dir] += el - inner;
    prof_n[op][dir]++;
}

void vn_profile_get(int op, vn_profile_dir dir, double *seconds, int64_t *calls)
{
    bool ok = (unsigned)op < VN_OP_COUNT && (unsigned)dir < N_DIRS;
    *seconds = ok ? prof_s[op][dir] : 0.0;
    *calls = ok ? prof_n[op][dir] : 0;
}

typedef struct row {
    int op, dir;
    double s;
} row;

static int by_time(const void *a, const void *b)
{
    const row *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? 1 : -1;
    return x->op != y->op ? x->op - y->op : x->dir - y->dir; /* a fixed order for ties */
}

double vn_profile_report(FILE *fp, double wall_s)
{
    static const char *const dirs[N_DIRS] = {"forward", "backward", "recompute"};
    row rows[VN_OP_COUNT * N_DIRS];
    int n = 0;
    double total = 0;
    for (int op = 0; op < VN_OP_COUNT; op++)
        for (int d = 0; d < N_DIRS; d++)
            if (prof_n[op][d] > 0) {
                rows[n++] = (row){op, d, prof_s[op][d]};
                total += prof_s[op][d];
            }
    qsort(rows, (size_t)n, sizeof *rows, by_time);
    fprintf(fp, "%-22s %-9s %9s %11s %10s %7s%s\n", "op", "direction", "calls", "total ms",
            "ms/call", "share", wall_s > 0 ? "  of wall" : "");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        int64_t c = prof_n[r->op][r->dir];
        fprintf(fp, "%-22s %-9s %9lld %11.1f %10.3f %6.1f%%", vn_op_name((vn_op)r->op),
                dirs[r->dir], (long long)c, 1e3 * r->s, 1e3 * r->s / (double)c,
                total > 0 ? 100.0 * r->s / total : 0.0);
        if (wall_s > 0) fprintf(fp, "  %6.1f%%", 100.0 * r->s / wall_s);
        fputc('\n', fp);
    }
    fprintf(fp, "%-22s %-9s %9s %11.1f\n", "total", "", "", 1e3 * total);
    if (wall_s > 0)
        fprintf(fp, "ops: %.1f%% of %.2f s of wall time; the rest (%.2f s) is outside the tape: "
                "optimizer, EMA, data, bookkeeping\n", 100.0 * total / wall_s, wall_s,
                wall_s - total > 0 ? wall_s - total : 0.0);
    return total;
}

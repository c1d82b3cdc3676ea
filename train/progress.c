/* Progress bar on terminals, plain lines elsewhere (see vn_progress.h). */
#include "train/vn_progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/vn_fs.h"

#define SMOOTHING 0.3        /* weight of the newest step time in the moving average */
#define REDRAW_INTERVAL 0.1  /* seconds between terminal redraws */
#define LINE_MAX_CHARS 512

struct vn_progress {
    FILE *out;
    bool tty;
    int every, bar_width;
    double (*clock)(void *user);
    void *clock_user;

    vn_progress_line line; /* what is shown */
    double last_time;      /* clock at the previous report (or at begin_epoch) */
    int64_t last_done;
    double ema_step_s, ema_img_s; /* < 0: no measurement yet */
    int64_t shown_done;           /* done of the last line drawn or printed; -1 none */
    double last_draw;
    bool bar_open; /* a bar line is on the terminal without its newline */
    bool in_epoch;
};

char *vn_progress_format_time(char *buf, size_t cap, double seconds)
{
    if (!(seconds >= 0) || seconds > 1e12) {
        snprintf(buf, cap, "--:--");
        return buf;
    }
    long long t = (long long)(seconds + 0.5);
    long long h = t / 3600, m = (t / 60) % 60, s = t % 60;
    if (h > 0)
        snprintf(buf, cap, "%lld:%02lld:%02lld", h, m, s);
    else
        snprintf(buf, cap, "%02lld:%02lld", m, s);
    return buf;
}

/* snprintf that appends at *len and keeps counting past cap like snprintf does. */
static void appendf(char *buf, size_t cap, int *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t cap, int *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t at = (size_t)*len;
    int n = vsnprintf(at < cap ? buf + at : NULL, at < cap ? cap - at : 0, fmt, ap);
    va_end(ap);
    if (n > 0) *len += n;
}

int vn_progress_format(char *buf, size_t cap, const vn_progress_line *l, int bar_width)
{
    int len = 0;
    char t[32];
    if (cap) buf[0] = '\0';
    appendf(buf, cap, &len, "epoch %lld/%lld", (long long)l->epoch, (long long)l->n_epochs);
    if (bar_width > 0) {
        int64_t total = l->total > 0 ? l->total : 1;
        int64_t done = l->done < 0 ? 0 : (l->done > total ? total : l->done);
        int filled = (int)(done * bar_width / total);
        appendf(buf, cap, &len, " [");
        for (int i = 0; i < bar_width; i++)
            appendf(buf, cap, &len, "%c", i < filled ? '=' : (i == filled ? '>' : ' '));
        appendf(buf, cap, &len, "]");
    }
    appendf(buf, cap, &len, " %lld/%lld", (long long)l->done, (long long)l->total);
    appendf(buf, cap, &len, " loss %.4f", l->loss);
    if (l->lr >= 0) appendf(buf, cap, &len, " lr %.1e", l->lr);
    if (l->act_learn >= 0) appendf(buf, cap, &len, " act %.2f", l->act_learn);
    if (l->images_per_s > 0) appendf(buf, cap, &len, " %.0f img/s", l->images_per_s);
    appendf(buf, cap, &len, " ETA %s", vn_progress_format_time(t, sizeof t, l->eta_s));
    return len;
}

static double now(const vn_progress *p)
{
    return p->clock ? p->clock(p->clock_user) : vn_monotonic();
}

int vn_progress_create(const vn_progress_opts *opts, vn_progress **out, vn_error *err)
{
    if (!out) return vn_error_set(err, VN_ERR_INVALID, "vn_progress_create: NULL out");
    *out = NULL;
    vn_progress_opts none = {0};
    if (!opts) opts = &none;
    if (opts->mode != VN_PROGRESS_AUTO && opts->mode != VN_PROGRESS_PLAIN &&
        opts->mode != VN_PROGRESS_BAR)
        return vn_error_set(err, VN_ERR_INVALID, "progress mode %d is not AUTO, PLAIN or BAR",
                            opts->mode);
    vn_progress *p = calloc(1, sizeof *p);
    if (!p) return vn_error_set(err, VN_ERR_NOMEM, "out of memory creating the progress display");
    p->out = opts->out ? opts->out : stdout;
    p->tty = opts->mode == VN_PROGRESS_BAR ||
             (opts->mode == VN_PROGRESS_AUTO && isatty(fileno(p->out)));
    p->every = opts->every > 0 ? opts->every : 50;
    p->bar_width = opts->bar_width > 0 ? opts->bar_width : 25;
    p->clock = opts->clock;
    p->clock_user = opts->clock_user;
    p->shown_done = -1;
    *out = p;
    return VN_OK;
}

bool vn_progress_is_tty(const vn_progress *p) { return p->tty; }

/* Terminal columns, or 0 when unknown (not a terminal, or forced bar mode on a file). */
static int terminal_columns(const vn_progress *p)
{
    struct winsize ws;
    if (ioctl(fileno(p->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 0;
}

static void draw_bar(vn_progress *p)
{
    char buf[LINE_MAX_CHARS];
    int width = p->bar_width;
    int cols = terminal_columns(p);
    int len = vn_progress_format(buf, sizeof buf, &p->line, width);
    /* Writing into the last column makes some terminals wrap, which breaks the \r redraw:
     * shrink the bar first (a bar under 5 characters says nothing; the numbers matter more),
     * then cut the line. */
    if (cols > 0 && len > cols - 1) {
        width -= len - (cols - 1);
        if (width < 5) width = 0;
        len = vn_progress_format(buf, sizeof buf, &p->line, width);
        if (len > cols - 1) buf[cols - 1 < (int)sizeof buf ? cols - 1 : (int)sizeof buf - 1] = '\0';
    }
    fprintf(p->out, "\r%s\033[K", buf);
    fflush(p->out);
    p->bar_open = true;
    p->shown_done = p->line.done;
    p->last_draw = now(p);
}

static void print_line(vn_progress *p)
{
    char buf[LINE_MAX_CHARS];
    vn_progress_format(buf, sizeof buf, &p->line, 0);
    fprintf(p->out, "%s\n", buf);
    fflush(p->out);
    p->shown_done = p->line.done;
}

void vn_progress_begin_epoch(vn_progress *p, int64_t epoch, int64_t n_epochs,
                             int64_t total_steps)
{
    if (p->bar_open) vn_progress_end_epoch(p);
    memset(&p->line, 0, sizeof p->line);
    p->line.epoch = epoch;
    p->line.n_epochs = n_epochs;
    p->line.total = total_steps;
    p->line.loss = NAN;
    p->line.lr = -1;
    p->line.act_learn = -1;
    p->line.images_per_s = 0;
    p->line.eta_s = -1;
    p->last_time = now(p);
    p->last_done = 0;
    p->ema_step_s = -1;
    p->ema_img_s = -1;
    p->shown_done = -1;
    p->in_epoch = true;
}

static double smooth(double ema, double x)
{
    return ema < 0 ? x : ema + SMOOTHING * (x - ema);
}

void vn_progress_step(vn_progress *p, int64_t done, const vn_progress_stats *s)
{
    static const vn_progress_stats none = {.loss = NAN, .lr = -1, .act_learn = -1};
    if (!s) s = &none;
    double t = now(p);
    int64_t steps = done - p->last_done;
    double dt = t - p->last_time;
    if (steps > 0 && dt > 0) {
        p->ema_step_s = smooth(p->ema_step_s, dt / (double)steps);
        if (s->images > 0) p->ema_img_s = smooth(p->ema_img_s, (double)s->images / dt);
    }
    p->last_time = t;
    p->last_done = done;

    p->line.done = done;
    p->line.loss = s->loss;
    p->line.lr = s->lr;
    p->line.act_learn = s->act_learn;
    p->line.images_per_s = p->ema_img_s > 0 ? p->ema_img_s : 0;
    int64_t left = p->line.total - done;
    p->line.eta_s = p->ema_step_s < 0 ? -1 : (left > 0 ? (double)left * p->ema_step_s : 0);

    bool last = done >= p->line.total;
    if (p->tty) {
        if (last || !p->bar_open || t - p->last_draw >= REDRAW_INTERVAL) draw_bar(p);
    } else if (last || done % p->every == 0) {
        print_line(p);
    }
}

void vn_progress_end_epoch(vn_progress *p)
{
    if (!p->in_epoch) return;
    if (p->tty) {
        if (p->shown_done != p->line.done || !p->bar_open) draw_bar(p);
        fputc('\n', p->out);
        fflush(p->out);
        p->bar_open = false;
    } else if (p->shown_done != p->line.done && p->line.done > 0) {
        print_line(p);
    }
    p->in_epoch = false;
}

void vn_progress_message(vn_progress *p, const char *fmt, ...)
{
    char small[1024], *msg = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof small && (msg = malloc((size_t)n + 1))) {
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (!msg) msg = small; /* out of memory: the message is cut, not lost */
    if (p->bar_open) fputs("\r\033[K", p->out);
    size_t len = strlen(msg);
    fprintf(p->out, "%s%s", msg, len && msg[len - 1] == '\n' ? "" : "\n");
    if (msg != small) free(msg);
    if (p->bar_open)
        draw_bar(p);
    else
        fflush(p->out);
}

void vn_progress_destroy(vn_progress *p)
{
    if (!p) return;
    if (p->bar_open) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    free(p);
}

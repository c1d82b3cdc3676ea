/* The progress display: the pure line formatting, plain lines every N steps, the redrawn
 * bar (forced onto a file, and on a real pseudo-terminal), with a fake clock so smoothed
 * rates and ETAs are exact. Linked into test_metrics. */
#define _XOPEN_SOURCE 700 /* posix_openpt, grantpt, ptsname */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "train/vn_progress.h"

void add_progress_tests(Suite *s);

typedef struct fake_clock {
    double t;
} fake_clock;

static double fake_now(void *user) { return ((fake_clock *)user)->t; }

START_TEST(test_progress_format)
{
    char b[256];
    ck_assert_str_eq(vn_progress_format_time(b, sizeof b, 0), "00:00");
    ck_assert_str_eq(vn_progress_format_time(b, sizeof b, 83), "01:23");
    ck_assert_str_eq(vn_progress_format_time(b, sizeof b, 59.4), "00:59");
    ck_assert_str_eq(vn_progress_format_time(b, sizeof b, 3599.6), "1:00:00");
    ck_assert_str_eq(vn_progress_format_time(b, sizeof b, 3723), "1:02:03");
    ck_assert_str_eq(vn_progress_format_time(b, sizeof b, 100 * 3600 + 5), "100:00:05");
    ck_assert_str_eq(vn_progress_format_time(b, sizeof b, -1), "--:--");
    ck_assert_str_eq(vn_progress_format_time(b, sizeof b, NAN), "--:--");

    vn_progress_line l = {.epoch = 3, .n_epochs = 10, .done = 120, .total = 468,
                          .loss = 0.4321, .lr = 1.2e-3, .act_learn = 0.3,
                          .images_per_s = 1234.4, .eta_s = 83};
    const char *want = "epoch 3/10 [=====>              ] 120/468 loss 0.4321 lr 1.2e-03 act 0.30 "
                       "1234 img/s ETA 01:23";
    ck_assert_int_eq(vn_progress_format(b, sizeof b, &l, 20), (int)strlen(want));
    ck_assert_str_eq(b, want);
    ck_assert_int_eq(vn_progress_format(b, sizeof b, &l, 0), (int)strlen(want) - 23);
    ck_assert_str_eq(b, "epoch 3/10 120/468 loss 0.4321 lr 1.2e-03 act 0.30 1234 img/s ETA 01:23");
    /* Optional fields, the bar's ends, and a short buffer. */
    l = (vn_progress_line){.epoch = 1, .n_epochs = 1, .done = 0, .total = 8, .loss = NAN,
                           .lr = -1, .act_learn = NAN, .images_per_s = 0, .eta_s = -1};
    vn_progress_format(b, sizeof b, &l, 4);
    ck_assert_str_eq(b, "epoch 1/1 [>   ] 0/8 loss nan ETA --:--");
    l.done = 8;
    l.loss = 12.5;
    l.eta_s = 0;
    vn_progress_format(b, sizeof b, &l, 4);
    ck_assert_str_eq(b, "epoch 1/1 [====] 8/8 loss 12.5000 ETA 00:00");
    ck_assert_int_eq(vn_progress_format(b, 12, &l, 4), 43);
    ck_assert_str_eq(b, "epoch 1/1 [");
}
END_TEST

typedef struct prog_fixture {
    fake_clock clk;
    FILE *f;
    vn_progress *p;
} prog_fixture;

static char *file_text(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    char *s = malloc((size_t)n + 1);
    rewind(f);
    ck_assert_int_eq((long)fread(s, 1, (size_t)n, f), n);
    s[n] = '\0';
    return s;
}

static void step_at(prog_fixture *x, double t, int64_t done, double loss, double lr, double act,
                    int64_t images)
{
    x->clk.t = t;
    vn_progress_stats s = {.loss = loss, .lr = lr, .act_learn = act, .images = images};
    vn_progress_step(x->p, done, &s);
}

START_TEST(test_progress_plain)
{
    prog_fixture x = {.clk = {0}};
    x.f = tmpfile();
    ck_assert(x.f != NULL);
    vn_progress_opts o = {.out = x.f, .every = 3, .clock = fake_now, .clock_user = &x.clk};
    vn_error err = {0};
    ck_assert_int_eq(vn_progress_create(&o, &x.p, &err), VN_OK);
    ck_assert(!vn_progress_is_tty(x.p)); /* a file, mode AUTO */
    vn_progress_begin_epoch(x.p, 2, 5, 7);
    /* Step times 1.0, then 0.5 s: the moving average (weight 0.3) is 1.0, 0.85, 0.745,
     * 0.6715, 0.62005, 0.584035, 0.5588; img/s 64, 83.2, 96.64, ..., 117.24, 120.47. */
    double t = 0;
    for (int d = 1; d <= 7; d++) {
        t += d == 1 ? 1.0 : 0.5;
        step_at(&x, t, d, 1.0 / d, 0.00123, d < 5 ? 0.3 : -1, 64);
        if (d == 4) vn_progress_message(x.p, "saved %s", "checkpoint");
    }
    vn_progress_end_epoch(x.p); /* the last line is out already */
    /* An epoch that stops early still shows where it stopped. */
    x.clk.t = 10.0;
    vn_progress_begin_epoch(x.p, 3, 5, 7);
    step_at(&x, 10.5, 1, 2.0, -1, NAN, 64);
    vn_progress_end_epoch(x.p);
    vn_progress_destroy(x.p);
    char *out = file_text(x.f);
    ck_assert_str_eq(out, "epoch 2/5 3/7 loss 0.3333 lr 1.2e-03 act 0.30 97 img/s ETA 00:03\n"
                          "saved checkpoint\n"
                          "epoch 2/5 6/7 loss 0.1667 lr 1.2e-03 117 img/s ETA 00:01\n"
                          "epoch 2/5 7/7 loss 0.1429 lr 1.2e-03 120 img/s ETA 00:00\n"
                          "epoch 3/5 1/7 loss 2.0000 128 img/s ETA 00:03\n");
    free(out);
    fclose(x.f);
}
END_TEST

START_TEST(test_progress_bar)
{
    prog_fixture x = {.clk = {0}};
    x.f = tmpfile();
    vn_progress_opts o = {.out = x.f, .mode = VN_PROGRESS_BAR, .bar_width = 10,
                          .clock = fake_now, .clock_user = &x.clk};
    vn_error err = {0};
    ck_assert_int_eq(vn_progress_create(&o, &x.p, &err), VN_OK);
    ck_assert(vn_progress_is_tty(x.p));
    vn_progress_begin_epoch(x.p, 1, 1, 4);
    step_at(&x, 0.01, 1, 0.5, 0.1, -1, 32); /* first draw */
    step_at(&x, 0.02, 2, 0.5, 0.1, -1, 32); /* within 0.1 s of the last draw: not drawn */
    step_at(&x, 0.50, 3, 0.5, 0.1, -1, 32); /* drawn */
    vn_progress_message(x.p, "hello\n");     /* clear, print, redraw */
    step_at(&x, 0.51, 4, 0.5, 0.1, -1, 32); /* the last step is always drawn */
    vn_progress_end_epoch(x.p);
    vn_progress_destroy(x.p);
    char *out = file_text(x.f);
    const char *l1 = "epoch 1/1 [==>       ] 1/4 loss 0.5000 lr 1.0e-01 3200 img/s ETA 00:00";
    const char *l3 = "epoch 1/1 [=======>  ] 3/4 loss 0.5000 lr 1.0e-01 2260 img/s ETA 00:00";
    const char *l4 = "epoch 1/1 [==========] 4/4 loss 0.5000 lr 1.0e-01 2542 img/s ETA 00:00";
    char want[1024];
    snprintf(want, sizeof want, "\r%s\033[K\r%s\033[K\r\033[Khello\n\r%s\033[K\r%s\033[K\n", l1, l3,
             l3, l4);
    ck_assert_msg(!strcmp(out, want), "got:\n%s\nwant:\n%s", out, want);
    free(out);
    fclose(x.f);
    ck_assert_int_eq(vn_progress_create(&(vn_progress_opts){.mode = 9}, &x.p, &err),
                     VN_ERR_INVALID);
}
END_TEST

/* Reads what the progress wrote to the terminal: up to the end of one redraw. */
static void read_pty(int master, char *buf, size_t cap)
{
    size_t n = 0;
    struct pollfd pfd = {.fd = master, .events = POLLIN};
    while (n < cap - 1 && poll(&pfd, 1, 500) > 0) {
        ssize_t r = read(master, buf + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (n >= 4 && !memcmp(buf + n - 3, "\033[K", 3)) break;
    }
    buf[n] = '\0';
}

/* On a real terminal (a pseudo-terminal) AUTO mode draws the bar and fits the line into the
 * width less one column, following resizes. */
START_TEST(test_progress_pty)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        fprintf(stderr, "note: no pseudo-terminals here; pty test skipped\n");
        return;
    }
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    ck_assert(slave >= 0);
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    ck_assert(ioctl(slave, TIOCSWINSZ, &ws) == 0);
    FILE *f = fdopen(slave, "w");
    prog_fixture x = {.clk = {0}};
    vn_progress_opts o = {.out = f, .clock = fake_now, .clock_user = &x.clk};
    vn_error err = {0};
    ck_assert_int_eq(vn_progress_create(&o, &x.p, &err), VN_OK);
    ck_assert(vn_progress_is_tty(x.p));
    vn_progress_begin_epoch(x.p, 1, 1, 4);
    char buf[512];
    /* With the default 25-wide bar the line has 85 characters: the bar shrinks to 19. */
    step_at(&x, 0.01, 1, 0.5, 0.1, -1, 32);
    read_pty(master, buf, sizeof buf);
    const char *want1 = "\repoch 1/1 [====>              ] 1/4 loss 0.5000 lr 1.0e-01 3200 img/s "
                        "ETA 00:00\033[K";
    ck_assert_msg(!strcmp(buf, want1), "got %s", buf);
    ck_assert_int_eq((int)strlen(want1) - 4, 79);
    /* 40 columns: no room for a bar, and the line is cut at 39. */
    ws.ws_col = 40;
    ck_assert(ioctl(slave, TIOCSWINSZ, &ws) == 0);
    step_at(&x, 1.01, 2, 0.5, 0.1, -1, 32);
    read_pty(master, buf, sizeof buf);
    const char *want2 = "\repoch 1/1 2/4 loss 0.5000 lr 1.0e-01 22\033[K";
    ck_assert_msg(!strcmp(buf, want2), "got %s", buf);
    ck_assert_int_eq((int)strlen(want2) - 4, 39);
    vn_progress_destroy(x.p);
    fclose(f);
    close(master);
}
END_TEST

void add_progress_tests(Suite *s)
{
    TCase *tc = tcase_create("progress");
    tcase_add_test(tc, test_progress_format);
    tcase_add_test(tc, test_progress_plain);
    tcase_add_test(tc, test_progress_bar);
    tcase_add_test(tc, test_progress_pty);
    suite_add_tcase(s, tc);
}

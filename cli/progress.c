#include "cli/progress.h"

#include <stdarg.h>
#include <string.h>

#include "cli/format.h"

/* Writes text while counting its visible width (code points), which is what
 * the redraw pads against. */
typedef struct line_out {
    FILE *out;
    size_t width;
} line_out;

static void lo_puts(line_out *o, const char *s) {
    fputs(s, o->out);
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) o->width++;
}

__attribute__((format(printf, 2, 3))) static void lo_printf(line_out *o, const char *fmt, ...) {
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lo_puts(o, buf);
}

void kc_progress_epoch(FILE *out, int epoch, int epochs, int verbose) {
    if (verbose == 0 || epochs <= 1) return;
    fprintf(out, "Epoch %d/%d\n", epoch, epochs);
    fflush(out);
}

void kc_progress_begin(kc_progress *p, FILE *out, int64_t target, int verbose, int tty,
                       double now) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->target = target;
    p->verbose = verbose;
    p->tty = tty;
    p->start = now;
}

double kc_progress_step_time(const kc_progress *p, int64_t current, double now) {
    if (current <= 0) return 0;
    if (p->have_first_step && current > 1)
        return (now - p->first_step_done) / (double)(current - 1);
    return (now - p->start) / (double)current;
}

static int count_digits(int64_t v) {
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* "  12/1875" */
static void put_counter(line_out *o, int64_t current, int64_t target) {
    lo_printf(o, "%*lld/%lld", count_digits(target), (long long)current, (long long)target);
}

/* " [=====>......]": p = int(30 * current / target) cells done, the last of
 * them an arrow while the epoch runs. */
static void put_bar(line_out *o, int64_t current, int64_t target, int final) {
    char bar[KC_PROGRESS_BAR_WIDTH + 4];
    double prog = target > 0 ? (double)current / (double)target : 0;
    int done = (int)(KC_PROGRESS_BAR_WIDTH * prog);
    if (done < 0) done = 0;
    if (done > KC_PROGRESS_BAR_WIDTH) done = KC_PROGRESS_BAR_WIDTH;
    int n = 0;
    bar[n++] = ' ';
    bar[n++] = '[';
    for (int i = 0; i + 1 < done; i++)
        bar[n++] = '=';
    if (done > 0) bar[n++] = (current < target && !final) ? '>' : '=';
    for (int i = done; i < KC_PROGRESS_BAR_WIDTH; i++)
        bar[n++] = '.';
    bar[n++] = ']';
    bar[n] = '\0';
    lo_puts(o, bar);
}

static void put_values(line_out *o, const char *const *keys, const double *vals, int n,
                       int verbose) {
    char num[KC_FMT_CAP];
    for (int i = 0; i < n; i++) {
        lo_puts(o, " - ");
        lo_puts(o, keys && keys[i] ? keys[i] : "");
        lo_puts(o, ": ");
        lo_puts(o, kc_fmt_metric(num, sizeof num, vals ? vals[i] : 0.0, verbose));
    }
}

/* Elapsed seconds, as " - 15s". */
static void put_elapsed(line_out *o, const kc_progress *p, double now) {
    lo_printf(o, " - %.0fs", now - p->start);
}

/* The verbose-1 line, running or final, without any redraw prefix or padding. */
static void put_line_v1(line_out *o, const kc_progress *p, int64_t current, int final,
                        const char *const *keys, const double *vals, int n, double now) {
    char buf[KC_FMT_CAP];
    double t = kc_progress_step_time(p, current, now);
    if (p->target > 0) {
        put_counter(o, current, p->target);
        put_bar(o, current, p->target, final);
    } else {
        lo_printf(o, "%7lld/Unknown", (long long)current);
    }
    if (final || p->target <= 0) {
        put_elapsed(o, p, now);
        lo_puts(o, kc_fmt_step_time(buf, sizeof buf, t, "step"));
    } else {
        lo_puts(o, " - ETA: ");
        lo_puts(o, kc_fmt_eta(buf, sizeof buf, t * (double)(p->target - current)));
    }
    put_values(o, keys, vals, n, 1);
}

/* Redraws in place: back to the line start, the new text, then spaces over
 * whatever the previous, longer text left behind. */
static void redraw(kc_progress *p, int64_t current, int final, const char *const *keys,
                   const double *vals, int n, double now) {
    line_out o = {.out = p->out};
    fputc('\r', p->out);
    put_line_v1(&o, p, current, final, keys, vals, n, now);
    for (size_t w = o.width; w < p->prev_width; w++)
        fputc(' ', p->out);
    if (final) fputc('\n', p->out);
    fflush(p->out);
    p->prev_width = o.width;
    p->last_draw = now;
    p->drawn = 1;
}

void kc_progress_update(kc_progress *p, int64_t current, const char *const *keys,
                        const double *vals, int n, double now) {
    p->current = current;
    if (current == 1) {
        p->first_step_done = now;
        p->have_first_step = 1;
    }
    if (p->verbose != 1 || !p->tty) return;
    if (p->drawn && now - p->last_draw < KC_PROGRESS_INTERVAL) return;
    redraw(p, current, 0, keys, vals, n, now);
}

void kc_progress_end(kc_progress *p, const char *const *keys, const double *vals, int n,
                     double now) {
    /* An epoch of unknown length ends at the last step seen, as in Keras. */
    if (p->target <= 0) p->target = p->current;
    int64_t current = p->target;
    p->current = current;
    if (p->verbose == 1 && p->tty) {
        redraw(p, current, 1, keys, vals, n, now);
    } else if (p->verbose == 1) {
        line_out o = {.out = p->out};
        put_line_v1(&o, p, current, 1, keys, vals, n, now);
        fputc('\n', p->out);
        fflush(p->out);
    } else if (p->verbose == 2) {
        char buf[KC_FMT_CAP];
        line_out o = {.out = p->out};
        put_counter(&o, current, p->target);
        put_elapsed(&o, p, now);
        lo_puts(&o, " -");
        lo_puts(&o,
                kc_fmt_step_time(buf, sizeof buf, kc_progress_step_time(p, current, now), "step"));
        put_values(&o, keys, vals, n, 2);
        fputc('\n', p->out);
        fflush(p->out);
    }
}

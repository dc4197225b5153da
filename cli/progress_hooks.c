/* Training and evaluation hooks that draw Keras-style progress on stdout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/progress.h"
#include "core/json.h"

struct kc_cli_progress {
    kc_progress bar;
    int verbose, tty, epoch_lines;
    FILE *json; /* --log-json */
    const char *json_path;
    int json_err;    /* the first failed write of the JSON log */
    int out_err;     /* the first failed write of standard output */
    long long every; /* steps between JSON lines within an epoch; 0: per epoch only */
    int epoch;
    double last_logs; /* when the bar last asked for logs */
};

/* Logs within an epoch cost a read from the device, so the bar takes them
 * at most this often (and at its first and last step). */
#define LOGS_INTERVAL 0.1

/* One JSON object per line: {"epoch": 0, ["batch": 100,] "loss": ..., ...} */
static void json_line(kc_cli_progress *p, int epoch, int64_t batch, const kc_logs *l) {
    if (!p->json || p->json_err) return;
    kc_strbuf b = {0};
    kc_strbuf_printf(&b, "{\"epoch\": %d", epoch);
    if (batch >= 0) kc_strbuf_printf(&b, ", \"batch\": %lld", (long long)batch);
    for (int i = 0; i < l->n; i++) {
        kc_strbuf_puts(&b, ", ");
        kc_json_write_string(&b, l->keys[i]);
        kc_strbuf_puts(&b, ": ");
        kc_json_write_double(&b, l->vals[i]);
    }
    kc_strbuf_puts(&b, "}\n");
    errno = 0;
    if (b.failed)
        p->json_err = ENOMEM;
    else if (fputs(kc_strbuf_str(&b), p->json) == EOF || fflush(p->json) != 0)
        p->json_err = errno ? errno : EIO;
    kc_strbuf_free(&b);
}

/* After drawing: did standard output take it? */
static void check_stdout(kc_cli_progress *p) {
    if (!p->out_err) p->out_err = kc_cli_stdout_error();
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void keys_of(const kc_logs *l, const char **keys) {
    for (int i = 0; i < l->n; i++)
        keys[i] = l->keys[i];
}

static void on_epoch_begin(void *ctx, int epoch, int epochs, int64_t steps) {
    kc_cli_progress *p = ctx;
    p->epoch = epoch;
    if (!p->verbose) return;
    if (p->epoch_lines && epoch >= 0) kc_progress_epoch(stdout, epoch + 1, epochs, p->verbose);
    kc_progress_begin(&p->bar, stdout, steps, p->verbose, p->tty, now_s());
    check_stdout(p);
}

/* What on_batch_end needs: the JSON lines' steps, and for the bar step 1
 * (its time per step leaves the first out) and redraws, which only a
 * terminal at verbose 1 shows. */
static int wants_batch_logs(void *ctx, int64_t step, int64_t steps) {
    kc_cli_progress *p = ctx;
    if (p->every && step % p->every == 0) return 1;
    if (!p->verbose) return 0;
    int draws = p->verbose == 1 && p->tty;
    if (step != 1 && !draws) return 0;
    double now = now_s();
    if (step != 1 && step != steps && now - p->last_logs < LOGS_INTERVAL) return 0;
    p->last_logs = now;
    return 1;
}

static void on_batch_end(void *ctx, int64_t step, int64_t steps, const kc_logs *l) {
    kc_cli_progress *p = ctx;
    if (p->every && step % p->every == 0) json_line(p, p->epoch, step, l);
    if (!p->verbose) return;
    const char *keys[KC_MAX_LOGS];
    keys_of(l, keys);
    kc_progress_update(&p->bar, step, keys, l->vals, l->n, now_s());
    check_stdout(p);
}

static void on_epoch_end(void *ctx, int epoch, int64_t steps, const kc_logs *l) {
    kc_cli_progress *p = ctx;
    if (epoch >= 0) json_line(p, epoch, -1, l);
    if (!p->verbose) return;
    const char *keys[KC_MAX_LOGS];
    keys_of(l, keys);
    kc_progress_end(&p->bar, keys, l->vals, l->n, now_s());
    fflush(stdout);
    check_stdout(p);
}

static void on_note(void *ctx, const char *msg) {
    kc_cli_progress *p = ctx;
    if (!p->verbose) return;
    printf("%s\n", msg);
    check_stdout(p);
}

kc_cli_progress *kc_cli_progress_new(int verbose, int epoch_lines) {
    kc_cli_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->verbose = verbose;
    p->tty = isatty(STDOUT_FILENO);
    p->epoch_lines = epoch_lines;
    return p;
}

void kc_cli_progress_free(kc_cli_progress *p) {
    if (p && p->json) fclose(p->json);
    free(p);
}

int kc_cli_progress_log_json(kc_cli_progress *p, const char *path, long long every, kc_error *e) {
    if (!p) return kc_fail(e, KC_ERUNTIME, "out of memory");
    p->json = fopen(path, "a");
    if (!p->json)
        return kc_fail(e, KC_ERUNTIME, "cannot open %s for --log-json: %s", path, strerror(errno));
    p->json_path = path;
    p->every = every;
    return KC_OK;
}

int kc_cli_progress_output_error(kc_cli_progress *p, kc_error *e) {
    if (!p) return KC_OK;
    if (p->json) {
        errno = 0;
        if (fclose(p->json) != 0 && !p->json_err) p->json_err = errno ? errno : EIO;
        p->json = NULL;
    }
    if (p->json_err)
        return kc_fail(e, KC_ERUNTIME, "cannot write %s (--log-json): %s", p->json_path,
                       strerror(p->json_err));
    check_stdout(p);
    if (!p->out_err) return KC_OK;
    kc_cli_stdout_reported();
    return kc_fail(e, KC_ERUNTIME, "cannot write standard output: %s", strerror(p->out_err));
}

/* Ctrl-C, or progress output that can no longer be written: either way the
 * trainer finishes the step, saves its state and stops. Training on while
 * the output the user asked for is lost would spend hours unseen; the
 * saved state resumes exactly once the output is fixed. */
static int on_interrupted(void *ctx) {
    const kc_cli_progress *p = ctx;
    if (kc_cli_interrupted()) return KC_STOP_REQUESTED;
    return p && (p->json_err || p->out_err) ? KC_STOP_OUTPUT_FAILED : 0;
}

void kc_cli_progress_hooks(kc_cli_progress *p, kc_hooks *h) {
    h->ctx = p;
    h->epoch_begin = p ? on_epoch_begin : NULL;
    h->wants_batch_logs = p ? wants_batch_logs : NULL;
    h->batch_end = p ? on_batch_end : NULL;
    h->epoch_end = p ? on_epoch_end : NULL;
    h->note = p ? on_note : NULL;
    h->interrupted = on_interrupted;
}

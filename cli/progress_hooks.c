/* Training and evaluation hooks that draw Keras-style progress on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/progress.h"

struct kc_cli_progress {
    kc_progress bar;
    int verbose, tty, epoch_lines;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void keys_of(const kc_logs *l, const char **keys) {
    for (int i = 0; i < l->n; i++) keys[i] = l->keys[i];
}

static void on_epoch_begin(void *ctx, int epoch, int epochs, int64_t steps) {
    kc_cli_progress *p = ctx;
    if (!p->verbose) return;
    if (p->epoch_lines && epoch >= 0) kc_progress_epoch(stdout, epoch + 1, epochs, p->verbose);
    kc_progress_begin(&p->bar, stdout, steps, p->verbose, p->tty, now_s());
}

static void on_batch_end(void *ctx, int64_t step, int64_t steps, const kc_logs *l) {
    kc_cli_progress *p = ctx;
    if (!p->verbose) return;
    const char *keys[KC_MAX_LOGS];
    keys_of(l, keys);
    kc_progress_update(&p->bar, step, keys, l->vals, l->n, now_s());
}

static void on_epoch_end(void *ctx, int epoch, int64_t steps, const kc_logs *l) {
    kc_cli_progress *p = ctx;
    if (!p->verbose) return;
    const char *keys[KC_MAX_LOGS];
    keys_of(l, keys);
    kc_progress_end(&p->bar, keys, l->vals, l->n, now_s());
    fflush(stdout);
}

static void on_note(void *ctx, const char *msg) {
    kc_cli_progress *p = ctx;
    if (p->verbose) printf("%s\n", msg);
}

kc_cli_progress *kc_cli_progress_new(int verbose, int epoch_lines) {
    kc_cli_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->verbose = verbose;
    p->tty = isatty(STDOUT_FILENO);
    p->epoch_lines = epoch_lines;
    return p;
}

void kc_cli_progress_free(kc_cli_progress *p) { free(p); }

void kc_cli_progress_hooks(kc_cli_progress *p, kc_hooks *h) {
    h->ctx = p;
    h->epoch_begin = p ? on_epoch_begin : NULL;
    h->batch_end = p ? on_batch_end : NULL;
    h->epoch_end = p ? on_epoch_end : NULL;
    h->note = p ? on_note : NULL;
}

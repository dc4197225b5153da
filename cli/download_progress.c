#include "cli/download_progress.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "models/data/download.h"

enum { BAR_WIDTH = 30 };

typedef struct bar_state {
    double last;
    int drawn;
} bar_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void draw(void *ctx, const char *name, int64_t done, int64_t total) {
    bar_state *s = ctx;
    int end = total >= 0 && done == total;
    double t = now_s();
    if (!end && s->drawn && t - s->last < 0.1) return;
    s->last = t;
    s->drawn = 1;
    char bar[BAR_WIDTH + 1];
    int fill = total > 0 ? (int)(BAR_WIDTH * (double)done / (double)total) : 0;
    if (fill > BAR_WIDTH) fill = BAR_WIDTH;
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < fill ? '=' : i == fill && total > 0 ? '>' : ' ';
    bar[BAR_WIDTH] = 0;
    if (total > 0)
        fprintf(stderr, "\rDownloading %s [%s] %6.1f/%.1f MB", name, bar, done / 1e6, total / 1e6);
    else
        fprintf(stderr, "\rDownloading %s %.1f MB", name, done / 1e6);
    if (end) {
        fputc('\n', stderr);
        s->drawn = 0;
    }
    fflush(stderr);
}

void kc_cli_download_setup(int offline) {
    static bar_state state;
    kc_download_set_offline(offline);
    kc_download_set_progress(isatty(STDERR_FILENO) ? draw : NULL, &state);
}

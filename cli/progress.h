/* The fit/evaluate progress line, in Keras 2's style:
 *   1875/1875 [==============================] - 15s 8ms/step - loss: 0.3012 - accuracy: 0.8921
 * The caller passes the clock (seconds, any origin) so the output is
 * deterministic; it knows nothing of models, only keys and values.
 *
 * verbose 1 on a terminal redraws the line in place ("\r", padded with spaces
 * when the new text is shorter), at most every 0.05 s, and ends the epoch with
 * the final line and "\n". verbose 1 elsewhere prints only that final line.
 * verbose 2 prints one line per epoch: "1875/1875 - 15s - 8ms/step - loss: ...".
 * verbose 0 prints nothing. */
#ifndef KC_CLI_PROGRESS_H
#define KC_CLI_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { KC_PROGRESS_BAR_WIDTH = 30 };

/* Minimum time between two redraws on a terminal, in seconds. */
#define KC_PROGRESS_INTERVAL 0.05

typedef struct kc_progress {
    FILE *out;
    int64_t target;  /* steps in the epoch; <= 0 when unknown */
    int64_t current; /* last step reported */
    int verbose, tty;
    double start;           /* clock at kc_progress_begin */
    double first_step_done; /* clock when step 1 was reported */
    int have_first_step;
    double last_draw;
    int drawn;         /* a line was drawn since begin */
    size_t prev_width; /* visible width of the last line drawn */
} kc_progress;

/* Prints "Epoch e/E" (e from 1) when verbose != 0 and epochs > 1. */
void kc_progress_epoch(FILE *out, int epoch, int epochs, int verbose);

/* Starts one bar (one epoch, or one evaluate pass) of `target` steps. */
void kc_progress_begin(kc_progress *p, FILE *out, int64_t target, int verbose, int tty, double now);

/* Step `current` (from 1) has finished with these running values; keys are
 * shown in the order given. Redraws only on a terminal at verbose 1. */
void kc_progress_update(kc_progress *p, int64_t current, const char *const *keys,
                        const double *vals, int n, double now);

/* The epoch is over: prints its final line with these values (training keys
 * then any val_ keys, in the order given) and a newline. */
void kc_progress_end(kc_progress *p, const char *const *keys, const double *vals, int n,
                     double now);

/* Time per step as Keras estimates it at step `current`: once past step 1 the
 * first step (often slow) is left out, (now - time step 1 finished) / (current - 1);
 * otherwise (now - start) / current, and 0 before any step. */
double kc_progress_step_time(const kc_progress *p, int64_t current, double now);

#endif

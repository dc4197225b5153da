/* What the session's files share: models/fit_data.c (data and its checks),
 * compile.c (losses, metrics, optimizer), session.c (open and close),
 * step.c, inference.c and fit.c (the loop). */
#ifndef KC_FIT_INTERNAL_H
#define KC_FIT_INTERNAL_H

#include "models/step.h"

/* Loads the arrays of every split `need` asks for (KC_NEED_*), with the
 * validation data fit needs. */
int kc_session_load_data(kc_session *s, int need, kc_error *e);
/* Input i's values for rows idx[0..n) of x as the model takes them (n rows
 * into out): x * rescale + offset where the input reads an x array, then
 * the input's preprocess_input. Training, evaluation, prediction and
 * adapt all gather inputs this way. */
void kc_session_gather_input(const kc_session *s, int i, const kc_array *x, const int64_t *idx,
                             int n, float *out);
/* Keras Applications' preprocess_input(v, mode) in place over n values
 * (channels last: caffe and torch take RGB triples). */
void kc_preprocess_input(kc_preprocess_mode mode, float *v, size_t n);
/* Keras's adapt before training: each layer whose class adapts
 * (Normalization without given statistics) computes its weights from the
 * training data that reaches it, the layers before it run in inference
 * mode. Weights loaded afterwards (--resume, a weights file, a backup)
 * replace them, so a resumed run keeps the statistics it was trained with. */
int kc_session_adapt(kc_session *s, kc_error *e);
/* Checks one split's arrays against the model's inputs and outputs. */
int kc_session_check_split(kc_session *s, int split, kc_error *e);
void kc_session_free_data(kc_session *s);
/* Training steps in an epoch over `rows` samples: fit.steps_per_epoch, else
 * the batches that cover them once; 0 when there are none. */
int64_t kc_session_steps_per_epoch(kc_session *s, int64_t rows);
/* Appends an epoch's logs to the history (grown as epochs complete, never
 * past fit.epochs: a run of a million epochs reserves nothing up front).
 * Returns the slot, or NULL when out of memory or full. */
kc_logs *kc_session_history_push(kc_session *s, const kc_logs *l);

/* The compile section: every output's loss, weight and metrics, and with
 * `training` the optimizer (unbuilt). */
int kc_session_compile(kc_session *s, int training, int need, kc_error *e);

#endif

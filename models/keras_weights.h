/* Keras's weight files, read and written: Keras 3 `.weights.h5` (and the
 * model.weights.h5 inside a `.keras` archive) and the legacy HDF5 files of
 * Keras 2 / tf.keras and Keras 3's legacy writer (`model.save("m.h5")`,
 * `save_weights("w.h5")`); ../shared/KERAS.md §10.3-10.4.
 *
 * Keras 3 files are keyed by object path: layers/<key>/vars/0.., where the
 * key is the layer's class in snake_case made unique in layer order
 * (conv2d, conv2d_1, ...), and an RNN's weights sit in its cell
 * (layers/lstm/cell/vars). Since Keras 3.6 each vars group also carries the
 * layer's name, which is preferred when present, so that renamed or
 * reordered layers still find their weights. Legacy files are keyed by
 * layer name, with the weights in the order of each group's weight_names.
 * Every weight is matched by its layout: a missing layer, a missing or extra
 * variable or a shape that differs is named, all of them in one error. */
#ifndef KC_KERAS_WEIGHTS_H
#define KC_KERAS_WEIGHTS_H

#include "core/error.h"
#include "models/config.h"
#include "models/fit.h"
#include "models/model.h"

typedef enum kc_weights_kind {
    KC_WEIGHTS_UNKNOWN = 0,
    KC_WEIGHTS_CHECKPOINT, /* a kerasc safetensors checkpoint */
    KC_WEIGHTS_KERAS,      /* a .keras archive (zip) */
    KC_WEIGHTS_H5,         /* a Keras 3 .weights.h5 */
    KC_WEIGHTS_H5_LEGACY,  /* legacy weights (save_weights to .h5) */
    KC_WEIGHTS_H5_MODEL,   /* legacy full model (model_config + model_weights) */
} kc_weights_kind;

/* What the file is, by its content (signature, then its HDF5 layout). */
kc_weights_kind kc_weights_kind_of(const char *path);
/* Does it hold an architecture (a checkpoint, .keras, legacy full model)? */
int kc_weights_has_model(kc_weights_kind k);

/* The model a weights file carries as a kerasc config: a checkpoint's own,
 * a .keras archive's config.json, a legacy .h5's model_config attribute.
 * A .weights.h5 has none: the error says so and how to give the model. */
int kc_weights_config(const char *path, kc_config **out, kc_error *e);

/* Loads the weights of any kind, only the weights, into the model of a
 * session (a checkpoint's optimizer state and position are for
 * kc_checkpoint_load, which resumes). */
int kc_weights_load(kc_session *s, const char *path, kc_error *e);
/* The same for Keras files only, into a planned model. */
int kc_keras_weights_load(kc_model *m, const char *path, kc_error *e);

/* Writes the model's weights (and, when `opt` is built and Keras's variable
 * order is the model's, its optimizer state) as a Keras 3 .weights.h5,
 * through a temporary file renamed into place. */
int kc_keras_weights_save(const kc_model *m, const kc_optimizer *opt, const char *path,
                          kc_error *e);
/* The same written straight to path (no temporary): for the archive writer. */
int kc_keras_weights_write_file(const kc_model *m, const kc_optimizer *opt, const char *path,
                                kc_error *e);
/* Writes a .keras archive: metadata.json, config.json (models/keras_export.h)
 * and model.weights.h5, as Keras 3's saving_lib does (stored, not
 * compressed), through a temporary file renamed into place. */
int kc_keras_archive_save(const kc_config *cfg, const kc_model *m, const kc_optimizer *opt,
                          const char *path, kc_error *e);

/* Keras's to_snake_case of a class name: "BatchNormalization" ->
 * "batch_normalization", "PReLU" -> "p_re_lu". */
void kc_keras_snake_case(const char *cls, char *out, size_t n);

#endif

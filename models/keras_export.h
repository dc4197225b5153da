/* kerasc models written as Keras 3 model descriptions: the JSON of
 * model.to_json(), which is also the config.json inside a .keras archive,
 * and that archive's metadata.json.
 *
 * keras.models.model_from_json (and keras.saving.load_model on an archive
 * holding it) rebuilds the same model: the same layers, names, arguments,
 * shapes and weights' shapes. Every layer class kerasc implements is written
 * with its arguments in Keras's forms (tuples as arrays, initializers,
 * regularizers and constraints as serialized Keras objects, float32
 * DTypePolicy objects); arguments the model file leaves out are left to
 * Keras's defaults, which are kerasc's. What Keras cannot express is an
 * error naming the layer and the setting, never a different model. */
#ifndef KC_KERAS_EXPORT_H
#define KC_KERAS_EXPORT_H

#include "core/error.h"
#include "core/json.h"
#include "models/config.h"
#include "models/model.h"

/* Appends the model as Keras 3 writes it, on one line with Python's
 * separators: {"module": "keras", "class_name": "Sequential", "config":
 * {...}, "registered_name": null, "build_config": {...}} for a plain stack,
 * a Functional (Keras's "keras.src.models.functional" module) for anything
 * written as a graph. `cfg` (may be NULL) adds "compile_config" when it has
 * a compile section - the optimizer with all its arguments, the losses,
 * loss_weights and metrics per output - and gives the batch size a model
 * with stateful RNNs needs. `m` is the parsed model (cfg->model, usually).
 * Errors are KC_ECONFIG naming file:line:column, the layer and the setting,
 * or KC_ERUNTIME when memory runs out; `out` is then left as it was. */
int kc_keras_export_json(const kc_config *cfg, const kc_model *m, kc_strbuf *out, kc_error *e);

/* Appends metadata.json: {"keras_version": "3.15.1", "date_saved":
 * "YYYY-MM-DD@HH:MM:SS"} (local time, as Keras writes it). */
int kc_keras_export_metadata(kc_strbuf *out, kc_error *e);

/* The Keras version whose format kc_keras_export_json writes. */
#define KC_KERAS_EXPORT_VERSION "3.15.1"

#endif

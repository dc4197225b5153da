/* Keras model descriptions read as kerasc models: the JSON Keras writes with
 * model.to_json() and the config.json inside a .keras archive, Keras 3 and
 * Keras 2 (tf.keras) alike, Sequential and Functional, converted to the YAML
 * `model:` section kerasc reads.
 *
 * Every layer class kerasc implements converts with its name and arguments;
 * Keras's defaults and settings that do not change the computation (module,
 * registered_name, build_config, dtype float32, data_format channels_last,
 * null regularizers, ...) are left out. Anything kerasc cannot honour - an
 * unsupported layer class, a regularizer, channels_first, groups > 1, a
 * fixed batch size - is an error naming the JSON file:line:column, the layer
 * and its class. */
#ifndef KC_KERAS_IMPORT_H
#define KC_KERAS_IMPORT_H

#include <stddef.h>

#include "core/error.h"
#include "models/config.h"
#include "models/yaml.h"

/* 1 when the path ends in .json or .keras (any case): a Keras model file
 * rather than a kerasc YAML file. */
int kc_keras_is_model_path(const char *path);

/* Reads a .json file (model.to_json() output) or a .keras archive (its
 * config.json) and converts it. *yaml_model_section receives the malloc'd
 * text "model:\n  name: ...\n  layers:\n    - ...\n". Errors name
 * "file.json:line:column" ("file.keras[config.json]:line:column" inside an
 * archive). */
int kc_keras_import(const char *path, char **yaml_model_section, kc_error *e);
/* The same for JSON text in memory; `name` is the file name errors carry. */
int kc_keras_import_text(const char *name, const char *text, size_t len, char **yaml_model_section,
                         kc_error *e);

/* The file name converted text is parsed under, so later errors say where
 * they come from: "model.json (converted)". */
void kc_keras_converted_name(const char *path, char *out, size_t n);

/* A complete kerasc model file for the Keras model at `path`: a header
 * comment, the model section, and commented compile/data/fit lines to fill
 * in. malloc'd. */
int kc_keras_model_file(const char *path, char **text, kc_error *e);

/* Loads a Keras model file as a kerasc config (the model section only; no
 * compile, data or fit settings), for `kerasc summary model.json`. A kerasc
 * model file written as JSON (a top-level "model") loads as it always did. */
int kc_keras_config_load(const char *path, kc_config **out, kc_error *e);

/* For the config parser: `model: path/to/model.json` in a YAML file. `value`
 * is the scalar after `model:`; a relative path is relative to base_dir.
 * Converts the Keras file and parses the result into *doc (the caller frees
 * it with kc_doc_free after the model is no longer needed); *model is the
 * doc's `model:` mapping, ready for kc_model_parse. A scalar that is not a
 * .json/.keras path is an error at `value`. */
int kc_keras_model_node(const kc_node *value, const char *base_dir, kc_doc **doc, kc_node **model,
                        kc_error *e);

#endif

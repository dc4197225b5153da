/* A model description file: the model, compile, data and fit sections,
 * checked key by key (nothing is silently ignored). */
#ifndef KC_CONFIG_H
#define KC_CONFIG_H

#include "core/error.h"
#include "models/model.h"
#include "models/yaml.h"

/* Most arrays one source names (x/y mappings of several inputs and outputs). */
#define KC_DATA_MAX_ARRAYS (2 * KC_MODEL_MAX_IO)

/* An array named in an `x:`/`y:` mapping: `x: {image: a.npy, features: b.npy}`. */
typedef struct kc_array_spec {
    char name[128];
    int is_x; /* under x: (rescale and offset apply to it) */
    char *path, *key;
    const kc_node *node;
} kc_array_spec;

/* One source of arrays: files, or a CSV. Its arrays are "x" and "y" (a plain
 * `x: FILE`, `y: FILE`, or a CSV), plus the names of `x:`/`y:` mappings. */
typedef struct kc_source_spec {
    const kc_node *node;
    char *x_path, *x_key; /* x file (IDX/NPY/NPZ) and NPZ key */
    char *y_path, *y_key;
    char *csv_path; /* or a CSV with a label column */
    char *label_column;
    int csv_header; /* -1 auto */
    int nnamed;     /* arrays of x:/y: mappings */
    kc_array_spec named[KC_DATA_MAX_ARRAYS];
} kc_source_spec;

/* Which array a model input (or output) takes: `inputs: {image: x}`. */
typedef struct kc_feed_spec {
    char array[128];     /* "" when nothing feeds it */
    const kc_node *node; /* where it was chosen (NULL: by default) */
    int has_reshape;     /* `reshape:` for this input */
    kc_shape reshape;
    const kc_node *reshape_node;
} kc_feed_spec;

typedef struct kc_data_spec {
    const kc_node *node;
    char *dataset; /* "mnist", "fashion_mnist" or NULL */
    const kc_node *dataset_node;
    char *path; /* override for the dataset location */
    int has_train, has_test, has_validation;
    kc_source_spec train, test, validation;
    int validation_is_test; /* validation: test */
    double rescale, offset;
    int has_reshape; /* a plain `reshape: [...]` (the single input's) */
    kc_shape reshape;
    const kc_node *reshape_node;
    /* per model input / output, in the model's order: the array each takes
     * (from `inputs:` / `targets:`, or the defaults: x for the single input, y
     * for the single output, the same name in x:/y: mappings) */
    kc_feed_spec inputs[KC_MODEL_MAX_IO], targets[KC_MODEL_MAX_IO];
    const kc_node *inputs_node, *targets_node;
    int one_hot;           /* -1 auto: when the loss needs it */
    long long num_classes; /* 0: from the model's output */
} kc_data_spec;

typedef struct kc_fit_spec {
    long long epochs, batch_size, steps_per_epoch; /* steps 0 = all */
    int shuffle;
    long long seed;
    double validation_split;
    int verbose; /* 0, 1, 2; -1 auto */
    const kc_node *validation_split_node;
    kc_node *callbacks; /* the callbacks list (models/callbacks.h), or NULL */
} kc_fit_spec;

typedef struct kc_config {
    kc_doc *doc;
    kc_doc *model_doc; /* the converted Keras model when `model:` names a .json/.keras file */
    char *path;
    char run_name[128]; /* runs/<run_name> */
    kc_model *model;
    kc_node *optimizer;    /* may be NULL: Keras's default rmsprop */
    kc_node *loss;         /* NULL: no loss (evaluate/train refuse); a mapping or list per output */
    kc_node *loss_weights; /* NULL: 1 each; a number, mapping or list per output */
    kc_node *metrics;      /* list, per-output mapping, or NULL */
    kc_node *compile_node;
    kc_data_spec data;
    kc_fit_spec fit;
} kc_config;

/* Parses and checks a whole file. The text may come from a checkpoint, in
 * which case `path` names the checkpoint for error messages. */
int kc_config_load(const char *path, kc_config **out, kc_error *e);
/* base_dir resolves relative data paths (the directory of the original file). */
int kc_config_parse_text(const char *name, const char *base_dir, const char *text, size_t len,
                         kc_config **out, kc_error *e);
void kc_config_free(kc_config *c);

#endif

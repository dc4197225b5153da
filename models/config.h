/* A model description file: the model, compile, data and fit sections,
 * checked key by key (nothing is silently ignored). */
#ifndef KC_CONFIG_H
#define KC_CONFIG_H

#include "core/error.h"
#include "models/model.h"
#include "models/yaml.h"

/* One source of arrays: a Keras dataset by name, or files. */
typedef struct kc_source_spec {
    const kc_node *node;
    char *x_path, *x_key; /* x file (IDX/NPY/NPZ) and NPZ key */
    char *y_path, *y_key;
    char *csv_path;       /* or a CSV with a label column */
    char *label_column;
    int csv_header;       /* -1 auto */
} kc_source_spec;

typedef struct kc_data_spec {
    const kc_node *node;
    char *dataset;        /* "mnist", "fashion_mnist" or NULL */
    const kc_node *dataset_node;
    char *path;           /* override for the dataset location */
    int has_train, has_test, has_validation;
    kc_source_spec train, test, validation;
    int validation_is_test; /* validation: test */
    double rescale, offset;
    int has_reshape;
    kc_shape reshape;
    const kc_node *reshape_node;
    int one_hot;          /* -1 auto: when the loss needs it */
    long long num_classes;/* 0: from the model's output */
} kc_data_spec;

typedef struct kc_fit_spec {
    long long epochs, batch_size, steps_per_epoch; /* steps 0 = all */
    int shuffle;
    long long seed;
    double validation_split;
    int verbose; /* 0, 1, 2; -1 auto */
    const kc_node *validation_split_node;
} kc_fit_spec;

typedef struct kc_config {
    kc_doc *doc;
    char *path;
    char run_name[128];   /* runs/<run_name> */
    kc_model *model;
    kc_node *optimizer;   /* may be NULL: Keras's default rmsprop */
    kc_node *loss;        /* NULL: no loss (evaluate/train refuse) */
    kc_node *metrics;     /* list or NULL */
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

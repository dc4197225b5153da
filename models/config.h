/* A model description file: the model, compile, data and fit sections,
 * checked key by key (nothing is silently ignored). */
#ifndef KC_CONFIG_H
#define KC_CONFIG_H

#include "core/error.h"
#include "models/data/images.h"
#include "models/data/keras_datasets.h"
#include "models/data/sequences.h"
#include "models/data/text.h"
#include "models/data/timeseries.h"
#include "models/data/tokenizer.h"
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

typedef enum kc_text_source {
    KC_TEXT_SRC_NONE = 0,
    KC_TEXT_SRC_LINES,
    KC_TEXT_SRC_CSV,
    KC_TEXT_SRC_DIRECTORY,
    KC_TEXT_SRC_RECORDS
} kc_text_source;

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
    /* a text source (x: the texts' token ids, y: their labels) */
    kc_text_source text_kind;
    char *text_path, *labels_path; /* {text: FILE, labels: FILE} */
    char *text_column;             /* {csv:, text_column:, label_column:, delimiter:} */
    char delimiter;
    char *directory; /* {directory:, labels: inferred, ...} */
    kc_text_dir_opts dir;
    char **class_names;
    char **records; /* {records: FILE or [FILES], separator: "%"} */
    int nrecords;
    char *separator;
    kc_label_mode label_mode;
    /* an image folder ({images: DIR, ...}; x: the pixels, y: the labels);
     * labels, class_names, the split and shuffle are in dir */
    char *images;
    kc_image_opts image;
} kc_source_spec;

/* Keras Applications' preprocess_input(x, mode) on an input's values, after
 * rescale and offset: caffe (RGB to BGR, minus the ImageNet means), tf
 * (x / 127.5 - 1), torch (x / 255, minus the means, over the deviations). */
typedef enum kc_preprocess_mode {
    KC_PREPROCESS_NONE = 0,
    KC_PREPROCESS_CAFFE,
    KC_PREPROCESS_TF,
    KC_PREPROCESS_TORCH,
} kc_preprocess_mode;

/* Which array a model input (or output) takes: `inputs: {image: x}`. */
typedef struct kc_feed_spec {
    char array[128];     /* "" when nothing feeds it */
    const kc_node *node; /* where it was chosen (NULL: by default) */
    int has_reshape;     /* `reshape:` for this input */
    kc_shape reshape;
    const kc_node *reshape_node;
    kc_preprocess_mode preprocess; /* `preprocess_input:` for this input */
    const kc_node *preprocess_node;
} kc_feed_spec;

/* One split of a `timeseries:` block: the steps its windows may use. */
typedef struct kc_ts_split {
    int present;
    const kc_node *node;
    int64_t start_index; /* negative: counted from the series' end */
    int64_t end_index;   /* one past the last step; 0 when absent: the series' end */
    int has_end;
    int shuffle; /* Keras's shuffle of the window order, with seed */
    uint32_t seed;
} kc_ts_split;

/* Columns of a series: names (a CSV with a header) or indices, as written. */
typedef struct kc_ts_columns {
    int n;       /* 0: every column */
    char **name; /* n strings */
    const kc_node **node;
} kc_ts_columns;

/* `data: {timeseries: {csv: FILE, columns: [...], sequence_length: N,
 * target: {column: C, offset: K}, train: {...}, validation: {...},
 * test: {...}}}`: windows as keras.utils.timeseries_dataset_from_array. */
typedef struct kc_ts_spec {
    const kc_node *node;
    char *csv_path; /* or an NPY/NPZ series */
    int csv_header; /* -1 auto */
    char *npy_path, *npy_key;
    kc_ts_columns columns; /* the features, in the order given */
    kc_ts_opts opts;       /* sequence_length, sequence_stride, sampling_rate */
    int has_target;
    kc_ts_columns target; /* 0 columns: the features */
    int64_t offset;       /* y of the window starting at s: step s + offset */
    const kc_node *target_node;
    kc_ts_split split[3]; /* train, validation, test */
} kc_ts_spec;

typedef struct kc_data_spec {
    const kc_node *node;
    char *dataset; /* "mnist", "fashion_mnist", "imdb", "reuters", "boston_housing" or NULL */
    const kc_node *dataset_node;
    char *path; /* override for the dataset location */
    /* imdb / reuters / boston_housing: load_data's options (Keras's defaults
     * unless given); imdb and reuters sequences are padded with `pad` */
    kc_seq_opts seq;
    const kc_node *pad_node; /* `text:` with a dataset: its padding keys only */
    /* `timeseries:` instead of dataset/train/test */
    int has_timeseries;
    kc_ts_spec ts;
    int has_train, has_test, has_validation;
    kc_source_spec train, test, validation;
    int validation_is_test; /* validation: test */
    double rescale, offset;
    int has_reshape; /* a plain `reshape: [...]` (the single input's) */
    kc_shape reshape;
    const kc_node *reshape_node;
    /* `preprocess_input: MODE` (the single input's) or {input: MODE, ...};
     * resolved into inputs[i].preprocess */
    const kc_node *preprocess_node;
    /* per model input / output, in the model's order: the array each takes
     * (from `inputs:` / `targets:`, or the defaults: x for the single input, y
     * for the single output, the same name in x:/y: mappings) */
    kc_feed_spec inputs[KC_MODEL_MAX_IO], targets[KC_MODEL_MAX_IO];
    const kc_node *inputs_node, *targets_node;
    int one_hot;           /* -1 auto: when the loss needs it */
    long long num_classes; /* 0: from the model's output */
    /* `text:`: how texts become token ids, fitted on the training split */
    int has_text;
    const kc_node *text_node;
    kc_text_opts text;
    kc_pad_opts pad; /* maxlen 0: the model input's length (texts and imdb/reuters) */
    /* the fitted vocabulary: set when the training texts are read, or from
     * the checkpoint the config came from (NULL until then) */
    kc_vocab *vocab;
    /* the classes an image model learnt (the training folder's subfolders,
     * or the checkpoint's), NULL until then */
    char **image_classes;
    int nimage_classes;
} kc_data_spec;

typedef struct kc_fit_spec {
    long long epochs, batch_size, steps_per_epoch; /* steps 0 = all */
    int shuffle;
    long long seed;
    double validation_split;
    int verbose; /* 0, 1, 2; -1 auto */
    const kc_node *validation_split_node;
    kc_node *callbacks; /* the callbacks list (models/callbacks.h), or NULL */
    /* weights to start from (a checkpoint, .keras, .weights.h5 or .h5),
     * resolved against the model file's directory; NULL: the initializers */
    char *initial_weights;
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

/* The image settings of an image model (its first image source), or NULL. */
const kc_source_spec *kc_config_image_source(const kc_config *c);

#endif

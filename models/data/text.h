/* Text samples and their labels, read from files: one sample per line, a
 * CSV/TSV with a text column, records separated by a line (fortune files),
 * or a folder per class as Keras's text_dataset_from_directory.
 *
 * Every file is read whole, checked to be UTF-8 (a UTF-8 BOM is dropped) and
 * free of NUL bytes; a bad byte is an error naming file:line. */
#ifndef KC_DATA_TEXT_H
#define KC_DATA_TEXT_H

#include <stdint.h>

#include "core/error.h"
#include "models/data/data.h"
#include "models/data/sequences.h"

/* Largest text file read (bytes). */
#define KC_TEXT_MAX_FILE (INT64_C(1) << 31)

typedef struct kc_texts {
    int64_t n, cap;
    char **text;  /* NUL-terminated UTF-8 */
    float *label; /* n labels, or NULL when the source has none */
    int nclasses; /* folders / record files: the classes, named below */
    char **class_names;
} kc_texts;

void kc_texts_free(kc_texts *t);
/* Appends a copy of s[0..len) (and a label when the set has labels). */
int kc_texts_push(kc_texts *t, const char *s, size_t len, kc_error *e);

/* A whole file with a NUL after it, UTF-8 checked, its BOM removed. */
int kc_text_read_file(const char *path, char **data, size_t *len, kc_error *e);

/* One sample per line ('\n' or "\r\n"); every line is a sample, an empty one
 * too, and a last line without '\n' counts. An empty file has none. */
int kc_text_read_lines(const char *path, kc_texts *t, kc_error *e);
/* Labels, one number per line, as many as t holds; blank lines at the end
 * are ignored. */
int kc_text_read_labels(const char *path, kc_texts *t, kc_error *e);

/* Records: the lines between lines that are exactly `separator` ("%" for
 * fortune files), the separator lines dropped, the last newline of each
 * record removed; empty records are skipped. With several files each file is
 * a class (label = its position, class name = its file name); one file gives
 * unlabelled records. */
int kc_text_read_records(const char *const *paths, int npaths, const char *separator, kc_texts *t,
                         kc_error *e);

/* text_dataset_from_directory. */
typedef enum kc_label_mode {
    KC_LABELS_INT = 0,
    KC_LABELS_CATEGORICAL,
    KC_LABELS_BINARY,
    KC_LABELS_NONE
} kc_label_mode;
typedef struct kc_text_dir_opts {
    int inferred;            /* labels: inferred (else none) */
    int64_t max_length;      /* 0: whole texts; else the first max_length bytes (whole chars) */
    double validation_split; /* 0: none */
    int subset;              /* 0 all, 1 training, 2 validation */
    int shuffle;             /* numpy RandomState(seed).shuffle of the file order */
    uint64_t seed;
    const char *const *class_names; /* NULL: the sorted subfolders */
    int nclass_names;
} kc_text_dir_opts;
/* Sorted subfolders (not starting with '.') are the classes; every *.txt
 * file below one (sorted, subfolders walked in sorted order, symlinked
 * folders not followed) is a sample of it. */
int kc_text_read_directory(const char *dir, const kc_text_dir_opts *o, kc_texts *t, kc_error *e);
/* Records (kc_text_read_records), then shuffled and split as a directory is
 * (split's shuffle, seed, validation_split and subset; NULL: neither). */
int kc_text_read_records_split(const char *const *paths, int npaths, const char *separator,
                               const kc_text_dir_opts *split, kc_texts *t, kc_error *e);

/* A CSV/TSV with a text column: `delimiter` one byte, fields may be quoted
 * ("" inside quotes is a quote; a quoted field may span lines). header: 1
 * names columns, 0 none (columns are then given by index), -1 auto: a header
 * when text_column is a name (not an index) or appears in the first row. text_column /
 * label_column: a name or an index (negative from the end); label_column
 * NULL for no labels. Labels must be numbers. */
int kc_text_read_csv(const char *path, char delimiter, int header, const char *text_column,
                     const char *label_column, kc_texts *t, kc_error *e);

/* The labels as a y array: int and binary (N,) floats, categorical (N, C)
 * one-hot with C = nclasses (or the largest label + 1). */
int kc_texts_labels(const kc_texts *t, kc_label_mode mode, kc_array *y, kc_error *e);

/* numpy's RandomState(seed).shuffle of the indices 0..n-1 (MT19937, the
 * same draws), so a Keras directory split with a seed is reproduced. */
void kc_numpy_shuffle(uint32_t seed, int64_t *idx, int64_t n);

/* Keras's skipgrams(sequence, vocabulary_size, window_size, negative_samples,
 * shuffle, sampling_table=None) with Python's random module seeded with
 * `seed` (random.seed(seed)): couples (M, 2) and labels (M,). */
typedef struct kc_skipgram_opts {
    int64_t vocabulary_size, window_size;
    double negative_samples;
    int shuffle;
    uint64_t seed;
    const float *sampling_table; /* NULL or vocabulary_size probabilities */
} kc_skipgram_opts;
int kc_skipgrams(const int32_t *seq, int64_t n, const kc_skipgram_opts *o, int64_t **couples,
                 int32_t **labels, int64_t *count, kc_error *e);

#endif

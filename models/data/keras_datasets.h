/* The Keras sequence datasets imdb and reuters, and boston_housing, read
 * from local copies of the files Keras downloads, with the same samples in
 * the same order as keras.datasets.<name>.load_data for the same options.
 * Also the word index files (get_word_index) for decoding token ids.
 *
 * imdb.npz (x_train, y_train, x_test, y_test) and reuters.npz (x, y) hold
 * their sequences as numpy object arrays: a pickle of an ndarray of Python
 * lists of ints. models/data/pickle.h reads exactly that, nothing more.
 *
 * Search (first match wins), when no path is given:
 *   $KERAS_HOME/datasets/<file>, ~/.keras/datasets/<file>,
 *   /tmp/.keras/datasets/<file>
 * A given path is the only place looked at: the file itself, or a directory
 * holding <file>. A file found nowhere (and no path given) is downloaded
 * into Keras's cache unless downloads are off (models/data/download.h);
 * otherwise a missing file is KC_ERUNTIME listing every place looked at and
 * the URL Keras fetches it from. A found
 * but damaged file is reported as such, not skipped. */
#ifndef KC_DATA_KERAS_DATASETS_H
#define KC_DATA_KERAS_DATASETS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "models/data/data.h"
#include "models/data/sequences.h"

/* load_data's options, with Keras's meaning. Fields set to KC_SEQ_NONE mean
 * Python's None. kc_seq_opts_default gives Keras's defaults. */
#define KC_SEQ_NONE (-1)
typedef struct kc_seq_opts {
    int64_t num_words;  /* keep ids < num_words (others become oov_char); NONE: all */
    int64_t skip_top;   /* ids < skip_top become oov_char (default 0) */
    int64_t maxlen;     /* drop sequences with len >= maxlen (after start_char); NONE: keep all */
    uint32_t seed;      /* numpy RandomState seed of the shuffle (default 113) */
    int64_t start_char; /* prepended to every sequence (default 1); NONE: nothing */
    int64_t oov_char;   /* replacement id (default 2); NONE: drop such ids instead */
    int64_t index_from; /* added to every stored id (default 3) */
    double test_split;  /* reuters only: fraction for the test split (default 0.2) */
} kc_seq_opts;

void kc_seq_opts_default(kc_seq_opts *o);

/* Token sequences (ids fit int32) and float32 (N,) labels per split. */
typedef struct kc_seq_data {
    kc_ragged x_train, x_test;
    kc_array y_train, y_test;
} kc_seq_data;

void kc_seq_data_free(kc_seq_data *d);

/* name: "imdb" or "reuters" (KC_ECONFIG otherwise). path: NULL/"" to
 * search, else the user's file or directory. Options out of range (negative
 * skip_top, test_split outside [0, 1), ...) are KC_ECONFIG; maxlen keeping no
 * sequence is KC_ECONFIG as in Keras. On error *out is left empty. */
int kc_seq_dataset_load(const char *name, const char *path, const kc_seq_opts *o, kc_seq_data *out,
                        kc_error *e);

/* boston_housing.npz (x (506, 13), y (506,)): shuffled with RandomState(seed)
 * and split at int(n * (1 - test_split)), as Keras. x float32 (N, 13), y
 * float32 (N,). Keras's defaults: test_split 0.2, seed 113. */
int kc_boston_housing_load(const char *path, double test_split, uint32_t seed, kc_array *x_train,
                           kc_array *y_train, kc_array *x_test, kc_array *y_test, kc_error *e);

/* ---- word index (keras.datasets.<name>.get_word_index) ---- */

/* imdb_word_index.json / reuters_word_index.json: {"word": rank, ...} with
 * ranks >= 1. word[r] is the word of rank r (NULL where none), for r in
 * [0, nranks). Words are UTF-8, NUL-terminated. */
typedef struct kc_word_index {
    int64_t nranks;
    char **word;
    /* private: words sorted for lookup */
    int64_t nsorted;
    int64_t *sorted;
} kc_word_index;

void kc_word_index_free(kc_word_index *w);

/* name: "imdb" or "reuters" (chooses the file name); path as above. */
int kc_word_index_load(const char *name, const char *path, kc_word_index *out, kc_error *e);
/* The same from one given JSON file. */
int kc_word_index_read(const char *file, kc_word_index *out, kc_error *e);

/* The rank of a word, or -1. A token id in the data is rank + index_from. */
int64_t kc_word_index_rank(const kc_word_index *w, const char *word);

/* Keras's decoding recipe: id start_char -> "[START]", oov_char -> "[OOV]",
 * other ids id - index_from looked up ("?" when unknown, also ids 0, 1, 2
 * with no special meaning), joined by single spaces. Writes at most n bytes
 * including the NUL (truncated text stays valid up to the last whole word);
 * returns the length the full text needs, like snprintf. */
size_t kc_word_index_decode(const kc_word_index *w, const kc_seq_opts *o, const int32_t *tok,
                            int64_t len, char *buf, size_t n);

/* ---- search (shared with the mnist loader in dataset.c) ---- */

/* Where `file` (a base name such as "imdb.npz") is: with user_path (non-NULL,
 * non-empty) that path itself when it is a file, else user_path/file; without
 * it the Keras cache directories in order. Returns 1 and writes found[n]
 * when present; 0 when absent, with every place looked at appended to
 * looked[looked_n] (one "\n  place: reason" per place). */
int kc_dataset_find(const char *file, const char *user_path, char *found, size_t n, char *looked,
                    size_t looked_n);

/* The Keras download folder, ending in '/'. */
#define KC_KERAS_DATASETS_URL "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

#endif

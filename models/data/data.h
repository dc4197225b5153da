/* Data arrays: loading samples from IDX, NPY, NPZ and CSV files and the Keras
 * datasets mnist / fashion_mnist from local copies; gathering batches; writing
 * predictions as .npy or CSV.
 *
 * Arrays live in host memory, row-major, with shape.d[0] = samples. Images and
 * labels stored as bytes stay bytes (KC_DT_U8: 60000x28x28 is 47 MB, not 188);
 * every other source dtype becomes float32 on load. Batches are converted to
 * float32 only when gathered.
 *
 * Errors name the file and what is wrong with it. File contents that are
 * missing, truncated or malformed give KC_ERUNTIME; a wrong choice made in the
 * model file (an npz key or CSV column that does not exist, an unknown dataset
 * name) gives KC_ECONFIG. No function here prints, exits or crashes on a
 * malformed file. */
#ifndef KC_DATA_H
#define KC_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef enum kc_dtype { KC_DT_U8 = 0, KC_DT_F32 = 1 } kc_dtype;

/* An owned array: data comes from malloc and kc_array_free releases it.
 * A zeroed kc_array is empty and may be freed. */
typedef struct kc_array {
    kc_dtype dtype;
    kc_shape shape; /* rank >= 1; shape.d[0] is the number of samples */
    void *data;
} kc_array;

/* Bytes per element: 1 for KC_DT_U8, 4 for KC_DT_F32. */
size_t kc_dtype_size(kc_dtype t);
/* Allocates a zero-filled array of the given dtype and shape (rank 1..8). */
int kc_array_alloc(kc_array *a, kc_dtype dtype, const kc_shape *shape, kc_error *e);
/* Releases the data and zeroes *a; safe on a zeroed or already freed array. */
void kc_array_free(kc_array *a);
/* Samples: shape.d[0] (0 for an empty array). */
int64_t kc_array_rows(const kc_array *a);
/* Elements per sample: the product of shape.d[1..]; 1 for rank-1 arrays;
 * -1 when that product overflows (no loader returns such an array). */
int64_t kc_array_row_size(const kc_array *a);

/* ---- loading ---- */

/* Loads an array, choosing the format by content (never by the name):
 *   IDX   big-endian header 00 00 <type> <rank>, dims, data; raw or gzip
 *         (types 08 u8 stays u8; 09 i8, 0B i16, 0C i32, 0D f32, 0E f64 -> f32)
 *   .npy  versions 1.0-3.0, C order; |u1 stays u8; |b1 |i1 <i2 <i4 <i8 <u2 <u4
 *         <u8 <f4 <f8 (either byte order) -> f32; raw or gzip
 *   .npz  a zip of .npy entries (stored or deflate); `key` names the array
 *         ("x_train" or "x_train.npy"); NULL picks the only array in the
 *         archive. ZIP64 archives are refused.
 * `key` must be NULL for IDX and .npy files. Sizes are checked against the
 * data actually present, so a corrupt header never triggers a huge allocation.
 * On error *out is left empty. */
int kc_array_load(const char *path, const char *key, kc_array *out, kc_error *e);
/* The same, for one known format. */
int kc_idx_load(const char *path, kc_array *out, kc_error *e);
int kc_npy_load(const char *path, kc_array *out, kc_error *e);
int kc_npz_load(const char *path, const char *key, kc_array *out, kc_error *e);
/* The bytes of one member of a zip archive (stored or deflate, CRC checked),
 * with a NUL after them for text; members larger than max_bytes are refused.
 * A missing member is KC_ECONFIG; *data is malloc'd (free() it). */
int kc_zip_read_member(const char *path, const char *member, size_t max_bytes, char **data,
                       size_t *len, kc_error *e);

/* CSV of numbers, comma separated, one sample per line; blank lines are
 * skipped, fields may be double-quoted, CRLF and a UTF-8 BOM are accepted.
 *   header        1: the first line names the columns; 0: no header; -1: auto
 *                 (a header when any field of the first line is not a number)
 *   label_column  a column name (needs a header) or an integer index,
 *                 negative counting from the end ("-1" is the last column).
 *                 NULL: no label; every column is a feature and *y is left
 *                 empty (y may then be NULL).
 * x gets float32 (rows, features) with the columns in file order minus the
 * label; y gets float32 (rows,) holding the label values (class indices or
 * regression targets). A field that is not a number is an error naming
 * file:line and the column. */
int kc_csv_load(const char *path, const char *label_column, int header, kc_array *x, kc_array *y,
                kc_error *e);

/* The Keras datasets "mnist" and "fashion_mnist" ("fashion-mnist" also
 * accepted; imdb, reuters and boston_housing are in keras_datasets.h, and the
 * data section reaches all five through `dataset:`), read from local copies:
 * x uint8 (N, 28, 28), y uint8 (N,), with
 * 60000 training and 10000 test samples for the real data.
 *
 * `dir` (may be NULL) is the user's path and is the only place searched when
 * given: a file is read as a Keras-style npz (keys x_train, y_train, x_test,
 * y_test); a directory must hold the four IDX files train-images-idx3-ubyte,
 * train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte,
 * each raw or .gz (or, for mnist, a mnist.npz).
 *
 * Without `dir` the search goes, first match wins:
 *   mnist:          $KERAS_HOME/datasets/mnist.npz, ~/.keras/datasets/mnist.npz,
 *                   /tmp/.keras/datasets/mnist.npz, IDX files in /usr/share/datasets/mnist
 *   fashion_mnist:  IDX files in $KERAS_HOME/datasets/fashion-mnist,
 *                   ~/.keras/datasets/fashion-mnist, /tmp/.keras/datasets/fashion-mnist,
 *                   /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist)
 * Nothing found: KC_ERUNTIME with every place looked at and how to get the
 * data. A found but damaged file is reported as such, not skipped.
 *
 * The same call loads "cifar10" and "cifar100" (fine labels; "cifar100:fine"
 * and "cifar100:coarse" choose load_data's label_mode) through
 * models/data/cifar.h: x uint8 (N, 32, 32, 3), y uint8 (N,), searched as
 * described there; and "boston_housing" with Keras's defaults. */
int kc_dataset_load(const char *name, const char *dir, kc_array *x_train, kc_array *y_train,
                    kc_array *x_test, kc_array *y_test, kc_error *e);

/* ---- batches ---- */

/* out[i, :] = a[idx[i], :] * scale + offset as float32, for i in [0, n); out
 * holds n * kc_array_row_size(a) floats and idx entries must be valid rows.
 * When scale is exactly the float nearest 1/k for an integer k (1/255), values
 * are computed as x / k + offset so they match numpy's float32 x / 255 bit for
 * bit. */
void kc_array_gather(const kc_array *a, const int64_t *idx, int n, float scale, float offset,
                     float *out);

/* Keras validation_split: moves the last tail_rows samples of *a into *tail
 * (a new owned array) and shrinks *a to the rows before them. Both stay owned
 * arrays for kc_array_free. 0 <= tail_rows <= rows. */
int kc_array_split_tail(kc_array *a, int64_t tail_rows, kc_array *tail, kc_error *e);

/* ---- writing (both atomic: a temporary file beside `path`, then rename) ---- */

/* A version 1.0 .npy file of little-endian float32 ('<f4') in C order. */
int kc_npy_write(const char *path, const float *data, const kc_shape *shape, kc_error *e);
/* rows x cols values, comma separated, '\n' line ends, each float in the
 * shortest form that reads back to the same float32. header: NULL for none,
 * else cols column names (quoted when they contain a comma, quote or newline). */
int kc_csv_write(const char *path, const float *data, int64_t rows, int64_t cols,
                 const char *const *header, kc_error *e);

#endif

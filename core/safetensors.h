/* The safetensors file format: named tensors with dtypes and shapes, plus
 * string metadata, as written by the Python `safetensors` package.
 *
 * Layout: an 8-byte little-endian u64 N, then N bytes of JSON header
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [2, 2], "data_offsets": [begin, end]}, ...}
 * padded with spaces to a multiple of 8 bytes, then the raw little-endian
 * tensor data. Offsets are relative to the start of the data section; the
 * tensors tile it exactly, with no holes and no overlaps. */
#ifndef KC_SAFETENSORS_H
#define KC_SAFETENSORS_H

#include <stddef.h>

#include "core/error.h"
#include "core/tensor.h"

typedef enum kc_st_dtype {
    KC_ST_F32,
    KC_ST_F64,
    KC_ST_I64,
    KC_ST_I32,
    KC_ST_U8,
    KC_ST_I8,
    KC_ST_I16,
    KC_ST_U16,
    KC_ST_U32,
    KC_ST_U64,
    KC_ST_F16,
    KC_ST_BF16,
    KC_ST_BOOL,
    KC_ST_DTYPE_COUNT
} kc_st_dtype;

/* Headers longer than this are refused as corrupt (the Python package's limit). */
#define KC_ST_MAX_HEADER 100000000u

typedef struct kc_st_tensor {
    const char *name;
    kc_st_dtype dtype;
    kc_shape shape;
    const void *data; /* numel * dtype size bytes, little-endian */
} kc_st_tensor;

/* Bytes per element (1, 2, 4 or 8); 0 for an invalid dtype. */
size_t kc_st_dtype_size(kc_st_dtype t);
/* The header spelling: "F32", "I64", ...; "?" for an invalid dtype. */
const char *kc_st_dtype_name(kc_st_dtype t);
/* numel * dtype size. */
size_t kc_st_nbytes(const kc_st_tensor *t);

/* Writes tensors in the order given. Atomic: the file is written as
 * PATH.tmp-<pid> in the same directory, flushed and fsynced, renamed over
 * PATH, and the directory is fsynced. On any failure the temporary file is
 * removed and PATH is untouched, except that a failure to sync the directory
 * after the rename is still reported (the new file is then in place, but its
 * durability is not assured). meta is key, value, key, value, ..., NULL
 * (may be NULL). Names and metadata must be unique, valid UTF-8 without NUL
 * bytes; "__metadata__" is not a tensor name. */
int kc_st_write(const char *path, const kc_st_tensor *tensors, int n, const char *const *meta,
                kc_error *e);

typedef struct kc_st_file kc_st_file;

/* Reads the whole file and validates it; every error names the file. Tensor
 * data is aligned for its dtype. */
int kc_st_open(const char *path, kc_st_file **out, kc_error *e);
/* Tensors in the order the header lists them. */
int kc_st_count(const kc_st_file *f);
const kc_st_tensor *kc_st_at(const kc_st_file *f, int i);
/* NULL if absent. */
const kc_st_tensor *kc_st_find(const kc_st_file *f, const char *name);
/* Metadata value, or NULL if absent. */
const char *kc_st_meta(const kc_st_file *f, const char *key);
int kc_st_meta_count(const kc_st_file *f);
/* Key of metadata entry i (header order), its value in *value. */
const char *kc_st_meta_at(const kc_st_file *f, int i, const char **value);
void kc_st_close(kc_st_file *f);

#endif

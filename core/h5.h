/* HDF5 files as Keras writes them (groups, float datasets, string
 * attributes), through libhdf5: the little of the format that weight files
 * use, with every size checked and every failure an error naming the file
 * and the object. libhdf5's own error printing is turned off; its messages
 * are not shown, the object that failed is.
 *
 * Paths are absolute or relative to the root ("layers/dense/vars/0"). */
#ifndef KC_H5_H
#define KC_H5_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct kc_h5 kc_h5;

/* 1 when the file starts with HDF5's signature (at offset 0). */
int kc_h5_is_file(const char *path);
/* 1 when the bytes are an HDF5 file image. */
int kc_h5_is_image(const void *data, size_t len);

/* Opens for reading. `name` is how errors call the file. */
int kc_h5_open(const char *path, kc_h5 **out, kc_error *e);
/* Opens an image in memory (a .keras archive's model.weights.h5), read
 * only; the data is copied. */
int kc_h5_open_image(const char *name, const void *data, size_t len, kc_h5 **out, kc_error *e);
/* Creates (truncates) a file for writing. */
int kc_h5_create(const char *path, kc_h5 **out, kc_error *e);
/* Closes; for a file being written, the status of the final flush. */
int kc_h5_close(kc_h5 *h, kc_error *e);
const char *kc_h5_name(const kc_h5 *h);

/* Whether path names a group / a dataset (0 when absent). */
int kc_h5_is_group(kc_h5 *h, const char *path);
int kc_h5_is_dataset(kc_h5 *h, const char *path);
/* The names of a group's members, in name order (malloc'd array of
 * malloc'd strings; kc_h5_names_free). At most 1,000,000 of them. */
int kc_h5_members(kc_h5 *h, const char *group, char ***names, int *n, kc_error *e);
void kc_h5_names_free(char **names, int n);

/* A dataset's shape (rank <= KC_MAX_RANK, numel representable) and whether
 * it holds floating-point numbers (16, 32 or 64 bits) or integers. */
typedef enum { KC_H5_OTHER = 0, KC_H5_FLOAT, KC_H5_INT } kc_h5_class;
int kc_h5_dataset_info(kc_h5 *h, const char *path, kc_shape *shape, kc_h5_class *cls, kc_error *e);
/* Reads a numeric dataset of exactly `want` as float32 (HDF5 converts
 * float64, float16 and integers, such as Normalization's int64 count). */
int kc_h5_read_f32(kc_h5 *h, const char *path, const kc_shape *want, float *dst, kc_error *e);
/* Reads a scalar (or one-element) integer or float dataset as int64. */
int kc_h5_read_scalar_i64(kc_h5 *h, const char *path, int64_t *v, kc_error *e);

/* A string attribute (fixed or variable length, or a one-element array of
 * them) of the object at path: *out malloc'd, NULL when the attribute is
 * absent. Strings over 1 MiB are refused. */
int kc_h5_attr_string(kc_h5 *h, const char *path, const char *attr, char **out, kc_error *e);
/* A string-array attribute (h5py's layer_names, weight_names), including
 * one that Keras split into attr0, attr1, ... because it was too long.
 * *n = -1 when absent; an empty array (h5py writes float64 [] for an empty
 * list) gives 0. */
int kc_h5_attr_strings(kc_h5 *h, const char *path, const char *attr, char ***out, int *n,
                       kc_error *e);

/* ---- writing ---- */
/* Creates the group and its missing parents (an existing one is fine). */
int kc_h5_group(kc_h5 *h, const char *path, kc_error *e);
/* A float32 dataset (rank 0 for a scalar). */
int kc_h5_write_f32(kc_h5 *h, const char *path, const kc_shape *shape, const float *data,
                    kc_error *e);
int kc_h5_write_i64(kc_h5 *h, const char *path, int64_t v, kc_error *e);
/* A variable-length UTF-8 string attribute, as h5py writes str values. */
int kc_h5_set_attr_string(kc_h5 *h, const char *path, const char *attr, const char *value,
                          kc_error *e);

#endif

/* The Keras datasets cifar10 and cifar100, read from the folders Keras
 * extracts them into, with the samples of keras.datasets.<name>.load_data
 * in the same order: x uint8 (N, 32, 32, 3) (channels last, transposed from
 * the stored (N, 3, 32, 32)), y uint8 (N,) class indices (Keras gives
 * (N, 1); kerasc's labels are (N,) as for mnist). The real data has 50000
 * training and 10000 test images.
 *
 * Each batch file is a Python 2 pickle of a dict: b'data' a uint8 array
 * (rows, 3072), b'labels' (cifar-10) or b'fine_labels' / b'coarse_labels'
 * (cifar-100) lists of ints. models/data/pickle.h reads exactly that.
 *
 *   cifar10:  cifar-10-batches-py/data_batch_1 .. data_batch_5 (training, in
 *             that order), test_batch
 *   cifar100: cifar-100-python/train, test; label_mode fine (100 classes,
 *             Keras's default) or coarse (20 classes)
 *
 * Search (first folder holding the first file wins), without a path:
 * $KERAS_HOME/datasets, ~/.keras/datasets, /tmp/.keras/datasets, each as
 * <root>/<folder>-target/<folder> (Keras 3's get_file) then <root>/<folder>
 * (older Keras). A given path is the only place looked at: the folder of
 * batch files itself, or a folder holding <folder> or <folder>-target/<folder>.
 * The CIFAR archives are not downloaded; not found is KC_ERUNTIME listing every place looked
 * at and how to get the data. A found but damaged file is an error naming it,
 * never skipped. */
#ifndef KC_DATA_CIFAR_H
#define KC_DATA_CIFAR_H

#include <stddef.h>

#include "core/error.h"
#include "models/data/data.h"

typedef enum kc_cifar_labels { KC_CIFAR_FINE = 0, KC_CIFAR_COARSE = 1 } kc_cifar_labels;

/* Pixels per image and the stored layout (channels, height, width). */
#define KC_CIFAR_PIXELS 3072
#define KC_CIFAR_SIDE 32

/* Largest batch file read (the real cifar-100 train file is 158 MB). */
#define KC_CIFAR_MAX_FILE (1024L * 1024 * 1024)

/* name: "cifar10" or "cifar100" (KC_ECONFIG otherwise); mode applies to
 * cifar100 only. path: NULL/"" to search, else the user's folder. On error
 * every array is left empty. */
int kc_cifar_load(const char *name, kc_cifar_labels mode, const char *path, kc_array *x_train,
                  kc_array *y_train, kc_array *x_test, kc_array *y_test, kc_error *e);

/* One batch file's bytes: x uint8 (N, 32, 32, 3), y uint8 (N,) with every
 * label in 0..nclasses-1. `name` starts every error. */
int kc_cifar_batch_parse(const unsigned char *p, size_t n, const char *name, const char *label_key,
                         int nclasses, kc_array *x, kc_array *y, kc_error *e);

/* The same, from a file. */
int kc_cifar_batch_read(const char *file, const char *label_key, int nclasses, kc_array *x,
                        kc_array *y, kc_error *e);

#endif

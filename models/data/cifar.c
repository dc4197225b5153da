/* cifar10 and cifar100 from Keras's extracted folders: each batch file's
 * pickled dict through the bounded reader, images transposed to channels
 * last, batches concatenated in Keras's order. */
#include "models/data/cifar.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/data/keras_datasets.h"
#include "models/data/pickle.h"

typedef struct cifar_set {
    const char *name, *folder, *origin;
    const char *train[5];
    int ntrain;
    const char *test;
} cifar_set;

static const cifar_set CIFAR10 = {
    "cifar10",
    "cifar-10-batches-py",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"},
    5,
    "test_batch"};
static const cifar_set CIFAR100 = {"cifar100",
                                   "cifar-100-python",
                                   "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                                   {"train"},
                                   1,
                                   "test"};

/* ---- one batch ---- */

/* (N, 3, 32, 32) -> (N, 32, 32, 3) in place, one image at a time. */
static void to_channels_last(unsigned char *x, int64_t n) {
    enum { HW = KC_CIFAR_SIDE * KC_CIFAR_SIDE };
    unsigned char tmp[KC_CIFAR_PIXELS];
    for (int64_t i = 0; i < n; i++) {
        unsigned char *img = x + i * KC_CIFAR_PIXELS;
        memcpy(tmp, img, KC_CIFAR_PIXELS);
        for (int p = 0; p < HW; p++)
            for (int c = 0; c < 3; c++)
                img[p * 3 + c] = tmp[c * HW + p];
    }
}

static int labels_to_u8(const char *name, const char *key, const int64_t *lab, int64_t n,
                        int nclasses, kc_array *y, kc_error *e) {
    for (int64_t i = 0; i < n; i++)
        if (lab[i] < 0 || lab[i] >= nclasses)
            return kc_fail(e, KC_ERUNTIME, "%s: '%s' item %lld is %lld, outside the classes 0..%d",
                           name, key, (long long)i, (long long)lab[i], nclasses - 1);
    kc_shape sh = kc_shape1(n);
    int rc = kc_array_alloc(y, KC_DT_U8, &sh, e);
    for (int64_t i = 0; !rc && i < n; i++)
        ((uint8_t *)y->data)[i] = (uint8_t)lab[i];
    return rc;
}

int kc_cifar_batch_parse(const unsigned char *p, size_t n, const char *name, const char *label_key,
                         int nclasses, kc_array *x, kc_array *y, kc_error *e) {
    kc_error local;
    if (!e) e = &local;
    memset(x, 0, sizeof *x);
    memset(y, 0, sizeof *y);
    int64_t *lab = NULL, nlab = 0;
    int rc = kc_pickle_batch(p, n, name, "data", label_key, x, &lab, &nlab, e);
    if (rc) return rc;
    if (x->shape.d[1] != KC_CIFAR_PIXELS)
        rc = kc_fail(e, KC_ERUNTIME,
                     "%s: 'data' has %lld values per image; CIFAR images have 3 x 32 x 32 = %d",
                     name, (long long)x->shape.d[1], KC_CIFAR_PIXELS);
    if (!rc) rc = labels_to_u8(name, label_key, lab, nlab, nclasses, y, e);
    free(lab);
    if (rc) {
        kc_array_free(x);
        kc_array_free(y);
        return rc;
    }
    to_channels_last(x->data, nlab);
    x->shape = kc_shape4(nlab, KC_CIFAR_SIDE, KC_CIFAR_SIDE, 3);
    return KC_OK;
}

static int read_whole(const char *file, unsigned char **data, size_t *len, kc_error *e) {
    *data = NULL;
    FILE *f = fopen(file, "rb");
    if (!f) return kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", file, strerror(errno));
    struct stat st;
    int rc = KC_OK;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        rc = kc_fail(e, KC_ERUNTIME, "%s: not a regular file", file);
    else if (st.st_size > KC_CIFAR_MAX_FILE)
        rc = kc_fail(e, KC_ERUNTIME, "%s: %lld bytes, more than a CIFAR batch file (%ld at most)",
                     file, (long long)st.st_size, KC_CIFAR_MAX_FILE);
    else if (!(*data = malloc((size_t)st.st_size + 1)))
        rc = kc_fail(e, KC_ERUNTIME, "%s: out of memory for %lld bytes", file,
                     (long long)st.st_size);
    else if (fread(*data, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        rc = kc_fail(e, KC_ERUNTIME, "%s: read error", file);
    fclose(f);
    if (rc) {
        free(*data);
        *data = NULL;
    } else {
        *len = (size_t)st.st_size;
    }
    return rc;
}

int kc_cifar_batch_read(const char *file, const char *label_key, int nclasses, kc_array *x,
                        kc_array *y, kc_error *e) {
    kc_error local;
    if (!e) e = &local;
    memset(x, 0, sizeof *x);
    memset(y, 0, sizeof *y);
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = read_whole(file, &data, &len, e);
    if (!rc) rc = kc_cifar_batch_parse(data, len, file, label_key, nclasses, x, y, e);
    free(data);
    return rc;
}

/* ---- a split: batches concatenated ---- */

/* Appends batch (bx, by) to (x, y), growing them. */
static int append_batch(kc_array *x, kc_array *y, kc_array *bx, kc_array *by, kc_error *e) {
    if (!x->data) {
        *x = *bx, *y = *by;
        memset(bx, 0, sizeof *bx), memset(by, 0, sizeof *by);
        return KC_OK;
    }
    int64_t have = x->shape.d[0], more = bx->shape.d[0];
    if (have + more > INT64_MAX / KC_CIFAR_PIXELS)
        return kc_fail(e, KC_ERUNTIME, "too many images");
    size_t rows = (size_t)(have + more);
    void *nx = realloc(x->data, rows * KC_CIFAR_PIXELS);
    if (!nx) return kc_fail(e, KC_ERUNTIME, "out of memory for %zu images", rows);
    x->data = nx;
    void *ny = realloc(y->data, rows);
    if (!ny) return kc_fail(e, KC_ERUNTIME, "out of memory for %zu labels", rows);
    y->data = ny;
    memcpy((unsigned char *)x->data + (size_t)have * KC_CIFAR_PIXELS, bx->data,
           (size_t)more * KC_CIFAR_PIXELS);
    memcpy((unsigned char *)y->data + have, by->data, (size_t)more);
    x->shape.d[0] = y->shape.d[0] = (int64_t)rows;
    kc_array_free(bx);
    kc_array_free(by);
    return KC_OK;
}

static int load_split(const char *dir, const char *const *files, int nfiles, const char *key,
                      int nclasses, kc_array *x, kc_array *y, kc_error *e) {
    int rc = KC_OK;
    for (int i = 0; !rc && i < nfiles; i++) {
        char file[1400];
        snprintf(file, sizeof file, "%s/%s", dir, files[i]);
        kc_array bx = {0}, by = {0};
        rc = kc_cifar_batch_read(file, key, nclasses, &bx, &by, e);
        if (!rc) rc = append_batch(x, y, &bx, &by, e);
        kc_array_free(&bx);
        kc_array_free(&by);
    }
    if (!rc && !x->shape.d[0])
        rc = kc_fail(e, KC_ERUNTIME, "%s: the batch files hold no images", dir);
    if (rc) {
        kc_array_free(x);
        kc_array_free(y);
    }
    return rc;
}

/* ---- search ---- */

/* The folder holding the set's first training file, into dir. */
static int find_folder(const cifar_set *s, const char *path, char *dir, size_t n, kc_error *e) {
    char sub[3][200], looked[1400] = "";
    int nsub = 0;
    if (path && *path) snprintf(sub[nsub++], sizeof sub[0], "%s", s->train[0]);
    snprintf(sub[nsub++], sizeof sub[0], "%s-target/%s/%s", s->folder, s->folder, s->train[0]);
    snprintf(sub[nsub++], sizeof sub[0], "%s/%s", s->folder, s->train[0]);
    struct stat st;
    if (path && *path && stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return kc_fail(e, KC_ERUNTIME,
                       "dataset '%s': %s is a file; give the folder of the batch files (%s)",
                       s->name, path, s->folder);
    if (path && *path && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))) {
        snprintf(looked, sizeof looked, "\n  %s: not there", path);
        nsub = 0;
    }
    for (int i = 0; i < nsub; i++) {
        if (kc_dataset_find(sub[i], path, dir, n, looked, sizeof looked)) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0;
            return KC_OK;
        }
    }
    int user = path && *path;
    return kc_fail(e, KC_ERUNTIME,
                   "dataset '%s' not found; looked in:%s\nkerasc does not download archives. "
                   "To get it: run "
                   "keras.datasets.%s.load_data() once (it extracts %s/ into "
                   "~/.keras/datasets/%s-target/), or download %s and extract it into "
                   "~/.keras/datasets/; or %s.",
                   s->name, looked, s->name, s->folder, s->folder, s->origin,
                   user ? "correct the dataset path in the model file"
                        : "give the path of a copy in the model file");
}

int kc_cifar_load(const char *name, kc_cifar_labels mode, const char *path, kc_array *x_train,
                  kc_array *y_train, kc_array *x_test, kc_array *y_test, kc_error *e) {
    kc_error local;
    if (!e) e = &local;
    kc_array *all[4] = {x_train, y_train, x_test, y_test};
    for (int i = 0; i < 4; i++)
        memset(all[i], 0, sizeof *all[i]);
    const cifar_set *s = NULL;
    if (name && !strcmp(name, "cifar10")) s = &CIFAR10;
    if (name && !strcmp(name, "cifar100")) s = &CIFAR100;
    if (!s) return kc_fail(e, KC_ECONFIG, "unknown CIFAR dataset '%s'", name ? name : "(none)");
    if (mode != KC_CIFAR_FINE && mode != KC_CIFAR_COARSE)
        return kc_fail(e, KC_ECONFIG, "label_mode must be fine or coarse");
    const char *key = s == &CIFAR10           ? "labels"
                      : mode == KC_CIFAR_FINE ? "fine_labels"
                                              : "coarse_labels";
    int nclasses = s == &CIFAR10 ? 10 : mode == KC_CIFAR_FINE ? 100 : 20;
    char dir[1200];
    int rc = find_folder(s, path, dir, sizeof dir, e);
    if (!rc) rc = load_split(dir, s->train, s->ntrain, key, nclasses, x_train, y_train, e);
    if (!rc) rc = load_split(dir, &s->test, 1, key, nclasses, x_test, y_test, e);
    if (rc)
        for (int i = 0; i < 4; i++)
            kc_array_free(all[i]);
    return rc;
}

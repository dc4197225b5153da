/* The Keras datasets mnist and fashion_mnist, from the places Keras caches
 * them or a Debian package installs them (cifar10 / cifar100 and
 * boston_housing by name through their own loaders), and the search for any
 * Keras dataset file (kc_dataset_find). A file found nowhere is downloaded
 * into the Keras cache folder when downloads are allowed (download.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/data/cifar.h"
#include "models/data/data.h"
#include "models/data/download.h"
#include "models/data/keras_datasets.h"

#define KERAS_URL KC_KERAS_DATASETS_URL

enum { DS_MNIST, DS_FASHION };

/* Outcome of trying one place. */
enum { TRY_FOUND, TRY_ABSENT, TRY_ERROR };

typedef struct dataset_out {
    kc_array *x_train, *y_train, *x_test, *y_test;
} dataset_out;

typedef struct search_log {
    char text[1400];
    size_t used;
} search_log;

static void log_place(search_log *log, const char *path, const char *note) {
    if (log->used >= sizeof log->text) return;
    int n = snprintf(log->text + log->used, sizeof log->text - log->used, "\n  %s%s", path, note);
    if (n > 0) log->used += (size_t)n;
}

static const char *const IDX_FILES[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void free_all(dataset_out *o) {
    kc_array_free(o->x_train);
    kc_array_free(o->y_train);
    kc_array_free(o->x_test);
    kc_array_free(o->y_test);
}

/* Images (N, H, W) uint8 with labels (N,) uint8 in 0..9, same H, W for both splits. */
static int check_split(const kc_array *x, const kc_array *y, const char *what, const char *where,
                       kc_error *e) {
    char xs[128], ys[128];
    if (x->dtype != KC_DT_U8 || x->shape.rank != 3 || y->dtype != KC_DT_U8 || y->shape.rank != 1 ||
        x->shape.d[0] != y->shape.d[0])
        return kc_fail(e, KC_ERUNTIME,
                       "%s: %s images %s %s and labels %s %s; expected uint8 (N, H, W) images and "
                       "uint8 (N,) labels",
                       where, what, kc_shape_str(&x->shape, 0, xs, sizeof xs),
                       x->dtype == KC_DT_U8 ? "uint8" : "float32",
                       kc_shape_str(&y->shape, 0, ys, sizeof ys),
                       y->dtype == KC_DT_U8 ? "uint8" : "float32");
    if (x->shape.d[0] == 0)
        return kc_fail(e, KC_ERUNTIME, "%s: the %s images and labels hold no samples", where, what);
    const uint8_t *lab = y->data;
    for (int64_t i = 0; i < y->shape.d[0]; i++)
        if (lab[i] > 9)
            return kc_fail(e, KC_ERUNTIME, "%s: %s label %lld is %d, outside the classes 0..9",
                           where, what, (long long)i, lab[i]);
    return KC_OK;
}

static int check_all(const dataset_out *o, const char *where, kc_error *e) {
    int rc = check_split(o->x_train, o->y_train, "training", where, e);
    if (!rc) rc = check_split(o->x_test, o->y_test, "test", where, e);
    if (!rc && (o->x_train->shape.d[1] != o->x_test->shape.d[1] ||
                o->x_train->shape.d[2] != o->x_test->shape.d[2]))
        rc = kc_fail(e, KC_ERUNTIME, "%s: training and test images differ in size", where);
    return rc;
}

static int try_npz(const char *path, dataset_out *o, search_log *log, kc_error *e) {
    if (!is_file(path)) {
        log_place(log, path, ": not there");
        return TRY_ABSENT;
    }
    static const char *const keys[4] = {"x_train", "y_train", "x_test", "y_test"};
    kc_array *dst[4] = {o->x_train, o->y_train, o->x_test, o->y_test};
    for (int i = 0; i < 4; i++)
        if (kc_npz_load(path, keys[i], dst[i], e) != KC_OK) {
            free_all(o);
            return TRY_ERROR;
        }
    if (check_all(o, path, e) != KC_OK) {
        free_all(o);
        return TRY_ERROR;
    }
    return TRY_FOUND;
}

/* The name of file i in dir as present (gzip, raw, or the raw "train-images.idx3-ubyte"
 * spelling); 0 when absent. */
static int find_idx_file(const char *dir, int i, char *out, size_t n) {
    const char *base = IDX_FILES[i];
    char dotted[64];
    snprintf(dotted, sizeof dotted, "%s", base);
    char *dash = strstr(dotted, "-idx");
    if (dash) *dash = '.';
    const char *fmt[3] = {"%s/%s.gz", "%s/%s", "%s/%s"};
    const char *names[3] = {base, base, dotted};
    for (int k = 0; k < 3; k++) {
        snprintf(out, n, fmt[k], dir, names[k]);
        if (is_file(out)) return 1;
    }
    return 0;
}

static int try_idx_dir(const char *dir, dataset_out *o, search_log *log, kc_error *e) {
    if (!is_dir(dir)) {
        log_place(log, dir, ": no such directory");
        return TRY_ABSENT;
    }
    char files[4][1200];
    int present = 0, missing = -1;
    for (int i = 0; i < 4; i++) {
        if (find_idx_file(dir, i, files[i], sizeof files[i]))
            present++;
        else if (missing < 0)
            missing = i;
    }
    if (present < 4) {
        char note[160];
        snprintf(note, sizeof note, present ? ": incomplete, no %s[.gz]" : ": no IDX files",
                 IDX_FILES[missing]);
        log_place(log, dir, note);
        return TRY_ABSENT;
    }
    kc_array *dst[4] = {o->x_train, o->y_train, o->x_test, o->y_test};
    for (int i = 0; i < 4; i++)
        if (kc_array_load(files[i], NULL, dst[i], e) != KC_OK) {
            free_all(o);
            return TRY_ERROR;
        }
    if (check_all(o, dir, e) != KC_OK) {
        free_all(o);
        return TRY_ERROR;
    }
    return TRY_FOUND;
}

static int not_found(int ds, const char *name, int user_path, const search_log *log, kc_error *e) {
    const char *how =
        ds == DS_MNIST
            ? "download " KERAS_URL "mnist.npz into ~/.keras/datasets/ (or $KERAS_HOME/datasets/), "
              "or put the four IDX files in /usr/share/datasets/mnist"
            : "apt-get install dataset-fashion-mnist (fills /usr/share/datasets/fashion-mnist), "
              "or download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
              "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from " KERAS_URL
              " into ~/.keras/datasets/fashion-mnist/";
    return kc_fail(e, KC_ERUNTIME, "dataset '%s' not found; looked in:%s\nTo get it: %s; %s.", name,
                   log->text, how,
                   user_path ? "or correct the dataset path in the model file"
                             : "or give the path of a copy in the model file");
}

/* The user's own path: a Keras-style npz file or a directory of IDX files. */
static int load_user_path(int ds, const char *name, const char *dir, dataset_out *o,
                          search_log *log, kc_error *e) {
    int r;
    if (is_file(dir)) {
        r = try_npz(dir, o, log, e);
    } else {
        r = try_idx_dir(dir, o, log, e);
        if (r == TRY_ABSENT && ds == DS_MNIST && is_dir(dir)) {
            char npz[1200];
            snprintf(npz, sizeof npz, "%s/mnist.npz", dir);
            r = try_npz(npz, o, log, e);
        }
    }
    if (r == TRY_ABSENT) return not_found(ds, name, 1, log, e);
    return r == TRY_FOUND ? KC_OK : e->code;
}

/* Keras's cache directories in search order: $KERAS_HOME/datasets,
 * ~/.keras/datasets, /tmp/.keras/datasets. Returns how many. */
static int keras_roots(char roots[3][1100]) {
    const char *kh = getenv("KERAS_HOME"), *home = getenv("HOME");
    int nroots = 0;
    if (kh && *kh) snprintf(roots[nroots++], 1100, "%s/datasets", kh);
    if (home && *home) snprintf(roots[nroots++], 1100, "%s/.keras/datasets", home);
    snprintf(roots[nroots++], 1100, "/tmp/.keras/datasets");
    return nroots;
}

static int find_in(const char *dir, const char *file, char *found, size_t n, search_log *log) {
    int len = snprintf(found, n, "%s/%s", dir, file);
    if (len < 0 || (size_t)len >= n) {
        log_place(log, dir, ": path too long");
        return 0;
    }
    if (is_file(found)) return 1;
    log_place(log, found, is_dir(dir) ? ": not there" : ": no such directory");
    return 0;
}

/* Downloads `file` (a name in download.h's table) when downloads are on;
 * 1 with its path in found[n]. A failure is noted in the log. */
static int fetch_logged(const char *file, char *found, size_t n, search_log *log) {
    if (!kc_download_allowed() || !kc_download_lookup(file)) return 0;
    kc_error de = {.code = 0};
    if (kc_download_fetch(file, NULL, found, n, &de) == KC_OK) return 1;
    log_place(log, de.msg, "");
    return 0;
}

int kc_dataset_find(const char *file, const char *user_path, char *found, size_t n, char *looked,
                    size_t looked_n) {
    search_log log = {.used = 0};
    log.text[0] = 0;
    int hit = 0;
    if (user_path && *user_path) {
        if (is_file(user_path)) {
            snprintf(found, n, "%s", user_path);
            return strlen(user_path) < n;
        }
        if (is_dir(user_path))
            hit = find_in(user_path, file, found, n, &log);
        else
            log_place(&log, user_path, ": not there");
    } else {
        char roots[3][1100];
        int nroots = keras_roots(roots);
        for (int i = 0; i < nroots && !hit; i++)
            hit = find_in(roots[i], file, found, n, &log);
        if (!hit) hit = fetch_logged(file, found, n, &log);
    }
    if (!hit && looked && looked_n) {
        size_t have = strlen(looked);
        if (have < looked_n) snprintf(looked + have, looked_n - have, "%s", log.text);
    }
    return hit;
}

/* Downloads what the first cache folder lacks of dataset ds: mnist.npz or
 * the four gzipped IDX files of fashion-mnist/. 1 when all are there. */
static int fetch(int ds, search_log *log) {
    char p[1200];
    if (ds == DS_MNIST) return fetch_logged("mnist.npz", p, sizeof p, log);
    char dir[1100];
    if (!kc_download_allowed() || !kc_download_dir(dir, sizeof dir - 20)) return 0;
    strcat(dir, "/fashion-mnist");
    for (int i = 0; i < 4; i++) {
        char name[100];
        snprintf(name, sizeof name, "fashion-mnist/%s.gz", IDX_FILES[i]);
        if (!find_idx_file(dir, i, p, sizeof p) && !fetch_logged(name, p, sizeof p, log)) return 0;
    }
    return 1;
}

/* $KERAS_HOME/datasets, ~/.keras/datasets, /tmp/.keras/datasets, then the
 * system copy, then a download. */
static int search(int ds, const char *name, dataset_out *o, search_log *log, kc_error *e) {
    char roots[3][1100];
    int nroots = keras_roots(roots);
    for (int i = 0; i < nroots; i++) {
        char p[1200];
        int n = snprintf(p, sizeof p, "%s/%s", roots[i],
                         ds == DS_MNIST ? "mnist.npz" : "fashion-mnist");
        if (n < 0 || (size_t)n >= sizeof p) continue; /* a path this long cannot be opened anyway */
        int r = ds == DS_MNIST ? try_npz(p, o, log, e) : try_idx_dir(p, o, log, e);
        if (r != TRY_ABSENT) return r == TRY_FOUND ? KC_OK : e->code;
    }
    const char *sys =
        ds == DS_MNIST ? "/usr/share/datasets/mnist" : "/usr/share/datasets/fashion-mnist";
    int r = try_idx_dir(sys, o, log, e);
    if (r != TRY_ABSENT) return r == TRY_FOUND ? KC_OK : e->code;
    char p[1200];
    if (fetch(ds, log) && kc_download_dir(p, sizeof p - 20)) {
        strcat(p, ds == DS_MNIST ? "/mnist.npz" : "/fashion-mnist");
        r = ds == DS_MNIST ? try_npz(p, o, log, e) : try_idx_dir(p, o, log, e);
        if (r != TRY_ABSENT) return r == TRY_FOUND ? KC_OK : e->code;
    }
    return not_found(ds, name, 0, log, e);
}

int kc_dataset_load(const char *name, const char *dir, kc_array *x_train, kc_array *y_train,
                    kc_array *x_test, kc_array *y_test, kc_error *e) {
    dataset_out o = {x_train, y_train, x_test, y_test};
    memset(x_train, 0, sizeof *x_train);
    memset(y_train, 0, sizeof *y_train);
    memset(x_test, 0, sizeof *x_test);
    memset(y_test, 0, sizeof *y_test);
    int ds;
    if (name && !strcmp(name, "boston_housing"))
        return kc_boston_housing_load(dir, 0.2, 113, x_train, y_train, x_test, y_test, e);
    if (name &&
        (!strcmp(name, "cifar10") || !strcmp(name, "cifar100") || !strcmp(name, "cifar100:fine")))
        return kc_cifar_load(strncmp(name, "cifar100", 8) ? "cifar10" : "cifar100", KC_CIFAR_FINE,
                             dir, x_train, y_train, x_test, y_test, e);
    if (name && !strcmp(name, "cifar100:coarse"))
        return kc_cifar_load("cifar100", KC_CIFAR_COARSE, dir, x_train, y_train, x_test, y_test, e);
    if (name && !strcmp(name, "mnist"))
        ds = DS_MNIST;
    else if (name && (!strcmp(name, "fashion_mnist") || !strcmp(name, "fashion-mnist")))
        ds = DS_FASHION;
    else
        return kc_fail(e, KC_ECONFIG,
                       "unknown dataset '%s' (available: mnist, fashion_mnist, cifar10, "
                       "cifar100, boston_housing)",
                       name ? name : "(none)");
    kc_error local;
    if (!e) e = &local;
    search_log log = {.used = 0};
    log.text[0] = 0;
    if (dir && *dir) return load_user_path(ds, name, dir, &o, &log, e);
    return search(ds, name, &o, &log, e);
}

/* HDF5 through libhdf5 (core/h5.h). Every identifier opened here is closed
 * on every path; libhdf5's error stack is silenced and each failure becomes
 * an error naming the file and the object. */
#include "core/h5.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KC_H5_MAX_STRING (1u << 20)
#define KC_H5_MAX_MEMBERS 1000000

struct kc_h5 {
    hid_t file;
    int writing;
    char name[4096];
};

static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

static void quiet(void) {
    static int done;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

int kc_h5_is_image(const void *data, size_t len) {
    return len >= sizeof signature && !memcmp(data, signature, sizeof signature);
}

int kc_h5_is_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char b[8];
    size_t got = fread(b, 1, sizeof b, f);
    fclose(f);
    return kc_h5_is_image(b, got);
}

const char *kc_h5_name(const kc_h5 *h) {
    return h->name;
}

static int wrap(const char *name, hid_t file, int writing, kc_h5 **out, kc_error *e) {
    kc_h5 *h = calloc(1, sizeof *h);
    if (!h) {
        H5Fclose(file);
        return kc_fail(e, KC_ERUNTIME, "out of memory opening %s", name);
    }
    h->file = file;
    h->writing = writing;
    snprintf(h->name, sizeof h->name, "%s", name);
    *out = h;
    return KC_OK;
}

int kc_h5_open(const char *path, kc_h5 **out, kc_error *e) {
    quiet();
    *out = NULL;
    if (!kc_h5_is_file(path))
        return kc_fail(e, KC_ECONFIG, "%s: not an HDF5 file (no HDF5 signature at its start)",
                       path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return kc_fail(e, KC_ECONFIG, "%s: cannot be read as an HDF5 file", path);
    return wrap(path, f, 0, out, e);
}

int kc_h5_open_image(const char *name, const void *data, size_t len, kc_h5 **out, kc_error *e) {
    quiet();
    *out = NULL;
    if (!kc_h5_is_image(data, len))
        return kc_fail(e, KC_ECONFIG, "%s: not an HDF5 file (no HDF5 signature at its start)",
                       name);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t f = -1;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0 &&
        H5Pset_file_image(fapl, (void *)data, len) >= 0)
        f = H5Fopen(name, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) return kc_fail(e, KC_ECONFIG, "%s: cannot be read as an HDF5 file", name);
    return wrap(name, f, 0, out, e);
}

int kc_h5_create(const char *path, kc_h5 **out, kc_error *e) {
    quiet();
    *out = NULL;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return kc_fail(e, KC_ERUNTIME, "%s: cannot create the HDF5 file", path);
    return wrap(path, f, 1, out, e);
}

int kc_h5_close(kc_h5 *h, kc_error *e) {
    if (!h) return KC_OK;
    int rc = KC_OK;
    if (h->writing && H5Fflush(h->file, H5F_SCOPE_GLOBAL) < 0)
        rc = kc_fail(e, KC_ERUNTIME, "%s: writing failed", h->name);
    if (H5Fclose(h->file) < 0 && !rc && h->writing)
        rc = kc_fail(e, KC_ERUNTIME, "%s: writing failed", h->name);
    free(h);
    return rc;
}

/* ---- objects ---- */

/* Every component of path exists as a link (H5Lexists needs the parents). */
static int exists(kc_h5 *h, const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        htri_t t = H5Lexists(h->file, buf, H5P_DEFAULT);
        buf[i] = c;
        if (t <= 0) return 0;
    }
    return 1;
}

static H5I_type_t object_type(kc_h5 *h, const char *path) {
    if (!strcmp(path, "/")) return H5I_GROUP;
    if (!exists(h, path)) return H5I_BADID;
    hid_t o = H5Oopen(h->file, path, H5P_DEFAULT);
    if (o < 0) return H5I_BADID;
    H5I_type_t t = H5Iget_type(o);
    H5Oclose(o);
    return t;
}

int kc_h5_is_group(kc_h5 *h, const char *path) {
    return object_type(h, path) == H5I_GROUP;
}

int kc_h5_is_dataset(kc_h5 *h, const char *path) {
    return object_type(h, path) == H5I_DATASET;
}

void kc_h5_names_free(char **names, int n) {
    for (int i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

int kc_h5_members(kc_h5 *h, const char *group, char ***names, int *n, kc_error *e) {
    *names = NULL;
    *n = 0;
    if (!kc_h5_is_group(h, group))
        return kc_fail(e, KC_ECONFIG, "%s: no group '%s'", h->name, group);
    hid_t g = H5Gopen2(h->file, group, H5P_DEFAULT);
    H5G_info_t info;
    if (g < 0 || H5Gget_info(g, &info) < 0 || info.nlinks > KC_H5_MAX_MEMBERS) {
        if (g >= 0) H5Gclose(g);
        return kc_fail(e, KC_ECONFIG, "%s: group '%s' cannot be listed", h->name, group);
    }
    int count = (int)info.nlinks, rc = KC_OK;
    char **out = calloc((size_t)(count ? count : 1), sizeof *out);
    if (!out) rc = kc_fail(e, KC_ERUNTIME, "out of memory reading %s", h->name);
    for (int i = 0; !rc && i < count; i++) {
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)i, NULL, 0,
                                         H5P_DEFAULT);
        if (len < 0 || len > 4095) {
            rc =
                kc_fail(e, KC_ECONFIG, "%s: a member of '%s' has no readable name", h->name, group);
        } else if (!(out[i] = malloc((size_t)len + 1))) {
            rc = kc_fail(e, KC_ERUNTIME, "out of memory reading %s", h->name);
        } else if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)i, out[i],
                                      (size_t)len + 1, H5P_DEFAULT) < 0) {
            rc =
                kc_fail(e, KC_ECONFIG, "%s: a member of '%s' has no readable name", h->name, group);
        }
    }
    H5Gclose(g);
    if (rc) {
        kc_h5_names_free(out, count);
        return rc;
    }
    *names = out;
    *n = count;
    return KC_OK;
}

/* ---- datasets ---- */

/* The dataspace's shape, checked. */
static int space_shape(hid_t space, kc_shape *shape) {
    H5S_class_t c = H5Sget_simple_extent_type(space);
    memset(shape, 0, sizeof *shape);
    if (c == H5S_SCALAR) return 1;
    if (c != H5S_SIMPLE) return 0;
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0 || rank > KC_MAX_RANK) return 0;
    hsize_t dims[H5S_MAX_RANK];
    if (H5Sget_simple_extent_dims(space, dims, NULL) != rank) return 0;
    shape->rank = rank;
    for (int i = 0; i < rank; i++) {
        if (dims[i] > (hsize_t)INT64_MAX) return 0;
        shape->d[i] = (int64_t)dims[i];
    }
    size_t bytes;
    return kc_shape_bytes(shape, 8, &bytes);
}

int kc_h5_dataset_info(kc_h5 *h, const char *path, kc_shape *shape, kc_h5_class *cls, kc_error *e) {
    if (!kc_h5_is_dataset(h, path))
        return kc_fail(e, KC_ECONFIG, "%s: no dataset '%s'", h->name, path);
    hid_t d = H5Dopen2(h->file, path, H5P_DEFAULT);
    hid_t s = d >= 0 ? H5Dget_space(d) : -1, t = d >= 0 ? H5Dget_type(d) : -1;
    int ok = s >= 0 && t >= 0 && space_shape(s, shape);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    *cls = c == H5T_FLOAT ? KC_H5_FLOAT : c == H5T_INTEGER ? KC_H5_INT : KC_H5_OTHER;
    if (*cls == KC_H5_FLOAT && H5Tget_size(t) != 2 && H5Tget_size(t) != 4 && H5Tget_size(t) != 8)
        *cls = KC_H5_OTHER;
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (d >= 0) H5Dclose(d);
    if (!ok)
        return kc_fail(e, KC_ECONFIG, "%s: dataset '%s' has an unreadable shape", h->name, path);
    return KC_OK;
}

static int read_as(kc_h5 *h, const char *path, hid_t memtype, void *dst, kc_error *e) {
    hid_t d = H5Dopen2(h->file, path, H5P_DEFAULT);
    herr_t r = d >= 0 ? H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) : -1;
    if (d >= 0) H5Dclose(d);
    if (r < 0) return kc_fail(e, KC_ECONFIG, "%s: dataset '%s' cannot be read", h->name, path);
    return KC_OK;
}

int kc_h5_read_f32(kc_h5 *h, const char *path, const kc_shape *want, float *dst, kc_error *e) {
    kc_shape s;
    kc_h5_class c;
    int rc = kc_h5_dataset_info(h, path, &s, &c, e);
    if (rc) return rc;
    char a[128], b[128];
    if (c == KC_H5_OTHER)
        return kc_fail(e, KC_ECONFIG, "%s: dataset '%s' does not hold numbers", h->name, path);
    if (!kc_shape_equal(&s, want))
        return kc_fail(e, KC_ECONFIG, "%s: dataset '%s' has shape %s, expected %s", h->name, path,
                       kc_shape_str(&s, 0, a, sizeof a), kc_shape_str(want, 0, b, sizeof b));
    if (kc_shape_numel(&s) == 0) return KC_OK;
    return read_as(h, path, H5T_NATIVE_FLOAT, dst, e);
}

int kc_h5_read_scalar_i64(kc_h5 *h, const char *path, int64_t *v, kc_error *e) {
    kc_shape s;
    kc_h5_class c;
    int rc = kc_h5_dataset_info(h, path, &s, &c, e);
    if (rc) return rc;
    if (kc_shape_numel(&s) != 1 || c == KC_H5_OTHER)
        return kc_fail(e, KC_ECONFIG, "%s: dataset '%s' is not a single number", h->name, path);
    if (c == KC_H5_INT) return read_as(h, path, H5T_NATIVE_INT64, v, e);
    double x;
    if ((rc = read_as(h, path, H5T_NATIVE_DOUBLE, &x, e))) return rc;
    if (!(x >= -9.2e18 && x <= 9.2e18) || x != (double)(int64_t)x)
        return kc_fail(e, KC_ECONFIG, "%s: dataset '%s' is not a whole number", h->name, path);
    *v = (int64_t)x;
    return KC_OK;
}

/* ---- string attributes ---- */

static int attr_exists(kc_h5 *h, const char *path, const char *attr) {
    if (strcmp(path, "/") && !exists(h, path)) return 0;
    return H5Aexists_by_name(h->file, path, attr, H5P_DEFAULT) > 0;
}

/* Reads n strings of the attribute into out[] (malloc'd each). */
static int read_strings(hid_t a, hid_t t, size_t n, char **out) {
    if (H5Tget_class(t) != H5T_STRING) return 0;
    if (H5Tis_variable_str(t) > 0) {
        hid_t m = H5Tcopy(H5T_C_S1);
        char **v = calloc(n ? n : 1, sizeof *v);
        int ok = m >= 0 && v && H5Tset_size(m, H5T_VARIABLE) >= 0 &&
                 H5Tset_cset(m, H5Tget_cset(t)) >= 0 && H5Aread(a, m, v) >= 0;
        for (size_t i = 0; v && i < n; i++) {
            if (ok && (!v[i] || strlen(v[i]) > KC_H5_MAX_STRING || !(out[i] = strdup(v[i]))))
                ok = 0;
            if (v[i]) H5free_memory(v[i]);
        }
        free(v);
        if (m >= 0) H5Tclose(m);
        return ok;
    }
    size_t sz = H5Tget_size(t);
    if (sz == 0 || sz > KC_H5_MAX_STRING || n > KC_H5_MAX_STRING / sz) return 0;
    char *buf = malloc(n * sz + 1);
    hid_t m = H5Tcopy(t);
    int ok = buf && m >= 0 && H5Aread(a, m, buf) >= 0;
    for (size_t i = 0; ok && i < n; i++) {
        char *s = malloc(sz + 1);
        if (!s) {
            ok = 0;
            break;
        }
        memcpy(s, buf + i * sz, sz);
        s[sz] = 0;
        out[i] = s;
    }
    if (m >= 0) H5Tclose(m);
    free(buf);
    return ok;
}

/* The attribute's strings (count -1: not strings). */
static int attr_read(kc_h5 *h, const char *path, const char *attr, char ***out, int *n,
                     kc_error *e) {
    hid_t a = H5Aopen_by_name(h->file, path, attr, H5P_DEFAULT, H5P_DEFAULT);
    hid_t s = a >= 0 ? H5Aget_space(a) : -1, t = a >= 0 ? H5Aget_type(a) : -1;
    kc_shape sh;
    int ok = s >= 0 && t >= 0;
    H5S_class_t sc = ok ? H5Sget_simple_extent_type(s) : H5S_NO_CLASS;
    int64_t count = 0;
    if (ok && sc != H5S_NULL) {
        ok = space_shape(s, &sh) && sh.rank <= 1;
        count = ok ? kc_shape_numel(&sh) : 0;
    }
    ok = ok && count <= KC_H5_MAX_MEMBERS;
    char **v = NULL;
    if (ok && count > 0) {
        v = calloc((size_t)count, sizeof *v);
        ok = v && read_strings(a, t, (size_t)count, v);
    } else if (ok && H5Tget_class(t) != H5T_STRING && H5Tget_class(t) != H5T_FLOAT) {
        ok = 0; /* only h5py's empty float64 array stands for an empty list */
    }
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (a >= 0) H5Aclose(a);
    if (!ok) {
        kc_h5_names_free(v, (int)count);
        return kc_fail(e, KC_ECONFIG,
                       "%s: attribute '%s' of '%s' is not a string or a list of "
                       "strings",
                       h->name, attr, path);
    }
    *out = v;
    *n = (int)count;
    return KC_OK;
}

int kc_h5_attr_string(kc_h5 *h, const char *path, const char *attr, char **out, kc_error *e) {
    *out = NULL;
    if (!attr_exists(h, path, attr)) return KC_OK;
    char **v;
    int n, rc = attr_read(h, path, attr, &v, &n, e);
    if (rc) return rc;
    if (n != 1) {
        kc_h5_names_free(v, n);
        return kc_fail(e, KC_ECONFIG, "%s: attribute '%s' of '%s' is not one string", h->name, attr,
                       path);
    }
    *out = v[0];
    free(v);
    return KC_OK;
}

/* Appends b's strings to *a. */
static int append(char ***a, int *na, char **b, int nb) {
    if (nb == 0) {
        free(b);
        return 1;
    }
    char **m = realloc(*a, (size_t)(*na + nb) * sizeof *m);
    if (!m) {
        kc_h5_names_free(b, nb);
        return 0;
    }
    memcpy(m + *na, b, (size_t)nb * sizeof *b);
    free(b);
    *a = m;
    *na += nb;
    return 1;
}

int kc_h5_attr_strings(kc_h5 *h, const char *path, const char *attr, char ***out, int *n,
                       kc_error *e) {
    *out = NULL;
    *n = -1;
    if (attr_exists(h, path, attr)) return attr_read(h, path, attr, out, n, e);
    /* Keras splits an attribute over 64 KB into attr0, attr1, ... */
    char part[300];
    char **all = NULL;
    int total = 0;
    for (int k = 0; k < 100000; k++) {
        snprintf(part, sizeof part, "%s%d", attr, k);
        if (!attr_exists(h, path, part)) break;
        char **v;
        int nv, rc = attr_read(h, path, part, &v, &nv, e);
        if (rc || !append(&all, &total, v, nv)) {
            kc_h5_names_free(all, total);
            return rc ? rc : kc_fail(e, KC_ERUNTIME, "out of memory reading %s", h->name);
        }
        *n = total;
    }
    *out = all;
    return KC_OK;
}

/* ---- writing ---- */

static hid_t link_props(void) {
    hid_t l = H5Pcreate(H5P_LINK_CREATE);
    if (l >= 0) H5Pset_create_intermediate_group(l, 1);
    return l;
}

int kc_h5_group(kc_h5 *h, const char *path, kc_error *e) {
    if (kc_h5_is_group(h, path)) return KC_OK;
    hid_t l = link_props();
    hid_t g = l >= 0 ? H5Gcreate2(h->file, path, l, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (l >= 0) H5Pclose(l);
    if (g < 0) return kc_fail(e, KC_ERUNTIME, "%s: cannot create group '%s'", h->name, path);
    H5Gclose(g);
    return KC_OK;
}

static int write_dataset(kc_h5 *h, const char *path, const kc_shape *shape, hid_t filetype,
                         hid_t memtype, const void *data, kc_error *e) {
    hsize_t dims[KC_MAX_RANK];
    for (int i = 0; i < shape->rank; i++)
        dims[i] = (hsize_t)shape->d[i];
    hid_t s = shape->rank ? H5Screate_simple(shape->rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t l = link_props();
    hid_t d =
        s >= 0 && l >= 0 ? H5Dcreate2(h->file, path, filetype, s, l, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = d >= 0 && (kc_shape_numel(shape) == 0 ||
                        H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    if (d >= 0) H5Dclose(d);
    if (l >= 0) H5Pclose(l);
    if (s >= 0) H5Sclose(s);
    if (!ok) return kc_fail(e, KC_ERUNTIME, "%s: cannot write dataset '%s'", h->name, path);
    return KC_OK;
}

int kc_h5_write_f32(kc_h5 *h, const char *path, const kc_shape *shape, const float *data,
                    kc_error *e) {
    return write_dataset(h, path, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, e);
}

int kc_h5_write_i64(kc_h5 *h, const char *path, int64_t v, kc_error *e) {
    kc_shape scalar = {0};
    return write_dataset(h, path, &scalar, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, e);
}

int kc_h5_set_attr_string(kc_h5 *h, const char *path, const char *attr, const char *value,
                          kc_error *e) {
    hid_t t = H5Tcopy(H5T_C_S1);
    hid_t s = H5Screate(H5S_SCALAR);
    int ok =
        t >= 0 && s >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0;
    if (ok && attr_exists(h, path, attr))
        ok = H5Adelete_by_name(h->file, path, attr, H5P_DEFAULT) >= 0;
    hid_t a =
        ok ? H5Acreate_by_name(h->file, path, attr, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
           : -1;
    ok = a >= 0 && H5Awrite(a, t, &value) >= 0;
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (!ok)
        return kc_fail(e, KC_ERUNTIME, "%s: cannot write attribute '%s' of '%s'", h->name, attr,
                       path);
    return KC_OK;
}

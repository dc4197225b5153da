/* Keras's image resize and image_dataset_from_directory's folder index. */
#include "models/data/images.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

void kc_image_opts_default(kc_image_opts *o) {
    *o = (kc_image_opts){.height = 256, .width = 256, .channels = 3};
}

/* --------------------------------------------------------------- resize --- */

typedef struct lerp_tab {
    int64_t lo, hi;
    float t;
} lerp_tab;

/* tf.image.resize's bilinear weights: half-pixel centres, float arithmetic. */
static void bilinear_weights(int64_t in, int64_t out, lerp_tab *w) {
    float scale = (float)in / (float)out;
    for (int64_t i = 0; i < out; i++) {
        float x = ((float)i + 0.5f) * scale - 0.5f, f = floorf(x);
        int64_t lo = (int64_t)f, hi = (int64_t)ceilf(x);
        w[i].lo = lo < 0 ? 0 : lo;
        w[i].hi = hi > in - 1 ? in - 1 : hi;
        w[i].t = x - f;
    }
}

/* ResizeNearestNeighbor with half_pixel_centers. */
static void nearest_index(int64_t in, int64_t out, lerp_tab *w) {
    float scale = (float)in / (float)out;
    for (int64_t i = 0; i < out; i++) {
        int64_t k = (int64_t)floorf(((float)i + 0.5f) * scale);
        k = k > in - 1 ? in - 1 : k;
        w[i] = (lerp_tab){k < 0 ? 0 : k, 0, 0};
    }
}

/* A window of the image: the centre crop of smart_resize, or all of it. */
typedef struct window {
    int64_t y0, x0, h, w;
} window;

static window crop_window(const kc_image *img, const kc_image_opts *o) {
    window r = {0, 0, img->h, img->w};
    if (!o->crop_to_aspect_ratio) return r;
    /* smart_resize on tensors: float32 quotients truncated to int32 */
    int64_t ch = (int64_t)((float)(img->w * o->height) / (float)o->width);
    int64_t cw = (int64_t)((float)(img->h * o->width) / (float)o->height);
    ch = ch > img->h ? img->h : ch < 1 ? 1 : ch;
    cw = cw > img->w ? img->w : cw < 1 ? 1 : cw;
    r.y0 = (int64_t)((float)(img->h - ch) / 2);
    r.x0 = (int64_t)((float)(img->w - cw) / 2);
    r.h = ch;
    r.w = cw;
    return r;
}

static float px(const kc_image *img, const window *wn, int64_t y, int64_t x, int c) {
    return (float)img->px[((wn->y0 + y) * img->w + wn->x0 + x) * img->c + c];
}

int kc_image_resize(const kc_image *img, const kc_image_opts *o, float *out) {
    window wn = crop_window(img, o);
    int64_t H = o->height, W = o->width;
    int C = img->c;
    lerp_tab *ys = malloc((size_t)(H + W) * sizeof *ys), *xs = ys ? ys + H : NULL;
    if (!ys) return -1;
    int bil = o->interpolation == KC_INTERP_BILINEAR;
    if (bil) {
        bilinear_weights(wn.h, H, ys);
        bilinear_weights(wn.w, W, xs);
    } else {
        nearest_index(wn.h, H, ys);
        nearest_index(wn.w, W, xs);
    }
    int whole = 1;
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++)
            for (int c = 0; c < C; c++) {
                float v;
                if (!bil) {
                    v = px(img, &wn, ys[y].lo, xs[x].lo, c);
                } else {
                    float tl = px(img, &wn, ys[y].lo, xs[x].lo, c);
                    float tr = px(img, &wn, ys[y].lo, xs[x].hi, c);
                    float bl = px(img, &wn, ys[y].hi, xs[x].lo, c);
                    float br = px(img, &wn, ys[y].hi, xs[x].hi, c);
                    float top = tl + (tr - tl) * xs[x].t;
                    float bot = bl + (br - bl) * xs[x].t;
                    v = top + (bot - top) * ys[y].t;
                    whole &= v == floorf(v);
                }
                out[(y * W + x) * C + c] = v;
            }
    free(ys);
    return whole;
}

/* --------------------------------------------------------- folder index --- */

void kc_image_index_free(kc_image_index *ix) {
    for (int64_t i = 0; ix->path && i < ix->n; i++)
        free(ix->path[i]);
    free(ix->path);
    free(ix->label);
    for (int i = 0; ix->class_names && i < ix->nclasses; i++)
        free(ix->class_names[i]);
    free(ix->class_names);
    memset(ix, 0, sizeof *ix);
}

int kc_image_is_image_name(const char *name) {
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif"};
    size_t l = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        size_t k = strlen(ext[i]);
        if (l >= k && !strcasecmp(name + l - k, ext[i])) return 1;
    }
    return 0;
}

typedef struct strs {
    char **s;
    int64_t n, cap;
} strs;

static void strs_free(strs *l) {
    for (int64_t i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static int strs_push(strs *l, const char *s, kc_error *e) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 16;
        char **p = realloc(l->s, (size_t)cap * sizeof *p);
        if (!p) return kc_fail(e, KC_ERUNTIME, "out of memory listing a folder");
        l->s = p;
        l->cap = cap;
    }
    if (!(l->s[l->n] = strdup(s))) return kc_fail(e, KC_ERUNTIME, "out of memory");
    l->n++;
    return KC_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum { LIST_FILES, LIST_CLASSES, LIST_SUBDIRS };

/* Sorted entries of dir: image files, class folders (not '.'-named,
 * symlinks followed) or every subfolder (symlinks not followed). */
static int list_dir(const char *dir, int what, strs *out, kc_error *e) {
    DIR *d = opendir(dir);
    if (!d) return kc_fail(e, KC_ERUNTIME, "%s: cannot open the folder: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = KC_OK;
    char p[4096];
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= sizeof p) continue;
        struct stat st;
        if (what == LIST_CLASSES ? stat(p, &st) : lstat(p, &st)) continue;
        if (what == LIST_FILES
                ? !S_ISDIR(st.st_mode) && kc_image_is_image_name(de->d_name)
                : S_ISDIR(st.st_mode) && (what == LIST_SUBDIRS || de->d_name[0] != '.'))
            rc = strs_push(out, de->d_name, e);
    }
    closedir(d);
    if (!rc && out->n > 1) qsort(out->s, (size_t)out->n, sizeof *out->s, cmp_str);
    return rc;
}

/* The image files under root, folders in sorted(os.walk) order. */
static int index_class(const char *root, float label, strs *files, float **labels, int64_t *lcap,
                       kc_error *e) {
    strs dirs = {0};
    int rc = strs_push(&dirs, root, e);
    for (int64_t i = 0; !rc && i < dirs.n; i++) {
        strs sub = {0};
        rc = list_dir(dirs.s[i], LIST_SUBDIRS, &sub, e);
        char p[4096];
        for (int64_t k = 0; !rc && k < sub.n; k++)
            if ((size_t)snprintf(p, sizeof p, "%s/%s", dirs.s[i], sub.s[k]) < sizeof p)
                rc = strs_push(&dirs, p, e);
        strs_free(&sub);
    }
    if (!rc) qsort(dirs.s, (size_t)dirs.n, sizeof *dirs.s, cmp_str);
    for (int64_t i = 0; !rc && i < dirs.n; i++) {
        strs f = {0};
        rc = list_dir(dirs.s[i], LIST_FILES, &f, e);
        char p[4096];
        for (int64_t k = 0; !rc && k < f.n; k++) {
            if ((size_t)snprintf(p, sizeof p, "%s/%s", dirs.s[i], f.s[k]) >= sizeof p) continue;
            if (!(rc = strs_push(files, p, e)) && files->n > *lcap) {
                int64_t cap = files->cap;
                float *l = realloc(*labels, (size_t)cap * sizeof *l);
                if (!l)
                    rc = kc_fail(e, KC_ERUNTIME, "out of memory");
                else
                    *labels = l, *lcap = cap;
            }
            if (!rc) (*labels)[files->n - 1] = label;
        }
        strs_free(&f);
    }
    strs_free(&dirs);
    return rc;
}

static int find_classes(const char *dir, const kc_text_dir_opts *o, strs *cls, kc_error *e) {
    if (!o->inferred) return strs_push(cls, ".", e);
    int rc = list_dir(dir, LIST_CLASSES, cls, e);
    if (rc) return rc;
    if (!o->class_names) {
        if (!cls->n)
            return kc_fail(e, KC_ERUNTIME, "%s: no class subfolders (labels: inferred)", dir);
        return KC_OK;
    }
    for (int i = 0; i < o->nclass_names; i++) {
        int found = 0;
        for (int64_t k = 0; k < cls->n; k++)
            found |= !strcmp(cls->s[k], o->class_names[i]);
        if (!found)
            return kc_fail(e, KC_ECONFIG, "%s: class_names names '%s', which is not a subfolder",
                           dir, o->class_names[i]);
    }
    strs_free(cls);
    for (int i = 0; !rc && i < o->nclass_names; i++)
        rc = strs_push(cls, o->class_names[i], e);
    return rc;
}

/* Shuffle (one permutation for files and labels, as Keras's two equal-seeded
 * shuffles) then keep the subset. */
static int shuffle_split(const char *dir, const kc_text_dir_opts *o, kc_image_index *ix,
                         kc_error *e) {
    int64_t n = ix->n, *idx = malloc((size_t)n * sizeof *idx);
    char **p = malloc((size_t)n * sizeof *p);
    float *l = malloc((size_t)n * sizeof *l);
    int rc = KC_OK;
    if (!idx || !p || !l) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    int64_t nval = (int64_t)(o->validation_split * (double)n), lo = 0, hi = n;
    if (!rc && o->subset && (nval == 0 || nval == n))
        rc = kc_fail(e, KC_ECONFIG, "%s: validation_split %g of %lld images leaves no %s images",
                     dir, o->validation_split, (long long)n, nval == 0 ? "validation" : "training");
    if (rc) {
        free(idx), free(p), free(l);
        return rc;
    }
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    if (o->shuffle) kc_numpy_shuffle((uint32_t)o->seed, idx, n);
    if (o->subset == 1) hi = n - nval;
    if (o->subset == 2) lo = n - nval;
    for (int64_t i = 0; i < n; i++) {
        p[i] = ix->path[idx[i]];
        l[i] = ix->label[idx[i]];
        if (i < lo || i >= hi) free(p[i]);
    }
    memmove(p, p + lo, (size_t)(hi - lo) * sizeof *p);
    memmove(l, l + lo, (size_t)(hi - lo) * sizeof *l);
    free(ix->path);
    free(ix->label);
    ix->path = p;
    ix->label = l;
    ix->n = hi - lo;
    free(idx);
    return KC_OK;
}

int kc_image_index_directory(const char *dir, const kc_text_dir_opts *o, kc_image_index *ix,
                             kc_error *e) {
    memset(ix, 0, sizeof *ix);
    strs cls = {0}, files = {0};
    float *labels = NULL;
    int64_t lcap = 0;
    int rc = find_classes(dir, o, &cls, e);
    for (int64_t c = 0; !rc && c < cls.n; c++) {
        char p[4096];
        if (o->inferred)
            snprintf(p, sizeof p, "%s/%s", dir, cls.s[c]);
        else
            snprintf(p, sizeof p, "%s", dir);
        rc = index_class(p, (float)c, &files, &labels, &lcap, e);
    }
    if (!rc && files.n == 0)
        rc = kc_fail(e, KC_ERUNTIME,
                     "%s: no images found (looked for .png, .jpg, .jpeg, .bmp and .gif files%s)",
                     dir, o->inferred ? " in the class subfolders" : "");
    ix->path = files.s;
    ix->n = files.n;
    ix->label = labels;
    if (!rc) rc = shuffle_split(dir, o, ix, e);
    if (!rc && o->inferred) {
        ix->class_names = cls.s;
        ix->nclasses = (int)cls.n;
        cls.s = NULL;
        cls.n = 0;
    } else if (!rc) {
        free(ix->label);
        ix->label = NULL;
    }
    strs_free(&cls);
    if (rc) kc_image_index_free(ix);
    return rc;
}

/* ------------------------------------------------------------- loading --- */

static int to_float(kc_array *x, int64_t filled, kc_error *e) {
    int64_t total = kc_array_rows(x) * kc_array_row_size(x), done = filled * kc_array_row_size(x);
    size_t bytes;
    float *f = __builtin_mul_overflow((size_t)total, sizeof *f, &bytes) ? NULL : malloc(bytes);
    if (!f) return kc_fail(e, KC_ERUNTIME, "out of memory for the images as floats");
    const uint8_t *u = x->data;
    for (int64_t i = 0; i < done; i++)
        f[i] = u[i];
    free(x->data);
    x->data = f;
    x->dtype = KC_DT_F32;
    return KC_OK;
}

static int put_image(kc_array *x, int64_t i, const float *v, int whole, kc_error *e) {
    int64_t per = kc_array_row_size(x);
    if (!whole && x->dtype == KC_DT_U8) {
        int rc = to_float(x, i, e);
        if (rc) return rc;
    }
    if (x->dtype == KC_DT_F32) {
        memcpy((float *)x->data + i * per, v, (size_t)per * sizeof *v);
    } else {
        uint8_t *u = (uint8_t *)x->data + i * per;
        for (int64_t k = 0; k < per; k++)
            u[k] = (uint8_t)v[k];
    }
    return KC_OK;
}

int kc_image_load_all(const char *const *paths, int64_t n, const kc_image_opts *o, kc_array *x,
                      kc_error *e) {
    memset(x, 0, sizeof *x);
    kc_shape sh = {.rank = 4, .d = {n, o->height, o->width, o->channels}};
    int64_t per = o->height * o->width * o->channels;
    if (n < 1 || o->height < 1 || o->width < 1 || per > KC_IMAGE_MAX_PIXELS * 4)
        return kc_fail(e, KC_ECONFIG, "no images, or an image_size too large");
    int rc = kc_array_alloc(x, KC_DT_U8, &sh, e);
    float *v = rc ? NULL : malloc((size_t)per * sizeof *v);
    if (!rc && !v) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int64_t i = 0; !rc && i < n; i++) {
        kc_image img;
        if ((rc = kc_image_read_file(paths[i], o->channels, &img, e))) break;
        int whole = kc_image_resize(&img, o, v);
        kc_image_free(&img);
        if (whole < 0)
            rc = kc_fail(e, KC_ERUNTIME, "out of memory resizing %s", paths[i]);
        else
            rc = put_image(x, i, v, whole, e);
    }
    free(v);
    if (rc) kc_array_free(x);
    return rc;
}

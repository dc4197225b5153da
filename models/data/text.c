/* Text samples from line files, record files and class folders; labels;
 * numpy's and Python's shuffles; Keras's skipgrams. */
#include "models/data/text.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/data/tokenizer.h"

void kc_texts_free(kc_texts *t) {
    for (int64_t i = 0; i < t->n; i++)
        free(t->text[i]);
    free(t->text);
    free(t->label);
    for (int i = 0; i < t->nclasses; i++)
        free(t->class_names[i]);
    free(t->class_names);
    memset(t, 0, sizeof *t);
}

int kc_texts_push(kc_texts *t, const char *s, size_t len, kc_error *e) {
    if (t->n == t->cap) {
        int64_t cap = t->cap ? t->cap * 2 : 64;
        char **p = realloc(t->text, (size_t)cap * sizeof *p);
        if (p) t->text = p;
        float *l = realloc(t->label, (size_t)cap * sizeof *l);
        if (l) t->label = l;
        if (!p || !l) return kc_fail(e, KC_ERUNTIME, "out of memory for texts");
        t->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return kc_fail(e, KC_ERUNTIME, "out of memory for texts");
    memcpy(c, s, len);
    c[len] = 0;
    t->label[t->n] = 0;
    t->text[t->n++] = c;
    return KC_OK;
}

static long line_of(const char *data, size_t at) {
    long line = 1;
    for (size_t i = 0; i < at; i++)
        line += data[i] == '\n';
    return line;
}

int kc_text_read_file(const char *path, char **data, size_t *len, kc_error *e) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || st.st_size > KC_TEXT_MAX_FILE) {
        fclose(f);
        return kc_fail(e, KC_ERUNTIME, "%s: not a regular file of at most %lld bytes", path,
                       (long long)KC_TEXT_MAX_FILE);
    }
    size_t n = (size_t)st.st_size;
    char *d = malloc(n + 1);
    if (!d) {
        fclose(f);
        return kc_fail(e, KC_ERUNTIME, "%s: out of memory (%zu bytes)", path, n);
    }
    size_t got = fread(d, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(d);
        return kc_fail(e, KC_ERUNTIME, "%s: read error", path);
    }
    d[n] = 0;
    if (n >= 3 && !memcmp(d, "\xEF\xBB\xBF", 3)) memmove(d, d + 3, (n -= 3) + 1);
    const char *nul = memchr(d, 0, n);
    int64_t badu = kc_utf8_check(d, n);
    int rc = KC_OK;
    if (nul)
        rc = kc_fail(e, KC_ERUNTIME, "%s:%ld: NUL byte in a text file", path,
                     line_of(d, (size_t)(nul - d)));
    else if (badu >= 0)
        rc = kc_fail(e, KC_ERUNTIME, "%s:%ld: invalid UTF-8 (byte 0x%02x at offset %lld)", path,
                     line_of(d, (size_t)badu), (unsigned char)d[badu], (long long)badu);
    if (rc) {
        free(d);
        return rc;
    }
    *data = d;
    *len = n;
    return KC_OK;
}

/* Calls fn for each line of data (without its "\n" or "\r\n"). */
typedef int (*line_fn)(void *ctx, const char *s, size_t len, long lineno, kc_error *e);
static int each_line(const char *data, size_t n, line_fn fn, void *ctx, kc_error *e) {
    size_t at = 0;
    long lineno = 1;
    while (at < n) {
        const char *nl = memchr(data + at, '\n', n - at);
        size_t end = nl ? (size_t)(nl - data) : n, len = end - at;
        if (len && data[at + len - 1] == '\r') len--;
        int rc = fn(ctx, data + at, len, lineno++, e);
        if (rc) return rc;
        at = end + 1;
    }
    return KC_OK;
}

static int push_line(void *ctx, const char *s, size_t len, long lineno, kc_error *e) {
    (void)lineno;
    return kc_texts_push(ctx, s, len, e);
}

int kc_text_read_lines(const char *path, kc_texts *t, kc_error *e) {
    memset(t, 0, sizeof *t);
    char *d;
    size_t n;
    int rc = kc_text_read_file(path, &d, &n, e);
    if (!rc) rc = each_line(d, n, push_line, t, e);
    free(d);
    if (rc) kc_texts_free(t);
    return rc;
}

typedef struct label_ctx {
    kc_texts *t;
    const char *path;
    int64_t i;
    long blank_at; /* a blank line seen: only blank lines may follow */
} label_ctx;

static int push_label(void *ctx, const char *s, size_t len, long lineno, kc_error *e) {
    label_ctx *c = ctx;
    char buf[64];
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (!len) {
        if (!c->blank_at) c->blank_at = lineno;
        return KC_OK;
    }
    if (c->blank_at)
        return kc_fail(e, KC_ERUNTIME, "%s:%ld: an empty label line", c->path, c->blank_at);
    if (c->i >= c->t->n)
        return kc_fail(e, KC_ERUNTIME, "%s:%ld: more labels than the %lld texts", c->path, lineno,
                       (long long)c->t->n);
    char *end;
    double v = len < sizeof buf ? (memcpy(buf, s, len), buf[len] = 0, strtod(buf, &end)) : 0;
    if (len >= sizeof buf || end == buf || *end || !isfinite(v))
        return kc_fail(e, KC_ERUNTIME,
                       "%s:%ld: '%.40s' is not a number (labels are class "
                       "indices or numeric targets)",
                       c->path, lineno, len < sizeof buf ? buf : s);
    c->t->label[c->i++] = (float)v;
    return KC_OK;
}

int kc_text_read_labels(const char *path, kc_texts *t, kc_error *e) {
    char *d;
    size_t n;
    int rc = kc_text_read_file(path, &d, &n, e);
    label_ctx c = {t, path, 0, 0};
    if (!rc) rc = each_line(d, n, push_label, &c, e);
    if (!rc && c.i != t->n)
        rc = kc_fail(e, KC_ERUNTIME, "%s: %lld labels for %lld texts", path, (long long)c.i,
                     (long long)t->n);
    free(d);
    return rc;
}

/* ---------------------------------------------------------- records --- */

typedef struct record_ctx {
    kc_texts *t;
    const char *sep;
    size_t start, len; /* the record under way, in data */
    const char *data;
    float label;
} record_ctx;

static int end_record(record_ctx *c, kc_error *e) {
    size_t len = c->len;
    while (len && (c->data[c->start + len - 1] == '\n' || c->data[c->start + len - 1] == '\r'))
        len--;
    c->len = 0;
    if (!len) return KC_OK;
    int rc = kc_texts_push(c->t, c->data + c->start, len, e);
    if (!rc) c->t->label[c->t->n - 1] = c->label;
    return rc;
}

static int record_line(void *ctx, const char *s, size_t len, long lineno, kc_error *e) {
    (void)lineno;
    record_ctx *c = ctx;
    if (len == strlen(c->sep) && !memcmp(s, c->sep, len)) return end_record(c, e);
    if (!c->len) c->start = (size_t)(s - c->data);
    c->len = (size_t)(s - c->data) + len + 1 - c->start; /* with its newline */
    return KC_OK;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int kc_text_read_records(const char *const *paths, int npaths, const char *separator, kc_texts *t,
                         kc_error *e) {
    memset(t, 0, sizeof *t);
    int rc = KC_OK;
    if (npaths > 1 && !(t->class_names = calloc((size_t)npaths, sizeof *t->class_names)))
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int i = 0; !rc && i < npaths; i++) {
        char *d;
        size_t n;
        if ((rc = kc_text_read_file(paths[i], &d, &n, e))) break;
        record_ctx c = {t, separator, 0, 0, d, (float)i};
        rc = each_line(d, n, record_line, &c, e);
        if (!rc) rc = end_record(&c, e);
        free(d);
        if (npaths > 1) {
            if (!(t->class_names[i] = strdup(base_name(paths[i]))))
                rc = kc_fail(e, KC_ERUNTIME, "out of memory");
            t->nclasses = i + 1;
        }
    }
    if (!rc && npaths == 1) {
        free(t->label);
        t->label = NULL;
    }
    if (rc) kc_texts_free(t);
    return rc;
}

/* -------------------------------------------------------- directory --- */

typedef struct name_list {
    char **s;
    int n, cap;
} name_list;

static void names_free(name_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static int names_push(name_list *l, const char *s, kc_error *e) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
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

/* Entries of dir: folders (want_dirs, not symlinks unless top) or *.txt files, sorted. */
static int list_dir(const char *dir, int want_dirs, name_list *out, kc_error *e) {
    DIR *d = opendir(dir);
    if (!d) return kc_fail(e, KC_ERUNTIME, "%s: cannot open the folder: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = KC_OK;
    char p[4096];
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (want_dirs == 1 ? stat(p, &st) : lstat(p, &st)) continue;
        size_t l = strlen(de->d_name);
        if (want_dirs) {
            if (S_ISDIR(st.st_mode) && (want_dirs == 2 || de->d_name[0] != '.'))
                rc = names_push(out, de->d_name, e);
        } else if (l >= 4 && !strcasecmp(de->d_name + l - 4, ".txt") && !S_ISDIR(st.st_mode)) {
            rc = names_push(out, de->d_name, e);
        }
    }
    closedir(d);
    if (!rc && out->n > 1) qsort(out->s, (size_t)out->n, sizeof *out->s, cmp_str);
    return rc;
}

/* Every folder under root (root first), sorted by path as Keras's sorted(os.walk). */
static int walk_dirs(const char *root, name_list *dirs, kc_error *e) {
    int rc = names_push(dirs, root, e);
    for (int i = 0; !rc && i < dirs->n; i++) {
        name_list sub = {0};
        char *here = dirs->s[i];
        rc = list_dir(here, 2, &sub, e);
        for (int k = 0; !rc && k < sub.n; k++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dirs->s[i], sub.s[k]);
            rc = names_push(dirs, p, e);
        }
        names_free(&sub);
    }
    if (!rc) qsort(dirs->s, (size_t)dirs->n, sizeof *dirs->s, cmp_str);
    return rc;
}

static int read_sample(const char *path, int64_t max_length, float label, kc_texts *t,
                       kc_error *e) {
    char *d;
    size_t n;
    int rc = kc_text_read_file(path, &d, &n, e);
    if (rc) return rc;
    if (max_length > 0 && n > (size_t)max_length) {
        n = (size_t)max_length;
        while (n && ((unsigned char)d[n] & 0xC0) == 0x80) /* whole characters */
            n--;
    }
    rc = kc_texts_push(t, d, n, e);
    if (!rc) t->label[t->n - 1] = label;
    free(d);
    return rc;
}

static int read_class(const char *dir, const kc_text_dir_opts *o, float label, kc_texts *t,
                      kc_error *e) {
    name_list dirs = {0};
    int rc = walk_dirs(dir, &dirs, e);
    for (int i = 0; !rc && i < dirs.n; i++) {
        name_list files = {0};
        rc = list_dir(dirs.s[i], 0, &files, e);
        for (int k = 0; !rc && k < files.n; k++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dirs.s[i], files.s[k]);
            rc = read_sample(p, o->max_length, label, t, e);
        }
        names_free(&files);
    }
    names_free(&dirs);
    return rc;
}

/* Shuffle then keep the subset, applied to texts and labels alike. */
static int shuffle_and_split(const char *dir, const kc_text_dir_opts *o, kc_texts *t, kc_error *e) {
    int64_t n = t->n, *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    char **text = malloc((size_t)(n ? n : 1) * sizeof *text);
    float *lab = malloc((size_t)(n ? n : 1) * sizeof *lab);
    if (!idx || !text || !lab) {
        free(idx), free(text), free(lab);
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    if (o->shuffle) kc_numpy_shuffle((uint32_t)o->seed, idx, n);
    int64_t nval = (int64_t)(o->validation_split * (double)n), lo = 0, hi = n;
    if (o->subset == 1) hi = n - nval;
    if (o->subset == 2) lo = n - nval;
    int rc = KC_OK;
    if (o->subset && (nval == 0 || nval == n))
        rc = kc_fail(e, KC_ECONFIG, "%s: validation_split %g of %lld files leaves no %s files", dir,
                     o->validation_split, (long long)n, nval == 0 ? "validation" : "training");
    for (int64_t i = 0; i < n; i++) {
        text[i] = t->text[idx[i]];
        lab[i] = t->label[idx[i]];
    }
    for (int64_t i = 0; i < n; i++)
        if (i < lo || i >= hi) free(text[i]);
    memmove(text, text + lo, (size_t)(hi - lo) * sizeof *text);
    memmove(lab, lab + lo, (size_t)(hi - lo) * sizeof *lab);
    free(t->text);
    free(t->label);
    t->text = text;
    t->label = lab;
    t->n = t->cap = hi - lo;
    free(idx);
    return rc;
}

static int find_classes(const char *dir, const kc_text_dir_opts *o, name_list *cls, kc_error *e) {
    if (!o->inferred) return names_push(cls, ".", e);
    int rc = list_dir(dir, 1, cls, e);
    if (rc || !o->class_names) return rc;
    for (int i = 0; i < o->nclass_names; i++) {
        int found = 0;
        for (int k = 0; k < cls->n; k++)
            found |= !strcmp(cls->s[k], o->class_names[i]);
        if (!found)
            return kc_fail(e, KC_ECONFIG, "%s: class_names names '%s', which is not a subfolder",
                           dir, o->class_names[i]);
    }
    names_free(cls);
    for (int i = 0; !rc && i < o->nclass_names; i++)
        rc = names_push(cls, o->class_names[i], e);
    return rc;
}

int kc_text_read_directory(const char *dir, const kc_text_dir_opts *o, kc_texts *t, kc_error *e) {
    memset(t, 0, sizeof *t);
    name_list cls = {0};
    int rc = find_classes(dir, o, &cls, e);
    if (!rc && o->inferred && cls.n == 0)
        rc = kc_fail(e, KC_ERUNTIME, "%s: no class subfolders (labels: inferred)", dir);
    for (int c = 0; !rc && c < cls.n; c++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, cls.s[c]);
        rc = read_class(p, o, (float)c, t, e);
    }
    if (!rc && t->n == 0) rc = kc_fail(e, KC_ERUNTIME, "%s: no .txt files", dir);
    if (!rc) rc = shuffle_and_split(dir, o, t, e);
    if (!rc && o->inferred) {
        t->class_names = cls.s;
        t->nclasses = cls.n;
        cls.s = NULL;
        cls.n = 0;
    } else if (!rc) {
        free(t->label);
        t->label = NULL;
    }
    names_free(&cls);
    if (rc) kc_texts_free(t);
    return rc;
}

/* ----------------------------------------------------------- labels --- */

int kc_texts_labels(const kc_texts *t, kc_label_mode mode, kc_array *y, kc_error *e) {
    memset(y, 0, sizeof *y);
    if (!t->label) return kc_fail(e, KC_ECONFIG, "the texts have no labels");
    int64_t nc = t->nclasses;
    for (int64_t i = 0; i < t->n; i++) {
        float v = t->label[i];
        if (mode != KC_LABELS_INT && !(v >= 0 && v == floorf(v) && v < 1e7f))
            return kc_fail(e, KC_ERUNTIME, "label %g of sample %lld is not a class index", v,
                           (long long)i);
        if (mode != KC_LABELS_INT && !t->nclasses && v + 1 > nc) nc = (int64_t)v + 1;
    }
    if (mode == KC_LABELS_BINARY && nc > 2)
        return kc_fail(e, KC_ECONFIG, "label_mode binary needs 2 classes, the data has %lld",
                       (long long)nc);
    kc_shape sh = mode == KC_LABELS_CATEGORICAL ? kc_shape2(t->n, nc) : kc_shape1(t->n);
    int rc = kc_array_alloc(y, KC_DT_F32, &sh, e);
    if (rc) return rc;
    float *d = y->data;
    for (int64_t i = 0; i < t->n; i++) {
        if (mode == KC_LABELS_CATEGORICAL)
            d[i * nc + (int64_t)t->label[i]] = 1;
        else
            d[i] = t->label[i];
    }
    return KC_OK;
}

/* ----------------------------------------------------------- MT19937 --- */

typedef struct mt19937 {
    uint32_t mt[624];
    int i;
} mt19937;

static void mt_init(mt19937 *m, uint32_t s) {
    m->mt[0] = s;
    for (int i = 1; i < 624; i++)
        m->mt[i] = 1812433253u * (m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) + (uint32_t)i;
    m->i = 624;
}

static void mt_init_array(mt19937 *m, const uint32_t *key, int n) {
    mt_init(m, 19650218u);
    int i = 1, j = 0;
    for (int k = 624 > n ? 624 : n; k; k--) {
        m->mt[i] =
            (m->mt[i] ^ ((m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++, j++;
        if (i >= 624) m->mt[0] = m->mt[623], i = 1;
        if (j >= n) j = 0;
    }
    for (int k = 623; k; k--) {
        m->mt[i] = (m->mt[i] ^ ((m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= 624) m->mt[0] = m->mt[623], i = 1;
    }
    m->mt[0] = 0x80000000u;
}

static uint32_t mt_next(mt19937 *m) {
    if (m->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->mt[k] & 0x80000000u) | (m->mt[(k + 1) % 624] & 0x7fffffffu);
            m->mt[k] = m->mt[(k + 397) % 624] ^ (y >> 1) ^ (y & 1 ? 0x9908b0dfu : 0);
        }
        m->i = 0;
    }
    uint32_t y = m->mt[m->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* numpy's random_interval(max) for max < 2^32. */
static uint32_t np_interval(mt19937 *m, uint32_t max) {
    if (!max) return 0;
    uint32_t mask = max, v;
    for (int s = 1; s < 32; s *= 2)
        mask |= mask >> s;
    while ((v = mt_next(m) & mask) > max) {
    }
    return v;
}

void kc_numpy_shuffle(uint32_t seed, int64_t *idx, int64_t n) {
    mt19937 m;
    mt_init(&m, seed);
    for (int64_t i = n - 1; i >= 1; i--) {
        int64_t j = np_interval(&m, (uint32_t)i), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

/* Python's random.seed(int) */
static void py_seed(mt19937 *m, uint64_t s) {
    uint32_t key[2] = {(uint32_t)s, (uint32_t)(s >> 32)};
    mt_init_array(m, key, key[1] ? 2 : 1);
}

static double py_random(mt19937 *m) {
    uint32_t a = mt_next(m) >> 5, b = mt_next(m) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

/* Python's _randbelow(n) for 0 < n < 2^32. */
static uint32_t py_below(mt19937 *m, uint64_t n) {
    int k = 0;
    while ((n >> k) != 0)
        k++;
    uint32_t r;
    do
        r = k ? mt_next(m) >> (32 - k) : 0;
    while (r >= n);
    return r;
}

static void py_shuffle_pairs(mt19937 *m, int64_t *x, int64_t n, int width) {
    for (int64_t i = n - 1; i >= 1; i--) {
        int64_t j = py_below(m, (uint64_t)i + 1);
        for (int w = 0; w < width; w++) {
            int64_t t = x[i * width + w];
            x[i * width + w] = x[j * width + w];
            x[j * width + w] = t;
        }
    }
}

static int grow_pairs(int64_t **c, int64_t *cap, int64_t need, kc_error *e) {
    if (need <= *cap) return KC_OK;
    int64_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    int64_t *p = realloc(*c, (size_t)n * 2 * sizeof *p);
    if (!p) return kc_fail(e, KC_ERUNTIME, "out of memory for skipgrams");
    *c = p;
    *cap = n;
    return KC_OK;
}

int kc_skipgrams(const int32_t *seq, int64_t n, const kc_skipgram_opts *o, int64_t **couples,
                 int32_t **labels, int64_t *count, kc_error *e) {
    *couples = NULL;
    *labels = NULL;
    *count = 0;
    if (o->vocabulary_size < 2 || o->vocabulary_size > UINT32_MAX || o->window_size < 0)
        return kc_fail(e, KC_ECONFIG, "skipgrams: vocabulary_size must be >= 2, window_size >= 0");
    mt19937 m;
    py_seed(&m, o->seed);
    int64_t *c = NULL, cap = 0, np = 0;
    int rc = KC_OK;
    for (int64_t i = 0; !rc && i < n; i++) {
        int32_t wi = seq[i];
        if (!wi) continue;
        if (o->sampling_table && wi >= 0 && wi < o->vocabulary_size &&
            o->sampling_table[wi] < py_random(&m))
            continue;
        int64_t lo = i - o->window_size < 0 ? 0 : i - o->window_size;
        int64_t hi = i + o->window_size + 1 > n ? n : i + o->window_size + 1;
        for (int64_t j = lo; !rc && j < hi; j++) {
            if (j == i || !seq[j]) continue;
            if (!(rc = grow_pairs(&c, &cap, np + 1, e)))
                c[2 * np] = wi, c[2 * np + 1] = seq[j], np++;
        }
    }
    int64_t npos = np, nneg = o->negative_samples > 0 ? (int64_t)(npos * o->negative_samples) : 0;
    if (!rc && o->negative_samples > 0 && nneg > 0) {
        int64_t *words = malloc((size_t)(npos ? npos : 1) * sizeof *words);
        if (!words || !npos) rc = kc_fail(e, KC_ERUNTIME, "out of memory for skipgrams");
        for (int64_t i = 0; !rc && i < npos; i++)
            words[i] = c[2 * i];
        if (!rc) py_shuffle_pairs(&m, words, npos, 1);
        if (!rc) rc = grow_pairs(&c, &cap, npos + nneg, e);
        for (int64_t i = 0; !rc && i < nneg; i++) {
            c[2 * np] = words[i % npos];
            c[2 * np + 1] = 1 + py_below(&m, (uint64_t)o->vocabulary_size - 1);
            np++;
        }
        free(words);
    }
    int32_t *lab = rc ? NULL : malloc((size_t)(np ? np : 1) * sizeof *lab);
    if (!rc && !lab) rc = kc_fail(e, KC_ERUNTIME, "out of memory for skipgrams");
    if (rc) {
        free(c);
        return rc;
    }
    int64_t *li = malloc((size_t)(np ? np : 1) * sizeof *li);
    for (int64_t i = 0; li && i < np; i++)
        li[i] = i < npos;
    if (o->shuffle && li) {
        py_seed(&m, o->seed);
        py_shuffle_pairs(&m, c, np, 2);
        py_seed(&m, o->seed);
        py_shuffle_pairs(&m, li, np, 1);
    }
    for (int64_t i = 0; li && i < np; i++)
        lab[i] = (int32_t)li[i];
    free(li);
    if (!li && np) {
        free(c), free(lab);
        return kc_fail(e, KC_ERUNTIME, "out of memory for skipgrams");
    }
    *couples = c;
    *labels = lab;
    *count = np;
    return KC_OK;
}

int kc_text_read_records_split(const char *const *paths, int npaths, const char *separator,
                               const kc_text_dir_opts *split, kc_texts *t, kc_error *e) {
    int rc = kc_text_read_records(paths, npaths, separator, t, e);
    if (rc || !split || !t->label) return rc;
    if ((rc = shuffle_and_split(paths[0], split, t, e))) kc_texts_free(t);
    return rc;
}

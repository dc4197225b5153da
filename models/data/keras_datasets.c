/* imdb, reuters and boston_housing as keras.datasets.<name>.load_data gives
 * them, and the word index files. */
#include "models/data/keras_datasets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "models/data/np_random.h"
#include "models/data/pickle.h"

/* An npz member holding a pickled object array is at most this large. */
#define MAX_MEMBER_BYTES ((size_t)1 << 30)

void kc_seq_opts_default(kc_seq_opts *o) {
    *o = (kc_seq_opts){.num_words = KC_SEQ_NONE,
                       .skip_top = 0,
                       .maxlen = KC_SEQ_NONE,
                       .seed = 113,
                       .start_char = 1,
                       .oov_char = 2,
                       .index_from = 3,
                       .test_split = 0.2};
}

void kc_seq_data_free(kc_seq_data *d) {
    kc_ragged_free(&d->x_train);
    kc_ragged_free(&d->x_test);
    kc_array_free(&d->y_train);
    kc_array_free(&d->y_test);
}

/* ---- finding files ---- */

static int locate(const char *name, const char *file, const char *path, char *found, size_t n,
                  kc_error *e) {
    char looked[1400] = "";
    if (kc_dataset_find(file, path, found, n, looked, sizeof looked)) return KC_OK;
    int user = path && *path;
    return kc_fail(
        e, KC_ERUNTIME,
        "dataset '%s': %s not found; looked in:%s\nTo get it: download " KC_KERAS_DATASETS_URL
        "%s into ~/.keras/datasets/ (or $KERAS_HOME/datasets/), as "
        "keras.datasets.%s does; or %s.",
        name, file, looked, file, name,
        user ? "correct the dataset path in the model file"
             : "give the path of a copy in the model file");
}

/* ---- object arrays in an npz ---- */

/* The pickle after a .npy header whose descr is '|O'. */
static int npy_object_body(const char *where, const unsigned char *d, size_t n, size_t *at,
                           kc_error *e) {
    if (n < 10 || memcmp(d, "\x93NUMPY", 6))
        return kc_fail(e, KC_ERUNTIME, "%s: not a .npy member (bad magic)", where);
    size_t hlen, start;
    if (d[6] == 1) {
        hlen = (size_t)d[8] | (size_t)d[9] << 8;
        start = 10;
    } else if ((d[6] == 2 || d[6] == 3) && n >= 12) {
        hlen = (size_t)d[8] | (size_t)d[9] << 8 | (size_t)d[10] << 16 | (size_t)d[11] << 24;
        start = 12;
    } else {
        return kc_fail(e, KC_ERUNTIME, "%s: .npy format version %d is not supported", where, d[6]);
    }
    if (hlen > n - start) return kc_fail(e, KC_ERUNTIME, "%s: truncated .npy header", where);
    const char *h = (const char *)d + start, *descr = NULL;
    for (size_t i = 0; i + 8 <= hlen && !descr; i++)
        if (!memcmp(h + i, "'descr':", 8)) descr = h + i + 8;
    while (descr && descr < h + hlen && *descr == ' ')
        descr++;
    if (!descr || (size_t)(h + hlen - descr) < 4 || memcmp(descr, "'|O'", 4))
        return kc_fail(e, KC_ERUNTIME,
                       "%s: not an object array (its .npy descr is not '|O'); expected the "
                       "sequences of a Keras dataset",
                       where);
    *at = start + hlen;
    return KC_OK;
}

static int load_object_member(const char *path, const char *key, kc_ragged *out, kc_error *e) {
    char member[64], where[1300];
    snprintf(member, sizeof member, "%s.npy", key);
    snprintf(where, sizeof where, "%s:%s", path, member);
    char *data;
    size_t len = 0, at = 0;
    int rc = kc_zip_read_member(path, member, MAX_MEMBER_BYTES, &data, &len, e);
    if (rc) {
        if (rc == KC_ECONFIG) rc = kc_fail(e, KC_ERUNTIME, "%s: no member %s", path, member);
        return rc;
    }
    rc = npy_object_body(where, (const unsigned char *)data, len, &at, e);
    if (!rc) rc = kc_pickle_ragged((const unsigned char *)data + at, len - at, where, out, e);
    free(data);
    return rc;
}

/* Labels as float32 (N,) whatever their stored dtype. */
static int load_labels(const char *path, const char *key, int64_t n, kc_array *y, kc_error *e) {
    kc_array a = {0};
    int rc = kc_npz_load(path, key, &a, e);
    if (rc) return rc == KC_ECONFIG ? kc_fail(e, KC_ERUNTIME, "%s: no member %s", path, key) : rc;
    if (a.shape.rank != 1 || a.shape.d[0] != n) {
        kc_array_free(&a);
        return kc_fail(e, KC_ERUNTIME, "%s: %s holds %lld labels for %lld sequences", path, key,
                       (long long)(a.shape.rank ? a.shape.d[0] : 0), (long long)n);
    }
    kc_shape sh = {.rank = 1, .d = {n}};
    if ((rc = kc_array_alloc(y, KC_DT_F32, &sh, e))) {
        kc_array_free(&a);
        return rc;
    }
    float *dst = y->data;
    for (int64_t i = 0; i < n; i++)
        dst[i] = a.dtype == KC_DT_U8 ? (float)((uint8_t *)a.data)[i] : ((float *)a.data)[i];
    kc_array_free(&a);
    return KC_OK;
}

/* ---- Keras's steps ---- */

/* x, y = x[idx], y[idx] with idx = arange(n) shuffled by rng. */
static int shuffle_set(kc_np_rng *rng, kc_ragged *x, float *y, kc_error *e) {
    int64_t n = x->n, total = n ? x->off[n] : 0;
    int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    int64_t *off = malloc((size_t)(n + 1) * sizeof *off);
    int32_t *tok = malloc((size_t)(total ? total : 1) * sizeof *tok);
    float *yy = malloc((size_t)(n ? n : 1) * sizeof *yy);
    if (!idx || !off || !tok || !yy) {
        free(idx), free(off), free(tok), free(yy);
        return kc_fail(e, KC_ERUNTIME, "out of memory shuffling %lld sequences", (long long)n);
    }
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    kc_np_rng_shuffle_i64(rng, idx, n);
    off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = x->off[idx[i]], len = x->off[idx[i] + 1] - s;
        memcpy(tok + off[i], x->tok + s, (size_t)len * sizeof *tok);
        off[i + 1] = off[i] + len;
        yy[i] = y[idx[i]];
    }
    memcpy(y, yy, (size_t)n * sizeof *y);
    free(idx), free(yy), free(x->off), free(x->tok);
    x->off = off;
    x->tok = tok;
    return KC_OK;
}

/* A growing ragged set with labels. */
typedef struct seqset {
    kc_ragged x;
    float *y;
    int64_t cap_n, cap_tok;
} seqset;

static void seqset_free(seqset *s) {
    kc_ragged_free(&s->x);
    free(s->y);
    s->y = NULL;
}

static int seqset_reserve(seqset *s, int64_t n, int64_t tok, kc_error *e) {
    s->x.off = malloc((size_t)(n + 1) * sizeof(int64_t));
    s->x.tok = malloc((size_t)(tok ? tok : 1) * sizeof(int32_t));
    s->y = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!s->x.off || !s->x.tok || !s->y) return kc_fail(e, KC_ERUNTIME, "out of memory");
    s->x.off[0] = 0;
    s->cap_n = n;
    s->cap_tok = tok;
    return KC_OK;
}

static int shifted(const char *name, int64_t w, int64_t index_from, int32_t *out, kc_error *e) {
    int64_t v = w + index_from;
    if (v < INT32_MIN || v > INT32_MAX)
        return kc_fail(e, KC_ERUNTIME, "dataset '%s': id %lld + index_from %lld overflows", name,
                       (long long)w, (long long)index_from);
    *out = (int32_t)v;
    return KC_OK;
}

/* start_char / index_from, then _remove_long_seq; appends to out. */
static int add_transformed(const char *name, const kc_seq_opts *o, const kc_ragged *x,
                           const float *y, seqset *out, kc_error *e) {
    for (int64_t i = 0; i < x->n; i++) {
        int64_t s = x->off[i], len = x->off[i + 1] - s;
        int64_t nl = len + (o->start_char != KC_SEQ_NONE);
        if (o->maxlen > 0 && nl >= o->maxlen) continue;
        int64_t at = out->x.off[out->x.n];
        int32_t *dst = out->x.tok + at;
        if (o->start_char != KC_SEQ_NONE) *dst++ = (int32_t)o->start_char;
        for (int64_t j = 0; j < len; j++) {
            int rc = shifted(name, x->tok[s + j], o->index_from, dst + j, e);
            if (rc) return rc;
        }
        out->y[out->x.n] = y[i];
        out->x.off[++out->x.n] = at + nl;
    }
    return KC_OK;
}

/* num_words (Keras: the largest id when not given, so that id itself becomes
 * oov), then skip_top / oov_char in place. */
static void apply_vocab(const kc_seq_opts *o, seqset *s) {
    int64_t num_words = o->num_words;
    if (num_words <= 0) {
        num_words = INT64_MIN;
        for (int64_t i = 0; i < s->x.off[s->x.n]; i++)
            if (s->x.tok[i] > num_words) num_words = s->x.tok[i];
    }
    int64_t w = 0;
    for (int64_t i = 0; i < s->x.n; i++) {
        int64_t b = s->x.off[i], end = s->x.off[i + 1];
        s->x.off[i] = w;
        for (int64_t j = b; j < end; j++) {
            int32_t t = s->x.tok[j];
            int keep = o->skip_top <= t && t < num_words;
            if (keep)
                s->x.tok[w++] = t;
            else if (o->oov_char != KC_SEQ_NONE)
                s->x.tok[w++] = (int32_t)o->oov_char;
        }
    }
    s->x.off[s->x.n] = w;
}

/* Rows [from, to) of s as an owned ragged set and float32 labels. */
static int take_rows(const seqset *s, int64_t from, int64_t to, kc_ragged *x, kc_array *y,
                     kc_error *e) {
    int64_t n = to - from, b = s->x.off[from], total = s->x.off[to] - b;
    kc_shape sh = {.rank = 1, .d = {n}};
    int rc = kc_array_alloc(y, KC_DT_F32, &sh, e);
    if (rc) return rc;
    x->off = malloc((size_t)(n + 1) * sizeof(int64_t));
    x->tok = malloc((size_t)(total ? total : 1) * sizeof(int32_t));
    if (!x->off || !x->tok) return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int64_t i = 0; i <= n; i++)
        x->off[i] = s->x.off[from + i] - b;
    memcpy(x->tok, s->x.tok + b, (size_t)total * sizeof(int32_t));
    memcpy(y->data, s->y + from, (size_t)n * sizeof(float));
    x->n = n;
    return KC_OK;
}

typedef struct raw_split {
    kc_ragged x;
    kc_array y;
} raw_split;

static int load_split(const char *path, const char *xkey, const char *ykey, raw_split *r,
                      kc_error *e) {
    int rc = load_object_member(path, xkey, &r->x, e);
    if (!rc) rc = load_labels(path, ykey, r->x.n, &r->y, e);
    return rc;
}

static int check_opts(const char *name, const kc_seq_opts *o, kc_error *e) {
    if (!(o->test_split >= 0 && o->test_split < 1))
        return kc_fail(e, KC_ECONFIG, "dataset '%s': test_split %g must be in [0, 1)", name,
                       o->test_split);
    int64_t lim[3] = {o->start_char, o->oov_char, o->index_from};
    for (int i = 0; i < 3; i++)
        if (lim[i] != KC_SEQ_NONE && (lim[i] < 0 || lim[i] > INT32_MAX))
            return kc_fail(e, KC_ECONFIG,
                           "dataset '%s': start_char, oov_char and index_from must be ids "
                           "(0..2147483647) or none",
                           name);
    return KC_OK;
}

/* Shuffles each split with one RandomState, transforms them into one set;
 * kept[i]: how many of split i survive maxlen. */
static int prepare(const char *name, const kc_seq_opts *o, raw_split *r, int nr, seqset *s,
                   int64_t *kept, kc_error *e) {
    kc_np_rng rng;
    kc_np_rng_seed(&rng, o->seed);
    int64_t n = 0, tok = 0;
    for (int i = 0; i < nr; i++) {
        int rc = shuffle_set(&rng, &r[i].x, r[i].y.data, e);
        if (rc) return rc;
        n += r[i].x.n;
        tok += (r[i].x.n ? r[i].x.off[r[i].x.n] : 0) + r[i].x.n;
    }
    int rc = seqset_reserve(s, n, tok, e);
    for (int i = 0; !rc && i < nr; i++) {
        int64_t before = s->x.n;
        rc = add_transformed(name, o, &r[i].x, r[i].y.data, s, e);
        kept[i] = s->x.n - before;
        if (!rc && o->maxlen > 0 && !kept[i])
            rc = kc_fail(e, KC_ECONFIG,
                         "dataset '%s': after filtering for sequences shorter than maxlen=%lld, "
                         "no sequence was kept. Increase maxlen.",
                         name, (long long)o->maxlen);
    }
    if (!rc) apply_vocab(o, s);
    return rc;
}

static int load_seq(const char *name, int is_imdb, const char *file, const kc_seq_opts *o,
                    kc_seq_data *out, kc_error *e) {
    raw_split r[2] = {0};
    seqset s = {0};
    int64_t kept[2] = {0, 0};
    int nr = is_imdb ? 2 : 1;
    int rc = is_imdb ? load_split(file, "x_train", "y_train", &r[0], e)
                     : load_split(file, "x", "y", &r[0], e);
    if (!rc && is_imdb) rc = load_split(file, "x_test", "y_test", &r[1], e);
    if (!rc) rc = prepare(name, o, r, nr, &s, kept, e);
    if (!rc) {
        int64_t n = s.x.n;
        int64_t split = is_imdb ? kept[0] : (int64_t)((double)n * (1.0 - o->test_split));
        if (split > n) split = n;
        rc = take_rows(&s, 0, split, &out->x_train, &out->y_train, e);
        if (!rc) rc = take_rows(&s, split, n, &out->x_test, &out->y_test, e);
    }
    for (int i = 0; i < 2; i++) {
        kc_ragged_free(&r[i].x);
        kc_array_free(&r[i].y);
    }
    seqset_free(&s);
    return rc;
}

int kc_seq_dataset_load(const char *name, const char *path, const kc_seq_opts *o, kc_seq_data *out,
                        kc_error *e) {
    kc_error local;
    if (!e) e = &local;
    memset(out, 0, sizeof *out);
    kc_seq_opts def;
    if (!o) kc_seq_opts_default(&def), o = &def;
    int is_imdb = name && !strcmp(name, "imdb");
    if (!is_imdb && !(name && !strcmp(name, "reuters")))
        return kc_fail(e, KC_ECONFIG, "unknown sequence dataset '%s' (available: imdb, reuters)",
                       name ? name : "(none)");
    int rc = check_opts(name, o, e);
    if (rc) return rc;
    char file[1200];
    if ((rc = locate(name, is_imdb ? "imdb.npz" : "reuters.npz", path, file, sizeof file, e)))
        return rc;
    rc = load_seq(name, is_imdb, file, o, out, e);
    if (rc) kc_seq_data_free(out);
    return rc;
}

/* ---- boston_housing ---- */

/* dst rows i = src rows idx[from + i] for i < to - from. */
static int gather_rows(const kc_array *src, const int64_t *idx, int64_t from, int64_t to,
                       kc_array *dst, kc_error *e) {
    kc_shape sh = src->shape;
    sh.d[0] = to - from;
    int rc = kc_array_alloc(dst, KC_DT_F32, &sh, e);
    if (rc) return rc;
    int64_t row = kc_array_row_size(src);
    const float *s = src->data;
    float *d = dst->data;
    for (int64_t i = from; i < to; i++)
        memcpy(d + (i - from) * row, s + idx[i] * row, (size_t)row * sizeof(float));
    return KC_OK;
}

static int boston_arrays(const char *file, kc_array *x, kc_array *y, kc_error *e) {
    int rc = kc_npz_load(file, "x", x, e);
    if (!rc) rc = kc_npz_load(file, "y", y, e);
    if (rc == KC_ECONFIG) rc = kc_fail(e, KC_ERUNTIME, "%s: expected members x and y", file);
    if (!rc && (x->dtype != KC_DT_F32 || y->dtype != KC_DT_F32 || x->shape.rank != 2 ||
                y->shape.rank != 1 || x->shape.d[0] != y->shape.d[0] || x->shape.d[0] == 0))
        rc = kc_fail(e, KC_ERUNTIME,
                     "%s: expected float x (N, features) and y (N,) with the same N > 0", file);
    return rc;
}

int kc_boston_housing_load(const char *path, double test_split, uint32_t seed, kc_array *x_train,
                           kc_array *y_train, kc_array *x_test, kc_array *y_test, kc_error *e) {
    kc_error local;
    if (!e) e = &local;
    kc_array *outs[4] = {x_train, y_train, x_test, y_test};
    for (int i = 0; i < 4; i++)
        memset(outs[i], 0, sizeof *outs[i]);
    if (!(test_split >= 0 && test_split < 1))
        return kc_fail(e, KC_ECONFIG, "dataset 'boston_housing': test_split %g must be in [0, 1)",
                       test_split);
    char file[1200];
    int rc = locate("boston_housing", "boston_housing.npz", path, file, sizeof file, e);
    if (rc) return rc;
    kc_array x = {0}, y = {0};
    rc = boston_arrays(file, &x, &y, e);
    int64_t n = x.shape.d[0], *idx = NULL;
    if (!rc && !(idx = malloc((size_t)n * sizeof *idx)))
        rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    if (!rc) {
        kc_np_permutation(seed, idx, n);
        int64_t split = (int64_t)((double)n * (1.0 - test_split));
        rc = gather_rows(&x, idx, 0, split, x_train, e);
        if (!rc) rc = gather_rows(&y, idx, 0, split, y_train, e);
        if (!rc) rc = gather_rows(&x, idx, split, n, x_test, e);
        if (!rc) rc = gather_rows(&y, idx, split, n, y_test, e);
    }
    free(idx);
    kc_array_free(&x);
    kc_array_free(&y);
    if (rc)
        for (int i = 0; i < 4; i++)
            kc_array_free(outs[i]);
    return rc;
}

/* ---- word index ---- */

void kc_word_index_free(kc_word_index *w) {
    for (int64_t i = 0; w->word && i < w->nranks; i++)
        free(w->word[i]);
    free(w->word);
    free(w->sorted);
    memset(w, 0, sizeof *w);
}

#define MAX_RANK ((int64_t)1 << 24)

typedef struct ranked {
    const char *word;
    int64_t rank;
} ranked;

static int by_word(const void *a, const void *b) {
    return strcmp(((const ranked *)a)->word, ((const ranked *)b)->word);
}

/* w->sorted: the ranks with a word, in strcmp order of their words. */
static int sort_words(const char *file, kc_word_index *w, kc_error *e) {
    ranked *t = malloc((size_t)(w->nranks ? w->nranks : 1) * sizeof *t);
    if (!t) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", file);
    for (int64_t r = 0; r < w->nranks; r++)
        if (w->word[r]) t[w->nsorted++] = (ranked){w->word[r], r};
    if (w->nsorted > 1) qsort(t, (size_t)w->nsorted, sizeof *t, by_word);
    for (int64_t i = 0; i < w->nsorted; i++)
        w->sorted[i] = t[i].rank;
    free(t);
    return KC_OK;
}

static int fill_ranks(const char *file, const kc_json *root, kc_word_index *w, kc_error *e) {
    size_t n = kc_json_len(root);
    for (size_t i = 0; i < n; i++) {
        int64_t r;
        if (kc_json_int64(kc_json_at(root, i), &r) || r < 0 || r >= MAX_RANK)
            return kc_fail(e, KC_ERUNTIME, "%s: the rank of '%.80s' is not an integer in 0..%lld",
                           file, kc_json_key_at(root, i), (long long)MAX_RANK - 1);
        if (r >= w->nranks) w->nranks = r + 1;
    }
    w->word = calloc((size_t)(w->nranks ? w->nranks : 1), sizeof *w->word);
    w->sorted = malloc((size_t)(n ? n : 1) * sizeof *w->sorted);
    if (!w->word || !w->sorted) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", file);
    for (size_t i = 0; i < n; i++) {
        int64_t r;
        kc_json_int64(kc_json_at(root, i), &r);
        free(w->word[r]); /* a repeated rank: the last word wins, as in Keras's inversion */
        if (!(w->word[r] = strdup(kc_json_key_at(root, i))))
            return kc_fail(e, KC_ERUNTIME, "%s: out of memory", file);
    }
    return sort_words(file, w, e);
}

int kc_word_index_read(const char *file, kc_word_index *out, kc_error *e) {
    kc_error local;
    if (!e) e = &local;
    memset(out, 0, sizeof *out);
    kc_json *root = kc_json_parse_file(file, e);
    if (!root) return e->code = KC_ERUNTIME;
    int rc =
        kc_json_kind_of(root) == KC_JSON_OBJECT
            ? fill_ranks(file, root, out, e)
            : kc_fail(e, KC_ERUNTIME, "%s: a word index is a JSON object {\"word\": rank}", file);
    kc_json_free(root);
    if (rc) kc_word_index_free(out);
    return rc;
}

int kc_word_index_load(const char *name, const char *path, kc_word_index *out, kc_error *e) {
    kc_error local;
    if (!e) e = &local;
    memset(out, 0, sizeof *out);
    const char *file = name && !strcmp(name, "imdb")      ? "imdb_word_index.json"
                       : name && !strcmp(name, "reuters") ? "reuters_word_index.json"
                                                          : NULL;
    if (!file)
        return kc_fail(e, KC_ECONFIG, "no word index for dataset '%s' (imdb and reuters have one)",
                       name ? name : "(none)");
    char found[1200];
    int rc = locate(name, file, path, found, sizeof found, e);
    return rc ? rc : kc_word_index_read(found, out, e);
}

int64_t kc_word_index_rank(const kc_word_index *w, const char *word) {
    int64_t lo = 0, hi = w->nsorted - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->word[w->sorted[mid]], word);
        if (!c) return w->sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static const char *token_text(const kc_word_index *w, const kc_seq_opts *o, int32_t id) {
    if (o->oov_char != KC_SEQ_NONE && id == o->oov_char) return "[OOV]";
    if (o->start_char != KC_SEQ_NONE && id == o->start_char) return "[START]";
    int64_t r = (int64_t)id - (o->index_from == KC_SEQ_NONE ? 0 : o->index_from);
    return r >= 0 && r < w->nranks && w->word[r] ? w->word[r] : "?";
}

size_t kc_word_index_decode(const kc_word_index *w, const kc_seq_opts *o, const int32_t *tok,
                            int64_t len, char *buf, size_t n) {
    size_t need = 0, fits = 0;
    for (int64_t i = 0; i < len; i++) {
        const char *s = token_text(w, o, tok[i]);
        size_t l = strlen(s) + (i > 0);
        if (need + l < n && fits == need) {
            if (i > 0) buf[need] = ' ';
            memcpy(buf + need + (i > 0), s, strlen(s));
            fits = need + l;
        }
        need += l;
    }
    if (n) buf[fits < n ? fits : n - 1] = 0;
    return need;
}

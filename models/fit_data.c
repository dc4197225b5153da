/* The session's data: the arrays of each split (datasets, plain files, CSV,
 * named arrays), validation_split, the feeds that map them onto the model's
 * inputs and outputs, and the checks that shapes and labels fit the model. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/fit_internal.h"
#include "models/layers/embedding.h"

/* ------------------------------------------------------------- texts --- */

static int read_texts(const kc_source_spec *src, kc_texts *t, kc_error *e) {
    int rc = KC_OK;
    switch (src->text_kind) {
    case KC_TEXT_SRC_LINES:
        rc = kc_text_read_lines(src->text_path, t, e);
        if (!rc && src->labels_path) rc = kc_text_read_labels(src->labels_path, t, e);
        if (!rc && !src->labels_path) free(t->label), t->label = NULL;
        break;
    case KC_TEXT_SRC_CSV:
        rc = kc_text_read_csv(src->csv_path, src->delimiter, src->csv_header, src->text_column,
                              src->label_column, t, e);
        break;
    case KC_TEXT_SRC_DIRECTORY:
        rc = kc_text_read_directory(src->directory, &src->dir, t, e);
        break;
    case KC_TEXT_SRC_RECORDS:
        rc = kc_text_read_records_split((const char *const *)src->records, src->nrecords,
                                        src->separator, &src->dir, t, e);
        break;
    default:
        rc = kc_fail(e, KC_ERUNTIME, "not a text source");
    }
    if (!rc && t->n == 0) rc = kc_fail(e, KC_ERUNTIME, "no texts");
    return rc;
}

/* The length texts are padded or cut to: text.maxlen (output_sequence_length),
 * else the length of the model input that takes x, else the longest text. */
static int64_t text_length(const kc_session *s) {
    const kc_data_spec *d = &s->cfg->data;
    int64_t want =
        d->text.mode == KC_TEXT_TOKENIZER ? d->pad.maxlen : d->text.output_sequence_length;
    if (want > 0) return want;
    for (int i = 0; i < s->model->ninputs; i++)
        if (!strcmp(d->inputs[i].array, "x") && s->model->inputs[i].shape.rank >= 1)
            return s->model->inputs[i].shape.d[0];
    return 0;
}

int kc_session_vectorize(const kc_session *s, const kc_texts *t, kc_array *x, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    if (!d->vocab)
        return kc_fail(e, KC_ECONFIG, "no fitted vocabulary: the text settings were never fitted");
    kc_ragged r;
    int rc = kc_text_to_sequences(&d->text, d->vocab, (const char *const *)t->text, t->n, &r, e);
    if (rc) return rc;
    kc_pad_opts p = d->pad;
    if (d->text.mode == KC_TEXT_VECTORIZATION)
        p = (kc_pad_opts){.padding = KC_PAD_POST, .truncating = KC_PAD_POST};
    p.maxlen = text_length(s);
    rc = kc_pad_sequences(&r, &p, x, e);
    kc_ragged_free(&r);
    return rc;
}

/* The training texts fit the vocabulary once (unless it came with the checkpoint). */
static int ensure_vocab(kc_session *s, const kc_texts *train, kc_error *e) {
    kc_data_spec *d = &s->cfg->data;
    if (d->vocab) return KC_OK;
    kc_texts own = {0};
    int rc = KC_OK;
    if (!train) {
        if (!d->has_train)
            return kc_node_fail(e, d->text_node, "the vocabulary is fitted on `train:` texts");
        if ((rc = read_texts(&d->train, &own, e)))
            return kc_node_fail(e, d->train.node, "cannot load the train data: %s", e->msg);
        train = &own;
    }
    kc_vocab *v = calloc(1, sizeof *v);
    if (!v) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    if (!rc && !(rc = kc_text_fit(&d->text, (const char *const *)train->text, train->n, v, e)))
        d->vocab = v;
    else
        free(v);
    kc_texts_free(&own);
    return rc;
}

static int load_text_source(kc_session *s, const kc_source_spec *src, const char *what, kc_array *x,
                            kc_array *y, kc_error *e) {
    kc_texts t = {0};
    int rc = read_texts(src, &t, e);
    if (rc) {
        rc = kc_node_fail(e, src->node, "cannot load the %s data: %s", what, e->msg);
    } else if (!(rc = ensure_vocab(s, src == &s->cfg->data.train ? &t : NULL, e)) &&
               !(rc = kc_session_vectorize(s, &t, x, e)) && t.label &&
               src->label_mode != KC_LABELS_NONE) {
        rc = kc_texts_labels(&t, src->label_mode, y, e);
        if (rc) rc = kc_node_fail(e, src->node, "the %s labels: %s", what, e->msg);
    }
    kc_texts_free(&t);
    return rc;
}

/* ----------------------------------------------------- image folders --- */

/* The training folder's classes become the model's (saved with it). */
static int keep_classes(kc_data_spec *d, kc_image_index *ix, kc_error *e) {
    char **names = calloc((size_t)ix->nclasses, sizeof *names);
    if (!names) return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int i = 0; i < ix->nclasses; i++)
        names[i] = ix->class_names[i], ix->class_names[i] = NULL;
    for (int i = 0; i < d->nimage_classes; i++)
        free(d->image_classes[i]);
    free(d->image_classes);
    d->image_classes = names;
    d->nimage_classes = ix->nclasses;
    return KC_OK;
}

static int image_labels(const kc_source_spec *src, const kc_image_index *ix, kc_array *y,
                        kc_error *e) {
    if (src->label_mode == KC_LABELS_BINARY && ix->nclasses != 2)
        return kc_fail(e, KC_ECONFIG,
                       "label_mode binary needs exactly 2 classes, the folder has %d",
                       ix->nclasses);
    kc_texts t = {.n = ix->n, .label = ix->label, .nclasses = ix->nclasses};
    return kc_texts_labels(&t, src->label_mode, y, e);
}

static int load_image_source(kc_session *s, const kc_source_spec *src, const char *what,
                             kc_array *x, kc_array *y, kc_error *e) {
    kc_image_index ix;
    int rc = kc_image_index_directory(src->images, &src->dir, &ix, e);
    if (!rc) rc = kc_image_load_all((const char *const *)ix.path, ix.n, &src->image, x, e);
    if (!rc && ix.label && src->label_mode != KC_LABELS_NONE) rc = image_labels(src, &ix, y, e);
    if (!rc && ix.class_names && src == &s->cfg->data.train)
        rc = keep_classes(&s->cfg->data, &ix, e);
    kc_image_index_free(&ix);
    if (rc) {
        kc_array_free(x);
        kc_array_free(y);
        return kc_node_fail(e, src->node, "cannot load the %s data: %s", what, e->msg);
    }
    return KC_OK;
}

/* ----------------------------------------- imdb, reuters, boston_housing --- */

/* The first axis of the model input fed from x: the default padded length. */
static int64_t x_input_length(const kc_session *s) {
    const kc_data_spec *d = &s->cfg->data;
    for (int i = 0; i < s->model->ninputs; i++)
        if (!strcmp(d->inputs[i].array, "x") && s->model->inputs[i].shape.rank >= 1)
            return s->model->inputs[i].shape.d[0];
    return 0;
}

/* imdb / reuters sequences padded as the `text:` block says (Keras's
 * pad_sequences defaults; maxlen: the model input's length). */
static int pad_ragged(const kc_session *s, const kc_ragged *r, kc_array *x, kc_error *e) {
    kc_pad_opts p = s->cfg->data.pad;
    if (p.maxlen <= 0) p.maxlen = x_input_length(s);
    return kc_pad_sequences(r, &p, x, e);
}

static int load_seq_dataset(kc_session *s, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    kc_seq_data sd = {0};
    int rc = kc_seq_dataset_load(d->dataset, d->path, &d->seq, &sd, e);
    if (!rc) rc = pad_ragged(s, &sd.x_train, &s->x_train, e);
    if (!rc) rc = pad_ragged(s, &sd.x_test, &s->x_test, e);
    if (!rc) {
        s->y_train = sd.y_train;
        s->y_test = sd.y_test;
        memset(&sd.y_train, 0, sizeof sd.y_train);
        memset(&sd.y_test, 0, sizeof sd.y_test);
    }
    kc_seq_data_free(&sd);
    return rc;
}

/* Both splits of a named dataset; mistakes in its options point at `dataset:`. */
static int load_named_dataset(kc_session *s, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    int rc;
    if (!strcmp(d->dataset, "imdb") || !strcmp(d->dataset, "reuters"))
        rc = load_seq_dataset(s, e);
    else if (!strcmp(d->dataset, "boston_housing"))
        rc = kc_boston_housing_load(d->path, d->seq.test_split, d->seq.seed, &s->x_train,
                                    &s->y_train, &s->x_test, &s->y_test, e);
    else
        rc = kc_dataset_load(d->dataset, d->path, &s->x_train, &s->y_train, &s->x_test, &s->y_test,
                             e);
    if (rc == KC_ECONFIG)
        rc = kc_node_fail(e, d->dataset_node, "the %s dataset: %s", d->dataset, e->msg);
    return rc;
}

/* ------------------------------------------------------- time series --- */

void kc_ts_series_free(kc_ts_series *s) {
    kc_array_free(&s->features);
    kc_array_free(&s->targets);
}

static void names_free(char **names, int n) {
    for (int i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

static int csv_is_number(const char *s) {
    char *end;
    if (!*s) return 0;
    (void)strtod(s, &end);
    return end != s && *end == 0;
}

static char *trim_field(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

/* The fields of a CSV's first non-blank line (quotes as kc_csv_load reads them). */
static int csv_first_row(const char *path, char ***out, int *n, kc_error *e) {
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int first = 1;
    while ((got = getline(&line, &cap, f)) >= 0) {
        if (first && !strncmp(line, "\xEF\xBB\xBF", 3))
            memmove(line, line + 3, strlen(line + 3) + 1);
        first = 0;
        if (*trim_field(line)) break;
    }
    fclose(f);
    int rc = KC_OK;
    if (got < 0) rc = kc_fail(e, KC_ERUNTIME, "%s: the file has no rows", path);
    for (char *r = line; !rc;) {
        char *w = r, *start;
        while (*r == ' ' || *r == '\t')
            r++;
        start = w;
        if (*r == '"') {
            for (r++; *r;) {
                if (*r == '"' && r[1] == '"') {
                    *w++ = '"';
                    r += 2;
                } else if (*r == '"') {
                    r++;
                    break;
                } else {
                    *w++ = *r++;
                }
            }
            while (*r && *r != ',')
                r++;
        } else {
            while (*r && *r != ',')
                *w++ = *r++;
        }
        char sep = *r;
        *w = 0;
        char **p = realloc(*out, (size_t)(*n + 1) * sizeof *p);
        if (!p || !(p[*n] = strdup(trim_field(start)))) {
            if (p) *out = p;
            rc = kc_fail(e, KC_ERUNTIME, "%s: out of memory", path);
            break;
        }
        *out = p;
        ++*n;
        if (!sep) break;
        r++;
    }
    free(line);
    return rc;
}

/* The series' table: every column, float32 (T, C); a CSV's header names. */
static int ts_table(const kc_ts_spec *t, kc_array *tab, char ***names, int *nnames, kc_error *e) {
    *names = NULL;
    *nnames = 0;
    if (!t->csv_path) {
        int rc = kc_array_load(t->npy_path, t->npy_key, tab, e);
        if (rc) return rc;
        if (tab->shape.rank == 1) tab->shape = kc_shape2(tab->shape.d[0], 1);
        if (tab->shape.rank != 2)
            return kc_fail(e, KC_ECONFIG,
                           "%s: a series is (steps,) or (steps, features), not rank %d",
                           t->npy_path, tab->shape.rank);
        return KC_OK;
    }
    char **row;
    int n, header = t->csv_header;
    int rc = csv_first_row(t->csv_path, &row, &n, e);
    for (int i = 0; !rc && header < 0 && i < n; i++)
        if (!csv_is_number(row[i])) header = 1;
    if (header < 0) header = 0;
    if (!rc && header)
        *names = row, *nnames = n;
    else
        names_free(row, n);
    if (!rc) rc = kc_csv_load(t->csv_path, NULL, header, tab, NULL, e);
    return rc;
}

/* A column given by name or index (negative from the end). */
static int ts_col_index(const kc_ts_spec *t, const char *col, const kc_node *at, char **names,
                        int nnames, int64_t ncols, int64_t *out, kc_error *e) {
    const char *file = t->csv_path ? t->csv_path : t->npy_path;
    for (int i = 0; i < nnames; i++)
        if (!strcmp(names[i], col)) return *out = i, KC_OK;
    char *end;
    errno = 0;
    long long v = strtoll(col, &end, 10);
    if (end != col && !*end && !errno) {
        long long idx = v < 0 ? ncols + v : v;
        if (idx < 0 || idx >= ncols)
            return kc_node_fail(
                e, at, "timeseries: column %lld is out of range for the %lld columns of %s", v,
                (long long)ncols, file);
        return *out = idx, KC_OK;
    }
    if (!nnames)
        return kc_node_fail(
            e, at, "timeseries: '%s' is not a column index and %s has no column names", col, file);
    char list[800] = "";
    size_t used = 0;
    for (int i = 0; i < nnames && used + 8 < sizeof list; i++)
        used +=
            (size_t)snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "", names[i]);
    const char *near = kc_closest(col, (const char *const *)names, (size_t)nnames);
    return kc_node_fail(e, at, "timeseries: %s has no column '%s'%s%s%s (columns: %s)", file, col,
                        near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "", list);
}

/* out (T, k) = the chosen columns of tab (all of them when c->n is 0). */
static int ts_select(const kc_ts_spec *t, const kc_ts_columns *c, const kc_array *tab, char **names,
                     int nnames, kc_array *out, kc_error *e) {
    int64_t T = tab->shape.d[0], C = tab->shape.d[1], k = c->n ? c->n : C;
    int64_t *idx = malloc((size_t)k * sizeof *idx);
    if (!idx) return kc_fail(e, KC_ERUNTIME, "out of memory");
    int rc = KC_OK;
    for (int64_t j = 0; j < k && !rc; j++)
        if (!c->n)
            idx[j] = j;
        else
            rc = ts_col_index(t, c->name[j], c->node ? c->node[j] : NULL, names, nnames, C, &idx[j],
                              e);
    kc_shape sh = kc_shape2(T, k);
    if (!rc) rc = kc_array_alloc(out, KC_DT_F32, &sh, e);
    const float *src = tab->data;
    float *dst = rc ? NULL : out->data;
    for (int64_t i = 0; !rc && i < T; i++)
        for (int64_t j = 0; j < k; j++)
            dst[i * k + j] = tab->dtype == KC_DT_U8 ? ((const uint8_t *)tab->data)[i * C + idx[j]]
                                                    : src[i * C + idx[j]];
    free(idx);
    return rc;
}

int kc_ts_series_load(const kc_ts_spec *t, kc_ts_series *out, kc_error *e) {
    memset(out, 0, sizeof *out);
    kc_array tab = {0}, tt = {0};
    char **names;
    int nnames;
    int rc = ts_table(t, &tab, &names, &nnames, e);
    if (rc) {
        rc = kc_node_fail(e, t->node, "cannot load the series: %s", e->msg);
    } else if (!(rc = ts_select(t, &t->columns, &tab, names, nnames, &out->features, e)) &&
               t->has_target) {
        const kc_ts_columns *tc = t->target.n ? &t->target : &t->columns;
        rc = ts_select(t, tc, &tab, names, nnames, &tt, e);
        int64_t T = tab.shape.d[0];
        if (!rc && t->offset >= T)
            rc = kc_node_fail(e, t->target_node,
                              "timeseries.target.offset %lld leaves no targets in a series of "
                              "%lld steps",
                              (long long)t->offset, (long long)T);
        if (!rc) rc = kc_ts_shift(&tt, t->offset, tt.shape.d[1] == 1 ? 0 : -1, &out->targets, e);
    }
    kc_array_free(&tab);
    kc_array_free(&tt);
    names_free(names, nnames);
    if (rc) kc_ts_series_free(out);
    return rc;
}

int kc_ts_series_windows(const kc_ts_spec *t, const kc_ts_series *s, int split, kc_array *x,
                         kc_array *y, kc_error *e) {
    static const char *const what[] = {"train", "validation", "test"};
    const kc_ts_split *sp = &t->split[split];
    const kc_node *at = sp->node ? sp->node : t->node;
    int64_t T = s->features.shape.d[0];
    kc_ts_opts o = t->opts;
    o.shuffle = sp->shuffle;
    o.seed = sp->seed;
    int64_t start = sp->start_index < 0 ? T + sp->start_index : sp->start_index;
    int64_t end = !sp->has_end ? T : sp->end_index < 0 ? T + sp->end_index : sp->end_index;
    if (start < 0 || start >= T || end > T || end <= start)
        return kc_node_fail(e, at,
                            "timeseries.%s: steps %lld..%lld do not lie in the series' %lld steps "
                            "(start_index >= 0 and < end_index <= %lld, negative values count "
                            "from the end)",
                            what[split], (long long)start, (long long)end - 1, (long long)T,
                            (long long)T);
    int64_t span = (o.sequence_length - 1) * o.sampling_rate;
    const kc_array *targ = t->has_target ? &s->targets : NULL;
    /* a window's target lies offset steps after its start: later windows have none */
    if (targ && end > T - t->offset + span) end = T - t->offset + span;
    if (end - start - span < 1)
        return kc_node_fail(
            e, at, "timeseries.%s: no window of %lld steps%s fits in steps %lld..%lld", what[split],
            (long long)o.sequence_length, targ ? " with its target" : "", (long long)start,
            (long long)(sp->has_end ? end : T) - 1);
    o.start_index = start;
    o.end_index = end >= T ? 0 : end;
    int rc = kc_timeseries_dataset(&s->features, targ, &o, x, targ ? y : NULL, e);
    if (rc) rc = kc_node_fail(e, at, "timeseries.%s: %s", what[split], e->msg);
    return rc;
}

/* The windows of every split the command needs, from one read of the series. */
static int load_timeseries(kc_session *s, int need, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    const kc_ts_spec *t = &d->ts;
    kc_ts_series ser;
    int rc = kc_ts_series_load(t, &ser, e);
    if (rc) return rc;
    int want[3] = {(need & KC_NEED_TRAIN) && t->split[0].present,
                   (need & KC_NEED_TRAIN) && t->split[1].present,
                   ((need & KC_NEED_TEST) || d->validation_is_test) && t->split[2].present};
    kc_array *xs[3] = {&s->x_train, &s->x_val, &s->x_test};
    kc_array *ys[3] = {&s->y_train, &s->y_val, &s->y_test};
    int *has[3] = {&s->has_train, &s->has_val, &s->has_test};
    for (int i = 0; i < 3 && !rc; i++)
        if (want[i] && !(rc = kc_ts_series_windows(t, &ser, i, xs[i], ys[i], e))) *has[i] = 1;
    kc_ts_series_free(&ser);
    return rc;
}

/* Loads a source's arrays: x and y (plain files or a CSV) and the named ones. */
static int load_source(kc_session *s, const kc_source_spec *src, const char *what, kc_array *x,
                       kc_array *y, kc_named_arrays *named, kc_error *e) {
    int rc = KC_OK;
    if (src->images) return load_image_source(s, src, what, x, y, e);
    if (src->text_kind) return load_text_source(s, src, what, x, y, e);
    if (src->csv_path) {
        rc = kc_csv_load(src->csv_path, src->label_column ? src->label_column : "-1",
                         src->csv_header, x, y, e);
    } else {
        if (src->x_path) rc = kc_array_load(src->x_path, src->x_key, x, e);
        if (!rc && src->y_path) rc = kc_array_load(src->y_path, src->y_key, y, e);
    }
    for (int i = 0; !rc && i < src->nnamed; i++) {
        const kc_array_spec *a = &src->named[i];
        snprintf(named->names[i], sizeof named->names[i], "%s", a->name);
        named->is_x[i] = a->is_x;
        rc = kc_array_load(a->path, a->key, &named->arr[i], e);
        named->n = i + 1;
    }
    if (rc) return kc_node_fail(e, src->node, "cannot load the %s data: %s", what, e->msg);
    /* every array of a source holds the same samples, and some */
    const kc_array *all[2 + KC_DATA_MAX_ARRAYS];
    const char *names[2 + KC_DATA_MAX_ARRAYS], *paths[2 + KC_DATA_MAX_ARRAYS];
    int n = 0;
    if (x->data)
        all[n] = x, names[n] = "x", paths[n++] = src->csv_path ? src->csv_path : src->x_path;
    if (y->data)
        all[n] = y, names[n] = "y", paths[n++] = src->csv_path ? src->csv_path : src->y_path;
    for (int i = 0; i < named->n; i++)
        all[n] = &named->arr[i], names[n] = named->names[i], paths[n++] = src->named[i].path;
    for (int i = 0; i < n; i++) {
        int64_t r = kc_array_rows(all[i]);
        char sh[256];
        if (r == 0)
            return kc_node_fail(e, src->node, "the %s data in %s has no samples (shape %s)", what,
                                paths[i], kc_shape_str(&all[i]->shape, 0, sh, sizeof sh));
        if (r != kc_array_rows(all[0]))
            return kc_node_fail(e, src->node, "the %s data has %lld samples in %s but %lld in %s",
                                what, (long long)kc_array_rows(all[0]), names[0], (long long)r,
                                names[i]);
    }
    return KC_OK;
}

static void named_free(kc_named_arrays *n) {
    for (int i = 0; i < n->n; i++)
        kc_array_free(&n->arr[i]);
    memset(n, 0, sizeof *n);
}

void kc_session_free_data(kc_session *s) {
    kc_array_free(&s->x_train);
    kc_array_free(&s->y_train);
    kc_array_free(&s->x_test);
    kc_array_free(&s->y_test);
    kc_array_free(&s->x_val);
    kc_array_free(&s->y_val);
    for (int i = 0; i < 3; i++)
        named_free(&s->named[i]);
}

/* Keras's validation_split: the last fraction of every training array. */
static int split_validation(kc_session *s, kc_error *e) {
    const kc_fit_spec *f = &s->cfg->fit;
    kc_named_arrays *tr = &s->named[KC_SPLIT_TRAIN], *va = &s->named[KC_SPLIT_VAL];
    const kc_array *any = s->x_train.data   ? &s->x_train
                          : s->y_train.data ? &s->y_train
                                            : &tr->arr[0];
    int64_t n = kc_array_rows(any);
    /* Keras: the last n - floor(n (1 - split)) samples, before shuffling */
    int64_t keep = (int64_t)floor((double)n * (1.0 - f->validation_split));
    if (keep < 1 || keep == n)
        return kc_node_fail(e, f->validation_split_node,
                            "validation_split %g of %lld samples leaves %s", f->validation_split,
                            (long long)n, keep < 1 ? "no training data" : "no validation data");
    int rc;
    if (s->x_train.data && (rc = kc_array_split_tail(&s->x_train, n - keep, &s->x_val, e)))
        return rc;
    if (s->y_train.data && (rc = kc_array_split_tail(&s->y_train, n - keep, &s->y_val, e)))
        return rc;
    for (int i = 0; i < tr->n; i++) {
        snprintf(va->names[i], sizeof va->names[i], "%s", tr->names[i]);
        va->is_x[i] = tr->is_x[i];
        if ((rc = kc_array_split_tail(&tr->arr[i], n - keep, &va->arr[i], e))) return rc;
        va->n = i + 1;
    }
    s->has_val = 1;
    return KC_OK;
}

/* A dataset (both splits at once) or the train and test sources. */
static int load_splits(kc_session *s, int need, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    int rc;
    if (d->has_timeseries) return load_timeseries(s, need, e);
    if (d->dataset) {
        if ((rc = load_named_dataset(s, e))) return rc;
        s->has_train = s->has_test = 1;
        if (!(need & KC_NEED_TRAIN)) {
            kc_array_free(&s->x_train);
            kc_array_free(&s->y_train);
            s->has_train = 0;
        }
        return KC_OK;
    }
    if ((need & KC_NEED_TRAIN) && d->has_train) {
        if ((rc = load_source(s, &d->train, "train", &s->x_train, &s->y_train,
                              &s->named[KC_SPLIT_TRAIN], e)))
            return rc;
        s->has_train = 1;
    }
    if (d->has_test && ((need & KC_NEED_TEST) || d->validation_is_test)) {
        if ((rc = load_source(s, &d->test, "test", &s->x_test, &s->y_test, &s->named[KC_SPLIT_TEST],
                              e)))
            return rc;
        s->has_test = 1;
    }
    return KC_OK;
}

/* Validation data: its own source, validation_split, or the test arrays. */
static int load_validation(kc_session *s, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    int rc;
    if (s->has_val) return KC_OK; /* a timeseries validation split */
    if (d->has_validation) {
        if ((rc = load_source(s, &d->validation, "validation", &s->x_val, &s->y_val,
                              &s->named[KC_SPLIT_VAL], e)))
            return rc;
        s->has_val = 1;
    } else if (s->cfg->fit.validation_split > 0) {
        if ((rc = split_validation(s, e))) return rc;
    } else if (d->validation_is_test) {
        if (!s->has_test)
            return kc_node_fail(e, d->node,
                                "`validation: test` needs test data in the data section");
        s->has_val = 2; /* borrows the test arrays */
    }
    return KC_OK;
}

int kc_session_load_data(kc_session *s, int need, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    if (!d->node)
        return kc_fail(e, KC_ECONFIG,
                       "%s: the file has no `data:` section; it is needed to train or evaluate",
                       s->cfg->path);
    int rc = load_splits(s, need, e);
    if (rc) return rc;
    if ((need & KC_NEED_TRAIN) && !s->has_train)
        return kc_node_fail(e, d->node,
                            "training needs data: add `dataset:` or `train:` to the data section");
    if ((need & KC_NEED_TEST) && !s->has_test)
        return kc_node_fail(
            e, d->node,
            "evaluation needs test data: add `dataset:` or `test:` to the data section");
    return need & KC_NEED_TRAIN ? load_validation(s, e) : KC_OK;
}

static const kc_array *array_named(const kc_array *x, const kc_array *y, const kc_named_arrays *nm,
                                   const char *name) {
    if (!strcmp(name, "x") && x && x->data) return x;
    if (!strcmp(name, "y") && y && y->data) return y;
    for (int i = 0; nm && i < nm->n; i++)
        if (!strcmp(nm->names[i], name)) return &nm->arr[i];
    return NULL;
}

/* Resolves the data section's choices against one split's arrays. */
int kc_feed_arrays(kc_session *s, const kc_array *x, const kc_array *y, const kc_named_arrays *nm,
                   const char *what, kc_feed *f, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    const kc_model *m = s->model;
    memset(f, 0, sizeof *f);
    f->rows = -1;
    for (int i = 0; i < m->ninputs; i++) {
        const char *name = d->inputs[i].array;
        if (!(f->x[i] = array_named(x, y, nm, name)))
            return kc_node_fail(e, d->node, "the %s data has no array '%s' for model input '%s'",
                                what, name, m->inputs[i].name);
        f->rows = kc_array_rows(f->x[i]);
    }
    for (int k = 0; k < s->nouts; k++) {
        if (!s->outs[k].needs_target) continue;
        const char *name = d->targets[k].array;
        if (!(f->y[k] = array_named(x, y, nm, name)))
            return kc_node_fail(e, d->node,
                                "the %s data has no array '%s' for the targets of output '%s'",
                                what, name, s->outs[k].name);
        if (f->rows < 0) f->rows = kc_array_rows(f->y[k]);
    }
    if (f->rows < 0) f->rows = 0;
    return KC_OK;
}

int kc_session_feed(kc_session *s, int split, kc_feed *f, kc_error *e) {
    static const char *const what[] = {"training", "validation", "test"};
    if (split == KC_SPLIT_VAL && s->has_val == 2) split = KC_SPLIT_TEST;
    const kc_array *x = split == KC_SPLIT_TRAIN ? &s->x_train
                        : split == KC_SPLIT_VAL ? &s->x_val
                                                : &s->x_test;
    const kc_array *y = split == KC_SPLIT_TRAIN ? &s->y_train
                        : split == KC_SPLIT_VAL ? &s->y_val
                                                : &s->y_test;
    return kc_feed_arrays(s, x, y, &s->named[split], what[split], f, e);
}

int64_t kc_session_steps_per_epoch(kc_session *s, int64_t rows) {
    if (rows <= 0 || s->batch_size < 1) return 0;
    if (s->cfg->fit.steps_per_epoch > 0) return s->cfg->fit.steps_per_epoch;
    return rows / s->batch_size + (rows % s->batch_size != 0);
}

static const char *shape_s(const kc_shape *sh, char *buf, size_t n) {
    return kc_shape_str(sh, 1, buf, n);
}

/* Per-sample shape of input i's array after the data section's reshape must be the model's. */
/* Every Embedding fed directly by input i sees only valid ids: checked on
 * the values the model will get (kc_session_gather_input), naming the
 * sample and position. */
static int check_ids(kc_session *s, int i, const kc_array *x, const char *what, kc_error *e) {
    const kc_model *m = s->model;
    int64_t rows = kc_array_rows(x), per = kc_array_row_size(x);
    float *buf = NULL;
    int rc = KC_OK;
    for (int n = 0; !rc && n < m->nnodes; n++) {
        const kc_model_node *nd = &m->nodes[n];
        if (!nd->layer || nd->nin < 1 || nd->in[0] != m->inputs[i].node) continue;
        if (strcmp(nd->layer->cls->class_name, "Embedding")) continue;
        if (!buf) {
            size_t count;
            if (rows <= 0 || per <= 0) return KC_OK;
            if (__builtin_mul_overflow((size_t)rows, (size_t)per * sizeof *buf, &count) ||
                !(buf = malloc(count)))
                return kc_fail(e, KC_ERUNTIME, "out of memory checking the %s ids", what);
            for (int64_t r = 0; r < rows; r++)
                kc_session_gather_input(s, i, x, &r, 1, buf + r * per);
        }
        if ((rc = kc_embedding_check_ids(nd->layer, buf, rows, per, e)))
            kc_error_prefix(e, "the %s samples", what);
    }
    free(buf);
    return rc;
}

static int check_x(kc_session *s, int i, const kc_array *x, const char *what, kc_error *e) {
    const kc_data_spec *d = &s->cfg->data;
    const kc_feed_spec *fs = &d->inputs[i];
    const kc_model_input *mi = &s->model->inputs[i];
    const kc_shape *in = &mi->shape;
    kc_shape row = {0};
    row.rank = x->shape.rank - 1;
    for (int k = 1; k < x->shape.rank; k++)
        row.d[k - 1] = x->shape.d[k];
    char a[128], b[128], who[200] = "";
    if (s->model->ninputs > 1) snprintf(who, sizeof who, " '%s'", mi->name);
    if (fs->has_reshape) {
        if (kc_shape_numel(&fs->reshape) != kc_array_row_size(x))
            return kc_node_fail(
                e, fs->reshape_node, "reshape %s does not fit the %s samples of shape %s",
                shape_s(&fs->reshape, a, sizeof a), what, shape_s(&row, b, sizeof b));
        row = fs->reshape;
    }
    if (kc_shape_equal(&row, in)) return KC_OK;
    if (kc_shape_numel(&row) == kc_shape_numel(in) && !fs->has_reshape) {
        char list[128];
        size_t used = 0;
        for (int k = 0; k < in->rank; k++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%lld", k ? ", " : "[",
                                     (long long)in->d[k]);
        snprintf(list + used, sizeof list - used, "]");
        if (s->model->ninputs > 1)
            return kc_node_fail(
                e, d->node,
                "the %s samples for input%s have shape %s but the model input is %s: add "
                "`reshape: {%s: %s}` to the data section",
                what, who, shape_s(&row, a, sizeof a), shape_s(in, b, sizeof b), mi->name, list);
        return kc_node_fail(
            e, d->node,
            "the %s samples have shape %s but the model input is %s: add `reshape: %s` "
            "to the data section",
            what, shape_s(&row, a, sizeof a), shape_s(in, b, sizeof b), list);
    }
    return kc_node_fail(e, mi->where,
                        "the model input%s %s does not fit the %s samples of shape %s", who,
                        shape_s(in, a, sizeof a), what, shape_s(&row, b, sizeof b));
}

/* Targets are class indices (and may become one-hot) or dense values shaped like the output. */
static int check_y(kc_session *s, int k, const kc_array *y, const char *what, kc_error *e) {
    const kc_session_output *o = &s->outs[k];
    int64_t per = kc_array_row_size(y);
    int64_t out_numel = o->out_rows * o->out_cols;
    const kc_node *at = s->cfg->data.node;
    char who[200] = "";
    if (s->nouts > 1) snprintf(who, sizeof who, " of output '%s'", o->name);
    if (o->sparse_targets) {
        if (per != o->out_rows)
            return kc_node_fail(
                e, at,
                "the %s labels%s have %lld values per sample, but the loss %s expects one "
                "class index per output row (%lld)",
                what, who, (long long)per, o->loss.name, (long long)o->out_rows);
        int64_t n = kc_array_rows(y) * per;
        for (int64_t i = 0; i < n; i++) {
            double v =
                y->dtype == KC_DT_U8 ? ((const uint8_t *)y->data)[i] : ((const float *)y->data)[i];
            if (!(v >= 0 && v < o->out_cols && v == floor(v)))
                return kc_node_fail(
                    e, at,
                    "%s label %g of sample %lld%s is not a class index in [0, %d): the model "
                    "has %d outputs",
                    what, v, (long long)(i / per), who, o->out_cols, o->out_cols);
        }
        return KC_OK;
    }
    if (per != out_numel) {
        char a[128];
        return kc_node_fail(
            e, at,
            "the %s targets%s have %lld values per sample but the model output %s has %lld; "
            "for class labels use sparse_categorical_crossentropy or `one_hot: true`",
            what, who, (long long)per, shape_s(kc_model_output_shape_n(s->model, k), a, sizeof a),
            (long long)out_numel);
    }
    return KC_OK;
}

int kc_session_check_split(kc_session *s, int split, kc_error *e) {
    static const char *const what[] = {"training", "validation", "test"};
    kc_feed f;
    int rc = kc_session_feed(s, split, &f, e);
    for (int i = 0; !rc && i < s->model->ninputs; i++) {
        rc = check_x(s, i, f.x[i], what[split], e);
        if (!rc) rc = check_ids(s, i, f.x[i], what[split], e);
    }
    for (int k = 0; !rc && k < s->nouts; k++)
        if (f.y[k]) rc = check_y(s, k, f.y[k], what[split], e);
    return rc;
}

/* --------------------------------------------------- preprocess_input --- */

void kc_preprocess_input(kc_preprocess_mode mode, float *v, size_t n) {
    /* Keras's numpy arithmetic in float32; caffe's means are in BGR order */
    static const float caffe_mean[3] = {103.939f, 116.779f, 123.68f};
    static const float torch_mean[3] = {0.485f, 0.456f, 0.406f};
    static const float torch_std[3] = {0.229f, 0.224f, 0.225f};
    switch (mode) {
    case KC_PREPROCESS_TF:
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] / 127.5f - 1.0f;
        break;
    case KC_PREPROCESS_CAFFE:
        for (size_t i = 0; i + 3 <= n; i += 3) {
            float r = v[i];
            v[i] = v[i + 2] - caffe_mean[0];
            v[i + 1] -= caffe_mean[1];
            v[i + 2] = r - caffe_mean[2];
        }
        break;
    case KC_PREPROCESS_TORCH:
        for (size_t i = 0; i + 3 <= n; i += 3)
            for (int c = 0; c < 3; c++)
                v[i + c] = (v[i + c] / 255.0f - torch_mean[c]) / torch_std[c];
        break;
    default:
        break;
    }
}

void kc_session_gather_input(const kc_session *s, int i, const kc_array *x, const int64_t *idx,
                             int n, float *out) {
    const kc_data_spec *d = &s->cfg->data;
    float scale = s->input_is_x[i] ? (float)d->rescale : 1.0f;
    float offset = s->input_is_x[i] ? (float)d->offset : 0.0f;
    kc_array_gather(x, idx, n, scale, offset, out);
    kc_preprocess_mode mode = d->inputs[i].preprocess;
    if (mode != KC_PREPROCESS_NONE)
        kc_preprocess_input(mode, out, (size_t)n * (size_t)kc_array_row_size(x));
}

/* -------------------------------------------------------------- adapt --- */

/* The training data one adapting layer reads, batch by batch in order: its
 * input's values when a model input feeds it, else the tensor it is called
 * on after a forward pass in inference mode. */
typedef struct adapt_feed {
    kc_session *s;
    kc_feed f;
    const kc_layer *l;
    int calls;      /* nodes that call the layer */
    int src, src_t; /* the tensor its first call reads */
    int input;      /* the model input that is, or -1 */
    int64_t pos, *idx;
    float *host; /* a downloaded batch of that tensor */
    size_t host_floats;
    int ran; /* the model ran forward */
} adapt_feed;

/* Downloads the batch's tensor after a forward pass of the whole model. */
static int adapt_forward(adapt_feed *a, int n, const float **x, kc_error *e) {
    kc_session *s = a->s;
    size_t per = (size_t)kc_shape_numel(&a->l->in_shape);
    if (a->host_floats < per * (size_t)s->batch_size) {
        free(a->host);
        a->host_floats = 0;
        if (!(a->host = malloc(per * (size_t)s->batch_size * sizeof *a->host)))
            return kc_fail(e, KC_ERUNTIME, "out of memory adapting layer '%s'", a->l->name);
        a->host_floats = per * (size_t)s->batch_size;
    }
    int rc = kc_infer_batch(s, &a->f, a->idx, n, 0, e);
    if (rc) return rc;
    a->ran = 1;
    kc_download(&s->dev, a->host, kc_model_tensor_y(s->model, a->src, a->src_t, n),
                (size_t)n * per * sizeof(float));
    *x = a->host;
    return kc_device_error(&s->dev, e);
}

static int adapt_next(void *ctx, const float **x, int64_t *rows, kc_error *e) {
    adapt_feed *a = ctx;
    kc_session *s = a->s;
    *rows = 0;
    if (a->calls != 1)
        return kc_node_fail(e, a->l->node,
                            "layer '%s' (%s) is called %d times, so there is no one input to "
                            "adapt its statistics to; give them in the model file (mean and "
                            "variance)",
                            a->l->name, a->l->cls->class_name, a->calls);
    int64_t left = a->f.rows - a->pos;
    if (left <= 0) return KC_OK;
    int n = (int)(left < s->batch_size ? left : s->batch_size);
    for (int r = 0; r < n; r++)
        a->idx[r] = a->pos + r;
    if (a->input >= 0) {
        kc_session_gather_input(s, a->input, a->f.x[a->input], a->idx, n, s->hxs[a->input]);
        *x = s->hxs[a->input];
    } else {
        int rc = adapt_forward(a, n, x, e);
        if (rc) return rc;
    }
    a->pos += n;
    *rows = n;
    return KC_OK;
}

/* Where layer l's first call reads, and how many calls it has. */
static void adapt_target(adapt_feed *a, const kc_layer *l) {
    const kc_model *m = a->s->model;
    a->l = l;
    a->calls = 0;
    a->pos = 0;
    a->src = a->src_t = 0;
    for (int i = m->nnodes - 1; i >= 0; i--) {
        const kc_model_node *nd = &m->nodes[i];
        if (nd->layer != l) continue;
        a->calls++;
        a->src = nd->in[0];
        a->src_t = nd->in_t[0];
    }
    a->input = a->calls && !m->nodes[a->src].layer ? m->nodes[a->src].input : -1;
}

int kc_session_adapt(kc_session *s, kc_error *e) {
    kc_model *m = s->model;
    adapt_feed a = {.s = s};
    int rc = KC_OK;
    for (int li = 0; !rc && s->has_train && li < m->nlayers; li++) {
        kc_layer *l = m->layers[li];
        if (!l->cls->adapt) continue;
        if (!a.idx && !(rc = kc_session_feed(s, KC_SPLIT_TRAIN, &a.f, e)) &&
            !(a.idx = malloc((size_t)s->batch_size * sizeof *a.idx)))
            rc = kc_fail(e, KC_ERUNTIME, "out of memory adapting layer '%s'", l->name);
        if (rc) break;
        adapt_target(&a, l);
        kc_adapt_source src = {adapt_next, &a};
        rc = l->cls->adapt(l, &s->dev, &src, e);
    }
    /* stateful layers start training from zero states */
    if (!rc && a.ran && kc_model_reset_states(m)) rc = kc_device_error(&s->dev, e);
    free(a.idx);
    free(a.host);
    return rc;
}

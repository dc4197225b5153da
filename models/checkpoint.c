/* Checkpoints: safetensors files holding the weights under Keras's names
 * ("conv2d/kernel", HWIO and (in, out) layouts as Keras stores them), the
 * optimizer slots, and metadata that carries the model file itself, so a
 * checkpoint is enough to evaluate, summarise or predict. */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/safetensors.h"
#include "models/fit_internal.h"

#define KC_CKPT_FORMAT "kerasc"
#define KC_CKPT_VERSION "1"

int kc_is_checkpoint(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char b[9];
    size_t got = fread(b, 1, sizeof b, f);
    fclose(f);
    if (got != sizeof b) return 0;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | b[i];
    return n >= 2 && n < (100u << 20) && b[8] == '{';
}

static int logs_json(const kc_logs *l, kc_strbuf *b) {
    kc_strbuf_putc(b, '{');
    for (int i = 0; l && i < l->n; i++) {
        if (i) kc_strbuf_puts(b, ", ");
        kc_json_write_string(b, l->keys[i]);
        kc_strbuf_puts(b, ": ");
        kc_json_write_double(b, l->vals[i]);
    }
    return kc_strbuf_putc(b, '}');
}

/* The running sums of the epoch under way. They live on the device, and
 * state/device_running and state/device_penalty hold them raw (every float
 * sum's value and compensation, the penalty doubles) so that a resumed run
 * continues bit for bit. state/running is the same as host doubles, one F64
 * vector: per output its loss sum, then per metric total, count, pos, neg
 * and the confusion counts of its thresholds; checkpoints written before
 * the sums moved to the device have only this one. */
static size_t running_len(const kc_session *s) {
    size_t n = 0;
    for (int k = 0; k < s->nouts; k++) {
        n += 1;
        for (int i = 0; i < s->outs[k].nmetrics; i++) {
            int nt = s->outs[k].metrics[i].nthresholds;
            n += 4 + 2 * (size_t)(nt > 0 ? nt : 1);
        }
    }
    return n;
}

static void running_copy(kc_session *s, double *v, int save) {
    size_t at = 0;
#define KC_XFER(field) (save ? (void)(v[at++] = (field)) : (void)((field) = v[at++]))
    for (int k = 0; k < s->nouts; k++) {
        KC_XFER(s->outs[k].loss_sum);
        for (int i = 0; i < s->outs[k].nmetrics; i++) {
            kc_metric *m = &s->outs[k].metrics[i];
            int nt = m->nthresholds > 0 ? m->nthresholds : 1;
            KC_XFER(m->total);
            KC_XFER(m->count);
            KC_XFER(m->pos);
            KC_XFER(m->neg);
            for (int j = 0; j < nt; j++)
                KC_XFER(m->tp[j]);
            for (int j = 0; j < nt; j++)
                KC_XFER(m->fp[j]);
        }
    }
#undef KC_XFER
}

static void history_json(const kc_session *s, kc_strbuf *b) {
    kc_strbuf_putc(b, '[');
    for (int i = 0; i < s->nhistory; i++) {
        if (i) kc_strbuf_puts(b, ", ");
        logs_json(&s->history[i], b);
    }
    kc_strbuf_putc(b, ']');
}

int kc_checkpoint_save(const kc_session *s, const char *path, const kc_logs *logs, kc_error *e) {
    return kc_checkpoint_write(s, path, logs, 0, e);
}

/* Every tensor a checkpoint holds, with the host copies they point into. */
typedef struct ckpt_tensors {
    kc_param_ref *refs;
    kc_st_tensor *t;
    int nt;
    float *host; /* weights then optimizer slots, off the device */
    double *run; /* the running sums */
    float *raw;  /* the same raw (models/step.h) */
    double penalty[KC_RUNNING_PENALTY];
} ckpt_tensors;

static void tensors_free(ckpt_tensors *c) {
    free(c->refs);
    free(c->t);
    free(c->host);
    free(c->run);
    free(c->raw);
}

static int tensors_alloc(const kc_session *s, const kc_optimizer *opt, ckpt_tensors *c, int *np,
                         size_t *nrun, const char *path, kc_error *e) {
    int nslots = opt ? kc_optimizer_slot_count(opt) : 0;
    size_t total = (size_t)s->model->nvalues;
    for (int i = 0; i < nslots; i++) {
        const char *nm;
        kc_buf dev;
        size_t n;
        kc_optimizer_slot(opt, i, &nm, &dev, &n);
        total += n;
    }
    *np = kc_model_params(s->model, NULL, 0);
    *nrun = opt ? running_len(s) : 0;
    c->refs = malloc((size_t)(*np ? *np : 1) * sizeof *c->refs);
    size_t nraw = opt ? kc_session_running_floats(s) : 0;
    c->t = malloc((size_t)(*np + nslots + 3) * sizeof *c->t);
    c->host = malloc((total ? total : 1) * sizeof *c->host);
    c->run = malloc((*nrun ? *nrun : 1) * sizeof *c->run);
    c->raw = malloc((nraw ? nraw : 1) * sizeof *c->raw);
    if (!c->refs || !c->t || !c->host || !c->run || !c->raw)
        return kc_fail(e, KC_ERUNTIME, "out of memory writing %s", path);
    kc_model_params(s->model, c->refs, *np);
    return KC_OK;
}

kc_shape kc_slot_shape(const kc_param_ref *refs, int np, const char *slot, size_t n) {
    const char *p = slot + (strncmp(slot, "optimizer/", 10) ? 0 : 10);
    const char *end = strrchr(p, '/');
    for (int i = 0; end && i < np; i++)
        if ((size_t)(end - p) == strlen(refs[i].name) && !strncmp(refs[i].name, p, end - p) &&
            (size_t)kc_shape_numel(&refs[i].param->shape) == n)
            return refs[i].param->shape;
    return kc_shape1((int64_t)n);
}

/* Weights and optimizer slots come off the device into one host copy. */
static int tensors_collect(const kc_session *s, const kc_optimizer *opt, ckpt_tensors *c,
                           const char *path, kc_error *e) {
    kc_device *d = s->model->dev;
    int np;
    size_t nrun, off = 0;
    int rc = tensors_alloc(s, opt, c, &np, &nrun, path, e);
    if (rc) return rc;
    for (int i = 0; i < np; i++) {
        const kc_param *p = c->refs[i].param;
        size_t n = (size_t)kc_shape_numel(&p->shape);
        kc_download(d, c->host + off, p->value, n * sizeof(float));
        c->t[c->nt++] = (kc_st_tensor){c->refs[i].name, KC_ST_F32, p->shape, c->host + off};
        off += n;
    }
    for (int i = 0; opt && i < kc_optimizer_slot_count(opt); i++) {
        const char *nm;
        kc_buf dev;
        size_t n;
        kc_optimizer_slot(opt, i, &nm, &dev, &n);
        kc_download(d, c->host + off, dev, n * sizeof(float));
        c->t[c->nt++] =
            (kc_st_tensor){nm, KC_ST_F32, kc_slot_shape(c->refs, np, nm, n), c->host + off};
        off += n;
    }
    if (opt) {
        kc_session *ms = (kc_session *)s;
        if ((rc = kc_session_read_running(ms, e))) return rc;
        running_copy(ms, c->run, 1);
        kc_session_running_pack(s, c->raw, c->penalty);
        if (nrun)
            c->t[c->nt++] =
                (kc_st_tensor){"state/running", KC_ST_F64, kc_shape1((int64_t)nrun), c->run};
        c->t[c->nt++] = (kc_st_tensor){"state/device_running", KC_ST_F32,
                                       kc_shape1((int64_t)kc_session_running_floats(s)), c->raw};
        c->t[c->nt++] = (kc_st_tensor){"state/device_penalty", KC_ST_F64,
                                       kc_shape1(KC_RUNNING_PENALTY), c->penalty};
    }
    return kc_device_error(d, e);
}

/* The metadata's strings, kept alive until the file is written. */
typedef struct ckpt_meta {
    char epoch[32], step[32], iters[32], seed[32], batch[32], bsize[32], lsum[40], lcount[40],
        best[40], lr[40], cfg_dir[PATH_MAX];
    kc_strbuf logs, history, vocab, classes;
    char *callbacks;
    const char *kv[64];
} ckpt_meta;

static void meta_numbers(const kc_session *s, const kc_optimizer *opt, ckpt_meta *c) {
    snprintf(c->epoch, sizeof c->epoch, "%lld", (long long)s->epoch);
    snprintf(c->step, sizeof c->step, "%lld", (long long)s->step);
    snprintf(c->iters, sizeof c->iters, "%lld",
             (long long)(opt ? kc_optimizer_iterations(opt) : 0));
    snprintf(c->seed, sizeof c->seed, "%llu", (unsigned long long)s->seed);
    snprintf(c->batch, sizeof c->batch, "%lld", (long long)s->batch);
    snprintf(c->bsize, sizeof c->bsize, "%lld", (long long)s->batch_size);
    snprintf(c->lsum, sizeof c->lsum, "%.17g", s->epoch_loss_sum);
    snprintf(c->lcount, sizeof c->lcount, "%.17g", s->epoch_count);
    snprintf(c->best, sizeof c->best, "%s", s->has_best ? "" : "none");
    if (s->has_best) snprintf(c->best, sizeof c->best, "%.17g", s->best);
    snprintf(c->lr, sizeof c->lr, "%.17g", opt ? kc_optimizer_learning_rate(opt) : 0.0);
    char *copy = strdup(s->cfg->path);
    if (!copy || !realpath(dirname(copy), c->cfg_dir)) snprintf(c->cfg_dir, sizeof c->cfg_dir, ".");
    free(copy);
}

static void meta_build(const kc_session *s, const kc_optimizer *opt, const kc_logs *logs,
                       ckpt_meta *c) {
    memset(c, 0, sizeof *c);
    meta_numbers(s, opt, c);
    logs_json(logs, &c->logs);
    history_json(s, &c->history);
    c->callbacks = s->callbacks ? kc_callbacks_state(s->callbacks) : NULL;
    const char *base[] = {"format",         KC_CKPT_FORMAT,
                          "format_version", KC_CKPT_VERSION,
                          "kerasc_version", KC_VERSION,
                          "model_name",     s->model->name,
                          "config",         s->cfg->doc->text,
                          "config_path",    s->cfg->path,
                          "config_dir",     c->cfg_dir,
                          "epoch",          c->epoch,
                          "step",           c->step,
                          "seed",           c->seed,
                          "logs",           kc_strbuf_str(&c->logs)};
    int n = 0;
    for (size_t i = 0; i < sizeof base / sizeof *base; i++)
        c->kv[n++] = base[i];
    /* a text model's fitted vocabulary (models/data/tokenizer.h's JSON) */
    const kc_data_spec *d = &s->cfg->data;
    if (d->has_text && d->vocab) {
        kc_vocab_to_json(&d->text, d->vocab, &c->vocab);
        c->kv[n++] = "text_vocabulary";
        c->kv[n++] = kc_strbuf_str(&c->vocab);
    }
    /* an image model's classes, in label order: a JSON list of names */
    if (d->image_classes) {
        kc_strbuf_putc(&c->classes, '[');
        for (int i = 0; i < d->nimage_classes; i++) {
            if (i) kc_strbuf_puts(&c->classes, ", ");
            kc_json_write_string(&c->classes, d->image_classes[i]);
        }
        kc_strbuf_putc(&c->classes, ']');
        c->kv[n++] = "image_classes";
        c->kv[n++] = kc_strbuf_str(&c->classes);
    }
    if (opt) {
        const char *train[] = {"optimizer",      kc_optimizer_name(opt),
                               "iterations",     c->iters,
                               "learning_rate",  c->lr,
                               "batch",          c->batch,
                               "batch_size",     c->bsize,
                               "epoch_loss_sum", c->lsum,
                               "epoch_count",    c->lcount,
                               "best",           c->best,
                               "history",        kc_strbuf_str(&c->history),
                               "callbacks",      c->callbacks ? c->callbacks : "[]"};
        for (size_t i = 0; i < sizeof train / sizeof *train; i++)
            c->kv[n++] = train[i];
    }
    c->kv[n] = NULL;
}

static void meta_free(ckpt_meta *c) {
    free(c->callbacks);
    kc_strbuf_free(&c->logs);
    kc_strbuf_free(&c->history);
    kc_strbuf_free(&c->vocab);
    kc_strbuf_free(&c->classes);
}

int kc_checkpoint_write(const kc_session *s, const char *path, const kc_logs *logs,
                        int weights_only, kc_error *e) {
    const kc_optimizer *opt = weights_only ? NULL : s->opt;
    ckpt_tensors t = {0};
    int rc = tensors_collect(s, opt, &t, path, e);
    if (!rc) {
        ckpt_meta meta;
        meta_build(s, opt, logs, &meta);
        rc = kc_st_write(path, t.t, t.nt, meta.kv, e);
        meta_free(&meta);
    }
    tensors_free(&t);
    return rc;
}

/* ---------------------------------------------------------- reading --- */

/* A string from the file as a message may quote it: printable ASCII,
 * anything else as \xNN, cut after `max` characters. */
static const char *printable(const char *v, size_t max, char *buf, size_t n) {
    size_t used = 0, i = 0;
    for (; v[i] && i < max && used + 5 < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            buf[used++] = (char)c;
        else
            used += (size_t)snprintf(buf + used, n - used, "\\x%02x", c);
    }
    snprintf(buf + used, n - used, "%s", v[i] ? "..." : "");
    return buf;
}

/* A metadata value, cut after 40 characters. */
static const char *quoted(const char *v, char *buf, size_t n) {
    return printable(v, 40, buf, n);
}

static int open_checked(const char *path, kc_st_file **f, kc_error *e) {
    int rc = kc_st_open(path, f, e);
    if (rc) return rc;
    const char *fmt = kc_st_meta(*f, "format");
    if (!fmt || strcmp(fmt, KC_CKPT_FORMAT)) {
        kc_st_close(*f);
        *f = NULL;
        return kc_fail(
            e, KC_ECONFIG,
            "%s: a safetensors file but not a kerasc checkpoint (no format=kerasc metadata)", path);
    }
    const char *ver = kc_st_meta(*f, "format_version");
    if (!ver || strcmp(ver, KC_CKPT_VERSION)) {
        /* the value lives in *f: copied before it is closed */
        char q[200], shown[210] = "none";
        if (ver) snprintf(shown, sizeof shown, "'%s'", quoted(ver, q, sizeof q));
        kc_st_close(*f);
        *f = NULL;
        return kc_fail(e, KC_ECONFIG,
                       "%s: checkpoint format version %s is not supported (this kerasc reads "
                       "version %s)",
                       path, shown, KC_CKPT_VERSION);
    }
    return KC_OK;
}

/* image_classes: a JSON list of strings, at most 100000 of them. */
static int read_classes(const char *path, const char *text, kc_data_spec *d, kc_error *e) {
    kc_json *j = kc_json_parse(text, strlen(text), e);
    if (!j) return kc_fail(e, KC_ECONFIG, "%s: image_classes: %s", path, e->msg);
    size_t n = kc_json_len(j);
    int rc = KC_OK;
    if (kc_json_kind_of(j) != KC_JSON_ARRAY || n > 100000)
        rc = kc_fail(e, KC_ECONFIG, "%s: image_classes is not a list of class names", path);
    if (!rc && !(d->image_classes = calloc(n ? n : 1, sizeof *d->image_classes)))
        rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        const char *s = kc_json_str(kc_json_at(j, i));
        if (!s)
            rc = kc_fail(e, KC_ECONFIG, "%s: image_classes item %zu is not a string", path, i);
        else if (!(d->image_classes[i] = strdup(s)))
            rc = kc_fail(e, KC_ERUNTIME, "out of memory");
        else
            d->nimage_classes = (int)i + 1;
    }
    kc_json_free(j);
    return rc;
}

int kc_checkpoint_config(const char *path, kc_config **out, kc_error *e) {
    kc_st_file *f;
    int rc = open_checked(path, &f, e);
    if (rc) return rc;
    const char *text = kc_st_meta(f, "config"), *dir = kc_st_meta(f, "config_dir");
    if (!text) {
        kc_st_close(f);
        return kc_fail(e, KC_ECONFIG, "%s: the checkpoint carries no model config", path);
    }
    char name[PATH_MAX + 32];
    snprintf(name, sizeof name, "%s[config]", path);
    rc = kc_config_parse_text(name, dir, text, strlen(text), out, e);
    const char *voc = kc_st_meta(f, "text_vocabulary");
    kc_data_spec *d = rc ? NULL : &(*out)->data;
    if (d && d->has_text && voc) { /* checkpoints without one refit on the training texts */
        char what[PATH_MAX + 40];
        snprintf(what, sizeof what, "%s: text_vocabulary", path);
        if (!(d->vocab = calloc(1, sizeof *d->vocab)))
            rc = kc_fail(e, KC_ERUNTIME, "out of memory");
        else
            rc = kc_vocab_from_json(voc, strlen(voc), d->text.mode, what, d->vocab, e);
        if (rc) {
            kc_config_free(*out);
            *out = NULL;
        }
    }
    const char *classes = kc_st_meta(f, "image_classes");
    if (!rc && classes && (rc = read_classes(path, classes, &(*out)->data, e))) {
        kc_config_free(*out);
        *out = NULL;
    }
    kc_st_close(f);
    return rc;
}

static void add_problem(kc_strbuf *b, int *count, const char *fmt, const char *name, const char *a,
                        const char *c) {
    if (*count < 12) {
        kc_strbuf_puts(b, "\n  ");
        kc_strbuf_printf(b, fmt, name, a, c);
    }
    (*count)++;
}

/* ---- numbers in the metadata, each checked against what it must be ---- */

static int bad_meta(const char *path, const char *key, const char *v, const char *want,
                    kc_error *e) {
    char q[200];
    if (!v)
        return kc_fail(e, KC_ERUNTIME, "%s: checkpoint metadata %s is missing: expected %s", path,
                       key, want);
    return kc_fail(e, KC_ERUNTIME, "%s: checkpoint metadata %s = '%s' is not valid: expected %s",
                   path, key, quoted(v, q, sizeof q), want);
}

/* Decimal digits with an optional '-', nothing else, within int64. */
static int strict_i64(const char *v, int64_t *out) {
    const char *p = v + (*v == '-');
    if (*p < '0' || *p > '9') return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end) return 0;
    *out = x;
    return 1;
}

static int strict_u64(const char *v, uint64_t *out) {
    if (*v < '0' || *v > '9') return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end) return 0;
    *out = x;
    return 1;
}

/* A number as "%.17g" writes it (nan and inf included), nothing around it. */
static int strict_f64(const char *v, double *out) {
    if (!*v || isspace((unsigned char)*v)) return 0;
    char *end;
    double x = strtod(v, &end);
    if (*end || end == v) return 0;
    *out = x;
    return 1;
}

/* An integer key in lo..hi into *out when present; `what` says where hi
 * comes from ("" when it is only a limit). */
static int meta_int(kc_st_file *f, const char *path, const char *key, int64_t lo, int64_t hi,
                    const char *what, int64_t *out, kc_error *e) {
    const char *v = kc_st_meta(f, key);
    if (!v) return KC_OK;
    int64_t x;
    if (!strict_i64(v, &x) || x < lo || x > hi) {
        char want[200];
        snprintf(want, sizeof want, "an integer from %lld to %lld%s", (long long)lo, (long long)hi,
                 what);
        return bad_meta(path, key, v, want, e);
    }
    *out = x;
    return KC_OK;
}

/* A number key into *out when present; with `finite`, one that is finite
 * and at least lo. */
static int meta_num(kc_st_file *f, const char *path, const char *key, int finite, double lo,
                    double *out, kc_error *e) {
    const char *v = kc_st_meta(f, key);
    if (!v) return KC_OK;
    double x;
    if (!strict_f64(v, &x) || (finite && !(isfinite(x) && x >= lo)))
        return bad_meta(path, key, v, finite ? "a finite number, not negative" : "a number", e);
    *out = x;
    return KC_OK;
}

/* ---- tensors of the training state ---- */

/* Exactly a (n,) vector of dtype, or an error naming the tensor; *t is NULL
 * when the file lacks it. */
static int state_vector(kc_st_file *f, const char *path, const char *name, kc_st_dtype dtype,
                        size_t n, const kc_st_tensor **t, kc_error *e) {
    *t = kc_st_find(f, name);
    if (!*t) return KC_OK;
    if ((*t)->dtype == dtype && (*t)->shape.rank == 1 && (uint64_t)(*t)->shape.d[0] == n)
        return KC_OK;
    char a[256], b[256];
    kc_shape want = kc_shape1((int64_t)n);
    return kc_fail(e, KC_ECONFIG,
                   "%s: %s is %s %s, but this model and its compile settings keep %s %s; resume "
                   "with the model and compile settings the checkpoint was written with",
                   path, name, kc_st_dtype_name((*t)->dtype),
                   kc_shape_str(&(*t)->shape, 0, a, sizeof a), kc_st_dtype_name(dtype),
                   kc_shape_str(&want, 0, b, sizeof b));
}

/* The optimizer's slots, which must be the ones this optimizer has. */
static int restore_slots_with(kc_session *s, kc_st_file *f, const kc_param_ref *refs, int np,
                              const char *path, kc_error *e) {
    kc_device *d = s->model->dev;
    for (int i = 0; i < kc_optimizer_slot_count(s->opt); i++) {
        const char *nm;
        kc_buf dev;
        size_t n;
        kc_optimizer_slot(s->opt, i, &nm, &dev, &n);
        kc_shape want = kc_slot_shape(refs, np, nm, n);
        const kc_st_tensor *t = kc_st_find(f, nm);
        const char *written = kc_st_meta(f, "optimizer");
        char q[200];
        /* the weight's shape, or flat (n,) as earlier checkpoints stored them */
        if (!t || t->dtype != KC_ST_F32 || (uint64_t)kc_shape_numel(&t->shape) != n ||
            (t->shape.rank != 1 && !kc_shape_equal(&t->shape, &want)))
            return kc_fail(e, KC_ECONFIG,
                           "%s: optimizer state '%s' is missing or has another size; the "
                           "checkpoint was written with another optimizer (%s)",
                           path, nm, written ? quoted(written, q, sizeof q) : "?");
        kc_upload(d, dev, t->data, n * sizeof(float));
    }
    return KC_OK;
}

static int restore_slots(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    kc_device *d = s->model->dev;
    int np = kc_model_params(s->model, NULL, 0);
    kc_param_ref *refs = malloc((size_t)(np ? np : 1) * sizeof *refs);
    if (!refs) return kc_fail(e, KC_ERUNTIME, "out of memory reading %s", path);
    kc_model_params(s->model, refs, np);
    int rc = restore_slots_with(s, f, refs, np, path, e);
    free(refs);
    return rc ? rc : kc_device_error(d, e);
}

/* The penalty sums' batch rows: the full batch, and none or a smaller last batch. */
static int check_penalty(const kc_session *s, const double *p, const char *path, kc_error *e) {
    double bs = (double)s->batch_size;
    int ok = p[1] == bs && (p[3] == 0 || (p[3] >= 1 && p[3] < bs && p[3] == floor(p[3])));
    if (ok) return KC_OK;
    return kc_fail(e, KC_ERUNTIME,
                   "%s: state/device_penalty counts batches of %g and %g rows; this run's batches "
                   "have %lld rows (and a last one of fewer)",
                   path, p[1], p[3], s->batch_size);
}

/* The epoch's running sums onto the device: raw when the file has them,
 * else from the host doubles older checkpoints kept. Between epochs there
 * are none to restore. */
static int restore_running(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    if (s->batch == 0) return KC_OK;
    const kc_st_tensor *raw, *pen, *host;
    int rc = state_vector(f, path, "state/device_running", KC_ST_F32, kc_session_running_floats(s),
                          &raw, e);
    if (!rc)
        rc = state_vector(f, path, "state/device_penalty", KC_ST_F64, KC_RUNNING_PENALTY, &pen, e);
    if (!rc && !raw && !pen)
        rc = state_vector(f, path, "state/running", KC_ST_F64, running_len(s), &host, e);
    if (rc) return rc;
    if (raw && pen) {
        if ((rc = check_penalty(s, pen->data, path, e))) return rc;
        return kc_session_running_unpack(s, raw->data, pen->data, e);
    }
    if (!raw && !pen && host) {
        running_copy(s, (double *)host->data, 0);
        return kc_session_running_from_host(s, e);
    }
    return kc_fail(e, KC_ECONFIG,
                   "%s was written mid-epoch (step %lld) but holds no running losses and "
                   "metrics for this model's outputs and metrics; resume it with the "
                   "compile settings it was written with",
                   path, (long long)s->batch);
}

/* Samples seen in the epoch under way: each of its batches has 1 to
 * batch_size of them. */
static int restore_sums(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    const char *key = "epoch_count";
    int rc = meta_num(f, path, "epoch_loss_sum", 0, 0, &s->epoch_loss_sum, e);
    if (rc || (rc = meta_num(f, path, key, 1, 0, &s->epoch_count, e))) return rc;
    double c = s->epoch_count, most = (double)s->batch * (double)s->batch_size;
    if (c != floor(c) || c < (double)s->batch || c > most) {
        char want[200];
        snprintf(want, sizeof want,
                 "a whole number from %lld to %.17g (%lld batches of at most %lld)",
                 (long long)s->batch, most, (long long)s->batch, s->batch_size);
        return bad_meta(path, key, kc_st_meta(f, key), want, e);
    }
    return KC_OK;
}

/* The monitored value of the best checkpoint so far, or "none". */
static int restore_best(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    const char *v = kc_st_meta(f, "best");
    if (!v) return KC_OK;
    s->has_best = strcmp(v, "none") != 0;
    s->best = 0;
    if (s->has_best && !strict_f64(v, &s->best))
        return bad_meta(path, "best", v, "a number or none", e);
    return KC_OK;
}

/* Training steps in an epoch of this run. */
static int64_t run_steps(kc_session *s) {
    kc_feed feed;
    kc_error ignore = {0};
    if (!s->has_train || kc_session_feed(s, KC_SPLIT_TRAIN, &feed, &ignore)) return 0;
    return kc_session_steps_per_epoch(s, feed.rows);
}

/* Where in the data the run was, and the epoch's running sums. */
static int restore_position(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    const char *v;
    if ((v = kc_st_meta(f, "seed")) && !strict_u64(v, &s->seed))
        return bad_meta(path, "seed", v, "an integer from 0 to 18446744073709551615", e);
    int64_t batch = 0, bsize = s->batch_size, steps = run_steps(s);
    /* the batch size matters only mid-epoch, where it must be this run's */
    int rc = meta_int(f, path, "batch", 0, INT64_MAX, "", &batch, e);
    if (rc || (rc = meta_int(f, path, "batch_size", 0, INT_MAX, "", &bsize, e))) return rc;
    if (batch > 0 && bsize != s->batch_size)
        return kc_fail(e, KC_ECONFIG,
                       "%s was written mid-epoch with batch size %lld; resume it with the same "
                       "batch size (this run uses %lld)",
                       path, (long long)bsize, s->batch_size);
    if (batch > steps)
        return kc_fail(e, KC_ECONFIG,
                       "%s: checkpoint metadata batch = %lld is past the end of an epoch: this "
                       "run's epochs have %lld steps (resume with the data and steps_per_epoch "
                       "the checkpoint was written with)",
                       path, (long long)batch, (long long)steps);
    s->batch = batch;
    if ((rc = restore_sums(s, f, path, e)) || (rc = restore_best(s, f, path, e))) return rc;
    return restore_running(s, f, path, e);
}

/* One completed epoch's logs: an object of numbers. */
static int history_row(const kc_json *o, kc_logs *l) {
    if (kc_json_kind_of(o) != KC_JSON_OBJECT) return 0;
    memset(l, 0, sizeof *l);
    for (size_t i = 0; i < kc_json_len(o); i++) {
        if (kc_json_kind_of(kc_json_at(o, i)) != KC_JSON_NUMBER) return 0;
        if (l->n == KC_MAX_LOGS) continue;
        snprintf(l->keys[l->n], sizeof l->keys[0], "%s", kc_json_key_at(o, i));
        l->vals[l->n++] = kc_json_num(kc_json_at(o, i));
    }
    return 1;
}

/* The logs of every completed epoch: one per epoch the checkpoint counts,
 * kept up to this run's epochs. */
static int restore_history(kc_session *s, const char *v, const char *path, kc_error *e) {
    kc_json *h = kc_json_parse(v, strlen(v), e);
    if (!h) return kc_error_prefix(e, "%s: history", path);
    int rc = KC_OK;
    size_t n = kc_json_len(h);
    if (kc_json_kind_of(h) != KC_JSON_ARRAY || n != (uint64_t)s->epoch)
        rc = kc_fail(e, KC_ERUNTIME,
                     "%s: the checkpoint's history is not a list of the logs of its %lld "
                     "completed epochs",
                     path, (long long)s->epoch);
    s->nhistory = 0;
    for (size_t r = 0; !rc && r < n && r < (size_t)s->cfg->fit.epochs; r++) {
        kc_logs row;
        if (!history_row(kc_json_at(h, r), &row))
            rc = kc_fail(e, KC_ERUNTIME,
                         "%s: the checkpoint's history entry %zu is not an object of numbers", path,
                         r + 1);
        else if (!kc_session_history_push(s, &row))
            rc = kc_fail(e, KC_ERUNTIME, "%s: out of memory for the history", path);
    }
    kc_json_free(h);
    return rc;
}

/* Everything a training session needs to continue exactly where the
 * checkpoint was written. A weights-only checkpoint restores the weights and
 * starts the optimizer afresh. */
static int restore_training(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    if (!kc_st_meta(f, "iterations")) return KC_OK;
    int64_t it = 0;
    int rc = meta_int(f, path, "iterations", 0, s->step, " (the checkpoint's step)", &it, e);
    if (rc || (rc = restore_slots(s, f, path, e))) return rc;
    kc_optimizer_set_iterations(s->opt, it);
    double lr = 0;
    const char *v = kc_st_meta(f, "learning_rate");
    if ((rc = meta_num(f, path, "learning_rate", 1, 0, &lr, e))) return rc;
    if (v && !kc_optimizer_has_schedule(s->opt)) kc_optimizer_set_learning_rate(s->opt, lr);
    if ((rc = restore_position(s, f, path, e))) return rc;
    if ((v = kc_st_meta(f, "history")) && s->history && (rc = restore_history(s, v, path, e)))
        return rc;
    if ((v = kc_st_meta(f, "callbacks")) && s->callbacks &&
        kc_callbacks_restore(s->callbacks, v, e))
        return kc_error_prefix(e, "%s", path);
    return KC_OK;
}

/* Every mismatch between the file's weights and the model's, listed. */
static int check_weights(const kc_model *m, kc_st_file *f, const kc_param_ref *refs, int np,
                         const char *path, kc_error *e) {
    kc_strbuf problems = {0};
    int nprob = 0;
    char a[128], b[128];
    for (int i = 0; i < np; i++) {
        const kc_st_tensor *t = kc_st_find(f, refs[i].name);
        const kc_shape *want = &refs[i].param->shape;
        if (!t)
            add_problem(&problems, &nprob, "%s: missing from the checkpoint (model shape %s)%s",
                        refs[i].name, kc_shape_str(want, 0, a, sizeof a), "");
        else if (t->dtype != KC_ST_F32)
            add_problem(&problems, &nprob, "%s: dtype is not F32%s%s", refs[i].name, "", "");
        else if (!kc_shape_equal(&t->shape, want))
            add_problem(&problems, &nprob, "%s: checkpoint shape %s, model shape %s", refs[i].name,
                        kc_shape_str(&t->shape, 0, a, sizeof a),
                        kc_shape_str(want, 0, b, sizeof b));
    }
    for (int i = 0; i < kc_st_count(f); i++) {
        const kc_st_tensor *t = kc_st_at(f, i);
        if (!strncmp(t->name, "optimizer/", 10) || !strncmp(t->name, "state/", 6)) continue;
        int known = 0;
        for (int j = 0; j < np && !known; j++)
            known = !strcmp(refs[j].name, t->name);
        char q[700];
        if (!known)
            add_problem(&problems, &nprob, "%s: in the checkpoint but not in the model%s%s",
                        printable(t->name, 160, q, sizeof q), "", "");
    }
    int rc = KC_OK;
    if (nprob)
        rc = kc_fail(e, KC_ECONFIG, "%s does not match the model '%s' (%d problem%s):%s%s", path,
                     m->name, nprob, nprob == 1 ? "" : "s", kc_strbuf_str(&problems),
                     nprob > 12 ? "\n  ..." : "");
    kc_strbuf_free(&problems);
    return rc;
}

static int load_weights(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    kc_model *m = s->model;
    int np = kc_model_params(m, NULL, 0);
    kc_param_ref *refs = malloc((size_t)(np ? np : 1) * sizeof *refs);
    if (!refs) return kc_fail(e, KC_ERUNTIME, "out of memory reading %s", path);
    kc_model_params(m, refs, np);
    int rc = check_weights(m, f, refs, np, path, e);
    for (int i = 0; !rc && i < np; i++) {
        const kc_st_tensor *t = kc_st_find(f, refs[i].name);
        kc_upload(m->dev, refs[i].param->value, t->data,
                  (size_t)kc_shape_numel(&t->shape) * sizeof(float));
    }
    free(refs);
    return rc ? rc : kc_device_error(m->dev, e);
}

/* The completed epochs and steps. Epochs are counted in ints. */
/* Steps a run can count: far beyond any real run, and far enough below
 * INT64_MAX that step + steps_per_epoch * epochs cannot overflow. */
#define KC_CKPT_MAX_STEP (INT64_C(1) << 61)

static int restore_counts(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    int64_t epoch = 0, step = 0;
    int rc = meta_int(f, path, "epoch", 0, INT_MAX, "", &epoch, e);
    if (rc || (rc = meta_int(f, path, "step", 0, KC_CKPT_MAX_STEP, "", &step, e))) return rc;
    s->epoch = epoch;
    s->step = step;
    return KC_OK;
}

int kc_checkpoint_load(kc_session *s, const char *path, kc_error *e) {
    kc_st_file *f;
    int rc = open_checked(path, &f, e);
    if (rc) return rc;
    /* optimizer state and training position, when this session trains */
    if (!(rc = load_weights(s, f, path, e)) && !(rc = restore_counts(s, f, path, e)) && s->opt)
        rc = restore_training(s, f, path, e);
    kc_st_close(f);
    return rc;
}

int kc_checkpoint_load_weights(kc_session *s, const char *path, kc_error *e) {
    kc_st_file *f;
    int rc = open_checked(path, &f, e);
    if (rc) return rc;
    /* the counts are checked as every number of the file is, and not kept */
    int64_t epoch = s->epoch, step = s->step;
    if (!(rc = load_weights(s, f, path, e))) rc = restore_counts(s, f, path, e);
    s->epoch = epoch;
    s->step = step;
    kc_st_close(f);
    return rc;
}

/* Checkpoints: safetensors files holding the weights under Keras's names
 * ("conv2d/kernel", HWIO and (in, out) layouts as Keras stores them), the
 * optimizer slots, and metadata that carries the model file itself, so a
 * checkpoint is enough to evaluate, summarise or predict. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/safetensors.h"
#include "models/step.h"

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
        c->t[c->nt++] = (kc_st_tensor){nm, KC_ST_F32, kc_shape1((int64_t)n), c->host + off};
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
    kc_strbuf logs, history;
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
        kc_st_close(*f);
        *f = NULL;
        return kc_fail(e, KC_ECONFIG,
                       "%s: checkpoint format version %s is not supported (this kerasc reads %s)",
                       path, ver ? ver : "(none)", KC_CKPT_VERSION);
    }
    return KC_OK;
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

/* The optimizer's slots, which must be the ones this optimizer has. */
static int restore_slots(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    kc_device *d = s->model->dev;
    for (int i = 0; i < kc_optimizer_slot_count(s->opt); i++) {
        const char *nm;
        kc_buf dev;
        size_t n;
        kc_optimizer_slot(s->opt, i, &nm, &dev, &n);
        const kc_st_tensor *t = kc_st_find(f, nm);
        if (!t || t->dtype != KC_ST_F32 || (size_t)kc_shape_numel(&t->shape) != n)
            return kc_fail(e, KC_ECONFIG,
                           "%s: optimizer state '%s' is missing or has another size; the "
                           "checkpoint was written with another optimizer (%s)",
                           path, nm, kc_st_meta(f, "optimizer") ? kc_st_meta(f, "optimizer") : "?");
        kc_upload(d, dev, t->data, n * sizeof(float));
    }
    return kc_device_error(d, e);
}

static int has_tensor(kc_st_file *f, const char *name, kc_st_dtype dtype, size_t n) {
    const kc_st_tensor *t = kc_st_find(f, name);
    return t && t->dtype == dtype && (size_t)kc_shape_numel(&t->shape) == n;
}

/* The epoch's running sums onto the device: raw when the file has them,
 * else from the host doubles older checkpoints kept. */
static int restore_running(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    size_t nraw = kc_session_running_floats(s), nrun = running_len(s);
    if (has_tensor(f, "state/device_running", KC_ST_F32, nraw) &&
        has_tensor(f, "state/device_penalty", KC_ST_F64, KC_RUNNING_PENALTY))
        return kc_session_running_unpack(s, kc_st_find(f, "state/device_running")->data,
                                         kc_st_find(f, "state/device_penalty")->data, e);
    if (has_tensor(f, "state/running", KC_ST_F64, nrun)) {
        running_copy(s, (double *)kc_st_find(f, "state/running")->data, 0);
        return kc_session_running_from_host(s, e);
    }
    if (s->batch > 0)
        return kc_fail(e, KC_ECONFIG,
                       "%s was written mid-epoch (step %lld) but holds no running losses and "
                       "metrics for this model's outputs and metrics; resume it with the "
                       "compile settings it was written with",
                       path, (long long)s->batch);
    return KC_OK;
}

/* Where in the data the run was, and the epoch's running sums. */
static int restore_position(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    const char *v;
    if ((v = kc_st_meta(f, "seed"))) s->seed = strtoull(v, NULL, 10);
    if ((v = kc_st_meta(f, "batch"))) s->batch = strtoll(v, NULL, 10);
    const char *bs = kc_st_meta(f, "batch_size");
    if (s->batch > 0 && bs && strtoll(bs, NULL, 10) != s->batch_size)
        return kc_fail(e, KC_ECONFIG,
                       "%s was written mid-epoch with batch size %s; resume it with the same "
                       "batch size (this run uses %lld)",
                       path, bs, s->batch_size);
    if ((v = kc_st_meta(f, "epoch_loss_sum"))) s->epoch_loss_sum = strtod(v, NULL);
    if ((v = kc_st_meta(f, "epoch_count"))) s->epoch_count = strtod(v, NULL);
    if ((v = kc_st_meta(f, "best"))) {
        s->has_best = strcmp(v, "none") != 0;
        s->best = s->has_best ? strtod(v, NULL) : 0;
    }
    return restore_running(s, f, path, e);
}

static int restore_history(kc_session *s, const char *v, const char *path, kc_error *e) {
    kc_json *h = kc_json_parse(v, strlen(v), e);
    if (!h) return kc_error_prefix(e, "%s: history", path);
    int n = (int)kc_json_len(h);
    s->nhistory = 0;
    for (int r = 0; r < n && r < (int)s->cfg->fit.epochs; r++) {
        const kc_json *o = kc_json_at(h, (size_t)r);
        kc_logs *l = &s->history[s->nhistory++];
        memset(l, 0, sizeof *l);
        for (size_t i = 0; i < kc_json_len(o) && l->n < KC_MAX_LOGS; i++) {
            snprintf(l->keys[l->n], sizeof l->keys[0], "%s", kc_json_key_at(o, i));
            l->vals[l->n++] = kc_json_num(kc_json_at(o, i));
        }
    }
    kc_json_free(h);
    return KC_OK;
}

/* Everything a training session needs to continue exactly where the
 * checkpoint was written. A weights-only checkpoint restores the weights and
 * starts the optimizer afresh. */
static int restore_training(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    const char *it = kc_st_meta(f, "iterations");
    if (!it) return KC_OK;
    int rc = restore_slots(s, f, path, e);
    if (rc) return rc;
    kc_optimizer_set_iterations(s->opt, strtoll(it, NULL, 10));
    const char *lr = kc_st_meta(f, "learning_rate");
    if (lr && !kc_optimizer_has_schedule(s->opt))
        kc_optimizer_set_learning_rate(s->opt, strtod(lr, NULL));
    if ((rc = restore_position(s, f, path, e))) return rc;
    const char *v;
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
        if (!known)
            add_problem(&problems, &nprob, "%s: in the checkpoint but not in the model%s%s",
                        t->name, "", "");
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

int kc_checkpoint_load(kc_session *s, const char *path, kc_error *e) {
    kc_st_file *f;
    int rc = open_checked(path, &f, e);
    if (rc) return rc;
    /* optimizer state and training position, when this session trains */
    if (!(rc = load_weights(s, f, path, e)) && s->opt) rc = restore_training(s, f, path, e);
    if (!rc) {
        const char *ep = kc_st_meta(f, "epoch"), *st = kc_st_meta(f, "step");
        if (ep) s->epoch = strtoll(ep, NULL, 10);
        if (st) s->step = strtoll(st, NULL, 10);
    }
    kc_st_close(f);
    return rc;
}

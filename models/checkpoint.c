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
#include "models/fit.h"

#define KC_CKPT_FORMAT "kerasc"
#define KC_CKPT_VERSION "1"
#define KC_CKPT_MAX_TENSORS 512

int kc_is_checkpoint(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char b[9];
    size_t got = fread(b, 1, sizeof b, f);
    fclose(f);
    if (got != sizeof b) return 0;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
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

/* The running sums of the epoch under way, as one F64 vector: per output
 * its loss sum, then per metric total, count, pos, neg and the confusion
 * counts of its thresholds. */
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
            for (int j = 0; j < nt; j++) KC_XFER(m->tp[j]);
            for (int j = 0; j < nt; j++) KC_XFER(m->fp[j]);
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

int kc_checkpoint_write(const kc_session *s, const char *path, const kc_logs *logs, int weights_only,
                        kc_error *e) {
    kc_model *m = s->model;
    kc_param_ref refs[KC_CKPT_MAX_TENSORS];
    int np = kc_model_params(m, refs, KC_CKPT_MAX_TENSORS);
    const kc_optimizer *opt = weights_only ? NULL : s->opt;
    int nslots = opt ? kc_optimizer_slot_count(opt) : 0;
    if (np + nslots + 1 > KC_CKPT_MAX_TENSORS) return kc_fail(e, KC_ERUNTIME, "too many tensors to save");
    kc_st_tensor t[KC_CKPT_MAX_TENSORS];
    char slot_names[KC_CKPT_MAX_TENSORS][256];
    int rc = KC_OK;
    /* weights come off the device into one host copy */
    size_t total = (size_t)m->nvalues;
    for (int i = 0; i < nslots; i++) {
        const char *nm;
        float *dev;
        size_t n;
        kc_optimizer_slot(opt, i, &nm, &dev, &n);
        total += n;
    }
    size_t nrun = opt ? running_len(s) : 0;
    float *host = malloc((total ? total : 1) * sizeof *host);
    double *run = malloc((nrun ? nrun : 1) * sizeof *run);
    if (!host || !run) {
        free(host);
        free(run);
        return kc_fail(e, KC_ERUNTIME, "out of memory writing %s", path);
    }
    size_t off = 0;
    int nt = 0;
    for (int i = 0; i < np; i++) {
        size_t n = (size_t)kc_shape_numel(&refs[i].param->shape);
        s->be->download(host + off, refs[i].param->value, n * sizeof(float));
        t[nt++] = (kc_st_tensor){refs[i].name, KC_ST_F32, refs[i].param->shape, host + off};
        off += n;
    }
    for (int i = 0; i < nslots; i++) {
        const char *nm;
        float *dev;
        size_t n;
        kc_optimizer_slot(opt, i, &nm, &dev, &n);
        s->be->download(host + off, dev, n * sizeof(float));
        snprintf(slot_names[i], sizeof slot_names[i], "%s", nm);
        t[nt++] = (kc_st_tensor){slot_names[i], KC_ST_F32, kc_shape1((int64_t)n), host + off};
        off += n;
    }
    if (nrun) {
        running_copy((kc_session *)s, run, 1);
        t[nt++] = (kc_st_tensor){"state/running", KC_ST_F64, kc_shape1((int64_t)nrun), run};
    }
    char epoch[32], step[32], iters[32], seed[32], batch[32], bsize[32], lsum[40], lcount[40], best[40],
        lr[40], cfg_dir[PATH_MAX];
    snprintf(epoch, sizeof epoch, "%lld", (long long)s->epoch);
    snprintf(step, sizeof step, "%lld", (long long)s->step);
    snprintf(iters, sizeof iters, "%lld", (long long)(opt ? kc_optimizer_iterations(opt) : 0));
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    snprintf(batch, sizeof batch, "%lld", (long long)s->batch);
    snprintf(bsize, sizeof bsize, "%lld", (long long)s->batch_size);
    snprintf(lsum, sizeof lsum, "%.17g", s->epoch_loss_sum);
    snprintf(lcount, sizeof lcount, "%.17g", s->epoch_count);
    snprintf(best, sizeof best, "%s", s->has_best ? "" : "none");
    if (s->has_best) snprintf(best, sizeof best, "%.17g", s->best);
    snprintf(lr, sizeof lr, "%.17g", opt ? kc_optimizer_learning_rate(opt) : 0.0);
    char *copy = strdup(s->cfg->path);
    if (!copy || !realpath(dirname(copy), cfg_dir)) snprintf(cfg_dir, sizeof cfg_dir, ".");
    free(copy);
    kc_strbuf lj = {0}, hj = {0};
    logs_json(logs, &lj);
    history_json(s, &hj);
    char *cbj = s->callbacks ? kc_callbacks_state(s->callbacks) : NULL;
    const char *meta[64] = {"format",         KC_CKPT_FORMAT,
                            "format_version", KC_CKPT_VERSION,
                            "kerasc_version", KC_VERSION,
                            "model_name",     m->name,
                            "config",         s->cfg->doc->text,
                            "config_path",    s->cfg->path,
                            "config_dir",     cfg_dir,
                            "epoch",          epoch,
                            "step",           step,
                            "seed",           seed,
                            "logs",           kc_strbuf_str(&lj)};
    int nm = 22;
    if (opt) {
        const char *train_meta[] = {"optimizer",      kc_optimizer_name(opt),
                                    "iterations",     iters,
                                    "learning_rate",  lr,
                                    "batch",          batch,
                                    "batch_size",     bsize,
                                    "epoch_loss_sum", lsum,
                                    "epoch_count",    lcount,
                                    "best",           best,
                                    "history",        kc_strbuf_str(&hj),
                                    "callbacks",      cbj ? cbj : "[]"};
        for (size_t i = 0; i < sizeof train_meta / sizeof *train_meta; i++) meta[nm++] = train_meta[i];
    }
    meta[nm] = NULL;
    rc = kc_st_write(path, t, nt, meta, e);
    free(cbj);
    kc_strbuf_free(&lj);
    kc_strbuf_free(&hj);
    free(host);
    free(run);
    return rc;
}

static int open_checked(const char *path, kc_st_file **f, kc_error *e) {
    int rc = kc_st_open(path, f, e);
    if (rc) return rc;
    const char *fmt = kc_st_meta(*f, "format");
    if (!fmt || strcmp(fmt, KC_CKPT_FORMAT)) {
        kc_st_close(*f);
        *f = NULL;
        return kc_fail(e, KC_ECONFIG, "%s: a safetensors file but not a kerasc checkpoint (no format=kerasc metadata)",
                       path);
    }
    const char *ver = kc_st_meta(*f, "format_version");
    if (!ver || strcmp(ver, KC_CKPT_VERSION)) {
        kc_st_close(*f);
        *f = NULL;
        return kc_fail(e, KC_ECONFIG, "%s: checkpoint format version %s is not supported (this kerasc reads %s)", path,
                       ver ? ver : "(none)", KC_CKPT_VERSION);
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

static void add_problem(kc_strbuf *b, int *count, const char *fmt, const char *name, const char *a, const char *c) {
    if (*count < 12) {
        kc_strbuf_puts(b, "\n  ");
        kc_strbuf_printf(b, fmt, name, a, c);
    }
    (*count)++;
}

/* Everything a training session needs to continue exactly where the
 * checkpoint was written. A weights-only checkpoint restores the weights and
 * starts the optimizer afresh. */
static int restore_training(kc_session *s, kc_st_file *f, const char *path, kc_error *e) {
    const char *it = kc_st_meta(f, "iterations");
    if (!it) return KC_OK;
    int ns = kc_optimizer_slot_count(s->opt);
    for (int i = 0; i < ns; i++) {
        const char *nm;
        float *dev;
        size_t n;
        kc_optimizer_slot(s->opt, i, &nm, &dev, &n);
        const kc_st_tensor *t = kc_st_find(f, nm);
        if (!t || t->dtype != KC_ST_F32 || (size_t)kc_shape_numel(&t->shape) != n)
            return kc_fail(e, KC_ECONFIG, "%s: optimizer state '%s' is missing or has another size; the checkpoint "
                                          "was written with another optimizer (%s)",
                           path, nm, kc_st_meta(f, "optimizer") ? kc_st_meta(f, "optimizer") : "?");
        s->be->upload(dev, t->data, n * sizeof(float));
    }
    kc_optimizer_set_iterations(s->opt, strtoll(it, NULL, 10));
    const char *lr = kc_st_meta(f, "learning_rate");
    if (lr && !kc_optimizer_has_schedule(s->opt)) kc_optimizer_set_learning_rate(s->opt, strtod(lr, NULL));
    const char *v;
    if ((v = kc_st_meta(f, "seed"))) s->seed = strtoull(v, NULL, 10);
    if ((v = kc_st_meta(f, "batch"))) s->batch = strtoll(v, NULL, 10);
    const char *bs = kc_st_meta(f, "batch_size");
    if (s->batch > 0 && bs && strtoll(bs, NULL, 10) != s->batch_size)
        return kc_fail(e, KC_ECONFIG, "%s was written mid-epoch with batch size %s; resume it with the same batch size "
                                      "(this run uses %lld)",
                       path, bs, s->batch_size);
    if ((v = kc_st_meta(f, "epoch_loss_sum"))) s->epoch_loss_sum = strtod(v, NULL);
    if ((v = kc_st_meta(f, "epoch_count"))) s->epoch_count = strtod(v, NULL);
    if ((v = kc_st_meta(f, "best"))) {
        s->has_best = strcmp(v, "none") != 0;
        s->best = s->has_best ? strtod(v, NULL) : 0;
    }
    const kc_st_tensor *run = kc_st_find(f, "state/running");
    if (run && run->dtype == KC_ST_F64 && (size_t)kc_shape_numel(&run->shape) == running_len(s))
        running_copy(s, (double *)run->data, 0);
    int rc = KC_OK;
    if ((v = kc_st_meta(f, "history")) && s->history) {
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
    }
    if ((v = kc_st_meta(f, "callbacks")) && s->callbacks) {
        rc = kc_callbacks_restore(s->callbacks, v, e);
        if (rc) return kc_error_prefix(e, "%s", path);
    }
    return rc;
}

int kc_checkpoint_load(kc_session *s, const char *path, kc_error *e) {
    kc_st_file *f;
    int rc = open_checked(path, &f, e);
    if (rc) return rc;
    kc_model *m = s->model;
    kc_param_ref refs[KC_CKPT_MAX_TENSORS];
    int np = kc_model_params(m, refs, KC_CKPT_MAX_TENSORS);
    kc_strbuf problems = {0};
    int nprob = 0;
    char a[128], b[128];
    for (int i = 0; i < np; i++) {
        const kc_st_tensor *t = kc_st_find(f, refs[i].name);
        if (!t) {
            add_problem(&problems, &nprob, "%s: missing from the checkpoint (model shape %s)%s", refs[i].name,
                        kc_shape_str(&refs[i].param->shape, 0, a, sizeof a), "");
        } else if (t->dtype != KC_ST_F32) {
            add_problem(&problems, &nprob, "%s: dtype is not F32%s%s", refs[i].name, "", "");
        } else if (!kc_shape_equal(&t->shape, &refs[i].param->shape)) {
            add_problem(&problems, &nprob, "%s: checkpoint shape %s, model shape %s", refs[i].name,
                        kc_shape_str(&t->shape, 0, a, sizeof a), kc_shape_str(&refs[i].param->shape, 0, b, sizeof b));
        }
    }
    for (int i = 0; i < kc_st_count(f); i++) {
        const kc_st_tensor *t = kc_st_at(f, i);
        if (!strncmp(t->name, "optimizer/", 10) || !strncmp(t->name, "state/", 6)) continue;
        int known = 0;
        for (int j = 0; j < np && !known; j++) known = !strcmp(refs[j].name, t->name);
        if (!known) add_problem(&problems, &nprob, "%s: in the checkpoint but not in the model%s%s", t->name, "", "");
    }
    if (nprob) {
        rc = kc_fail(e, KC_ECONFIG, "%s does not match the model '%s' (%d problem%s):%s%s", path, m->name, nprob,
                     nprob == 1 ? "" : "s", kc_strbuf_str(&problems), nprob > 12 ? "\n  ..." : "");
        kc_strbuf_free(&problems);
        kc_st_close(f);
        return rc;
    }
    kc_strbuf_free(&problems);
    for (int i = 0; i < np; i++) {
        const kc_st_tensor *t = kc_st_find(f, refs[i].name);
        s->be->upload(refs[i].param->value, t->data, (size_t)kc_shape_numel(&t->shape) * sizeof(float));
    }
    /* optimizer state and training position, when this session trains */
    if (s->opt && (rc = restore_training(s, f, path, e))) {
        kc_st_close(f);
        return rc;
    }
    const char *ep = kc_st_meta(f, "epoch"), *st = kc_st_meta(f, "step");
    if (ep) s->epoch = strtoll(ep, NULL, 10);
    if (st) s->step = strtoll(st, NULL, 10);
    kc_st_close(f);
    return KC_OK;
}

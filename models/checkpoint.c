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

int kc_checkpoint_save(const kc_session *s, const char *path, const kc_logs *logs, kc_error *e) {
    kc_model *m = s->model;
    kc_param_ref refs[KC_CKPT_MAX_TENSORS];
    int np = kc_model_params(m, refs, KC_CKPT_MAX_TENSORS);
    int nslots = s->opt ? kc_optimizer_slot_count(s->opt) : 0;
    if (np + nslots > KC_CKPT_MAX_TENSORS) return kc_fail(e, KC_ERUNTIME, "too many tensors to save");
    kc_st_tensor t[KC_CKPT_MAX_TENSORS];
    char slot_names[KC_CKPT_MAX_TENSORS][256];
    int rc = KC_OK;
    /* weights come off the device into one host copy */
    size_t total = (size_t)m->nvalues;
    for (int i = 0; i < nslots; i++) {
        const char *nm;
        float *dev;
        size_t n;
        kc_optimizer_slot(s->opt, i, &nm, &dev, &n);
        total += n;
    }
    float *host = malloc((total ? total : 1) * sizeof *host);
    if (!host) return kc_fail(e, KC_ERUNTIME, "out of memory writing %s", path);
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
        kc_optimizer_slot(s->opt, i, &nm, &dev, &n);
        s->be->download(host + off, dev, n * sizeof(float));
        snprintf(slot_names[i], sizeof slot_names[i], "%s", nm);
        t[nt++] = (kc_st_tensor){slot_names[i], KC_ST_F32, kc_shape1((int64_t)n), host + off};
        off += n;
    }
    char epoch[32], step[32], iters[32], seed[32], cfg_dir[PATH_MAX];
    snprintf(epoch, sizeof epoch, "%lld", (long long)s->epoch);
    snprintf(step, sizeof step, "%lld", (long long)s->step);
    snprintf(iters, sizeof iters, "%lld", (long long)(s->opt ? kc_optimizer_iterations(s->opt) : 0));
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    char *copy = strdup(s->cfg->path);
    if (!copy || !realpath(dirname(copy), cfg_dir)) snprintf(cfg_dir, sizeof cfg_dir, ".");
    free(copy);
    kc_strbuf lj = {0};
    logs_json(logs, &lj);
    const char *meta[] = {"format",
                          KC_CKPT_FORMAT,
                          "format_version",
                          KC_CKPT_VERSION,
                          "kerasc_version",
                          KC_VERSION,
                          "model_name",
                          m->name,
                          "config",
                          s->cfg->doc->text,
                          "config_path",
                          s->cfg->path,
                          "config_dir",
                          cfg_dir,
                          "epoch",
                          epoch,
                          "step",
                          step,
                          "optimizer",
                          s->opt ? kc_optimizer_name(s->opt) : "",
                          "iterations",
                          iters,
                          "seed",
                          seed,
                          "logs",
                          kc_strbuf_str(&lj),
                          NULL};
    rc = kc_st_write(path, t, nt, meta, e);
    kc_strbuf_free(&lj);
    free(host);
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
        if (!strncmp(t->name, "optimizer/", 10)) continue;
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
    /* optimizer state, when this session trains and the file has it */
    if (s->opt) {
        int ns = kc_optimizer_slot_count(s->opt);
        for (int i = 0; i < ns; i++) {
            const char *nm;
            float *dev;
            size_t n;
            kc_optimizer_slot(s->opt, i, &nm, &dev, &n);
            const kc_st_tensor *t = kc_st_find(f, nm);
            if (t && t->dtype == KC_ST_F32 && (size_t)kc_shape_numel(&t->shape) == n)
                s->be->upload(dev, t->data, n * sizeof(float));
        }
        const char *it = kc_st_meta(f, "iterations");
        if (it) kc_optimizer_set_iterations(s->opt, strtoll(it, NULL, 10));
    }
    const char *ep = kc_st_meta(f, "epoch"), *st = kc_st_meta(f, "step");
    if (ep) s->epoch = strtoll(ep, NULL, 10);
    if (st) s->step = strtoll(st, NULL, 10);
    kc_st_close(f);
    return KC_OK;
}

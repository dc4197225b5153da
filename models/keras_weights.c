/* Keras weight files (models/keras_weights.h): which file is which, the
 * layer keys of Keras 3's layout, and the weights matched, read and written
 * layer by layer. */
#include "models/keras_weights.h"

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/h5.h"
#include "models/data/data.h"
#include "models/keras_import.h"

#define KW_MAX_GROUPS 16
#define KW_MAX_PROBLEMS 12
/* A .keras archive's model.weights.h5 is read whole into memory. */
#define KW_MAX_ARCHIVE_WEIGHTS ((size_t)16 << 30)

/* ------------------------------------------------------------- kinds --- */

static int is_zip_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char b[4];
    size_t got = fread(b, 1, sizeof b, f);
    fclose(f);
    return got == 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4;
}

static kc_weights_kind h5_kind(kc_h5 *h) {
    if (kc_h5_is_group(h, "model_weights")) return KC_WEIGHTS_H5_MODEL;
    char **names;
    int n;
    kc_error ignore = {0};
    if (!kc_h5_attr_strings(h, "/", "layer_names", &names, &n, &ignore) && n >= 0) {
        kc_h5_names_free(names, n);
        return KC_WEIGHTS_H5_LEGACY;
    }
    if (kc_h5_is_group(h, "layers") || kc_h5_is_group(h, "vars")) return KC_WEIGHTS_H5;
    return KC_WEIGHTS_UNKNOWN;
}

kc_weights_kind kc_weights_kind_of(const char *path) {
    if (kc_is_checkpoint(path)) return KC_WEIGHTS_CHECKPOINT;
    if (is_zip_file(path)) return KC_WEIGHTS_KERAS;
    if (!kc_h5_is_file(path)) return KC_WEIGHTS_UNKNOWN;
    kc_h5 *h;
    kc_error ignore = {0};
    if (kc_h5_open(path, &h, &ignore)) return KC_WEIGHTS_UNKNOWN;
    kc_weights_kind k = h5_kind(h);
    kc_h5_close(h, &ignore);
    return k;
}

int kc_weights_has_model(kc_weights_kind k) {
    return k == KC_WEIGHTS_CHECKPOINT || k == KC_WEIGHTS_KERAS || k == KC_WEIGHTS_H5_MODEL;
}

static int unknown_kind(const char *path, kc_error *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return kc_fail(e, KC_ECONFIG, "%s: cannot open: %s", path, strerror(errno));
    fclose(f);
    return kc_fail(e, KC_ECONFIG,
                   "%s: not a weights file kerasc reads (a kerasc checkpoint, a .keras archive, a "
                   "Keras .weights.h5 or a legacy Keras .h5)",
                   path);
}

/* ------------------------------------------------------------ config --- */

static void file_dir(const char *path, char *dir, size_t n) {
    char *copy = strdup(path);
    char real[PATH_MAX];
    if (copy && realpath(dirname(copy), real))
        snprintf(dir, n, "%s", real);
    else
        snprintf(dir, n, ".");
    free(copy);
}

/* A legacy full model: its model_config attribute, converted. */
static int legacy_model_config(const char *path, kc_config **out, kc_error *e) {
    kc_h5 *h;
    int rc = kc_h5_open(path, &h, e);
    if (rc) return rc;
    char *json = NULL;
    rc = kc_h5_attr_string(h, "/", "model_config", &json, e);
    kc_h5_close(h, e);
    if (!rc && !json)
        rc = kc_fail(e, KC_ECONFIG, "%s: a Keras weights file without a model_config attribute",
                     path);
    char name[PATH_MAX + 32], dir[PATH_MAX];
    snprintf(name, sizeof name, "%s[model_config]", path);
    char *yaml = NULL;
    if (!rc) rc = kc_keras_import_text(name, json, strlen(json), &yaml, e);
    free(json);
    if (rc) return rc;
    snprintf(name, sizeof name, "%s (converted)", path);
    file_dir(path, dir, sizeof dir);
    rc = kc_config_parse_text(name, dir, yaml, strlen(yaml), out, e);
    free(yaml);
    return rc;
}

int kc_weights_config(const char *path, kc_config **out, kc_error *e) {
    *out = NULL;
    switch (kc_weights_kind_of(path)) {
    case KC_WEIGHTS_CHECKPOINT:
        return kc_checkpoint_config(path, out, e);
    case KC_WEIGHTS_KERAS:
        return kc_keras_config_load(path, out, e);
    case KC_WEIGHTS_H5_MODEL:
        return legacy_model_config(path, out, e);
    case KC_WEIGHTS_H5:
    case KC_WEIGHTS_H5_LEGACY:
        return kc_fail(e, KC_ECONFIG,
                       "%s holds only weights, not a model: give the model too, as MODEL "
                       "--weights %s (MODEL: a kerasc model file, or Keras's .json / .keras)",
                       path, path);
    default:
        return unknown_kind(path, e);
    }
}

/* -------------------------------------------------------- Keras keys --- */

static int is_upper(char c) {
    return c >= 'A' && c <= 'Z';
}

static int is_lower(char c) {
    return c >= 'a' && c <= 'z';
}

/* re.sub(r"\W+", ""), re.sub("(.)([A-Z][a-z]+)", r"\1_\2"),
 * re.sub("([a-z])([A-Z])", r"\1_\2"), lower(): Keras's to_snake_case. */
void kc_keras_snake_case(const char *cls, char *out, size_t n) {
    char a[256], b[512], c[1024];
    size_t k = 0;
    for (size_t i = 0; cls[i] && k + 1 < sizeof a; i++)
        if (isalnum((unsigned char)cls[i]) || cls[i] == '_') a[k++] = cls[i];
    a[k] = 0;
    k = 0;
    for (size_t i = 0; a[i] && k + 3 < sizeof b;) {
        if (a[i + 1] && is_upper(a[i + 1]) && is_lower(a[i + 2])) {
            b[k++] = a[i++];
            b[k++] = '_';
            b[k++] = a[i++];
            while (is_lower(a[i]) && k + 1 < sizeof b)
                b[k++] = a[i++];
        } else {
            b[k++] = a[i++];
        }
    }
    b[k] = 0;
    k = 0;
    for (size_t i = 0; b[i] && k + 3 < sizeof c;) {
        if (is_lower(b[i]) && is_upper(b[i + 1])) {
            c[k++] = b[i++];
            c[k++] = '_';
        }
        c[k++] = (char)tolower((unsigned char)b[i++]);
    }
    c[k] = 0;
    snprintf(out, n, "%s", c);
}

/* One entry of Keras's layer container (model.layers): a layer, or a
 * Functional model's input (InputLayer), with its key. */
typedef struct kw_entry {
    int layer; /* kerasc layer index, or -1 - input index */
    char key[160];
} kw_entry;

/* The entries in Keras's order: a Functional model's operations (inputs
 * included), a Sequential model's layers. */
static int keras_entries(const kc_model *m, kw_entry **out, int *n, kc_error *e) {
    int nops = m->nlayers + m->ninputs;
    int *ops = malloc((size_t)(nops ? nops : 1) * sizeof *ops);
    kw_entry *en = calloc((size_t)(nops ? nops : 1), sizeof *en);
    if (!ops || !en) {
        free(ops);
        free(en);
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    int count = 0;
    if (m->functional) {
        count = kc_model_keras_order(m, ops);
    } else {
        for (int i = 0; i < m->nlayers; i++)
            ops[count++] = i;
    }
    for (int i = 0; i < count; i++) {
        char base[160];
        const char *cls = ops[i] >= 0 ? m->layers[ops[i]]->cls->class_name : "InputLayer";
        kc_keras_snake_case(cls, base, sizeof base);
        int used = 0;
        for (int j = 0; j < i; j++) {
            char other[160];
            const char *oc =
                en[j].layer >= 0 ? m->layers[en[j].layer]->cls->class_name : "InputLayer";
            kc_keras_snake_case(oc, other, sizeof other);
            used += !strcmp(other, base);
        }
        en[i].layer = ops[i];
        if (used)
            snprintf(en[i].key, sizeof en[i].key, "%s_%d", base, used);
        else
            snprintf(en[i].key, sizeof en[i].key, "%s", base);
    }
    free(ops);
    *out = en;
    *n = count;
    return KC_OK;
}

/* ---------------------------------------------------------- problems --- */

typedef struct kw_problems {
    kc_strbuf text;
    int n;
} kw_problems;

static void problem(kw_problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(kw_problems *p, const char *fmt, ...) {
    if (p->n++ >= KW_MAX_PROBLEMS) return;
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kc_strbuf_puts(&p->text, "\n  ");
    kc_strbuf_puts(&p->text, msg);
}

static int problems_report(kw_problems *p, const char *path, const kc_model *m, kc_error *e) {
    int rc = KC_OK;
    if (p->n)
        rc = kc_fail(e, KC_ECONFIG, "%s does not match the model '%s' (%d problem%s):%s%s", path,
                     m->name, p->n, p->n == 1 ? "" : "s", kc_strbuf_str(&p->text),
                     p->n > KW_MAX_PROBLEMS ? "\n  ..." : "");
    kc_strbuf_free(&p->text);
    return rc;
}

/* ------------------------------------------------------ matched reads --- */

/* One model weight and the dataset that holds it. */
typedef struct kw_match {
    const kc_layer *layer;
    const kc_param *param;
    char dataset[600];
} kw_match;

typedef struct kw_plan {
    kw_match *m;
    int n, cap;
} kw_plan;

static int plan_add(kw_plan *pl, const kc_layer *l, const kc_param *p, const char *ds) {
    if (pl->n == pl->cap) {
        int cap = pl->cap ? 2 * pl->cap : 64;
        kw_match *nm = realloc(pl->m, (size_t)cap * sizeof *nm);
        if (!nm) return 0;
        pl->m = nm;
        pl->cap = cap;
    }
    kw_match *w = &pl->m[pl->n++];
    w->layer = l;
    w->param = p;
    snprintf(w->dataset, sizeof w->dataset, "%s", ds);
    return 1;
}

/* Checks the dataset against the weight; a match joins the plan. */
static void match(kc_h5 *h, kw_plan *pl, kw_problems *pr, const kc_layer *l, const kc_param *p,
                  const char *ds) {
    kc_shape s;
    kc_h5_class c;
    kc_error ignore = {0};
    char a[128], b[128];
    if (!kc_h5_is_dataset(h, ds)) {
        problem(pr, "layer '%s' (%s): weight %s %s is not in the file (expected at %s)", l->name,
                l->cls->class_name, p->name, kc_shape_str(&p->shape, 0, a, sizeof a), ds);
    } else if (kc_h5_dataset_info(h, ds, &s, &c, &ignore) || c == KC_H5_OTHER) {
        problem(pr, "layer '%s' (%s): %s in the file is not an array of numbers", l->name,
                l->cls->class_name, ds);
    } else if (!kc_shape_equal(&s, &p->shape)) {
        problem(pr, "layer '%s' (%s): weight %s is %s in the file (%s), %s in the model", l->name,
                l->cls->class_name, p->name, kc_shape_str(&s, 0, a, sizeof a), ds,
                kc_shape_str(&p->shape, 0, b, sizeof b));
    } else if (!plan_add(pl, l, p, ds)) {
        problem(pr, "out of memory");
    }
}

/* Reads every matched dataset onto the device. */
static int plan_load(kc_h5 *h, const kw_plan *pl, kc_device *d, kc_error *e) {
    for (int i = 0; i < pl->n; i++) {
        const kc_param *p = pl->m[i].param;
        size_t bytes;
        if (!kc_shape_bytes(&p->shape, sizeof(float), &bytes))
            return kc_fail(e, KC_ERUNTIME, "weight too large");
        float *buf = malloc(bytes ? bytes : 1);
        if (!buf) return kc_fail(e, KC_ERUNTIME, "out of memory reading %s", kc_h5_name(h));
        int rc = kc_h5_read_f32(h, pl->m[i].dataset, &p->shape, buf, e);
        if (!rc) rc = kc_upload(d, p->value, buf, bytes);
        free(buf);
        if (rc) return rc ? rc : kc_device_error(d, e);
    }
    return kc_device_error(d, e);
}

/* Datasets directly in a group, counted (0 when it is absent). */
static int count_datasets(kc_h5 *h, const char *group) {
    char **names;
    int n, count = 0;
    kc_error ignore = {0};
    if (!kc_h5_is_group(h, group) || kc_h5_members(h, group, &names, &n, &ignore)) return 0;
    for (int i = 0; i < n; i++) {
        char p[800];
        snprintf(p, sizeof p, "%s/%s", group, names[i]);
        count += kc_h5_is_dataset(h, p);
    }
    kc_h5_names_free(names, n);
    return count;
}

/* ----------------------------------------------------------- Keras 3 --- */

/* layers/<member> whose vars group names the layer (Keras >= 3.6). */
static const char *member_named(kc_h5 *h, char **members, int n, const char *name) {
    for (int i = 0; i < n; i++) {
        char p[600], *v = NULL;
        kc_error ignore = {0};
        snprintf(p, sizeof p, "layers/%s/vars", members[i]);
        if (kc_h5_attr_string(h, p, "name", &v, &ignore) || !v) continue;
        int same = !strcmp(v, name);
        free(v);
        if (same) return members[i];
    }
    return NULL;
}

static void k3_layer(kc_h5 *h, kw_plan *pl, kw_problems *pr, const kc_layer *l, const char *key,
                     char **members, int nmembers) {
    const char *member = member_named(h, members, nmembers, l->name);
    char root[400];
    snprintf(root, sizeof root, "layers/%s", member ? member : key);
    if (!kc_h5_is_group(h, root)) {
        problem(pr, "layer '%s' (%s): not in the file (no %s, and no vars group named '%s')",
                l->name, l->cls->class_name, root, l->name);
        return;
    }
    kc_keras_vars g[KW_MAX_GROUPS];
    int ng = kc_layer_keras_vars(l, g, KW_MAX_GROUPS);
    for (int k = 0; k < ng; k++) {
        char grp[600], ds[700];
        snprintf(grp, sizeof grp, "%s/%s", root, g[k].path);
        int have = count_datasets(h, grp);
        if (have > g[k].nparams)
            problem(pr, "layer '%s' (%s): %s holds %d weights, the model's layer %d", l->name,
                    l->cls->class_name, grp, have, g[k].nparams);
        for (int j = 0; j < g[k].nparams; j++) {
            snprintf(ds, sizeof ds, "%s/%d", grp, j);
            match(h, pl, pr, l, &l->params[g[k].params[j]], ds);
        }
    }
}

/* Every layer of the file that holds weights was used. */
static void k3_unused(kc_h5 *h, const kc_model *m, const kw_entry *en, int nen, char **members,
                      int nmembers, kw_problems *pr) {
    for (int i = 0; i < nmembers; i++) {
        int used = 0;
        for (int j = 0; j < nen && !used; j++) {
            if (en[j].layer < 0) continue;
            const kc_layer *l = m->layers[en[j].layer];
            const char *byname = member_named(h, members, nmembers, l->name);
            used = byname ? !strcmp(byname, members[i]) : !strcmp(en[j].key, members[i]);
        }
        char p[600];
        snprintf(p, sizeof p, "layers/%s", members[i]);
        if (!used && (count_datasets(h, p) || count_datasets(h, strcat(p, "/vars"))))
            problem(pr, "layers/%s: weights in the file for no layer of the model", members[i]);
    }
}

static int k3_plan(kc_h5 *h, const kc_model *m, kw_plan *pl, kw_problems *pr, kc_error *e) {
    kw_entry *en;
    int nen, rc = keras_entries(m, &en, &nen, e);
    if (rc) return rc;
    char **members = NULL;
    int nmembers = 0;
    if (kc_h5_is_group(h, "layers") && (rc = kc_h5_members(h, "layers", &members, &nmembers, e))) {
        free(en);
        return rc;
    }
    for (int i = 0; i < nen; i++) {
        if (en[i].layer < 0 || !m->layers[en[i].layer]->nparams) continue;
        k3_layer(h, pl, pr, m->layers[en[i].layer], en[i].key, members, nmembers);
    }
    k3_unused(h, m, en, nen, members, nmembers, pr);
    kc_h5_names_free(members, nmembers);
    free(en);
    return KC_OK;
}

/* ------------------------------------------------------------ legacy --- */

/* A layer of a legacy file that holds weights: its group and weight_names. */
typedef struct kw_legacy {
    char group[600];
    const char *name;
    char **wn;
    int nw;
} kw_legacy;

static void legacy_layer(kc_h5 *h, kw_plan *pl, kw_problems *pr, const kc_layer *l,
                         const kw_legacy *f) {
    kc_keras_vars g[KW_MAX_GROUPS];
    int ng = kc_layer_keras_vars(l, g, KW_MAX_GROUPS), at = 0;
    if (f->nw != l->nparams) {
        problem(pr, "layer '%s' (%s): the file's layer '%s' holds %d weights, the model's %d",
                l->name, l->cls->class_name, f->name, f->nw, l->nparams);
        return;
    }
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < g[k].nparams; j++, at++) {
            char ds[1200];
            snprintf(ds, sizeof ds, "%s/%s", f->group, f->wn[at]);
            match(h, pl, pr, l, &l->params[g[k].params[j]], ds);
        }
}

/* The file's layers with weights, in its layer_names order. */
static int legacy_layers(kc_h5 *h, const char *root, char **names, int n, kw_legacy *out,
                         int *count) {
    *count = 0;
    for (int i = 0; i < n; i++) {
        kw_legacy *f = &out[*count];
        snprintf(f->group, sizeof f->group, "%s%s", root, names[i]);
        kc_error ignore = {0};
        if (kc_h5_attr_strings(h, f->group, "weight_names", &f->wn, &f->nw, &ignore) || f->nw < 0)
            return i; /* the name of the group without it */
        f->name = names[i];
        if (f->nw > 0)
            (*count)++;
        else
            kc_h5_names_free(f->wn, f->nw);
    }
    return -1;
}

/* Keras's load_weights on a legacy file pairs the model's layers that have
 * weights with the file's, in order; names are used when they all match
 * (the file was written from this model), so a reordered file still loads. */
static void legacy_pair(kc_h5 *h, const kc_model *m, const kw_entry *en, int nen,
                        const kw_legacy *f, int nf, kw_plan *pl, kw_problems *pr) {
    int nmodel = 0, by_name = 1;
    for (int i = 0; i < nen; i++) {
        if (en[i].layer < 0 || !m->layers[en[i].layer]->nparams) continue;
        int found = 0;
        for (int j = 0; j < nf && !found; j++)
            found = !strcmp(f[j].name, m->layers[en[i].layer]->name);
        by_name = by_name && found;
        nmodel++;
    }
    if (!by_name && nmodel != nf) {
        problem(pr,
                "the file holds weights for %d layers, the model has %d layers with weights "
                "(and their names differ)",
                nf, nmodel);
        for (int i = 0; i < nen; i++) {
            if (en[i].layer < 0 || !m->layers[en[i].layer]->nparams) continue;
            const kc_layer *l = m->layers[en[i].layer];
            int found = 0;
            for (int j = 0; j < nf && !found; j++)
                found = !strcmp(f[j].name, l->name);
            if (!found)
                problem(pr, "layer '%s' (%s): not in the file", l->name, l->cls->class_name);
        }
        return;
    }
    for (int i = 0, k = 0; i < nen; i++) {
        if (en[i].layer < 0 || !m->layers[en[i].layer]->nparams) continue;
        const kc_layer *l = m->layers[en[i].layer];
        int j = k++;
        for (int t = 0; by_name && t < nf; t++)
            if (!strcmp(f[t].name, l->name)) j = t;
        legacy_layer(h, pl, pr, l, &f[j]);
    }
    for (int j = 0; by_name && j < nf; j++) {
        int used = 0;
        for (int i = 0; i < m->nlayers && !used; i++)
            used = !strcmp(m->layers[i]->name, f[j].name);
        if (!used)
            problem(pr, "layer '%s': weights in the file for no layer of the model", f[j].name);
    }
}

static int legacy_plan(kc_h5 *h, const kc_model *m, kw_plan *pl, kw_problems *pr, kc_error *e) {
    const char *root = kc_h5_is_group(h, "model_weights") ? "model_weights/" : "/";
    char **names;
    int n, rc = kc_h5_attr_strings(h, *root == '/' ? "/" : "model_weights", "layer_names", &names,
                                   &n, e);
    if (rc) return rc;
    if (n < 0) return kc_fail(e, KC_ECONFIG, "%s: no layer_names attribute", kc_h5_name(h));
    kw_legacy *f = calloc((size_t)(n ? n : 1), sizeof *f);
    kw_entry *en = NULL;
    int nen = 0, nf = 0, bad = -1;
    if (!f) rc = kc_fail(e, KC_ERUNTIME, "out of memory reading %s", kc_h5_name(h));
    if (!rc && (bad = legacy_layers(h, root, names, n, f, &nf)) >= 0)
        rc = kc_fail(e, KC_ECONFIG, "%s: layer '%s' of layer_names has no weight_names attribute",
                     kc_h5_name(h), names[bad]);
    if (!rc) rc = keras_entries(m, &en, &nen, e);
    if (!rc) legacy_pair(h, m, en, nen, f, nf, pl, pr);
    for (int j = 0; f && j < nf; j++)
        kc_h5_names_free(f[j].wn, f[j].nw);
    free(f);
    free(en);
    kc_h5_names_free(names, n);
    return rc;
}

/* ----------------------------------------------------------- loading --- */

/* A .keras archive's model.weights.h5, opened in memory. */
static int open_archive(const char *path, kc_h5 **h, kc_error *e) {
    char *data;
    size_t len;
    int rc = kc_zip_read_member(path, "model.weights.h5", KW_MAX_ARCHIVE_WEIGHTS, &data, &len, e);
    if (rc) return rc;
    char name[PATH_MAX + 32];
    snprintf(name, sizeof name, "%s[model.weights.h5]", path);
    rc = kc_h5_open_image(name, data, len, h, e);
    free(data);
    return rc;
}

int kc_keras_weights_load(kc_model *m, const char *path, kc_error *e) {
    kc_weights_kind kind = kc_weights_kind_of(path);
    kc_h5 *h = NULL;
    int rc;
    if (kind == KC_WEIGHTS_KERAS)
        rc = open_archive(path, &h, e);
    else if (kind == KC_WEIGHTS_H5 || kind == KC_WEIGHTS_H5_LEGACY || kind == KC_WEIGHTS_H5_MODEL)
        rc = kc_h5_open(path, &h, e);
    else
        return unknown_kind(path, e);
    if (rc) return rc;
    kw_plan pl = {0};
    kw_problems pr = {0};
    int legacy = kind == KC_WEIGHTS_H5_LEGACY || kind == KC_WEIGHTS_H5_MODEL;
    rc = legacy ? legacy_plan(h, m, &pl, &pr, e) : k3_plan(h, m, &pl, &pr, e);
    if (!rc)
        rc = problems_report(&pr, path, m, e);
    else
        kc_strbuf_free(&pr.text);
    if (!rc) rc = plan_load(h, &pl, m->dev, e);
    free(pl.m);
    kc_error ignore = {0};
    kc_h5_close(h, &ignore);
    return rc;
}

int kc_weights_load(kc_session *s, const char *path, kc_error *e) {
    kc_weights_kind k = kc_weights_kind_of(path);
    if (k == KC_WEIGHTS_CHECKPOINT) return kc_checkpoint_load_weights(s, path, e);
    if (k == KC_WEIGHTS_UNKNOWN) return unknown_kind(path, e);
    return kc_keras_weights_load(s->model, path, e);
}

/* ----------------------------------------------------------- writing --- */

static int write_group(kc_h5 *h, const char *path, const char *name, kc_error *e) {
    int rc = kc_h5_group(h, path, e);
    return rc ? rc : kc_h5_set_attr_string(h, path, "name", name, e);
}

/* A weight off the device into the file. */
static int write_param(kc_h5 *h, const kc_model *m, const kc_param *p, const char *ds,
                       kc_error *e) {
    size_t bytes;
    if (!kc_shape_bytes(&p->shape, sizeof(float), &bytes))
        return kc_fail(e, KC_ERUNTIME, "weight too large");
    float *buf = malloc(bytes ? bytes : 1);
    if (!buf) return kc_fail(e, KC_ERUNTIME, "out of memory writing %s", kc_h5_name(h));
    int rc = kc_download(m->dev, buf, p->value, bytes);
    if (!rc) rc = kc_device_error(m->dev, e);
    if (!rc) rc = kc_h5_write_f32(h, ds, &p->shape, buf, e);
    free(buf);
    return rc;
}

static int write_layer(kc_h5 *h, const kc_model *m, const kw_entry *en, kc_error *e) {
    char root[300], grp[600], ds[700];
    snprintf(root, sizeof root, "layers/%s", en->key);
    if (en->layer < 0) {
        snprintf(grp, sizeof grp, "%s/vars", root);
        return write_group(h, grp, m->inputs[-1 - en->layer].name, e);
    }
    const kc_layer *l = m->layers[en->layer];
    kc_keras_vars g[KW_MAX_GROUPS];
    int ng = kc_layer_keras_vars(l, g, KW_MAX_GROUPS), rc = KC_OK;
    for (int k = 0; !rc && k < ng; k++) {
        snprintf(grp, sizeof grp, "%s/%s", root, g[k].path);
        rc = write_group(h, grp, g[k].name, e);
        for (int j = 0; !rc && j < g[k].nparams; j++) {
            snprintf(ds, sizeof ds, "%s/%d", grp, j);
            rc = write_param(h, m, &l->params[g[k].params[j]], ds, e);
        }
    }
    return rc;
}

/* Keras orders the optimizer's variables by model.trainable_variables, in
 * its layer order; the optimizer's slots follow kerasc's layer order. The
 * two agree when the layers with trainable weights come in the same order. */
static int same_trainable_order(const kc_model *m, const kw_entry *en, int nen) {
    int next = 0;
    for (int i = 0; i < nen; i++) {
        if (en[i].layer < 0) continue;
        const kc_layer *l = m->layers[en[i].layer];
        if (!l->trainable || !kc_layer_param_count(l, 1)) continue;
        while (next < m->nlayers &&
               (!m->layers[next]->trainable || !kc_layer_param_count(m->layers[next], 1)))
            next++;
        if (next >= m->nlayers || m->layers[next] != l) return 0;
        next++;
    }
    return 1;
}

static int write_optimizer(kc_h5 *h, const kc_model *m, const kc_optimizer *opt, kc_error *e) {
    char name[64];
    snprintf(name, sizeof name, "%s", kc_optimizer_name(opt));
    for (char *c = name; *c && strcmp(name, "SGD"); c++)
        *c = (char)tolower((unsigned char)*c);
    int rc = write_group(h, "optimizer/vars", name, e);
    if (!rc) rc = kc_h5_write_i64(h, "optimizer/vars/0", kc_optimizer_iterations(opt), e);
    int at = 1;
    if (!rc && !kc_optimizer_has_schedule(opt)) {
        float lr = (float)kc_optimizer_learning_rate(opt);
        kc_shape scalar = {0};
        rc = kc_h5_write_f32(h, "optimizer/vars/1", &scalar, &lr, e);
        at = 2;
    }
    int np = kc_model_params(m, NULL, 0);
    kc_param_ref *refs = malloc((size_t)(np ? np : 1) * sizeof *refs);
    if (!refs) return kc_fail(e, KC_ERUNTIME, "out of memory");
    kc_model_params(m, refs, np);
    for (int i = 0; !rc && i < kc_optimizer_slot_count(opt); i++) {
        const char *nm;
        kc_buf dev;
        size_t n;
        kc_optimizer_slot(opt, i, &nm, &dev, &n);
        kc_shape s = kc_slot_shape(refs, np, nm, n);
        float *buf = malloc((n ? n : 1) * sizeof *buf);
        char ds[64];
        snprintf(ds, sizeof ds, "optimizer/vars/%d", at + i);
        if (!buf) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
        if (!rc && !(rc = kc_download(m->dev, buf, dev, n * sizeof *buf)))
            rc = kc_device_error(m->dev, e);
        if (!rc) rc = kc_h5_write_f32(h, ds, &s, buf, e);
        free(buf);
    }
    free(refs);
    return rc;
}

/* Keras's .weights.h5 tree for the model. */
static int write_tree(kc_h5 *h, const kc_model *m, const kc_optimizer *opt, kc_error *e) {
    kw_entry *en;
    int nen, rc = keras_entries(m, &en, &nen, e);
    if (rc) return rc;
    rc = kc_h5_group(h, "layers", e);
    for (int i = 0; !rc && i < nen; i++)
        rc = write_layer(h, m, &en[i], e);
    if (!rc) rc = write_group(h, "vars", m->name, e);
    /* Nadam keeps a variable of its own among the slots, in an order of its own */
    if (!rc && opt && kc_optimizer_slot_count(opt) && strcmp(kc_optimizer_name(opt), "Nadam") &&
        same_trainable_order(m, en, nen))
        rc = write_optimizer(h, m, opt, e);
    free(en);
    return rc;
}

int kc_keras_weights_write_file(const kc_model *m, const kc_optimizer *opt, const char *path,
                                kc_error *e) {
    kc_h5 *h;
    int rc = kc_h5_create(path, &h, e);
    if (rc) return rc;
    rc = write_tree(h, m, opt, e);
    kc_error ce = {0};
    int crc = kc_h5_close(h, &ce);
    if (!rc && crc) {
        *e = ce;
        rc = crc;
    }
    if (!rc) rc = kc_fsync_path(path, e);
    return rc;
}

int kc_keras_weights_save(const kc_model *m, const kc_optimizer *opt, const char *path,
                          kc_error *e) {
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    int rc = kc_keras_weights_write_file(m, opt, tmp, e);
    if (!rc && rename(tmp, path))
        rc = kc_fail(e, KC_ERUNTIME, "cannot write %s: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

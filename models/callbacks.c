#include "models/callbacks.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/json.h"
#include "models/args.h"
#include "models/fit.h"
#include "models/schedules.h"

typedef enum cb_kind {
    CB_CHECKPOINT,
    CB_EARLY_STOPPING,
    CB_REDUCE_LR,
    CB_CSV_LOGGER,
    CB_LR_SCHEDULER,
    CB_TERMINATE_ON_NAN,
    CB_BACKUP,
} cb_kind;

static const char *const cb_names[] = {
    "ModelCheckpoint",       "EarlyStopping",  "ReduceLROnPlateau", "CSVLogger",
    "LearningRateScheduler", "TerminateOnNaN", "BackupAndRestore",  NULL};

typedef struct cb {
    cb_kind kind;
    const kc_node *node;
    int verbose;
    /* monitored quantity */
    char monitor[80];
    int mode; /* -1 min, +1 max, 0 auto (resolved at train begin) */
    double min_delta;
    long long patience;
    /* state */
    int has_best;
    double best;
    long long wait;
    int best_epoch, stopped_epoch;
    long long cooldown_counter;
    int has_snapshot;
    /* ModelCheckpoint */
    char *filepath;
    int save_best_only, weights_only;
    long long save_freq; /* 0: every epoch, else every N batches */
    long long batches_seen;
    /* EarlyStopping */
    int has_baseline, restore_best;
    double baseline;
    long long start_from_epoch;
    /* ReduceLROnPlateau */
    double factor, min_lr;
    long long cooldown;
    /* CSVLogger */
    char *filename;
    char separator;
    int append, header_done;
    int nkeys;
    char keys[KC_MAX_LOGS * 2][80];
    /* LearningRateScheduler */
    kc_schedule *schedule;
    /* BackupAndRestore */
    char *backup_dir;
    int delete_checkpoint;
} cb;

struct kc_callbacks {
    int n;
    cb *items;
};

int kc_callbacks_count(const kc_callbacks *c) {
    return c ? c->n : 0;
}

void kc_callbacks_free(kc_callbacks *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        free(c->items[i].filepath);
        free(c->items[i].filename);
        free(c->items[i].backup_dir);
        kc_schedule_free(c->items[i].schedule);
    }
    free(c->items);
    free(c);
}

/* ---------------------------------------------------------------- parse --- */

static int read_monitor(cb *x, kc_args *a, const char *def, kc_error *e) {
    const char *m;
    int rc = kc_args_str(a, "monitor", 0, def, &m, e);
    if (rc) return rc;
    snprintf(x->monitor, sizeof x->monitor, "%s", m);
    static const char *const modes[] = {"auto", "min", "max", NULL};
    int mode;
    if ((rc = kc_args_enum(a, "mode", "auto", modes, &mode, e))) return rc;
    x->mode = mode == 0 ? 0 : mode == 1 ? -1 : 1;
    return KC_OK;
}

static int read_verbose(cb *x, kc_args *a, kc_error *e) {
    long long v;
    int rc = kc_args_int(a, "verbose", 0, 0, 0, 2, &v, e);
    x->verbose = (int)v;
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* kerasc's checkpoints (.safetensors), or Keras's files as Keras 3 takes
 * them: .weights.h5 with save_weights_only, .keras without. */
static int checkpoint_suffix(const char *fp, int weights_only, const kc_node *at, kc_error *e) {
    if (ends_with(fp, ".safetensors")) return KC_OK;
    if (weights_only && !ends_with(fp, ".weights.h5"))
        return kc_node_fail(e, at,
                            "ModelCheckpoint filepath '%s' must end in .safetensors or, as Keras "
                            "requires with save_weights_only, .weights.h5",
                            fp);
    if (!weights_only && !ends_with(fp, ".keras"))
        return kc_node_fail(e, at,
                            "ModelCheckpoint filepath '%s' must end in .safetensors or, as Keras "
                            "requires without save_weights_only, .keras",
                            fp);
    return KC_OK;
}

static int parse_checkpoint(cb *x, kc_args *a, kc_error *e) {
    const char *fp;
    int rc = kc_args_str(a, "filepath", 1, NULL, &fp, e);
    if (rc) return rc;
    if ((rc = kc_args_bool(a, "save_weights_only", 0, &x->weights_only, e))) return rc;
    if ((rc = checkpoint_suffix(fp, x->weights_only, kc_args_node(a, "filepath"), e))) return rc;
    x->filepath = strdup(fp);
    if ((rc = read_monitor(x, a, "val_loss", e)) || (rc = read_verbose(x, a, e))) return rc;
    if ((rc = kc_args_bool(a, "save_best_only", 0, &x->save_best_only, e))) return rc;
    kc_node *sf = kc_args_node(a, "save_freq");
    if (sf && !kc_node_is_null(sf) && !(sf->kind == KC_NODE_SCALAR && !strcmp(sf->str, "epoch"))) {
        if ((rc = kc_args_int(a, "save_freq", 0, 0, 1, 1LL << 40, &x->save_freq, e))) return rc;
    }
    if (kc_args_has(a, "initial_value_threshold")) {
        if ((rc = kc_args_float(a, "initial_value_threshold", 0, 0, -INFINITY, INFINITY, &x->best,
                                e)))
            return rc;
        x->has_best = 1;
    }
    return KC_OK;
}

static int parse_early(cb *x, kc_args *a, kc_error *e) {
    int rc;
    if ((rc = read_monitor(x, a, "val_loss", e)) || (rc = read_verbose(x, a, e))) return rc;
    if ((rc = kc_args_float(a, "min_delta", 0, 0, 0, INFINITY, &x->min_delta, e))) return rc;
    if ((rc = kc_args_int(a, "patience", 0, 0, 0, 1LL << 40, &x->patience, e))) return rc;
    if (kc_args_has(a, "baseline")) {
        if ((rc = kc_args_float(a, "baseline", 0, 0, -INFINITY, INFINITY, &x->baseline, e)))
            return rc;
        x->has_baseline = 1;
    }
    if ((rc = kc_args_bool(a, "restore_best_weights", 0, &x->restore_best, e))) return rc;
    return kc_args_int(a, "start_from_epoch", 0, 0, 0, 1LL << 40, &x->start_from_epoch, e);
}

static int parse_plateau(cb *x, kc_args *a, kc_error *e) {
    int rc;
    if ((rc = read_monitor(x, a, "val_loss", e)) || (rc = read_verbose(x, a, e))) return rc;
    if ((rc = kc_args_float(a, "factor", 0, 0.1, 0, INFINITY, &x->factor, e))) return rc;
    if (x->factor >= 1.0)
        return kc_node_fail(e, kc_args_node(a, "factor"),
                            "ReduceLROnPlateau does not support a factor >= 1.0, got %g",
                            x->factor);
    if ((rc = kc_args_int(a, "patience", 0, 10, 0, 1LL << 40, &x->patience, e))) return rc;
    if ((rc = kc_args_float(a, "min_delta", 0, 1e-4, 0, INFINITY, &x->min_delta, e))) return rc;
    if (kc_args_has(a, "epsilon")) /* Keras's old name for min_delta */
        if ((rc = kc_args_float(a, "epsilon", 0, 1e-4, 0, INFINITY, &x->min_delta, e))) return rc;
    if ((rc = kc_args_int(a, "cooldown", 0, 0, 0, 1LL << 40, &x->cooldown, e))) return rc;
    return kc_args_float(a, "min_lr", 0, 0, 0, INFINITY, &x->min_lr, e);
}

static int parse_csv(cb *x, kc_args *a, kc_error *e) {
    const char *fn, *sep;
    int rc = kc_args_str(a, "filename", 1, NULL, &fn, e);
    if (rc) return rc;
    x->filename = strdup(fn);
    if ((rc = kc_args_str(a, "separator", 0, ",", &sep, e))) return rc;
    if (strlen(sep) != 1)
        return kc_node_fail(e, kc_args_node(a, "separator"),
                            "CSVLogger separator must be one character, got '%s'", sep);
    x->separator = sep[0];
    return kc_args_bool(a, "append", 0, &x->append, e);
}

static int parse_scheduler(cb *x, kc_args *a, kc_error *e) {
    kc_node *s = kc_args_node(a, "schedule");
    if (!s || kc_node_is_null(s))
        return kc_node_fail(
            e, a->where,
            "LearningRateScheduler requires the argument 'schedule' (a schedule such as "
            "{ExponentialDecay: {initial_learning_rate: 0.01, decay_steps: 1, "
            "decay_rate: 0.9}}, evaluated at the epoch index)");
    int rc = kc_schedule_parse(s, &x->schedule, e);
    if (rc) return rc;
    return read_verbose(x, a, e);
}

static int parse_backup(cb *x, kc_args *a, kc_error *e) {
    const char *d;
    int rc = kc_args_str(a, "backup_dir", 1, NULL, &d, e);
    if (rc) return rc;
    x->backup_dir = strdup(d);
    kc_node *sf = kc_args_node(a, "save_freq");
    if (sf && !kc_node_is_null(sf) && !(sf->kind == KC_NODE_SCALAR && !strcmp(sf->str, "epoch")))
        if ((rc = kc_args_int(a, "save_freq", 0, 0, 1, 1LL << 40, &x->save_freq, e))) return rc;
    return kc_args_bool(a, "delete_checkpoint", 1, &x->delete_checkpoint, e);
}

static int parse_one(kc_node *item, cb *x, kc_error *e) {
    const char *name;
    const kc_node *name_node;
    kc_args a;
    int rc = kc_object_spec(item, "callback", &name, &name_node, &a, e);
    if (rc) return rc;
    int kind = -1;
    for (int i = 0; cb_names[i]; i++)
        if (!strcmp(name, cb_names[i])) kind = i;
    if (kind < 0) return kc_unknown_name(name_node, "callback", name, cb_names, e);
    a.owner = cb_names[kind];
    x->kind = (cb_kind)kind;
    x->node = name_node;
    switch (x->kind) {
    case CB_CHECKPOINT:
        rc = parse_checkpoint(x, &a, e);
        break;
    case CB_EARLY_STOPPING:
        rc = parse_early(x, &a, e);
        break;
    case CB_REDUCE_LR:
        rc = parse_plateau(x, &a, e);
        break;
    case CB_CSV_LOGGER:
        rc = parse_csv(x, &a, e);
        break;
    case CB_LR_SCHEDULER:
        rc = parse_scheduler(x, &a, e);
        break;
    case CB_TERMINATE_ON_NAN: {
        int raise;
        rc = kc_args_bool(&a, "raise_error", 0, &raise, e);
        if (!rc && raise)
            rc = kc_node_fail(e, kc_args_node(&a, "raise_error"),
                              "TerminateOnNaN raise_error is not supported; training stops after "
                              "the batch instead");
        break;
    }
    case CB_BACKUP:
        rc = parse_backup(x, &a, e);
        break;
    }
    if (rc) return rc;
    return kc_args_finish(&a, e);
}

int kc_callbacks_parse(kc_node *list, kc_callbacks **out, kc_error *e) {
    *out = calloc(1, sizeof **out);
    if (!*out) return kc_fail(e, KC_ERUNTIME, "out of memory");
    if (!list || kc_node_is_null(list)) return KC_OK;
    if (list->kind != KC_NODE_SEQ) {
        kc_callbacks_free(*out);
        *out = NULL;
        return kc_node_fail(e, list,
                            "callbacks must be a list, e.g. [{EarlyStopping: {patience: 3}}]");
    }
    kc_callbacks *c = *out;
    c->items = calloc(list->n ? list->n : 1, sizeof *c->items);
    if (!c->items) return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (size_t i = 0; i < list->n; i++) {
        int rc = parse_one(list->items[i], &c->items[c->n++], e);
        if (rc) {
            kc_callbacks_free(c);
            *out = NULL;
            return rc;
        }
    }
    return KC_OK;
}

/* ---------------------------------------------------------------- util ---- */

static int find_log(const kc_logs *l, const char *key, double *v) {
    for (int i = 0; l && i < l->n; i++)
        if (!strcmp(l->keys[i], key)) {
            *v = l->vals[i];
            return 1;
        }
    return 0;
}

static void say(const kc_callback_env *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const kc_callback_env *env, const char *fmt, ...) {
    if (!env->print) return;
    char msg[4600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    env->print(env->ctx, msg);
}

/* Python's repr of a float: the shortest text that reads back. */
static const char *repr(double v, char *buf, size_t n) {
    kc_strbuf b = {0};
    kc_json_write_double(&b, v);
    snprintf(buf, n, "%s", kc_strbuf_str(&b));
    kc_strbuf_free(&b);
    if (isnan(v)) snprintf(buf, n, "nan");
    if (isinf(v)) snprintf(buf, n, "%s", v > 0 ? "inf" : "-inf");
    return buf;
}

static void resolve_path(const kc_callback_env *env, const char *p, char *out, size_t n) {
    if (p[0] == '/' || !env->out_dir)
        snprintf(out, n, "%s", p);
    else
        snprintf(out, n, "%s/%s", env->out_dir, p);
}

/* Keras 3's mode="auto": minimise a loss, else follow the metric's direction. */
static int resolve_mode(cb *x, const kc_callback_env *env, kc_error *e) {
    if (x->mode) return KC_OK;
    const char *base = strncmp(x->monitor, "val_", 4) ? x->monitor : x->monitor + 4;
    size_t bl = strlen(base);
    if (!strcmp(base, "loss") || (bl > 5 && !strcmp(base + bl - 5, "_loss"))) {
        x->mode = -1;
        return KC_OK;
    }
    if (x->kind == CB_REDUCE_LR) { /* ReduceLROnPlateau keeps Keras's "acc" rule */
        x->mode = strstr(x->monitor, "acc") ? 1 : -1;
        return KC_OK;
    }
    int d = env->direction ? env->direction(env->ctx, x->monitor) : 0;
    if (!d)
        return kc_node_fail(
            e, x->node,
            "%s cannot tell whether '%s' should go up or down: set mode: min or mode: max",
            cb_names[x->kind], x->monitor);
    x->mode = d;
    return KC_OK;
}

/* Keras 3 MonitorCallback._is_improvement: min_delta counts against the change. */
static int is_improvement(const cb *x, double v, int has_ref, double ref) {
    if (!has_ref) return 1;
    if (x->mode > 0) return v - x->min_delta > ref;
    return v + x->min_delta < ref;
}

/* ------------------------------------------------------------- format ---- */

static int format_value(const char *spec, int is_int, double v, char *out, size_t n, kc_error *e) {
    /* [0][width][.precision][type] with type d, f, e, g, % or none */
    char fmt[32];
    const char *p = spec;
    int zero = 0, width = -1, prec = -1;
    char type = 0;
    if (*p == '0') zero = 1, p++;
    if (*p >= '0' && *p <= '9') width = (int)strtol(p, (char **)&p, 10);
    if (*p == '.') {
        p++;
        prec = (int)strtol(p, (char **)&p, 10);
    }
    if (*p) type = *p++;
    if (*p || (type && !strchr("dfeEgG%", type)))
        return kc_fail(e, KC_ECONFIG,
                       "format spec ':%s' is not supported (use forms like 02d, .2f, .4e)", spec);
    if (type == 'd') {
        if (!is_int) return kc_fail(e, KC_ECONFIG, "format ':%s' needs an integer value", spec);
        snprintf(fmt, sizeof fmt, "%%%s*lld", zero ? "0" : "");
        snprintf(out, n, fmt, width < 0 ? 0 : width, (long long)v);
        return KC_OK;
    }
    if (!type) {
        if (is_int)
            snprintf(out, n, "%lld", (long long)v);
        else
            repr(v, out, n);
        return KC_OK;
    }
    char t = type == '%' ? 'f' : type;
    snprintf(fmt, sizeof fmt, "%%%s*.*%c%s", zero ? "0" : "", t, type == '%' ? "%%" : "");
    snprintf(out, n, fmt, width < 0 ? 0 : width, prec < 0 ? 6 : prec, type == '%' ? v * 100 : v);
    return KC_OK;
}

int kc_format_path(const char *tmpl, int epoch, int64_t batch, const kc_logs *logs, char *out,
                   size_t n, kc_error *e) {
    size_t used = 0;
    for (const char *p = tmpl; *p; p++) {
        if (used + 1 >= n) return kc_fail(e, KC_ECONFIG, "path from '%s' is too long", tmpl);
        if ((*p == '{' && p[1] == '{') || (*p == '}' && p[1] == '}')) {
            out[used++] = *p++;
            continue;
        }
        if (*p != '{') {
            out[used++] = *p;
            continue;
        }
        const char *close = strchr(p, '}');
        if (!close) return kc_fail(e, KC_ECONFIG, "unbalanced '{' in '%s'", tmpl);
        char field[128], spec[32] = "";
        size_t fl = (size_t)(close - p - 1);
        if (fl >= sizeof field) return kc_fail(e, KC_ECONFIG, "field too long in '%s'", tmpl);
        memcpy(field, p + 1, fl);
        field[fl] = 0;
        char *colon = strchr(field, ':');
        if (colon) {
            snprintf(spec, sizeof spec, "%s", colon + 1);
            *colon = 0;
        }
        double v;
        int is_int = 0;
        if (!strcmp(field, "epoch")) {
            v = epoch;
            is_int = 1;
        } else if (!strcmp(field, "batch")) {
            v = (double)batch;
            is_int = 1;
        } else if (!find_log(logs, field, &v)) {
            return kc_fail(e, KC_ECONFIG, "'%s' names '{%s}', which is not logged this epoch", tmpl,
                           field);
        }
        char piece[128];
        if (format_value(spec, is_int, v, piece, sizeof piece, e)) return e->code;
        size_t pl = strlen(piece);
        if (used + pl + 1 >= n) return kc_fail(e, KC_ECONFIG, "path from '%s' is too long", tmpl);
        memcpy(out + used, piece, pl);
        used += pl;
        p = close;
    }
    out[used] = 0;
    return KC_OK;
}

/* ---------------------------------------------------------------- hooks --- */

int kc_callbacks_log_lr(const kc_callbacks *c) {
    for (int i = 0; c && i < c->n; i++)
        if (c->items[i].kind == CB_REDUCE_LR || c->items[i].kind == CB_LR_SCHEDULER) return 1;
    return 0;
}

static void backup_path(const cb *x, const kc_callback_env *env, char *out, size_t n) {
    char dir[4096];
    resolve_path(env, x->backup_dir, dir, sizeof dir);
    snprintf(out, n, "%s/backup.safetensors", dir);
}

/* Keras makes the directories of ModelCheckpoint and BackupAndRestore files
 * (file_utils.makedirs) when it first writes there. */
static int ensure_dir(const char *dir, kc_error *e) {
    return kc_mkdir_p(dir, e);
}

/* The directory part of path, or "" when it has none. */
static void dir_of(const char *path, char *out, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, n, "%s", "");
    else
        snprintf(out, n, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

/* The names a ModelCheckpoint filepath can produce, as an fnmatch pattern:
 * every {field} any text, {{ and }} the braces themselves. */
static void template_glob(const char *t, char *out, size_t n) {
    size_t used = 0;
    for (const char *p = t; *p && used + 3 < n; p++) {
        if ((p[0] == '{' || p[0] == '}') && p[1] == p[0]) {
            out[used++] = *p++;
        } else if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close) break;
            out[used++] = '*';
            p = close;
        } else {
            if (strchr("*?[]\\", *p)) out[used++] = '\\';
            out[used++] = *p;
        }
    }
    out[used] = 0;
}

/* ModelCheckpoint: its directory (made when missing) takes new files; stale
 * temporaries of the files it writes there are removed. A directory named
 * by the template itself is checked from its fixed part. */
static int check_checkpoint_outputs(const cb *x, const kc_callback_env *env, kc_error *e) {
    char path[4600], dir[4600], glob[4600];
    resolve_path(env, x->filepath, path, sizeof path);
    /* the last '/' before any {field} */
    size_t fixed = strcspn(path, "{");
    const char *slash = NULL;
    for (size_t i = 0; i < fixed; i++)
        if (path[i] == '/') slash = path + i;
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    int rc = kc_check_dir_writable(dir, "ModelCheckpoint directory", 1, e);
    const char *name = slash ? slash + 1 : path;
    if (rc || strchr(name, '/')) return rc;
    template_glob(name, glob, sizeof glob);
    char target[9300];
    snprintf(target, sizeof target, "%s/%s", dir, glob);
    kc_atomic_remove_stale(target);
    return KC_OK;
}

int kc_callbacks_check_outputs(const kc_callbacks *c, const char *out_dir, kc_error *e) {
    kc_callback_env env = {.out_dir = out_dir};
    for (int i = 0; c && i < c->n; i++) {
        const cb *x = &c->items[i];
        char path[4600], dir[4096];
        int rc = KC_OK;
        if (x->kind == CB_CHECKPOINT) {
            rc = check_checkpoint_outputs(x, &env, e);
        } else if (x->kind == CB_CSV_LOGGER) {
            /* Keras opens the file as it is: its directory must exist,
             * unless it is the run directory, which kerasc makes */
            resolve_path(&env, x->filename, path, sizeof path);
            int in_run_dir = !strchr(x->filename, '/');
            rc = kc_check_file_writable(path, "CSVLogger file", 1, in_run_dir, e);
        } else if (x->kind == CB_BACKUP) {
            resolve_path(&env, x->backup_dir, dir, sizeof dir);
            rc = kc_check_dir_writable(dir, "BackupAndRestore backup_dir", 1, e);
            backup_path(x, &env, path, sizeof path); /* DIR/backup.safetensors */
            if (!rc) kc_atomic_remove_stale(path);
        }
        if (rc) return rc;
    }
    return KC_OK;
}

int kc_callbacks_train_begin(kc_callbacks *c, const kc_callback_env *env, kc_error *e) {
    for (int i = 0; c && i < c->n; i++) {
        cb *x = &c->items[i];
        int rc = KC_OK;
        switch (x->kind) {
        case CB_CHECKPOINT:
            if (x->save_best_only) rc = resolve_mode(x, env, e);
            break;
        case CB_EARLY_STOPPING:
        case CB_REDUCE_LR:
            rc = resolve_mode(x, env, e);
            break;
        case CB_CSV_LOGGER: {
            char path[4600];
            resolve_path(env, x->filename, path, sizeof path);
            struct stat st;
            x->header_done = x->append && !stat(path, &st) && st.st_size > 0;
            if (!x->append) {
                FILE *f = fopen(path, "w");
                if (!f || fclose(f) != 0)
                    return kc_fail(e, KC_ERUNTIME, "CSVLogger cannot write %s: %s", path,
                                   strerror(errno));
            }
            break;
        }
        case CB_BACKUP: {
            char path[4600];
            backup_path(x, env, path, sizeof path);
            if (!access(path, R_OK) && env->resume) {
                rc = env->resume(env->ctx, path, e);
                if (!rc) say(env, "Restored training state from %s", path);
            }
            break;
        }
        default:
            break;
        }
        if (rc) return rc;
    }
    return KC_OK;
}

int kc_callbacks_epoch_begin(kc_callbacks *c, const kc_callback_env *env, int epoch, kc_error *e) {
    for (int i = 0; c && i < c->n; i++) {
        cb *x = &c->items[i];
        if (x->kind != CB_LR_SCHEDULER) continue;
        double lr = kc_schedule_value(x->schedule, epoch);
        if (!isfinite(lr))
            return kc_node_fail(
                e, x->node, "LearningRateScheduler gave learning rate %g at epoch %d", lr, epoch);
        env->set_lr(env->ctx, lr);
        char b[64];
        if (x->verbose)
            say(env, "\nEpoch %d: LearningRateScheduler setting learning rate to %s.", epoch + 1,
                repr(lr, b, sizeof b));
    }
    return KC_OK;
}

static int checkpoint_save(cb *x, const kc_callback_env *env, int epoch, int64_t batch,
                           const kc_logs *logs, kc_error *e) {
    char name[4096], path[4600], b1[64], b2[64];
    if (kc_format_path(x->filepath, epoch + 1, batch, logs, name, sizeof name, e))
        return kc_node_fail(e, x->node, "ModelCheckpoint filepath: %s", e->msg);
    resolve_path(env, name, path, sizeof path);
    if (x->save_best_only) {
        double cur;
        if (!find_log(logs, x->monitor, &cur)) {
            say(env, "Can save best model only with %s available, skipping.", x->monitor);
            return KC_OK;
        }
        if (!is_improvement(x, cur, x->has_best, x->best)) {
            if (x->verbose)
                say(env, "\nEpoch %d: %s did not improve from %.5f", epoch + 1, x->monitor,
                    x->best);
            return KC_OK;
        }
        if (x->verbose) {
            if (x->has_best)
                snprintf(b1, sizeof b1, "%.5f", x->best);
            else
                snprintf(b1, sizeof b1, "None");
            snprintf(b2, sizeof b2, "%.5f", cur);
            say(env, "\nEpoch %d: %s improved from %s to %s, saving model to %s", epoch + 1,
                x->monitor, b1, b2, path);
        }
        x->best = cur;
        x->has_best = 1;
    } else if (x->verbose) {
        say(env, "\nEpoch %d: saving model to %s", epoch + 1, path);
    }
    char dir[4600];
    dir_of(path, dir, sizeof dir);
    if (*dir && ensure_dir(dir, e)) return e->code;
    return env->save(env->ctx, path, x->weights_only, e);
}

int kc_callbacks_need_batch_logs(const kc_callbacks *c, int64_t batch) {
    for (int i = 0; c && i < c->n; i++) {
        const cb *x = &c->items[i];
        if (x->kind == CB_TERMINATE_ON_NAN) return 1;
        /* the file name and the monitored value come from the logs */
        if (x->kind == CB_CHECKPOINT && x->save_freq > 0 &&
            (x->batches_seen + 1) % x->save_freq == 0)
            return 1;
    }
    return 0;
}

int kc_callbacks_batch_end(kc_callbacks *c, const kc_callback_env *env, int epoch, int64_t batch,
                           const kc_logs *logs, int *stop, kc_error *e) {
    static const kc_logs none;
    if (!logs) logs = &none;
    int first = KC_OK;
    kc_error later;
    for (int i = 0; c && i < c->n; i++) {
        cb *x = &c->items[i];
        int rc = KC_OK;
        if (first) e = &later; /* the first failure is the one reported */
        if (x->kind == CB_TERMINATE_ON_NAN) {
            double loss;
            if (find_log(logs, "loss", &loss) && !isfinite(loss)) {
                say(env, "Batch %lld: Invalid loss, terminating training", (long long)batch);
                *stop = 1;
            }
        } else if ((x->kind == CB_CHECKPOINT || x->kind == CB_BACKUP) && x->save_freq > 0) {
            if (++x->batches_seen % x->save_freq == 0) {
                if (x->kind == CB_CHECKPOINT) {
                    rc = checkpoint_save(x, env, epoch, batch + 1, logs, e);
                } else {
                    char path[4600];
                    backup_path(x, env, path, sizeof path);
                    char dir[4096];
                    resolve_path(env, x->backup_dir, dir, sizeof dir);
                    rc = ensure_dir(dir, e);
                    if (!rc) rc = env->save(env->ctx, path, 0, e);
                }
            }
        }
        if (rc && !first) first = rc;
    }
    return first;
}

static int csv_row(cb *x, const kc_callback_env *env, int epoch, const kc_logs *logs, kc_error *e) {
    char path[4600];
    resolve_path(env, x->filename, path, sizeof path);
    if (!x->header_done || !x->nkeys) {
        /* Keras: sorted keys; val_ copies when there is no validation data */
        x->nkeys = 0;
        for (int i = 0; i < logs->n; i++)
            snprintf(x->keys[x->nkeys++], 80, "%s", logs->keys[i]);
        int has_val = 0;
        for (int i = 0; i < x->nkeys; i++)
            has_val |= !strncmp(x->keys[i], "val_", 4);
        if (!has_val)
            for (int i = 0, n = x->nkeys; i < n; i++) {
                char tmp[80];
                snprintf(tmp, sizeof tmp, "val_%s", x->keys[i]);
                memcpy(x->keys[x->nkeys++], tmp, sizeof tmp);
            }
        qsort(x->keys, (size_t)x->nkeys, sizeof x->keys[0],
              (int (*)(const void *, const void *))strcmp);
    }
    FILE *f = fopen(path, "a");
    if (!f) return kc_fail(e, KC_ERUNTIME, "CSVLogger cannot write %s: %s", path, strerror(errno));
    errno = 0;
    int header = !x->header_done;
    if (header) {
        fprintf(f, "epoch");
        for (int i = 0; i < x->nkeys; i++)
            fprintf(f, "%c%s", x->separator, x->keys[i]);
        fprintf(f, "\r\n");
    }
    fprintf(f, "%d", epoch);
    for (int i = 0; i < x->nkeys; i++) {
        double v;
        char b[64];
        if (find_log(logs, x->keys[i], &v))
            fprintf(f, "%c%s", x->separator, repr(v, b, sizeof b));
        else
            fprintf(f, "%cNA", x->separator);
    }
    fprintf(f, "\r\n");
    /* a failed write leaves its reason in errno, and what it could not
     * write in the buffer, which the flush tries (and fails) again */
    int err = ferror(f) ? (errno ? errno : EIO) : 0;
    errno = 0;
    if (fflush(f) != 0) err = errno ? errno : EIO;
    if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
    if (err) return kc_fail(e, KC_ERUNTIME, "CSVLogger cannot write %s: %s", path, strerror(err));
    if (header) x->header_done = 1; /* else the next row tries the header again */
    return KC_OK;
}

static void logs_put(kc_logs *l, const char *key, double v) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->keys[i], key)) {
            l->vals[i] = v;
            return;
        }
    if (l->n >= KC_MAX_LOGS) return;
    snprintf(l->keys[l->n], sizeof l->keys[0], "%s", key);
    l->vals[l->n++] = v;
}

static int early_epoch_end(cb *x, const kc_callback_env *env, int epoch, const kc_logs *logs,
                           int *stop, kc_error *e) {
    double cur;
    if (!find_log(logs, x->monitor, &cur)) {
        say(env, "Early stopping conditioned on metric `%s` which is not available.", x->monitor);
        return KC_OK;
    }
    if (epoch < x->start_from_epoch) return KC_OK;
    if (x->restore_best && !x->has_snapshot) {
        if (env->snapshot(env->ctx, e)) return e->code;
        x->has_snapshot = 1;
        x->best_epoch = epoch;
    }
    x->wait++;
    if (is_improvement(x, cur, x->has_best, x->best)) {
        x->best = cur;
        x->has_best = 1;
        x->best_epoch = epoch;
        if (x->restore_best && env->snapshot(env->ctx, e)) return e->code;
        if (!x->has_baseline || is_improvement(x, cur, 1, x->baseline)) x->wait = 0;
        return KC_OK;
    }
    if (x->wait >= x->patience && epoch > 0) {
        x->stopped_epoch = epoch;
        *stop = 1;
    }
    return KC_OK;
}

static void plateau_epoch_end(cb *x, const kc_callback_env *env, int epoch, const kc_logs *logs) {
    double cur;
    if (!find_log(logs, x->monitor, &cur)) {
        say(env, "Learning rate reduction is conditioned on metric `%s` which is not available.",
            x->monitor);
        return;
    }
    if (!x->has_best) {
        x->best = x->mode > 0 ? -INFINITY : INFINITY;
        x->has_best = 1;
    }
    int cooling = x->cooldown_counter > 0;
    if (cooling) {
        x->cooldown_counter--;
        x->wait = 0;
    }
    int better = x->mode > 0 ? cur > x->best + x->min_delta : cur < x->best - x->min_delta;
    if (better) {
        x->best = cur;
        x->wait = 0;
    } else if (!cooling) {
        x->wait++;
        if (x->wait >= x->patience) {
            double old = env->get_lr(env->ctx);
            if (old > (float)x->min_lr) {
                double lr = old * x->factor;
                if (lr < x->min_lr) lr = x->min_lr;
                env->set_lr(env->ctx, lr);
                char b[64];
                if (x->verbose)
                    say(env, "\nEpoch %d: ReduceLROnPlateau reducing learning rate to %s.",
                        epoch + 1, repr((float)lr, b, sizeof b));
                x->cooldown_counter = x->cooldown;
                x->wait = 0;
            }
        }
    }
}

int kc_callbacks_epoch_end(kc_callbacks *c, const kc_callback_env *env, int epoch, kc_logs *logs,
                           int *stop, kc_error *e) {
    /* the learning rate in effect this epoch is logged before anything changes it */
    if (kc_callbacks_log_lr(c)) logs_put(logs, "learning_rate", (float)env->get_lr(env->ctx));
    int first = KC_OK;
    kc_error later;
    for (int i = 0; c && i < c->n; i++) {
        cb *x = &c->items[i];
        int rc = KC_OK;
        if (first) e = &later; /* the first failure is the one reported */
        switch (x->kind) {
        case CB_CHECKPOINT:
            if (!x->save_freq) rc = checkpoint_save(x, env, epoch, 0, logs, e);
            break;
        case CB_EARLY_STOPPING:
            rc = early_epoch_end(x, env, epoch, logs, stop, e);
            break;
        case CB_REDUCE_LR:
            plateau_epoch_end(x, env, epoch, logs);
            break;
        case CB_CSV_LOGGER:
            rc = csv_row(x, env, epoch, logs, e);
            break;
        case CB_BACKUP:
            if (!x->save_freq) {
                char dir[4096], path[4600];
                resolve_path(env, x->backup_dir, dir, sizeof dir);
                backup_path(x, env, path, sizeof path);
                rc = ensure_dir(dir, e);
                if (!rc) rc = env->save(env->ctx, path, 0, e);
            }
            break;
        default:
            break;
        }
        if (rc && !first) first = rc;
    }
    return first;
}

int kc_callbacks_train_end(kc_callbacks *c, const kc_callback_env *env, int last_epoch,
                           kc_error *e) {
    for (int i = 0; c && i < c->n; i++) {
        cb *x = &c->items[i];
        if (x->kind == CB_EARLY_STOPPING) {
            if (x->stopped_epoch > 0 && x->verbose)
                say(env, "Epoch %d: early stopping", x->stopped_epoch + 1);
            if (x->restore_best && x->has_snapshot) {
                if (x->verbose)
                    say(env, "Restoring model weights from the end of the best epoch: %d.",
                        x->best_epoch + 1);
                if (env->restore_snapshot(env->ctx, e)) return e->code;
            }
        } else if (x->kind == CB_BACKUP && x->delete_checkpoint) {
            char dir[4096], path[4600];
            resolve_path(env, x->backup_dir, dir, sizeof dir);
            backup_path(x, env, path, sizeof path);
            unlink(path);
            rmdir(dir); /* only when empty */
        }
    }
    (void)last_epoch;
    return KC_OK;
}

/* ---------------------------------------------------------------- state --- */

char *kc_callbacks_state(const kc_callbacks *c) {
    kc_strbuf b = {0};
    kc_strbuf_putc(&b, '[');
    for (int i = 0; c && i < c->n; i++) {
        const cb *x = &c->items[i];
        if (i) kc_strbuf_puts(&b, ", ");
        kc_strbuf_printf(&b, "{\"kind\": \"%s\", \"has_best\": %d, \"best\": ", cb_names[x->kind],
                         x->has_best);
        kc_json_write_double(&b, x->has_best ? x->best : 0);
        kc_strbuf_printf(&b,
                         ", \"wait\": %lld, \"best_epoch\": %d, \"stopped_epoch\": %d, "
                         "\"cooldown_counter\": %lld, "
                         "\"batches_seen\": %lld, \"header_done\": %d, \"mode\": %d}",
                         x->wait, x->best_epoch, x->stopped_epoch, x->cooldown_counter,
                         x->batches_seen, x->header_done, x->mode);
    }
    kc_strbuf_putc(&b, ']');
    return kc_strbuf_take(&b);
}

/* A value of a callback's saved state as a message shows it: a number as
 * written (cut after 40 characters), anything else by its kind. */
static const char *state_shown(const kc_json *j, char *buf, size_t n) {
    const char *t = kc_json_num_text(j);
    if (!t) return kc_json_kind_name(kc_json_kind_of(j));
    snprintf(buf, n, "%.40s%s", t, strlen(t) > 40 ? "..." : "");
    return buf;
}

static int bad_state(int i, const cb *x, const char *key, const kc_json *j, const char *want,
                     kc_error *e) {
    char b[64];
    return kc_fail(e, KC_ERUNTIME,
                   "checkpoint metadata callbacks: callback %d (%s) %s = %s is not valid: "
                   "expected %s",
                   i + 1, cb_names[x->kind], key, state_shown(j, b, sizeof b), want);
}

/* An integer of callback i's state in lo..hi into *out; a key the state
 * lacks leaves *out as it is. */
static int state_int(const kc_json *o, int i, const cb *x, const char *key, int64_t lo, int64_t hi,
                     long long *out, kc_error *e) {
    const kc_json *j = kc_json_get(o, key);
    if (!j) return KC_OK;
    int64_t v;
    if (kc_json_kind_of(j) == KC_JSON_NUMBER && !kc_json_int64(j, &v) && v >= lo && v <= hi) {
        *out = v;
        return KC_OK;
    }
    char want[128];
    snprintf(want, sizeof want, "an integer from %lld to %lld", (long long)lo, (long long)hi);
    return bad_state(i, x, key, j, want, e);
}

static int state_flag(const kc_json *o, int i, const cb *x, const char *key, int *out,
                      kc_error *e) {
    long long v = *out;
    int rc = state_int(o, i, x, key, 0, 1, &v, e);
    *out = (int)v;
    return rc;
}

/* An int of the state: an epoch index, never negative. */
static int state_epoch(const kc_json *o, int i, const cb *x, const char *key, int *out,
                       kc_error *e) {
    long long v = *out;
    int rc = state_int(o, i, x, key, 0, INT_MAX, &v, e);
    *out = (int)v;
    return rc;
}

/* Callback i's state, each value checked against what the callback can
 * reach: counts of epochs within an int, the cooldown within its setting,
 * batches short of the largest count (fit compares them with the steps
 * trained), mode -1 (min), 0 (auto) or +1 (max). */
static int restore_one(cb *x, const kc_json *o, int i, kc_error *e) {
    int rc = state_flag(o, i, x, "has_best", &x->has_best, e);
    const kc_json *best = kc_json_get(o, "best");
    if (!rc && best && kc_json_kind_of(best) != KC_JSON_NUMBER)
        rc = bad_state(i, x, "best", best, "a number", e);
    if (rc) return rc;
    if (best) x->best = kc_json_num(best);
    long long mode = x->mode;
    if ((rc = state_int(o, i, x, "wait", 0, INT_MAX, &x->wait, e)) ||
        (rc = state_epoch(o, i, x, "best_epoch", &x->best_epoch, e)) ||
        (rc = state_epoch(o, i, x, "stopped_epoch", &x->stopped_epoch, e)) ||
        (rc = state_int(o, i, x, "cooldown_counter", 0, x->cooldown, &x->cooldown_counter, e)) ||
        (rc = state_int(o, i, x, "batches_seen", 0, INT64_MAX - 1, &x->batches_seen, e)) ||
        (rc = state_flag(o, i, x, "header_done", &x->header_done, e)) ||
        (rc = state_int(o, i, x, "mode", -1, 1, &mode, e)))
        return rc;
    if (mode) x->mode = (int)mode; /* 0: the model file's mode, resolved at train begin */
    return KC_OK;
}

int kc_callbacks_restore(kc_callbacks *c, const char *text, kc_error *e) {
    kc_json *j = kc_json_parse(text, strlen(text), e);
    if (!j) return kc_error_prefix(e, "callback state in the checkpoint");
    int rc = KC_OK;
    if (kc_json_kind_of(j) != KC_JSON_ARRAY) {
        rc = kc_fail(e, KC_ERUNTIME,
                     "checkpoint metadata callbacks is %s, not a list of callback states",
                     kc_json_kind_name(kc_json_kind_of(j)));
        goto done;
    }
    if ((int)kc_json_len(j) != kc_callbacks_count(c)) {
        rc = kc_fail(e, KC_ECONFIG,
                     "the checkpoint was written with %zu callbacks but the model file now has %d; "
                     "resume needs the "
                     "same callbacks",
                     kc_json_len(j), kc_callbacks_count(c));
        goto done;
    }
    for (int i = 0; !rc && i < c->n; i++) {
        cb *x = &c->items[i];
        const kc_json *o = kc_json_at(j, (size_t)i);
        const char *kind = kc_json_str(kc_json_get(o, "kind"));
        if (!kind || strcmp(kind, cb_names[x->kind]))
            rc = kc_fail(e, KC_ECONFIG, "callback %d was %s in the checkpoint and is %s now", i + 1,
                         kind ? kind : "?", cb_names[x->kind]);
        else
            rc = restore_one(x, o, i, e);
    }
done:
    kc_json_free(j);
    return rc;
}

int kc_callbacks_check_progress(const kc_callbacks *c, int64_t steps, kc_error *e) {
    for (int i = 0; c && i < c->n; i++) {
        const cb *x = &c->items[i];
        if (x->batches_seen > steps)
            return kc_fail(e, KC_ERUNTIME,
                           "the callback state of the checkpoint resumed from is not valid: "
                           "callback %d (%s) batches_seen = %lld is more than the %lld steps "
                           "trained so far",
                           i + 1, cb_names[x->kind], x->batches_seen, (long long)steps);
    }
    return KC_OK;
}

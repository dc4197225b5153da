#include "models/args.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void kc_args_init(kc_args *a, kc_node *map, const kc_node *where, const char *owner) {
    memset(a, 0, sizeof *a);
    a->map = map && map->kind == KC_NODE_MAP ? map : NULL;
    a->where = where ? where : map;
    a->owner = owner;
}

static void remember(kc_args *a, const char *key) {
    for (int i = 0; i < a->nknown; i++)
        if (!strcmp(a->known[i], key)) return;
    if (a->nknown < KC_ARGS_MAX_KNOWN) a->known[a->nknown++] = key;
    a->known[a->nknown] = NULL;
}

kc_node *kc_args_node(kc_args *a, const char *key) {
    remember(a, key);
    return kc_map_get(a->map, key);
}

int kc_args_has(kc_args *a, const char *key) {
    kc_node *n = kc_args_node(a, key);
    return n && !kc_node_is_null(n);
}

static int missing(kc_args *a, const char *key, kc_error *e) {
    /* a misspelt key is the likelier story: "filter" when "filters" is required */
    for (size_t i = 0; a->map && i < a->map->n; i++) {
        kc_node *k = kc_map_key(a->map, i);
        const char *cand[] = {key, NULL};
        if (!k->used && kc_closest(k->str, cand, 1))
            return kc_node_fail(e, k,
                                "unknown key '%s' in the arguments of %s (did you mean '%s'?)",
                                k->str, a->owner, key);
    }
    return kc_node_fail(e, a->where, "%s requires the argument '%s'", a->owner, key);
}

/* Fetches a non-null value or reports whether it is absent. */
static kc_node *value_of(kc_args *a, const char *key) {
    kc_node *n = kc_args_node(a, key);
    return n && !kc_node_is_null(n) ? n : NULL;
}

static int int_in_range(kc_args *a, const char *key, kc_node *n, long long min, long long max,
                        long long *out, kc_error *e) {
    long long v;
    if (kc_node_int(n, &v, e))
        return kc_node_fail(e, n, "%s argument '%s': expected an integer, got %s%s%s", a->owner,
                            key, n->kind == KC_NODE_SCALAR ? "'" : "",
                            n->kind == KC_NODE_SCALAR ? n->str : kc_node_kind_name(n),
                            n->kind == KC_NODE_SCALAR ? "'" : "");
    if (v < min || v > max) {
        if (max >= 2147483647LL)
            return kc_node_fail(e, n, "%s argument '%s' must be >= %lld, got %lld", a->owner, key,
                                min, v);
        return kc_node_fail(e, n, "%s argument '%s' must be in [%lld, %lld], got %lld", a->owner,
                            key, min, max, v);
    }
    *out = v;
    return KC_OK;
}

int kc_args_int(kc_args *a, const char *key, int required, long long def, long long min,
                long long max, long long *out, kc_error *e) {
    kc_node *n = value_of(a, key);
    if (!n) {
        if (required) return missing(a, key, e);
        *out = def;
        return KC_OK;
    }
    return int_in_range(a, key, n, min, max, out, e);
}

int kc_args_float(kc_args *a, const char *key, int required, double def, double min, double max,
                  double *out, kc_error *e) {
    kc_node *n = value_of(a, key);
    if (!n) {
        if (required) return missing(a, key, e);
        *out = def;
        return KC_OK;
    }
    double v;
    if (kc_node_float(n, &v, e))
        return kc_node_fail(e, n, "%s argument '%s': expected a number, got %s%s%s", a->owner, key,
                            n->kind == KC_NODE_SCALAR ? "'" : "",
                            n->kind == KC_NODE_SCALAR ? n->str : kc_node_kind_name(n),
                            n->kind == KC_NODE_SCALAR ? "'" : "");
    if (!(v >= min && v <= max)) {
        if (isinf(max))
            return kc_node_fail(e, n, "%s argument '%s' must be >= %g, got %g", a->owner, key, min,
                                v);
        if (isinf(min))
            return kc_node_fail(e, n, "%s argument '%s' must be <= %g, got %g", a->owner, key, max,
                                v);
        return kc_node_fail(e, n, "%s argument '%s' must be in [%g, %g], got %g", a->owner, key,
                            min, max, v);
    }
    *out = v;
    return KC_OK;
}

int kc_args_bool(kc_args *a, const char *key, int def, int *out, kc_error *e) {
    kc_node *n = value_of(a, key);
    if (!n) {
        *out = def;
        return KC_OK;
    }
    if (kc_node_bool(n, out, e))
        return kc_node_fail(e, n, "%s argument '%s': expected true or false, got %s%s%s", a->owner,
                            key, n->kind == KC_NODE_SCALAR ? "'" : "",
                            n->kind == KC_NODE_SCALAR ? n->str : kc_node_kind_name(n),
                            n->kind == KC_NODE_SCALAR ? "'" : "");
    return KC_OK;
}

int kc_args_str(kc_args *a, const char *key, int required, const char *def, const char **out,
                kc_error *e) {
    kc_node *n = value_of(a, key);
    if (!n) {
        if (required) return missing(a, key, e);
        *out = def;
        return KC_OK;
    }
    if (n->kind != KC_NODE_SCALAR)
        return kc_node_fail(e, n, "%s argument '%s': expected a string, got %s", a->owner, key,
                            kc_node_kind_name(n));
    *out = n->str;
    return KC_OK;
}

int kc_args_enum(kc_args *a, const char *key, const char *def, const char *const *choices, int *out,
                 kc_error *e) {
    const char *s;
    int rc = kc_args_str(a, key, def == NULL, def, &s, e);
    if (rc) return rc;
    size_t nc = 0;
    while (choices[nc])
        nc++;
    for (size_t i = 0; i < nc; i++)
        if (!strcmp(s, choices[i])) {
            *out = (int)i;
            return KC_OK;
        }
    /* Keras lower-cases padding and similar options */
    for (size_t i = 0; i < nc; i++)
        if (!strcasecmp(s, choices[i])) {
            *out = (int)i;
            return KC_OK;
        }
    kc_node *n = kc_map_get(a->map, key);
    char list[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < nc && used < sizeof list - 32; i++)
        used +=
            (size_t)snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "", choices[i]);
    const char *near = kc_closest(s, choices, nc);
    if (near)
        return kc_node_fail(e, n,
                            "%s argument '%s': unknown value '%s' (did you mean '%s'? valid: %s)",
                            a->owner, key, s, near, list);
    return kc_node_fail(e, n, "%s argument '%s': unknown value '%s' (valid: %s)", a->owner, key, s,
                        list);
}

int kc_args_int_tuple(kc_args *a, const char *key, int n, int required, const int *def,
                      long long min, long long max, int *out, kc_error *e) {
    kc_node *v = value_of(a, key);
    if (!v) {
        if (required) return missing(a, key, e);
        for (int i = 0; i < n; i++)
            out[i] = def[i];
        return KC_OK;
    }
    long long x;
    if (v->kind == KC_NODE_SCALAR) {
        if (int_in_range(a, key, v, min, max, &x, e)) return e->code;
        for (int i = 0; i < n; i++)
            out[i] = (int)x;
        return KC_OK;
    }
    if (v->kind != KC_NODE_SEQ || (int)v->n != n)
        return kc_node_fail(
            e, v, "%s argument '%s': expected an integer or a list of %d integers, got %s%s",
            a->owner, key, n, kc_node_kind_name(v),
            v->kind == KC_NODE_SEQ ? " of another length" : "");
    for (int i = 0; i < n; i++) {
        if (int_in_range(a, key, v->items[i], min, max, &x, e)) return e->code;
        out[i] = (int)x;
    }
    return KC_OK;
}

int kc_args_int_list(kc_args *a, const char *key, int required, int max_n, long long min,
                     int64_t *out, int *n_out, kc_error *e) {
    kc_node *v = value_of(a, key);
    if (!v) {
        if (required) return missing(a, key, e);
        *n_out = 0;
        return KC_OK;
    }
    if (v->kind == KC_NODE_SCALAR) { /* Keras accepts (5,) written as 5 */
        long long x;
        if (int_in_range(a, key, v, min, (long long)(~0ULL >> 1), &x, e)) return e->code;
        out[0] = x;
        *n_out = 1;
        return KC_OK;
    }
    if (v->kind != KC_NODE_SEQ || v->n == 0 || (int)v->n > max_n)
        return kc_node_fail(
            e, v, "%s argument '%s': expected a list of 1 to %d integers, got %s", a->owner, key,
            max_n, v->kind == KC_NODE_SEQ ? "a list of another length" : kc_node_kind_name(v));
    for (size_t i = 0; i < v->n; i++) {
        long long x;
        if (int_in_range(a, key, v->items[i], min, (long long)(~0ULL >> 1), &x, e)) return e->code;
        out[i] = x;
    }
    *n_out = (int)v->n;
    return KC_OK;
}

int kc_args_finish(kc_args *a, kc_error *e) {
    char where[160];
    snprintf(where, sizeof where, "the arguments of %s", a->owner);
    return kc_map_check_unused(a->map, where, a->known, e);
}

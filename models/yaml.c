#include "models/yaml.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define KC_YAML_MAX_DEPTH 64

typedef struct builder {
    yaml_parser_t parser;
    const char *file;
    kc_error *e;
} builder;

static kc_node *node_new(builder *b, kc_node_kind kind, yaml_mark_t mark) {
    kc_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->file = b->file;
    n->line = (int)mark.line + 1;
    n->col = (int)mark.column + 1;
    return n;
}

static void node_free(kc_node *n) {
    if (!n) return;
    /* a map being built may hold a key still waiting for its value (used = 1) */
    size_t count = n->kind == KC_NODE_MAP ? 2 * n->n + (size_t)n->used : n->n;
    for (size_t i = 0; i < count; i++)
        node_free(n->items[i]);
    free(n->items);
    free(n->str);
    free(n);
}

static int node_push(kc_node *parent, kc_node *child) {
    size_t count = parent->kind == KC_NODE_MAP ? 2 * parent->n + (parent->used ? 1 : 0) : parent->n;
    kc_node **items = realloc(parent->items, (count + 1) * sizeof *items);
    if (!items) return -1;
    parent->items = items;
    items[count] = child;
    if (parent->kind == KC_NODE_MAP) {
        /* `used` doubles as "a key is waiting for its value" while building */
        if (parent->used) {
            parent->used = 0;
            parent->n++;
        } else {
            parent->used = 1;
        }
    } else {
        parent->n++;
    }
    return 0;
}

static int parse_error(builder *b) {
    yaml_parser_t *p = &b->parser;
    yaml_mark_t m = p->problem_mark;
    return kc_fail(b->e, KC_ECONFIG, "%s:%zu:%zu: YAML syntax error: %s%s%s", b->file, m.line + 1,
                   m.column + 1, p->problem ? p->problem : "malformed document",
                   p->context ? " " : "", p->context ? p->context : "");
}

static int next_event(builder *b, yaml_event_t *ev) {
    if (!yaml_parser_parse(&b->parser, ev)) return parse_error(b);
    return KC_OK;
}

static int build_node(builder *b, yaml_event_t *ev, kc_node **out, int depth);

static int build_children(builder *b, kc_node *n, yaml_event_type_t end, int depth) {
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(b, &ev);
        if (rc) return rc;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return KC_OK;
        }
        kc_node *child = NULL;
        rc = build_node(b, &ev, &child, depth + 1);
        yaml_event_delete(&ev);
        if (rc) return rc;
        if (n->kind == KC_NODE_MAP && !n->used && child->kind != KC_NODE_SCALAR) {
            int r = kc_node_fail(b->e, child, "a mapping key must be a plain name, not %s",
                                 kc_node_kind_name(child));
            node_free(child);
            return r;
        }
        if (node_push(n, child)) {
            node_free(child);
            return kc_fail(b->e, KC_ERUNTIME, "%s: out of memory", b->file);
        }
    }
}

static int build_node(builder *b, yaml_event_t *ev, kc_node **out, int depth) {
    if (depth > KC_YAML_MAX_DEPTH)
        return kc_fail(b->e, KC_ECONFIG, "%s:%zu:%zu: nesting deeper than %d levels", b->file,
                       ev->start_mark.line + 1, ev->start_mark.column + 1, KC_YAML_MAX_DEPTH);
    kc_node *n = NULL;
    int rc = KC_OK;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n = node_new(b, KC_NODE_SCALAR, ev->start_mark);
        if (!n) break;
        n->str = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        if (!n->str) {
            free(n);
            n = NULL;
        }
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int map = ev->type == YAML_MAPPING_START_EVENT;
        n = node_new(b, map ? KC_NODE_MAP : KC_NODE_SEQ, ev->start_mark);
        if (!n) break;
        rc = build_children(b, n, map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT, depth);
        if (rc) {
            node_free(n);
            return rc;
        }
        break;
    }
    case YAML_ALIAS_EVENT:
        return kc_fail(b->e, KC_ECONFIG,
                       "%s:%zu:%zu: YAML aliases (*name) are not supported; write the value out",
                       b->file, ev->start_mark.line + 1, ev->start_mark.column + 1);
    default:
        return kc_fail(b->e, KC_ECONFIG, "%s:%zu:%zu: unexpected YAML event", b->file,
                       ev->start_mark.line + 1, ev->start_mark.column + 1);
    }
    if (!n) return kc_fail(b->e, KC_ERUNTIME, "%s: out of memory", b->file);
    *out = n;
    return KC_OK;
}

/* Duplicate keys are an error: the later one would silently win. */
static int check_duplicates(kc_node *n, kc_error *e) {
    if (n->kind == KC_NODE_SCALAR) return KC_OK;
    if (n->kind == KC_NODE_MAP) {
        for (size_t i = 0; i < n->n; i++)
            for (size_t j = 0; j < i; j++)
                if (!strcmp(kc_map_key(n, i)->str, kc_map_key(n, j)->str))
                    return kc_node_fail(e, kc_map_key(n, i),
                                        "duplicate key '%s' (first given at line %d)",
                                        kc_map_key(n, i)->str, kc_map_key(n, j)->line);
        for (size_t i = 0; i < n->n; i++) {
            int rc = check_duplicates(kc_map_val(n, i), e);
            if (rc) return rc;
        }
    } else {
        for (size_t i = 0; i < n->n; i++) {
            int rc = check_duplicates(n->items[i], e);
            if (rc) return rc;
        }
    }
    return KC_OK;
}

int kc_doc_parse(kc_doc **out, const char *file, const char *text, size_t len, kc_error *e) {
    *out = NULL;
    kc_doc *d = calloc(1, sizeof *d);
    if (!d) return kc_fail(e, KC_ERUNTIME, "out of memory");
    d->file = strdup(file);
    d->text = malloc(len + 1);
    if (!d->file || !d->text) {
        kc_doc_free(d);
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    memcpy(d->text, text, len);
    d->text[len] = 0;
    d->text_len = len;

    builder b = {.file = d->file, .e = e};
    if (!yaml_parser_initialize(&b.parser)) {
        kc_doc_free(d);
        return kc_fail(e, KC_ERUNTIME, "cannot initialise the YAML parser");
    }
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)d->text, len);
    int rc = KC_OK, docs = 0;
    for (;;) {
        yaml_event_t ev;
        if ((rc = next_event(&b, &ev))) break;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            rc = kc_fail(e, KC_ECONFIG, "%s:%zu:%zu: only one YAML document per file is allowed",
                         d->file, ev.start_mark.line + 1, ev.start_mark.column + 1);
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT ||
            t == YAML_MAPPING_START_EVENT || t == YAML_ALIAS_EVENT) {
            rc = build_node(&b, &ev, &d->root, 0);
        }
        yaml_event_delete(&ev);
        if (rc) break;
    }
    yaml_parser_delete(&b.parser);
    if (!rc && d->root) rc = check_duplicates(d->root, e);
    if (!rc && (!d->root || d->root->kind != KC_NODE_MAP)) {
        rc = d->root ? kc_node_fail(
                           e, d->root,
                           "the file must be a mapping of sections (model:, compile:, ...), not %s",
                           kc_node_kind_name(d->root))
                     : kc_fail(e, KC_ECONFIG, "%s:1:1: the file is empty", d->file);
    }
    if (rc) {
        kc_doc_free(d);
        return rc;
    }
    *out = d;
    return KC_OK;
}

int kc_doc_load(kc_doc **out, const char *path, kc_error *e) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kc_fail(e, KC_ECONFIG, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 16384;
            if (cap > (64u << 20)) {
                free(buf);
                fclose(f);
                return kc_fail(e, KC_ECONFIG, "%s: file too large for a model description", path);
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return kc_fail(e, KC_ERUNTIME, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return kc_fail(e, KC_ECONFIG, "%s: read error", path);
    }
    int rc = kc_doc_parse(out, path, buf ? buf : "", len, e);
    free(buf);
    return rc;
}

void kc_doc_free(kc_doc *d) {
    if (!d) return;
    node_free(d->root);
    free(d->text);
    free(d->file);
    free(d);
}

kc_node *kc_map_get(kc_node *map, const char *key) {
    if (!map || map->kind != KC_NODE_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++) {
        kc_node *k = kc_map_key(map, i);
        if (!strcmp(k->str, key)) {
            k->used = 1;
            return kc_map_val(map, i);
        }
    }
    return NULL;
}

int kc_node_fail(kc_error *e, const kc_node *n, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n) return kc_fail(e, KC_ECONFIG, "%s:%d:%d: %s", n->file, n->line, n->col, msg);
    return kc_fail(e, KC_ECONFIG, "%s", msg);
}

const char *kc_node_kind_name(const kc_node *n) {
    if (!n) return "nothing";
    if (n->kind == KC_NODE_MAP) return "a mapping";
    if (n->kind == KC_NODE_SEQ) return "a list";
    if (kc_node_is_null(n)) return "null";
    return "a string";
}

int kc_node_is_null(const kc_node *n) {
    if (!n) return 1;
    if (n->kind != KC_NODE_SCALAR || n->quoted) return 0;
    return !*n->str || !strcmp(n->str, "~") || !strcmp(n->str, "null") || !strcmp(n->str, "Null") ||
           !strcmp(n->str, "NULL") || !strcmp(n->str, "None");
}

static int describe_scalar(const kc_node *n, char *buf, size_t len) {
    if (n->kind != KC_NODE_SCALAR) return snprintf(buf, len, "%s", kc_node_kind_name(n));
    return snprintf(buf, len, "'%s'", n->str);
}

int kc_node_int(const kc_node *n, long long *out, kc_error *e) {
    char got[128];
    if (n && n->kind == KC_NODE_SCALAR && !n->quoted && *n->str) {
        errno = 0;
        char *end;
        long long v = strtoll(n->str, &end, 10);
        if (!*end && !errno) {
            *out = v;
            return KC_OK;
        }
        /* 1e3 or 32.0 are whole numbers a user may write */
        double d = strtod(n->str, &end);
        if (!*end && isfinite(d) && d == floor(d) && fabs(d) < 9e15) {
            *out = (long long)d;
            return KC_OK;
        }
    }
    describe_scalar(n, got, sizeof got);
    return kc_node_fail(e, n, "expected an integer, got %s", got);
}

int kc_node_float(const kc_node *n, double *out, kc_error *e) {
    char got[128];
    if (n && n->kind == KC_NODE_SCALAR && !n->quoted && *n->str) {
        const char *s = n->str;
        char *end;
        if (!strcasecmp(s, ".inf") || !strcasecmp(s, "+.inf") || !strcasecmp(s, "inf")) {
            *out = INFINITY;
            return KC_OK;
        }
        if (!strcasecmp(s, "-.inf") || !strcasecmp(s, "-inf")) {
            *out = -INFINITY;
            return KC_OK;
        }
        errno = 0;
        double v = strtod(s, &end);
        if (end != s && !errno) {
            if (!*end && isfinite(v)) {
                *out = v;
                return KC_OK;
            }
            if (*end == '/' && isfinite(v)) { /* a fraction such as 1/255 */
                char *end2;
                double den = strtod(end + 1, &end2);
                if (end2 != end + 1 && !*end2 && den != 0 && isfinite(den) && isfinite(v / den)) {
                    *out = v / den;
                    return KC_OK;
                }
            }
        }
    }
    describe_scalar(n, got, sizeof got);
    return kc_node_fail(e, n, "expected a number, got %s", got);
}

int kc_node_bool(const kc_node *n, int *out, kc_error *e) {
    if (n && n->kind == KC_NODE_SCALAR && !n->quoted) {
        const char *s = n->str;
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "yes")) {
            *out = 1;
            return KC_OK;
        }
        if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE") || !strcmp(s, "no")) {
            *out = 0;
            return KC_OK;
        }
    }
    char got[128];
    describe_scalar(n, got, sizeof got);
    return kc_node_fail(e, n, "expected true or false, got %s", got);
}

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            size_t best = prev + (same ? 0 : 1);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* Lower-case letters and digits only, so max_pool_2d matches MaxPooling2D's stem. */
static void squash(const char *s, char *out, size_t n) {
    size_t j = 0;
    for (; *s && j + 1 < n; s++)
        if (isalnum((unsigned char)*s)) out[j++] = (char)tolower((unsigned char)*s);
    out[j] = 0;
}

const char *kc_closest(const char *s, const char *const *candidates, size_t n) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    char ss[128], cs[128];
    squash(s, ss, sizeof ss);
    for (size_t i = 0; i < n && candidates[i]; i++) {
        squash(candidates[i], cs, sizeof cs);
        size_t d = edit_distance(ss, cs);
        /* a prefix ("dense" vs "dense_layer") is a strong hint too */
        if (*ss && (strstr(cs, ss) == cs || strstr(ss, cs) == ss) && d > 1) d = 1 + d / 4;
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    size_t len = strlen(ss);
    size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : len / 3 + 1;
    return best && best_d <= limit ? best : NULL;
}

int kc_map_check_unused(kc_node *map, const char *where, const char *const *known, kc_error *e) {
    if (!map || map->kind != KC_NODE_MAP) return KC_OK;
    for (size_t i = 0; i < map->n; i++) {
        kc_node *k = kc_map_key(map, i);
        if (k->used) continue;
        size_t nk = 0;
        while (known && known[nk])
            nk++;
        const char *near = kc_closest(k->str, known, nk);
        if (near)
            return kc_node_fail(e, k, "unknown key '%s' in %s (did you mean '%s'?)", k->str, where,
                                near);
        char list[768] = "";
        size_t used = 0;
        for (size_t j = 0; j < nk && used < sizeof list - 64; j++)
            used +=
                (size_t)snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", known[j]);
        return kc_node_fail(e, k, "unknown key '%s' in %s (valid keys: %s)", k->str, where,
                            nk ? list : "none");
    }
    return KC_OK;
}

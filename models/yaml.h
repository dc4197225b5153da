/* A YAML document as a tree of nodes that remember where they were written,
 * so every error can name file:line:column. Parsed with libyaml. */
#ifndef KC_YAML_H
#define KC_YAML_H

#include <stddef.h>

#include "core/error.h"

typedef enum { KC_NODE_SCALAR, KC_NODE_SEQ, KC_NODE_MAP } kc_node_kind;

typedef struct kc_node kc_node;
struct kc_node {
    kc_node_kind kind;
    const char *file; /* shared, owned by the document */
    int line, col;    /* 1-based */
    char *str;        /* scalar text (KC_NODE_SCALAR) */
    int quoted;       /* scalar was quoted: never a number or bool */
    size_t n;         /* items (SEQ) or pairs (MAP) */
    kc_node **items;  /* SEQ items; MAP: keys at 2i, values at 2i+1 */
    int used;         /* set when a reader consumed this map key */
};

typedef struct kc_doc {
    char *file;
    char *text; /* the whole source, kept so it can travel inside checkpoints */
    size_t text_len;
    kc_node *root;
} kc_doc;

/* Parses YAML text; `file` names it in errors. Syntax errors are KC_ECONFIG
 * with file:line:column. */
int kc_doc_parse(kc_doc **out, const char *file, const char *text, size_t len, kc_error *e);
int kc_doc_load(kc_doc **out, const char *path, kc_error *e);
void kc_doc_free(kc_doc *d);

/* Map lookup; marks the key used. NULL if absent or n is not a map. */
kc_node *kc_map_get(kc_node *map, const char *key);
/* Key node of pair i in a map (for error locations). */
static inline kc_node *kc_map_key(kc_node *map, size_t i) {
    return map->items[2 * i];
}
static inline kc_node *kc_map_val(kc_node *map, size_t i) {
    return map->items[2 * i + 1];
}

/* Error at a node: "file:line:col: message". Returns KC_ECONFIG. */
int kc_node_fail(kc_error *e, const kc_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Scalar conversions; each fails with a located message naming what was expected. */
int kc_node_int(const kc_node *n, long long *out, kc_error *e);
int kc_node_float(const kc_node *n, double *out, kc_error *e); /* also "1/255" */
int kc_node_bool(const kc_node *n, int *out, kc_error *e);
const char *kc_node_kind_name(const kc_node *n); /* "a number", "a list", ... for messages */
int kc_node_is_null(const kc_node *n);           /* ~, null, empty */

/* Any key of map not marked used -> error "unknown key 'x' in <where> (did you
 * mean 'y'?)", choosing y from `known` (NULL-terminated). */
int kc_map_check_unused(kc_node *map, const char *where, const char *const *known, kc_error *e);

/* Closest of candidates to s by edit distance (case-insensitive), or NULL if
 * nothing is reasonably close. */
const char *kc_closest(const char *s, const char *const *candidates, size_t n);

#endif

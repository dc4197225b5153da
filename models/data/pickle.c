/* A bounded pickle reader for numpy object arrays of integer lists and for
 * the dicts of CIFAR batch files: a stack machine over a handful of value
 * kinds, with one handler per opcode. */
#include "models/data/pickle.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum vkind {
    V_NONE,
    V_BOOL,
    V_INT,
    V_STR,
    V_BYTES,
    V_TUPLE,
    V_LIST,
    V_GLOBAL,
    V_DTYPE,
    V_ARRAY,
    V_EMPTY,
    V_DICT
} vkind;

/* A value: immediate (int, bool, global id) or the index of a node. */
typedef struct val {
    int64_t i;
    uint8_t kind;
} val;

enum { G_RECONSTRUCT, G_NDARRAY, G_DTYPE, G_ENCODE };

typedef struct node {
    int64_t n, cap;
    val *items;           /* tuples; dicts (key, value, ...); lists holding non-ints */
    int64_t *ints;        /* lists of ints only */
    unsigned char *bytes; /* strings and bytes (NUL after them); dtype descr */
    int is_items;         /* a list: 1 once it holds a non-int */
    int borrowed;         /* bytes point into the input (long strings; no NUL after them) */
    int latin;            /* a Python 2 str (BINSTRING): raw bytes */
    /* arrays */
    int built, rank, fortran;
    int64_t shape[8];
    val dtype, data;
    char order; /* dtypes: '<', '>', '|', '=' */
} node;

typedef struct pk {
    const unsigned char *p;
    size_t n, at, op_at;
    const char *name;
    kc_error *e;
    val *stack;
    int64_t sp, scap;
    int64_t marks[KC_PICKLE_MAX_MARKS];
    int nmarks;
    val *memo;
    int64_t memocap, nmemo; /* nmemo: MEMOIZE's next slot */
    node *nodes;
    int64_t nn, ncap;
    val result;
} pk;

static const char *const KIND_NAME[] = {"None",
                                        "a bool",
                                        "an int",
                                        "a str",
                                        "bytes",
                                        "a tuple",
                                        "a list",
                                        "a global",
                                        "a dtype",
                                        "an ndarray",
                                        "an empty memo slot",
                                        "a dict"};

__attribute__((format(printf, 2, 3))) static int fail(pk *k, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return kc_fail(k->e, KC_ERUNTIME, "%s: pickle opcode 0x%02x at byte %zu: %s", k->name,
                   k->op_at < k->n ? k->p[k->op_at] : 0, k->op_at, why);
}

/* Grows *buf (elements of size sz) to hold need; limit bounds need. */
static int grow(pk *k, void **buf, int64_t *cap, int64_t need, size_t sz, int64_t limit,
                const char *what) {
    if (need <= *cap) return KC_OK;
    if (need > limit) return fail(k, "more than %lld %s", (long long)limit, what);
    int64_t c = *cap ? *cap : 16;
    while (c < need)
        c = c > limit / 2 ? limit : c * 2;
    void *nb = realloc(*buf, (size_t)c * sz);
    if (!nb) return fail(k, "out of memory for %lld %s", (long long)c, what);
    *buf = nb;
    *cap = c;
    return KC_OK;
}

static int new_node(pk *k, val *out, uint8_t kind) {
    int rc = grow(k, (void **)&k->nodes, &k->ncap, k->nn + 1, sizeof(node), INT32_MAX, "objects");
    if (rc) return rc;
    memset(&k->nodes[k->nn], 0, sizeof(node));
    out->kind = kind;
    out->i = k->nn++;
    return KC_OK;
}

static node *N(pk *k, val v) {
    return &k->nodes[v.i];
}

/* ---- input ---- */

static int take(pk *k, size_t len, const unsigned char **out) {
    if (len > k->n - k->at) return fail(k, "truncated: needs %zu more bytes", len);
    *out = k->p + k->at;
    k->at += len;
    return KC_OK;
}

static int take_uint(pk *k, int bytes, uint64_t *out) {
    const unsigned char *b = NULL;
    int rc = take(k, (size_t)bytes, &b);
    if (rc) return rc;
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | b[i];
    *out = v;
    return KC_OK;
}

/* ---- the stack ---- */

static int push(pk *k, val v) {
    int rc = grow(k, (void **)&k->stack, &k->scap, k->sp + 1, sizeof(val), KC_PICKLE_MAX_STACK,
                  "values on the stack");
    if (rc) return rc;
    k->stack[k->sp++] = v;
    return KC_OK;
}

static int64_t stack_base(const pk *k) {
    return k->nmarks ? k->marks[k->nmarks - 1] : 0;
}

static int pop(pk *k, val *v) {
    if (k->sp <= stack_base(k)) return fail(k, "stack underflow");
    *v = k->stack[--k->sp];
    return KC_OK;
}

static int top(pk *k, val *v) {
    if (k->sp <= stack_base(k)) return fail(k, "stack underflow");
    *v = k->stack[k->sp - 1];
    return KC_OK;
}

/* The values since the last MARK: stack[*from .. k->sp), then the mark is closed. */
static int pop_mark(pk *k, int64_t *from) {
    if (!k->nmarks) return fail(k, "no MARK to close");
    *from = k->marks[--k->nmarks];
    return KC_OK;
}

/* ---- values ---- */

/* Strings longer than this are not copied: the node points into the input. */
#define BORROW_OVER 256

static int make_str(pk *k, vkind kind, const unsigned char *s, size_t len) {
    val v = {0};
    int rc = new_node(k, &v, (uint8_t)kind);
    if (rc) return rc;
    node *nd = N(k, v);
    nd->bytes = malloc(len + 1);
    if (!nd->bytes) return fail(k, "out of memory for a %zu-byte string", len);
    if (len) memcpy(nd->bytes, s, len);
    nd->bytes[len] = 0;
    nd->n = (int64_t)len;
    return push(k, v);
}

static int make_tuple(pk *k, const val *items, int64_t n) {
    val v = {0};
    int rc = new_node(k, &v, V_TUPLE);
    if (rc) return rc;
    node *nd = N(k, v);
    if (n) {
        nd->items = malloc((size_t)n * sizeof(val));
        if (!nd->items) return fail(k, "out of memory for a tuple of %lld", (long long)n);
        memcpy(nd->items, items, (size_t)n * sizeof(val));
    }
    nd->n = nd->cap = n;
    return push(k, v);
}

static int list_to_items(pk *k, node *l) {
    val *it = malloc((size_t)(l->cap ? l->cap : 1) * sizeof(val));
    if (!it) return fail(k, "out of memory for a list of %lld", (long long)l->cap);
    for (int64_t i = 0; i < l->n; i++)
        it[i] = (val){.kind = V_INT, .i = l->ints[i]};
    free(l->ints);
    l->ints = NULL;
    l->items = it;
    l->is_items = 1;
    return KC_OK;
}

static int list_append(pk *k, val list, val v) {
    if (list.kind != V_LIST) return fail(k, "appending to %s, not a list", KIND_NAME[list.kind]);
    node *l = N(k, list);
    int rc;
    if (!l->is_items && v.kind != V_INT && (rc = list_to_items(k, l))) return rc;
    if (l->is_items) {
        if ((rc = grow(k, (void **)&l->items, &l->cap, l->n + 1, sizeof(val), KC_PICKLE_MAX_TOKENS,
                       "list items")))
            return rc;
        l->items[l->n++] = v;
    } else {
        if ((rc = grow(k, (void **)&l->ints, &l->cap, l->n + 1, sizeof(int64_t),
                       KC_PICKLE_MAX_TOKENS, "list items")))
            return rc;
        l->ints[l->n++] = v.i;
    }
    return KC_OK;
}

static int str_is(pk *k, val v, const char *s) {
    if (v.kind != V_STR && v.kind != V_BYTES) return 0;
    node *nd = N(k, v);
    size_t len = strlen(s);
    return nd->n == (int64_t)len && !memcmp(nd->bytes, s, len);
}

/* The globals a numpy array pickle names; every other one is refused. */
static int resolve_global(pk *k, const char *mod, const char *name) {
    static const struct {
        const char *mod, *name;
        int id;
    } allowed[] = {{"numpy.core.multiarray", "_reconstruct", G_RECONSTRUCT},
                   {"numpy._core.multiarray", "_reconstruct", G_RECONSTRUCT},
                   {"numpy", "ndarray", G_NDARRAY},
                   {"numpy", "dtype", G_DTYPE},
                   {"_codecs", "encode", G_ENCODE}};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (!strcmp(mod, allowed[i].mod) && !strcmp(name, allowed[i].name))
            return push(k, (val){.kind = V_GLOBAL, .i = allowed[i].id});
    return fail(k, "refusing the global %.100s.%.100s (only numpy array reconstruction is read)",
                mod, name);
}

/* ---- opcode handlers ---- */

typedef int (*op_fn)(pk *k);

static int op_proto(pk *k) {
    uint64_t v = 0;
    int rc = take_uint(k, 1, &v);
    if (!rc && (v < 2 || v > 5)) rc = fail(k, "pickle protocol %d (2..5 are read)", (int)v);
    return rc;
}

static int op_frame(pk *k) {
    uint64_t v = 0;
    int rc = take_uint(k, 8, &v);
    if (!rc && v > k->n - k->at)
        rc = fail(k, "a frame of %llu bytes overruns the data", (unsigned long long)v);
    return rc;
}

static int op_global(pk *k) {
    char part[2][101];
    for (int j = 0; j < 2; j++) {
        size_t len = 0;
        for (;;) {
            if (k->at >= k->n) return fail(k, "truncated GLOBAL");
            unsigned char c = k->p[k->at++];
            if (c == '\n') break;
            if (len >= 100 || c < 0x20 || c > 0x7e) return fail(k, "malformed GLOBAL name");
            part[j][len++] = (char)c;
        }
        part[j][len] = 0;
    }
    return resolve_global(k, part[0], part[1]);
}

static int op_stack_global(pk *k) {
    val name = {0}, mod = {0};
    int rc = pop(k, &name);
    if (!rc) rc = pop(k, &mod);
    if (rc) return rc;
    if (name.kind != V_STR || mod.kind != V_STR) return fail(k, "STACK_GLOBAL of non-strings");
    node *a = N(k, mod), *b = N(k, name);
    if (a->n > 100 || b->n > 100) return fail(k, "STACK_GLOBAL name longer than 100 bytes");
    if (strlen((char *)a->bytes) != (size_t)a->n || strlen((char *)b->bytes) != (size_t)b->n)
        return fail(k, "STACK_GLOBAL name holds a NUL byte");
    return resolve_global(k, (char *)a->bytes, (char *)b->bytes);
}

static int op_mark(pk *k) {
    if (k->nmarks >= KC_PICKLE_MAX_MARKS)
        return fail(k, "nesting deeper than %d MARKs", KC_PICKLE_MAX_MARKS);
    k->marks[k->nmarks++] = k->sp;
    return KC_OK;
}

static int op_tuple(pk *k) {
    int64_t from = 0;
    int rc = pop_mark(k, &from);
    if (rc) return rc;
    int64_t n = k->sp - from;
    k->sp = from;
    return make_tuple(k, n ? k->stack + from : NULL, n);
}

static int tuple_n(pk *k, int n) {
    if (k->sp - stack_base(k) < n) return fail(k, "stack underflow");
    k->sp -= n;
    return make_tuple(k, n ? k->stack + k->sp : NULL, n);
}

static int op_empty_tuple(pk *k) {
    return make_tuple(k, NULL, 0);
}
static int op_tuple1(pk *k) {
    return tuple_n(k, 1);
}
static int op_tuple2(pk *k) {
    return tuple_n(k, 2);
}
static int op_tuple3(pk *k) {
    return tuple_n(k, 3);
}

static int op_empty_list(pk *k) {
    val v = {0};
    int rc = new_node(k, &v, V_LIST);
    return rc ? rc : push(k, v);
}

/* Appends stack[from .. sp) to the list just below them. */
static int append_from(pk *k, int64_t from) {
    int64_t end = k->sp;
    k->sp = from;
    val list = {0};
    int rc = top(k, &list);
    for (int64_t i = from; !rc && i < end; i++)
        rc = list_append(k, list, k->stack[i]);
    return rc;
}

static int op_appends(pk *k) {
    int64_t from = 0;
    int rc = pop_mark(k, &from);
    return rc ? rc : append_from(k, from);
}

static int op_append(pk *k) {
    if (k->sp - stack_base(k) < 2) return fail(k, "stack underflow");
    return append_from(k, k->sp - 1);
}

static int op_list(pk *k) {
    int64_t from = 0;
    int rc = pop_mark(k, &from);
    if (rc) return rc;
    int64_t end = k->sp;
    val list = {0};
    if ((rc = new_node(k, &list, V_LIST))) return rc;
    for (int64_t i = from; !rc && i < end; i++)
        rc = list_append(k, list, k->stack[i]);
    k->sp = from;
    return rc ? rc : push(k, list);
}

/* ---- dicts: (key, value) pairs in order; a later equal key wins on lookup ---- */

#define MAX_DICT_ITEMS (1 << 20)

static int dict_set(pk *k, val dict, val key, val v) {
    if (dict.kind != V_DICT)
        return fail(k, "setting an item of %s, not a dict", KIND_NAME[dict.kind]);
    node *d = N(k, dict);
    int rc = grow(k, (void **)&d->items, &d->cap, d->n + 2, sizeof(val), 2 * MAX_DICT_ITEMS,
                  "dict items");
    if (rc) return rc;
    d->items[d->n++] = key;
    d->items[d->n++] = v;
    return KC_OK;
}

/* Sets the pairs stack[from .. sp) into the dict just below them. */
static int setitems_from(pk *k, int64_t from) {
    int64_t end = k->sp;
    if ((end - from) % 2) return fail(k, "a key without a value");
    k->sp = from;
    val dict = {0};
    int rc = top(k, &dict);
    for (int64_t i = from; !rc && i < end; i += 2)
        rc = dict_set(k, dict, k->stack[i], k->stack[i + 1]);
    return rc;
}

static int op_empty_dict(pk *k) {
    val v = {0};
    int rc = new_node(k, &v, V_DICT);
    return rc ? rc : push(k, v);
}

static int op_setitem(pk *k) {
    if (k->sp - stack_base(k) < 3) return fail(k, "stack underflow");
    return setitems_from(k, k->sp - 2);
}

static int op_setitems(pk *k) {
    int64_t from = 0;
    int rc = pop_mark(k, &from);
    return rc ? rc : setitems_from(k, from);
}

static int op_dict(pk *k) {
    int64_t from = 0;
    int rc = pop_mark(k, &from);
    if (rc) return rc;
    int64_t end = k->sp;
    if ((end - from) % 2) return fail(k, "a key without a value");
    val dict = {0};
    if ((rc = new_node(k, &dict, V_DICT))) return rc;
    for (int64_t i = from; !rc && i < end; i += 2)
        rc = dict_set(k, dict, k->stack[i], k->stack[i + 1]);
    k->sp = from;
    return rc ? rc : push(k, dict);
}

static int push_int(pk *k, int bytes, int sign) {
    uint64_t u;
    int rc = take_uint(k, bytes, &u);
    if (rc) return rc;
    int64_t v = (int64_t)u;
    if (sign && bytes == 4) v = (int32_t)(uint32_t)u;
    return push(k, (val){.kind = V_INT, .i = v});
}

static int op_binint(pk *k) {
    return push_int(k, 4, 1);
}
static int op_binint1(pk *k) {
    return push_int(k, 1, 0);
}
static int op_binint2(pk *k) {
    return push_int(k, 2, 0);
}

static int op_long1(pk *k) {
    uint64_t len = 0, u = 0;
    int rc = take_uint(k, 1, &len);
    if (rc) return rc;
    if (len > 8) return fail(k, "an integer of %d bytes does not fit 64 bits", (int)len);
    if (len && (rc = take_uint(k, (int)len, &u))) return rc;
    if (len && len < 8 && (u >> (8 * len - 1)) & 1) u |= ~0ull << (8 * len); /* sign-extend */
    return push(k, (val){.kind = V_INT, .i = (int64_t)u});
}

static int op_none(pk *k) {
    return push(k, (val){.kind = V_NONE});
}
static int op_true(pk *k) {
    return push(k, (val){.kind = V_BOOL, .i = 1});
}
static int op_false(pk *k) {
    return push(k, (val){.kind = V_BOOL, .i = 0});
}

/* A string of the input: a long one is borrowed (the input outlives the parse). */
static int push_view(pk *k, vkind kind, const unsigned char *s, size_t len, int latin) {
    if (len <= BORROW_OVER) {
        int rc = make_str(k, kind, s, len);
        if (!rc) N(k, k->stack[k->sp - 1])->latin = latin;
        return rc;
    }
    val v = {0};
    int rc = new_node(k, &v, (uint8_t)kind);
    if (rc) return rc;
    node *nd = N(k, v);
    nd->bytes = (unsigned char *)s;
    nd->n = (int64_t)len;
    nd->borrowed = 1;
    nd->latin = latin;
    return push(k, v);
}

static int push_sized(pk *k, int len_bytes, vkind kind, int is_signed, int latin) {
    uint64_t len = 0;
    const unsigned char *s = NULL;
    int rc = take_uint(k, len_bytes, &len);
    if (rc) return rc;
    if (is_signed && (len >> 31)) return fail(k, "negative string length");
    if (len > k->n - k->at)
        return fail(k, "a %llu-byte string overruns the data", (unsigned long long)len);
    if ((rc = take(k, (size_t)len, &s))) return rc;
    return push_view(k, kind, s, (size_t)len, latin);
}

static int op_binunicode(pk *k) {
    return push_sized(k, 4, V_STR, 0, 0);
}
static int op_short_binunicode(pk *k) {
    return push_sized(k, 1, V_STR, 0, 0);
}
/* Python 2's str: text to numpy's descr and byte order, raw bytes as array data */
static int op_binstring(pk *k) {
    return push_sized(k, 4, V_STR, 1, 1);
}
static int op_short_binstring(pk *k) {
    return push_sized(k, 1, V_STR, 0, 1);
}
static int op_binbytes(pk *k) {
    return push_sized(k, 4, V_BYTES, 0, 0);
}
static int op_short_binbytes(pk *k) {
    return push_sized(k, 1, V_BYTES, 0, 0);
}

static int memo_put(pk *k, uint64_t idx) {
    if (idx >= KC_PICKLE_MAX_MEMO)
        return fail(k, "memo slot %llu is beyond %d", (unsigned long long)idx, KC_PICKLE_MAX_MEMO);
    int64_t old = k->memocap;
    int rc = grow(k, (void **)&k->memo, &k->memocap, (int64_t)idx + 1, sizeof(val),
                  KC_PICKLE_MAX_MEMO, "memo slots");
    if (rc) return rc;
    for (int64_t i = old; i < k->memocap; i++)
        k->memo[i] = (val){.kind = V_EMPTY};
    if ((rc = top(k, &k->memo[idx]))) return rc;
    if ((int64_t)idx >= k->nmemo) k->nmemo = (int64_t)idx + 1;
    return KC_OK;
}

static int memo_get(pk *k, uint64_t idx) {
    if (idx >= (uint64_t)k->memocap || k->memo[idx].kind == V_EMPTY)
        return fail(k, "memo slot %llu was never stored", (unsigned long long)idx);
    return push(k, k->memo[idx]);
}

static int op_binput(pk *k) {
    uint64_t i = 0;
    int rc = take_uint(k, 1, &i);
    return rc ? rc : memo_put(k, i);
}
static int op_long_binput(pk *k) {
    uint64_t i = 0;
    int rc = take_uint(k, 4, &i);
    return rc ? rc : memo_put(k, i);
}
static int op_memoize(pk *k) {
    return memo_put(k, (uint64_t)k->nmemo);
}
static int op_binget(pk *k) {
    uint64_t i = 0;
    int rc = take_uint(k, 1, &i);
    return rc ? rc : memo_get(k, i);
}
static int op_long_binget(pk *k) {
    uint64_t i = 0;
    int rc = take_uint(k, 4, &i);
    return rc ? rc : memo_get(k, i);
}

/* Tuple items of v when it is a tuple of n items (n < 0: any count). */
static const val *tuple_items(pk *k, val v, int64_t n, int64_t *count) {
    if (v.kind != V_TUPLE) return NULL;
    node *t = N(k, v);
    if (n >= 0 && t->n != n) return NULL;
    if (count) *count = t->n;
    return t->items;
}

/* _reconstruct(ndarray, shape, typecode): an array awaiting its BUILD. */
static int reduce_reconstruct(pk *k, val args) {
    const val *a = tuple_items(k, args, 3, NULL);
    if (!a || a[0].kind != V_GLOBAL || a[0].i != G_NDARRAY || a[1].kind != V_TUPLE ||
        (a[2].kind != V_STR && a[2].kind != V_BYTES))
        return fail(k, "_reconstruct takes (numpy.ndarray, shape, typecode)");
    val v = {0};
    int rc = new_node(k, &v, V_ARRAY);
    return rc ? rc : push(k, v);
}

/* dtype(descr, align, copy) */
static int reduce_dtype(pk *k, val args) {
    int64_t n;
    const val *a = tuple_items(k, args, -1, &n);
    if (!a || n < 1 || n > 3 || a[0].kind != V_STR || N(k, a[0])->n > 15)
        return fail(k, "numpy.dtype takes (descr[, align, copy]) with a short descr");
    val v = {0};
    int rc = new_node(k, &v, V_DTYPE);
    if (rc) return rc;
    node *d = N(k, v), *s = N(k, a[0]);
    d->bytes = malloc((size_t)s->n + 1);
    if (!d->bytes) return fail(k, "out of memory");
    memcpy(d->bytes, s->bytes, (size_t)s->n + 1);
    d->n = s->n;
    d->order = '|';
    return push(k, v);
}

/* _codecs.encode(text, "latin1"): protocol 2's way of writing bytes. */
static int reduce_encode(pk *k, val args) {
    const val *a = tuple_items(k, args, 2, NULL);
    if (!a || a[0].kind != V_STR || !str_is(k, a[1], "latin1"))
        return fail(k, "_codecs.encode takes (str, 'latin1')");
    node *s = N(k, a[0]);
    unsigned char *out = malloc((size_t)s->n + 1);
    if (!out) return fail(k, "out of memory");
    size_t m = 0;
    for (int64_t i = 0; i < s->n; i++) {
        unsigned char c = s->bytes[i];
        if (c >= 0x80) { /* U+0080..U+00FF as two UTF-8 bytes */
            if ((c != 0xC2 && c != 0xC3) || i + 1 >= s->n || (s->bytes[i + 1] & 0xC0) != 0x80) {
                free(out);
                return fail(k, "_codecs.encode of text outside latin1");
            }
            c = (unsigned char)(((c & 0x1F) << 6) | (s->bytes[++i] & 0x3F));
        }
        out[m++] = c;
    }
    int rc = make_str(k, V_BYTES, out, m);
    free(out);
    return rc;
}

static int op_reduce(pk *k) {
    val args = {0}, fn = {0};
    int rc = pop(k, &args);
    if (!rc) rc = pop(k, &fn);
    if (rc) return rc;
    if (fn.kind != V_GLOBAL) return fail(k, "REDUCE calls %s", KIND_NAME[fn.kind]);
    switch (fn.i) {
    case G_RECONSTRUCT:
        return reduce_reconstruct(k, args);
    case G_DTYPE:
        return reduce_dtype(k, args);
    case G_ENCODE:
        return reduce_encode(k, args);
    default:
        return fail(k, "REDUCE calls numpy.ndarray directly");
    }
}

/* ndarray state: (version, shape, dtype, is_fortran, data) or without version. */
static int build_array(pk *k, node *arr, val state) {
    int64_t n;
    const val *s = tuple_items(k, state, -1, &n);
    if (s && n == 5 && s[0].kind == V_INT) s++, n--;
    val data = s && n == 4 ? s[3] : (val){0};
    if (data.kind == V_STR && N(k, data)->latin) data.kind = V_BYTES; /* Python 2's str data */
    if (!s || n != 4 || s[0].kind != V_TUPLE || s[1].kind != V_DTYPE || s[2].kind != V_BOOL ||
        (data.kind != V_LIST && data.kind != V_BYTES))
        return fail(k, "ndarray state is not (version, shape, dtype, fortran, data)");
    if (arr->built) return fail(k, "an ndarray built twice");
    node *sh = N(k, s[0]);
    if (sh->n > 8) return fail(k, "an ndarray of rank %lld", (long long)sh->n);
    for (int64_t i = 0; i < sh->n; i++) {
        if (sh->items[i].kind != V_INT || sh->items[i].i < 0)
            return fail(k, "an ndarray shape entry that is not a size");
        arr->shape[i] = sh->items[i].i;
    }
    arr->rank = (int)sh->n;
    arr->dtype = s[1];
    arr->data = data;
    arr->fortran = (int)s[2].i;
    arr->built = 1;
    return KC_OK;
}

/* dtype state: (version, byteorder, ...) */
static int build_dtype(pk *k, node *d, val state) {
    int64_t n;
    const val *s = tuple_items(k, state, -1, &n);
    if (!s || n < 2 || s[1].kind != V_STR || N(k, s[1])->n != 1)
        return fail(k, "dtype state is not (version, byteorder, ...)");
    char c = (char)N(k, s[1])->bytes[0];
    if (!strchr("<>|=", c)) return fail(k, "dtype byte order '%c'", c);
    d->order = c;
    return KC_OK;
}

static int op_build(pk *k) {
    val state = {0}, obj = {0};
    int rc = pop(k, &state);
    if (!rc) rc = top(k, &obj);
    if (rc) return rc;
    if (obj.kind == V_ARRAY) return build_array(k, N(k, obj), state);
    if (obj.kind == V_DTYPE) return build_dtype(k, N(k, obj), state);
    return fail(k, "BUILD on %s", KIND_NAME[obj.kind]);
}

static int op_stop(pk *k) {
    int rc = pop(k, &k->result);
    return rc ? rc : -1; /* -1: done */
}

static const op_fn OPS[256] = {
    [0x80] = op_proto,        [0x95] = op_frame,
    ['.'] = op_stop,          ['c'] = op_global,
    [0x93] = op_stack_global, ['R'] = op_reduce,
    ['b'] = op_build,         ['('] = op_mark,
    ['t'] = op_tuple,         [')'] = op_empty_tuple,
    [0x85] = op_tuple1,       [0x86] = op_tuple2,
    [0x87] = op_tuple3,       [']'] = op_empty_list,
    ['l'] = op_list,          ['a'] = op_append,
    ['e'] = op_appends,       ['J'] = op_binint,
    ['K'] = op_binint1,       ['M'] = op_binint2,
    [0x8a] = op_long1,        ['N'] = op_none,
    [0x88] = op_true,         [0x89] = op_false,
    ['X'] = op_binunicode,    [0x8c] = op_short_binunicode,
    ['T'] = op_binstring,     ['U'] = op_short_binstring,
    ['B'] = op_binbytes,      ['C'] = op_short_binbytes,
    ['q'] = op_binput,        ['r'] = op_long_binput,
    [0x94] = op_memoize,      ['h'] = op_binget,
    ['j'] = op_long_binget,   ['}'] = op_empty_dict,
    ['d'] = op_dict,          ['s'] = op_setitem,
    ['u'] = op_setitems,
};

static int run(pk *k) {
    for (;;) {
        if (k->at >= k->n) {
            k->op_at = k->n;
            return kc_fail(k->e, KC_ERUNTIME, "%s: pickle truncated at byte %zu (no STOP)", k->name,
                           k->n);
        }
        k->op_at = k->at;
        unsigned char op = k->p[k->at++];
        if (!OPS[op])
            return kc_fail(k->e, KC_ERUNTIME,
                           "%s: pickle opcode 0x%02x at byte %zu is not one a numpy object "
                           "array uses, nor a dataset's dict",
                           k->name, op, k->op_at);
        int rc = OPS[op](k);
        if (rc == -1) return KC_OK;
        if (rc) return rc;
    }
}

/* ---- the result: a rank-1 object array of integer sequences ---- */

typedef struct int_arr {
    const unsigned char *b;
    int size, is_signed, big;
} int_arr;

/* An element that is a 1-d integer ndarray. */
static int elem_int_array(pk *k, int64_t i, node *a, int64_t *len, int_arr *ia) {
    if (!a->built || a->rank != 1 || a->data.kind != V_BYTES)
        return fail(k, "sequence %lld is an ndarray that is not 1-d integer data", (long long)i);
    node *d = N(k, a->dtype), *data = N(k, a->data);
    const char *s = (const char *)d->bytes;
    if ((s[0] != 'i' && s[0] != 'u') || !strchr("1248", s[1]) || s[2])
        return fail(k, "sequence %lld is an ndarray of dtype '%s', not integers", (long long)i, s);
    ia->size = s[1] - '0';
    ia->is_signed = s[0] == 'i';
    ia->big = d->order == '>';
    if (a->shape[0] > data->n / ia->size || a->shape[0] * ia->size != data->n)
        return fail(k, "sequence %lld holds %lld bytes for %lld items", (long long)i,
                    (long long)data->n, (long long)a->shape[0]);
    ia->b = data->bytes;
    *len = a->shape[0];
    return KC_OK;
}

static int64_t int_arr_at(const int_arr *ia, int64_t j) {
    const unsigned char *p = ia->b + j * ia->size;
    uint64_t u = 0;
    for (int t = 0; t < ia->size; t++)
        u |= (uint64_t)p[ia->big ? t : ia->size - 1 - t] << (8 * (ia->size - 1 - t));
    if (ia->is_signed && ia->size < 8 && (u >> (8 * ia->size - 1)) & 1)
        u |= ~0ull << (8 * ia->size);
    return (int64_t)u;
}

static int put_id(pk *k, int64_t i, int64_t v, int32_t *dst) {
    if (v < INT32_MIN || v > INT32_MAX)
        return fail(k, "sequence %lld holds %lld, which does not fit 32 bits", (long long)i,
                    (long long)v);
    *dst = (int32_t)v;
    return KC_OK;
}

/* Sequence i's length (pass 1, tok NULL) or its ids written at tok. */
static int elem_seq(pk *k, int64_t i, val v, int64_t *len, int32_t *tok) {
    int rc = KC_OK;
    if (v.kind == V_ARRAY) {
        int_arr ia = {0};
        if ((rc = elem_int_array(k, i, N(k, v), len, &ia))) return rc;
        for (int64_t j = 0; tok && !rc && j < *len; j++)
            rc = put_id(k, i, int_arr_at(&ia, j), tok + j);
        return rc;
    }
    if (v.kind != V_LIST)
        return fail(k, "sequence %lld is %s, not a list of ints", (long long)i, KIND_NAME[v.kind]);
    node *l = N(k, v);
    *len = l->n;
    for (int64_t j = 0; !rc && j < l->n; j++) {
        val it = l->is_items ? l->items[j] : (val){.kind = V_INT, .i = l->ints[j]};
        if (it.kind != V_INT)
            return fail(k, "sequence %lld item %lld is %s, not an int", (long long)i, (long long)j,
                        KIND_NAME[it.kind]);
        if (tok) rc = put_id(k, i, it.i, tok + j);
    }
    return rc;
}

static int root_items(pk *k, const val **items, int64_t *n) {
    if (k->result.kind != V_ARRAY)
        return fail(k, "the pickle holds %s, not an ndarray", KIND_NAME[k->result.kind]);
    node *a = N(k, k->result);
    if (!a->built || strncmp((const char *)N(k, a->dtype)->bytes, "O", 1) || a->rank != 1 ||
        a->data.kind != V_LIST)
        return fail(k, "the pickle holds an ndarray that is not a 1-d object array");
    node *l = N(k, a->data);
    if (l->n != a->shape[0])
        return fail(k, "the object array has shape (%lld,) but %lld items", (long long)a->shape[0],
                    (long long)l->n);
    if (l->n && !l->is_items) return fail(k, "the object array holds ints, not sequences");
    *n = l->n;
    *items = l->items;
    return KC_OK;
}

static int to_ragged(pk *k, kc_ragged *out) {
    int64_t n = 0;
    const val *items = NULL;
    int rc = root_items(k, &items, &n);
    if (rc) return rc;
    out->off = malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!out->off) return fail(k, "out of memory for %lld sequences", (long long)n);
    out->off[0] = 0;
    for (int64_t i = 0; !rc && i < n; i++) {
        int64_t len = 0;
        rc = elem_seq(k, i, items[i], &len, NULL);
        if (!rc && len > KC_PICKLE_MAX_TOKENS - out->off[i])
            rc = fail(k, "the sequences hold more than %ld ids", KC_PICKLE_MAX_TOKENS);
        if (!rc) out->off[i + 1] = out->off[i] + len;
    }
    if (!rc && !(out->tok = malloc((size_t)(out->off[n] ? out->off[n] : 1) * sizeof(int32_t))))
        rc = fail(k, "out of memory for %lld ids", (long long)out->off[n]);
    for (int64_t i = 0; !rc && i < n; i++) {
        int64_t len = 0;
        rc = elem_seq(k, i, items[i], &len, out->tok + out->off[i]);
    }
    if (!rc) out->n = n;
    return rc;
}

/* ---- the result: a dict of a uint8 matrix and integer labels (CIFAR batches) ---- */

/* An error in what the pickle holds (found after STOP: no opcode to name). */
__attribute__((format(printf, 2, 3))) static int bad(pk *k, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return kc_fail(k->e, KC_ERUNTIME, "%s: %s", k->name, why);
}

static const val *dict_get(pk *k, const node *d, const char *key) {
    for (int64_t i = d->n - 2; i >= 0; i -= 2)
        if (str_is(k, d->items[i], key)) return &d->items[i + 1];
    return NULL;
}

/* The dict's short text keys, "a, b, c", for messages. */
static void dict_keys(pk *k, const node *d, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (int64_t i = 0; i < d->n && used + 1 < cap; i += 2) {
        val key = d->items[i];
        if ((key.kind != V_STR && key.kind != V_BYTES) || N(k, key)->n > 40) continue;
        int w = snprintf(buf + used, cap - used, "%s%.*s", used ? ", " : "", (int)N(k, key)->n,
                         (const char *)N(k, key)->bytes);
        if (w > 0) used += (size_t)w;
    }
    if (!buf[0]) snprintf(buf, cap, "no text keys");
}

static int dict_need(pk *k, const node *d, const char *key, val *out) {
    const val *v = dict_get(k, d, key);
    if (v) {
        *out = *v;
        return KC_OK;
    }
    char keys[400];
    dict_keys(k, d, keys, sizeof keys);
    return bad(k, "the pickled dict has no '%s' (it has: %s)", key, keys);
}

static int batch_data(pk *k, const char *key, val v, kc_array *out) {
    if (v.kind != V_ARRAY || !N(k, v)->built)
        return bad(k, "'%s' is %s, not a numpy array", key, KIND_NAME[v.kind]);
    const node *a = N(k, v), *dt = N(k, a->dtype);
    const char *descr = (const char *)dt->bytes;
    if (strcmp(descr, "u1") || a->rank != 2 || a->data.kind != V_BYTES || a->fortran)
        return bad(k, "'%s' is a %d-d array of dtype '%s'%s; a 2-d uint8 array is expected", key,
                   a->rank, descr, a->fortran ? " in Fortran order" : "");
    int64_t rows = a->shape[0], cols = a->shape[1], have = N(k, a->data)->n;
    if ((cols && rows > have / cols) || rows * cols != have)
        return bad(k, "'%s' has shape (%lld, %lld) but %lld bytes of data", key, (long long)rows,
                   (long long)cols, (long long)have);
    kc_shape sh = kc_shape2(rows, cols);
    int rc = kc_array_alloc(out, KC_DT_U8, &sh, k->e);
    if (rc) return rc;
    if (have) memcpy(out->data, N(k, a->data)->bytes, (size_t)have);
    return KC_OK;
}

/* A list of ints or a 1-d integer array into labels[0 .. *n). */
static int batch_labels(pk *k, const char *key, val v, int64_t **labels, int64_t *n) {
    int64_t len = 0;
    int_arr ia = {0};
    node *l = N(k, v);
    if (v.kind == V_ARRAY) {
        if (!l->built || l->rank != 1 || l->data.kind != V_BYTES)
            return bad(k, "'%s' is an array that is not 1-d integers", key);
        const char *s = (const char *)N(k, l->dtype)->bytes;
        if ((s[0] != 'i' && s[0] != 'u') || !s[1] || !strchr("1248", s[1]) || s[2])
            return bad(k, "'%s' is an array of dtype '%s', not integers", key, s);
        int rc = elem_int_array(k, 0, l, &len, &ia);
        if (rc) return rc;
    } else if (v.kind == V_LIST) {
        len = l->n;
    } else {
        return bad(k, "'%s' is %s, not a list of ints", key, KIND_NAME[v.kind]);
    }
    int64_t *out = malloc((size_t)(len ? len : 1) * sizeof *out);
    if (!out) return bad(k, "out of memory for %lld labels", (long long)len);
    for (int64_t j = 0; j < len; j++) {
        val it = v.kind == V_ARRAY ? (val){.kind = V_INT, .i = int_arr_at(&ia, j)}
                 : l->is_items     ? l->items[j]
                                   : (val){.kind = V_INT, .i = l->ints[j]};
        if (it.kind != V_INT) {
            free(out);
            return bad(k, "'%s' item %lld is %s, not an int", key, (long long)j,
                       KIND_NAME[it.kind]);
        }
        out[j] = it.i;
    }
    *labels = out;
    *n = len;
    return KC_OK;
}

static int to_batch(pk *k, const char *data_key, const char *label_key, kc_array *data,
                    int64_t **labels, int64_t *nlabels) {
    if (k->result.kind != V_DICT)
        return bad(k, "the pickle holds %s, not a dict", KIND_NAME[k->result.kind]);
    const node *d = N(k, k->result);
    val dv = {0}, lv = {0};
    int rc = dict_need(k, d, data_key, &dv);
    if (!rc) rc = dict_need(k, d, label_key, &lv);
    if (!rc) rc = batch_data(k, data_key, dv, data);
    if (!rc) rc = batch_labels(k, label_key, lv, labels, nlabels);
    if (!rc && *nlabels != data->shape.d[0])
        rc = bad(k, "'%s' holds %lld labels for %lld rows of '%s'", label_key, (long long)*nlabels,
                 (long long)data->shape.d[0], data_key);
    return rc;
}

static void pk_free(pk *k) {
    for (int64_t i = 0; i < k->nn; i++) {
        free(k->nodes[i].items);
        free(k->nodes[i].ints);
        if (!k->nodes[i].borrowed) free(k->nodes[i].bytes);
    }
    free(k->nodes);
    free(k->stack);
    free(k->memo);
}

int kc_pickle_ragged(const unsigned char *p, size_t n, const char *name, kc_ragged *out,
                     kc_error *e) {
    kc_error local;
    memset(out, 0, sizeof *out);
    pk k = {.p = p, .n = n, .name = name ? name : "pickle", .e = e ? e : &local};
    int rc = run(&k);
    if (!rc) rc = to_ragged(&k, out);
    if (rc) kc_ragged_free(out);
    pk_free(&k);
    return rc;
}

int kc_pickle_batch(const unsigned char *p, size_t n, const char *name, const char *data_key,
                    const char *label_key, kc_array *data, int64_t **labels, int64_t *nlabels,
                    kc_error *e) {
    kc_error local;
    memset(data, 0, sizeof *data);
    *labels = NULL;
    *nlabels = 0;
    pk k = {.p = p, .n = n, .name = name ? name : "pickle", .e = e ? e : &local};
    int rc = run(&k);
    if (!rc) rc = to_batch(&k, data_key, label_key, data, labels, nlabels);
    if (rc) {
        kc_array_free(data);
        free(*labels);
        *labels = NULL;
        *nlabels = 0;
    }
    pk_free(&k);
    return rc;
}

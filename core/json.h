/* JSON (RFC 8259) as a tree, and a writer on a growable string buffer.
 *
 * The parser keeps object members in the order written (duplicates
 * included), keeps each number's original text beside its double so 64-bit
 * integers stay exact, decodes every string escape (\u escapes and surrogate pairs
 * included) to UTF-8, and remembers where every value started. Errors are
 * KC_ECONFIG with "line:column: message" (1-based, columns in characters).
 * Like Python's json module it also reads NaN, Infinity and -Infinity, so
 * files written by json.dumps read back. */
#ifndef KC_JSON_H
#define KC_JSON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Deeper nesting than this is rejected rather than risking the stack. */
#define KC_JSON_MAX_DEPTH 512

/* ---------------------------------------------------------------- strbuf */

/* A growable NUL-terminated string. Zero-initialise it ({0}); appends never
 * fail silently: after a failed allocation `failed` stays set and later
 * appends do nothing, so callers may check once at the end. */
typedef struct kc_strbuf {
    char *s;    /* NULL until the first append */
    size_t len; /* bytes, without the terminating NUL */
    size_t cap;
    int failed;
} kc_strbuf;

/* Each returns KC_OK, or KC_ERUNTIME when memory ran out. */
int kc_strbuf_append(kc_strbuf *b, const char *s, size_t n);
int kc_strbuf_puts(kc_strbuf *b, const char *s);
int kc_strbuf_putc(kc_strbuf *b, char c);
int kc_strbuf_printf(kc_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int kc_strbuf_vprintf(kc_strbuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* The text so far; "" when nothing was appended. */
const char *kc_strbuf_str(const kc_strbuf *b);
/* Hands the heap string to the caller (free() it) and resets b. Never NULL
 * unless memory ran out. */
char *kc_strbuf_take(kc_strbuf *b);
void kc_strbuf_free(kc_strbuf *b);

/* ------------------------------------------------------------------ tree */

typedef enum kc_json_kind {
    KC_JSON_MISSING = 0, /* what kc_json_kind() says of a NULL pointer */
    KC_JSON_NULL,
    KC_JSON_BOOL,
    KC_JSON_NUMBER,
    KC_JSON_STRING,
    KC_JSON_ARRAY,
    KC_JSON_OBJECT,
} kc_json_kind;

typedef struct kc_json kc_json;

/* Parses exactly one JSON value (surrounding whitespace and a leading UTF-8
 * byte order mark allowed). NULL on error, with e filled. */
kc_json *kc_json_parse(const char *text, size_t len, kc_error *e);
/* Reads and parses a file; errors read "path:line:column: message". */
kc_json *kc_json_parse_file(const char *path, kc_error *e);
void kc_json_free(kc_json *v);

/* Accessors accept NULL, so lookups chain:
 *   kc_json_num(kc_json_get(kc_json_get(root, "config"), "rate")) */
kc_json_kind kc_json_kind_of(const kc_json *v);
/* "an object", "a string", ... for messages. */
const char *kc_json_kind_name(kc_json_kind k);
/* Items of an array, members of an object, bytes of a string; 0 otherwise. */
size_t kc_json_len(const kc_json *v);
/* Object member by key; with duplicate keys the last one wins (as in
 * Python). NULL if absent or v is not an object. */
const kc_json *kc_json_get(const kc_json *obj, const char *key);
/* Array item i, or object member i's value; NULL when out of range. */
const kc_json *kc_json_at(const kc_json *v, size_t i);
/* Object member i's key (NUL-terminated; kc_json_key_len for keys holding
 * "\u0000"); NULL when out of range or v is not an object. */
const char *kc_json_key_at(const kc_json *obj, size_t i);
size_t kc_json_key_len(const kc_json *obj, size_t i);
/* The number's value; NaN when v is not a number. */
double kc_json_num(const kc_json *v);
/* The number's text as written ("1e3", "-0.50"); NULL when not a number. */
const char *kc_json_num_text(const kc_json *v);
/* Exact integer value: the text must be an integer that fits in int64, or a
 * fraction/exponent form whose value is integral and exactly representable
 * (1.0, 2e3). Returns KC_OK or KC_ECONFIG (nothing is written to e). */
int kc_json_int64(const kc_json *v, int64_t *out);
/* The string's UTF-8 bytes, NUL-terminated; NULL when not a string. */
const char *kc_json_str(const kc_json *v);
/* 1 for true, 0 for false or anything else. */
int kc_json_bool(const kc_json *v);
int kc_json_is_null(const kc_json *v);
/* Where the value starts in the parsed text (1-based); 0 for built values. */
int kc_json_line(const kc_json *v);
int kc_json_col(const kc_json *v);

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code
 * points beyond U+10FFFF), else 0. */
int kc_json_utf8_valid(const char *s, size_t n);

/* ------------------------------------------------------------- building */

/* Constructors return NULL only when memory runs out. */
kc_json *kc_json_new_null(void);
kc_json *kc_json_new_bool(int b);
kc_json *kc_json_new_num(double x);
kc_json *kc_json_new_int(int64_t x);
kc_json *kc_json_new_str(const char *s);
kc_json *kc_json_new_strn(const char *s, size_t n);
kc_json *kc_json_new_array(void);
kc_json *kc_json_new_object(void);
/* Appends item / adds a member (after any existing ones; keys are copied).
 * Ownership of item passes to the container, also on failure (it is freed).
 * Returns KC_OK, or KC_ERUNTIME when memory ran out or the container has the
 * wrong kind. */
int kc_json_push(kc_json *arr, kc_json *item);
int kc_json_put(kc_json *obj, const char *key, kc_json *item);

/* --------------------------------------------------------------- writing */

/* A JSON string literal with quotes: escapes '"', '\\' and control bytes;
 * other UTF-8 passes through, and bytes that are not valid UTF-8 become
 * U+FFFD so the output is always valid JSON. */
int kc_json_write_string(kc_strbuf *b, const char *s);
int kc_json_write_stringn(kc_strbuf *b, const char *s, size_t n);
/* A decimal that reads back to the same double / float: the shortest one for
 * normal numbers (at most 17 / 9 significant digits). NaN and infinities are
 * written as NaN, Infinity, -Infinity (as Python does). */
int kc_json_write_double(kc_strbuf *b, double x);
int kc_json_write_float(kc_strbuf *b, float x);
int kc_json_write_int(kc_strbuf *b, int64_t x);

/* Serializes a tree. indent < 0: compact ({"a":1,"b":[1,2]}); indent 0: one
 * line with Python's separators ({"a": 1, "b": [1, 2]}); indent > 0: one item
 * per line, indented that many spaces per level. Parsed numbers keep their
 * original text. */
int kc_json_write(kc_strbuf *b, const kc_json *v, int indent);

#endif

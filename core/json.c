#include "core/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct kc_json_member {
    char *key;
    size_t key_len;
    kc_json *val;
} kc_json_member;

struct kc_json {
    kc_json_kind kind;
    int line, col;
    int boolean;
    double num;
    char *text; /* string bytes, or the number as written */
    size_t len; /* string bytes, or count of items / members */
    size_t cap; /* allocated items / members */
    kc_json **items;
    kc_json_member *members;
};

/* ================================================================ strbuf */

static int strbuf_reserve(kc_strbuf *b, size_t extra) {
    if (b->failed) return KC_ERUNTIME;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return KC_ERUNTIME;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return KC_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->failed = 1;
        return KC_ERUNTIME;
    }
    b->s = s;
    b->cap = cap;
    return KC_OK;
}

int kc_strbuf_append(kc_strbuf *b, const char *s, size_t n) {
    if (strbuf_reserve(b, n)) return KC_ERUNTIME;
    if (n) memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return KC_OK;
}

int kc_strbuf_puts(kc_strbuf *b, const char *s) {
    return kc_strbuf_append(b, s, strlen(s));
}

int kc_strbuf_putc(kc_strbuf *b, char c) {
    return kc_strbuf_append(b, &c, 1);
}

int kc_strbuf_vprintf(kc_strbuf *b, const char *fmt, va_list ap) {
    if (b->failed) return KC_ERUNTIME;
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->failed = 1;
        return KC_ERUNTIME;
    }
    if ((size_t)n < sizeof small) return kc_strbuf_append(b, small, (size_t)n);
    if (strbuf_reserve(b, (size_t)n)) return KC_ERUNTIME;
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return KC_OK;
}

int kc_strbuf_printf(kc_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = kc_strbuf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

const char *kc_strbuf_str(const kc_strbuf *b) {
    return b->s ? b->s : "";
}

char *kc_strbuf_take(kc_strbuf *b) {
    if (!b->s) kc_strbuf_append(b, "", 0);
    char *s = b->failed ? NULL : b->s;
    if (!s) free(b->s);
    memset(b, 0, sizeof *b);
    return s;
}

void kc_strbuf_free(kc_strbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

/* ================================================================= UTF-8 */

/* Decodes one UTF-8 sequence; returns its length, or 0 when it is invalid
 * (truncated, overlong, a surrogate, or beyond U+10FFFF). */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, min = 0x80, c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, min = 0x800, c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

int kc_json_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t k = utf8_decode(u + i, n - i, &cp);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static size_t utf8_encode(unsigned cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ================================================================= nodes */

static kc_json *node_new(kc_json_kind kind) {
    kc_json *v = calloc(1, sizeof *v);
    if (v) v->kind = kind;
    return v;
}

void kc_json_free(kc_json *v) {
    if (!v) return;
    if (v->kind == KC_JSON_ARRAY)
        for (size_t i = 0; i < v->len; i++)
            kc_json_free(v->items[i]);
    if (v->kind == KC_JSON_OBJECT)
        for (size_t i = 0; i < v->len; i++) {
            free(v->members[i].key);
            kc_json_free(v->members[i].val);
        }
    free(v->items);
    free(v->members);
    free(v->text);
    free(v);
}

static int array_add(kc_json *arr, kc_json *item) {
    if (arr->len == arr->cap) {
        size_t cap = arr->cap ? arr->cap * 2 : 4;
        kc_json **items = realloc(arr->items, cap * sizeof *items);
        if (!items) return KC_ERUNTIME;
        arr->items = items;
        arr->cap = cap;
    }
    arr->items[arr->len++] = item;
    return KC_OK;
}

/* Takes ownership of key (heap, NUL-terminated at key_len) and item on success only. */
static int object_add(kc_json *obj, char *key, size_t key_len, kc_json *item) {
    if (obj->len == obj->cap) {
        size_t cap = obj->cap ? obj->cap * 2 : 4;
        kc_json_member *m = realloc(obj->members, cap * sizeof *m);
        if (!m) return KC_ERUNTIME;
        obj->members = m;
        obj->cap = cap;
    }
    obj->members[obj->len++] = (kc_json_member){key, key_len, item};
    return KC_OK;
}

/* ================================================================ parser */

typedef struct parser {
    const unsigned char *s;
    size_t n, pos;
    int line;
    size_t line_start;
    size_t col_pos; /* columns are counted lazily from here ... */
    int col;        /* ... which is at this column */
    int err_code;
    int err_line, err_col;
    char err_msg[512];
} parser;

/* Column (in characters) of byte offset pos on the current line. Values are
 * asked for in increasing order, so counting resumes where it stopped and a
 * long one-line document costs linear time. */
static int col_at(parser *p, size_t pos) {
    if (p->col_pos < p->line_start || p->col_pos > pos) {
        p->col_pos = p->line_start;
        p->col = 1;
    }
    for (size_t i = p->col_pos; i < pos && i < p->n; i++)
        if ((p->s[i] & 0xC0) != 0x80) p->col++;
    p->col_pos = pos;
    return p->col;
}

static kc_json *fail_at(parser *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static kc_json *fail_at(parser *p, size_t pos, const char *fmt, ...) {
    if (p->err_code) return NULL;
    p->err_code = KC_ECONFIG;
    p->err_line = p->line;
    p->err_col = col_at(p, pos);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err_msg, sizeof p->err_msg, fmt, ap);
    va_end(ap);
    return NULL;
}

static kc_json *fail_oom(parser *p) {
    if (!p->err_code) {
        p->err_code = KC_ERUNTIME;
        snprintf(p->err_msg, sizeof p->err_msg, "out of memory");
    }
    return NULL;
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c == ' ' || c == '\t') {
            p->pos++;
        } else if (c == '\n' || c == '\r') {
            p->pos++;
            if (c == '\r' && p->pos < p->n && p->s[p->pos] == '\n') p->pos++;
            p->line++;
            p->line_start = p->pos;
        } else {
            break;
        }
    }
}

/* Describes the byte at pos for "unexpected ..." messages. */
static const char *describe_at(const parser *p, size_t pos, char *buf, size_t n) {
    if (pos >= p->n) return "end of input";
    unsigned char c = p->s[pos];
    if (c >= 0x20 && c < 0x7F)
        snprintf(buf, n, "character '%c'", c);
    else
        snprintf(buf, n, "byte 0x%02X", c);
    return buf;
}

static kc_json *unexpected(parser *p, const char *wanted) {
    char what[32];
    return fail_at(p, p->pos, "unexpected %s, expected %s",
                   describe_at(p, p->pos, what, sizeof what), wanted);
}

static int lit(const parser *p, const char *word) {
    size_t n = strlen(word);
    return p->n - p->pos >= n && memcmp(p->s + p->pos, word, n) == 0;
}

static kc_json *stamp(parser *p, kc_json *v, int line, int col) {
    if (!v) return fail_oom(p);
    v->line = line;
    v->col = col;
    return v;
}

static int is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

static size_t skip_digits(const parser *p, size_t i) {
    while (i < p->n && is_digit(p->s[i]))
        i++;
    return i;
}

static kc_json *parse_number(parser *p) {
    size_t start = p->pos, i = p->pos;
    if (i < p->n && p->s[i] == '-') i++;
    if (i >= p->n || !is_digit(p->s[i]))
        return fail_at(p, i, "invalid number: expected a digit after '-'");
    if (p->s[i] == '0' && i + 1 < p->n && is_digit(p->s[i + 1]))
        return fail_at(p, start, "invalid number: leading zeros are not allowed");
    i = skip_digits(p, i);
    if (i < p->n && p->s[i] == '.') {
        if (i + 1 >= p->n || !is_digit(p->s[i + 1]))
            return fail_at(p, i + 1, "invalid number: expected a digit after '.'");
        i = skip_digits(p, i + 1);
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        i++;
        if (i < p->n && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->n || !is_digit(p->s[i]))
            return fail_at(p, i, "invalid number: expected a digit in the exponent");
        i = skip_digits(p, i);
    }
    kc_json *v = node_new(KC_JSON_NUMBER);
    char *text = malloc(i - start + 1);
    if (!v || !text) {
        free(v);
        free(text);
        return fail_oom(p);
    }
    memcpy(text, p->s + start, i - start);
    text[i - start] = '\0';
    v->text = text;
    v->len = i - start;
    /* Out-of-range magnitudes become +-inf or 0, as in Python. */
    v->num = strtod(text, NULL);
    p->pos = i;
    return v;
}

static int hex4(const unsigned char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0;
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

/* Decodes a \u escape of four hex digits (and its low half when it is a high surrogate) at p->pos,
 * which points at the backslash. */
static int parse_u_escape(parser *p, unsigned *cp) {
    size_t at = p->pos;
    unsigned hi, lo;
    if (p->n - at < 6 || !hex4(p->s + at + 2, &hi)) {
        fail_at(p, at, "invalid \\u escape: expected four hex digits");
        return 0;
    }
    p->pos += 6;
    if (hi >= 0xDC00 && hi <= 0xDFFF) {
        fail_at(p, at, "unpaired low surrogate \\u%04X in string", hi);
        return 0;
    }
    if (hi < 0xD800 || hi > 0xDBFF) {
        *cp = hi;
        return 1;
    }
    if (p->n - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
        !hex4(p->s + p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
        fail_at(p, at, "unpaired high surrogate \\u%04X in string", hi);
        return 0;
    }
    p->pos += 6;
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    return 1;
}

static int parse_escape(parser *p, char *out, size_t *olen) {
    size_t at = p->pos;
    if (at + 1 >= p->n) {
        fail_at(p, p->n, "unterminated string");
        return 0;
    }
    char c;
    switch (p->s[at + 1]) {
    case '"':
        c = '"';
        break;
    case '\\':
        c = '\\';
        break;
    case '/':
        c = '/';
        break;
    case 'b':
        c = '\b';
        break;
    case 'f':
        c = '\f';
        break;
    case 'n':
        c = '\n';
        break;
    case 'r':
        c = '\r';
        break;
    case 't':
        c = '\t';
        break;
    case 'u': {
        unsigned cp;
        if (!parse_u_escape(p, &cp)) return 0;
        *olen += utf8_encode(cp, out + *olen);
        return 1;
    }
    default: {
        char what[32];
        fail_at(p, at, "invalid escape '\\' followed by %s",
                describe_at(p, at + 1, what, sizeof what));
        return 0;
    }
    }
    out[(*olen)++] = c;
    p->pos += 2;
    return 1;
}

/* Scans to the closing quote (escapes only shrink, so the raw span bounds the
 * decoded size), then decodes. p->pos is at the opening quote. */
static char *parse_string_raw(parser *p, size_t *out_len) {
    size_t start = p->pos + 1, end = start;
    while (end < p->n && p->s[end] != '"')
        end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) {
        fail_at(p, p->pos, "unterminated string");
        return NULL;
    }
    char *out = malloc(end - start + 1);
    if (!out) {
        fail_oom(p);
        return NULL;
    }
    size_t olen = 0;
    p->pos = start;
    while (p->pos < end) {
        unsigned char c = p->s[p->pos];
        if (c == '\\') {
            if (!parse_escape(p, out, &olen)) break;
        } else if (c < 0x20) {
            fail_at(p, p->pos, "control character U+%04X in string must be escaped", c);
            break;
        } else if (c < 0x80) {
            out[olen++] = (char)c;
            p->pos++;
        } else {
            unsigned cp;
            size_t k = utf8_decode(p->s + p->pos, end - p->pos, &cp);
            if (!k) {
                fail_at(p, p->pos, "invalid UTF-8 byte 0x%02X in string", c);
                break;
            }
            memcpy(out + olen, p->s + p->pos, k);
            olen += k;
            p->pos += k;
        }
    }
    if (p->err_code) {
        free(out);
        return NULL;
    }
    out[olen] = '\0';
    p->pos = end + 1;
    *out_len = olen;
    return out;
}

static kc_json *parse_value(parser *p, int depth);

static kc_json *parse_array(parser *p, kc_json *arr, int depth) {
    p->pos++; /* '[' */
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') {
        p->pos++;
        return arr;
    }
    for (;;) {
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ']')
            return fail_at(p, p->pos, "trailing comma before ']'");
        kc_json *item = parse_value(p, depth + 1);
        if (!item) return NULL;
        if (array_add(arr, item)) {
            kc_json_free(item);
            return fail_oom(p);
        }
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
        } else if (p->pos < p->n && p->s[p->pos] == ']') {
            p->pos++;
            return arr;
        } else {
            return unexpected(p, "',' or ']' in array");
        }
    }
}

static kc_json *parse_member(parser *p, kc_json *obj, int depth) {
    if (p->pos >= p->n || p->s[p->pos] != '"') return unexpected(p, "a string key in object");
    size_t key_len;
    char *key = parse_string_raw(p, &key_len);
    if (!key) return NULL;
    skip_ws(p);
    if (p->pos >= p->n || p->s[p->pos] != ':') {
        free(key);
        return unexpected(p, "':' after object key");
    }
    p->pos++;
    skip_ws(p);
    kc_json *val = parse_value(p, depth + 1);
    if (!val || object_add(obj, key, key_len, val)) {
        free(key);
        kc_json_free(val);
        return val ? fail_oom(p) : NULL;
    }
    return obj;
}

static kc_json *parse_object(parser *p, kc_json *obj, int depth) {
    p->pos++; /* '{' */
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == '}') {
        p->pos++;
        return obj;
    }
    for (;;) {
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == '}')
            return fail_at(p, p->pos, "trailing comma before '}'");
        if (!parse_member(p, obj, depth)) return NULL;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
        } else if (p->pos < p->n && p->s[p->pos] == '}') {
            p->pos++;
            return obj;
        } else {
            return unexpected(p, "',' or '}' in object");
        }
    }
}

static kc_json *parse_container(parser *p, kc_json_kind kind, int depth, int line, int col) {
    if (depth >= KC_JSON_MAX_DEPTH)
        return fail_at(p, p->pos, "nesting deeper than %d levels", KC_JSON_MAX_DEPTH);
    kc_json *v = stamp(p, node_new(kind), line, col);
    if (!v) return NULL;
    kc_json *r = kind == KC_JSON_ARRAY ? parse_array(p, v, depth) : parse_object(p, v, depth);
    if (!r) kc_json_free(v);
    return r;
}

static kc_json *parse_literal(parser *p) {
    static const struct {
        const char *word;
        kc_json_kind kind;
        int boolean;
        double num;
    } lits[] = {
        {"null", KC_JSON_NULL, 0, 0},
        {"true", KC_JSON_BOOL, 1, 0},
        {"false", KC_JSON_BOOL, 0, 0},
        {"NaN", KC_JSON_NUMBER, 0, NAN},
        {"Infinity", KC_JSON_NUMBER, 0, INFINITY},
        {"-Infinity", KC_JSON_NUMBER, 0, -INFINITY},
    };
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        if (!lit(p, lits[i].word)) continue;
        kc_json *v = node_new(lits[i].kind);
        if (!v) return fail_oom(p);
        v->boolean = lits[i].boolean;
        v->num = lits[i].num;
        if (v->kind == KC_JSON_NUMBER) {
            v->len = strlen(lits[i].word);
            v->text = malloc(v->len + 1);
            if (!v->text) {
                free(v);
                return fail_oom(p);
            }
            memcpy(v->text, lits[i].word, v->len + 1);
        }
        p->pos += strlen(lits[i].word);
        return v;
    }
    return NULL;
}

static kc_json *parse_value(parser *p, int depth) {
    skip_ws(p);
    int line = p->line, col = col_at(p, p->pos);
    if (p->pos >= p->n) return unexpected(p, "a value");
    unsigned char c = p->s[p->pos];
    if (c == '{') return parse_container(p, KC_JSON_OBJECT, depth, line, col);
    if (c == '[') return parse_container(p, KC_JSON_ARRAY, depth, line, col);
    if (c == '"') {
        size_t len;
        char *s = parse_string_raw(p, &len);
        if (!s) return NULL;
        kc_json *v = node_new(KC_JSON_STRING);
        if (!v) {
            free(s);
            return fail_oom(p);
        }
        v->text = s;
        v->len = len;
        return stamp(p, v, line, col);
    }
    kc_json *v = parse_literal(p);
    if (v || p->err_code) return stamp(p, v, line, col);
    if (c == '-' || is_digit(c)) return stamp(p, parse_number(p), line, col);
    return unexpected(p, "a value");
}

static kc_json *parse(parser *p, const char *text, size_t len) {
    memset(p, 0, sizeof *p);
    p->s = (const unsigned char *)text;
    p->n = text ? len : 0;
    p->line = 1;
    p->col = 1;
    if (p->n >= 3 && memcmp(p->s, "\xEF\xBB\xBF", 3) == 0) p->pos = p->line_start = 3;
    kc_json *v = parse_value(p, 0);
    if (!v) return NULL;
    skip_ws(p);
    if (p->pos < p->n) {
        kc_json_free(v);
        char what[32];
        return fail_at(p, p->pos, "unexpected %s after the JSON value",
                       describe_at(p, p->pos, what, sizeof what));
    }
    return v;
}

kc_json *kc_json_parse(const char *text, size_t len, kc_error *e) {
    parser p;
    kc_json *v = parse(&p, text, len);
    if (v) return v;
    if (p.err_code == KC_ECONFIG)
        kc_fail(e, p.err_code, "%d:%d: %s", p.err_line, p.err_col, p.err_msg);
    else
        kc_fail(e, KC_ERUNTIME, "%s", p.err_msg);
    return NULL;
}

static char *read_file(const char *path, size_t *len, kc_error *e) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    kc_strbuf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        kc_strbuf_append(&b, chunk, got);
    int bad = ferror(f);
    fclose(f);
    if (bad || b.failed) {
        kc_fail(e, KC_ERUNTIME, "%s: %s", path, bad ? "read error" : "out of memory");
        kc_strbuf_free(&b);
        return NULL;
    }
    *len = b.len;
    return kc_strbuf_take(&b);
}

kc_json *kc_json_parse_file(const char *path, kc_error *e) {
    size_t len = 0;
    char *text = read_file(path, &len, e);
    if (!text) return NULL;
    parser p;
    kc_json *v = parse(&p, text, len);
    free(text);
    if (v) return v;
    if (p.err_code == KC_ECONFIG)
        kc_fail(e, p.err_code, "%s:%d:%d: %s", path, p.err_line, p.err_col, p.err_msg);
    else
        kc_fail(e, KC_ERUNTIME, "%s: %s", path, p.err_msg);
    return NULL;
}

/* ============================================================= accessors */

kc_json_kind kc_json_kind_of(const kc_json *v) {
    return v ? v->kind : KC_JSON_MISSING;
}

const char *kc_json_kind_name(kc_json_kind k) {
    switch (k) {
    case KC_JSON_NULL:
        return "null";
    case KC_JSON_BOOL:
        return "a boolean";
    case KC_JSON_NUMBER:
        return "a number";
    case KC_JSON_STRING:
        return "a string";
    case KC_JSON_ARRAY:
        return "an array";
    case KC_JSON_OBJECT:
        return "an object";
    default:
        return "nothing";
    }
}

size_t kc_json_len(const kc_json *v) {
    if (!v) return 0;
    switch (v->kind) {
    case KC_JSON_STRING:
    case KC_JSON_ARRAY:
    case KC_JSON_OBJECT:
        return v->len;
    default:
        return 0;
    }
}

const kc_json *kc_json_get(const kc_json *obj, const char *key) {
    if (!obj || obj->kind != KC_JSON_OBJECT || !key) return NULL;
    size_t n = strlen(key);
    for (size_t i = obj->len; i-- > 0;) {
        const kc_json_member *m = &obj->members[i];
        if (m->key_len == n && memcmp(m->key, key, n) == 0) return m->val;
    }
    return NULL;
}

const kc_json *kc_json_at(const kc_json *v, size_t i) {
    if (!v || i >= v->len) return NULL;
    if (v->kind == KC_JSON_ARRAY) return v->items[i];
    if (v->kind == KC_JSON_OBJECT) return v->members[i].val;
    return NULL;
}

const char *kc_json_key_at(const kc_json *obj, size_t i) {
    if (!obj || obj->kind != KC_JSON_OBJECT || i >= obj->len) return NULL;
    return obj->members[i].key;
}

size_t kc_json_key_len(const kc_json *obj, size_t i) {
    if (!obj || obj->kind != KC_JSON_OBJECT || i >= obj->len) return 0;
    return obj->members[i].key_len;
}

double kc_json_num(const kc_json *v) {
    return v && v->kind == KC_JSON_NUMBER ? v->num : NAN;
}

const char *kc_json_num_text(const kc_json *v) {
    return v && v->kind == KC_JSON_NUMBER ? v->text : NULL;
}

static int text_is_integer(const char *t) {
    if (*t == '-') t++;
    if (!*t) return 0;
    for (; *t; t++)
        if (!is_digit((unsigned char)*t)) return 0;
    return 1;
}

int kc_json_int64(const kc_json *v, int64_t *out) {
    if (!v || v->kind != KC_JSON_NUMBER || !v->text) return KC_ECONFIG;
    if (text_is_integer(v->text)) {
        errno = 0;
        long long x = strtoll(v->text, NULL, 10);
        if (errno == ERANGE) return KC_ECONFIG;
        *out = (int64_t)x;
        return KC_OK;
    }
    /* Beyond 2^53 the decimal text may have been rounded on the way in. */
    double x = v->num;
    if (!isfinite(x) || x != floor(x) || fabs(x) >= 9007199254740992.0) return KC_ECONFIG;
    *out = (int64_t)x;
    return KC_OK;
}

const char *kc_json_str(const kc_json *v) {
    return v && v->kind == KC_JSON_STRING ? v->text : NULL;
}

int kc_json_bool(const kc_json *v) {
    return v && v->kind == KC_JSON_BOOL && v->boolean;
}

int kc_json_is_null(const kc_json *v) {
    return v && v->kind == KC_JSON_NULL;
}

int kc_json_line(const kc_json *v) {
    return v ? v->line : 0;
}

int kc_json_col(const kc_json *v) {
    return v ? v->col : 0;
}

/* ============================================================== building */

kc_json *kc_json_new_null(void) {
    return node_new(KC_JSON_NULL);
}

kc_json *kc_json_new_bool(int b) {
    kc_json *v = node_new(KC_JSON_BOOL);
    if (v) v->boolean = b != 0;
    return v;
}

static kc_json *num_from_text(double x, const kc_strbuf *b) {
    kc_json *v = node_new(KC_JSON_NUMBER);
    char *text = b->failed ? NULL : malloc(b->len + 1);
    if (!v || !text) {
        free(v);
        free(text);
        return NULL;
    }
    memcpy(text, kc_strbuf_str(b), b->len + 1);
    v->num = x;
    v->text = text;
    v->len = b->len;
    return v;
}

kc_json *kc_json_new_num(double x) {
    kc_strbuf b = {0};
    kc_json_write_double(&b, x);
    kc_json *v = num_from_text(x, &b);
    kc_strbuf_free(&b);
    return v;
}

kc_json *kc_json_new_int(int64_t x) {
    kc_strbuf b = {0};
    kc_json_write_int(&b, x);
    kc_json *v = num_from_text((double)x, &b);
    kc_strbuf_free(&b);
    return v;
}

kc_json *kc_json_new_strn(const char *s, size_t n) {
    kc_json *v = node_new(KC_JSON_STRING);
    char *text = malloc(n + 1);
    if (!v || !text) {
        free(v);
        free(text);
        return NULL;
    }
    if (n) memcpy(text, s, n);
    text[n] = '\0';
    v->text = text;
    v->len = n;
    return v;
}

kc_json *kc_json_new_str(const char *s) {
    return kc_json_new_strn(s, strlen(s));
}

kc_json *kc_json_new_array(void) {
    return node_new(KC_JSON_ARRAY);
}

kc_json *kc_json_new_object(void) {
    return node_new(KC_JSON_OBJECT);
}

int kc_json_push(kc_json *arr, kc_json *item) {
    if (!item) return KC_ERUNTIME;
    if (!arr || arr->kind != KC_JSON_ARRAY || array_add(arr, item)) {
        kc_json_free(item);
        return KC_ERUNTIME;
    }
    return KC_OK;
}

int kc_json_put(kc_json *obj, const char *key, kc_json *item) {
    if (!item) return KC_ERUNTIME;
    size_t n = key ? strlen(key) : 0;
    char *k = key ? malloc(n + 1) : NULL;
    if (!obj || obj->kind != KC_JSON_OBJECT || !k) goto fail;
    memcpy(k, key, n + 1);
    if (object_add(obj, k, n, item)) goto fail;
    return KC_OK;
fail:
    free(k);
    kc_json_free(item);
    return KC_ERUNTIME;
}

/* =============================================================== writing */

int kc_json_write_stringn(kc_strbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    kc_strbuf_putc(b, '"');
    size_t run = 0; /* start of the pending stretch of bytes that need no escaping */
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        const char *esc = NULL;
        char hex[8];
        size_t step = 1;
        if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c < 0x20) {
            switch (c) {
            case '\b':
                esc = "\\b";
                break;
            case '\f':
                esc = "\\f";
                break;
            case '\n':
                esc = "\\n";
                break;
            case '\r':
                esc = "\\r";
                break;
            case '\t':
                esc = "\\t";
                break;
            default:
                snprintf(hex, sizeof hex, "\\u%04x", c);
                esc = hex;
            }
        } else if (c >= 0x80) {
            unsigned cp;
            step = utf8_decode(u + i, n - i, &cp);
            if (!step) {
                esc = "\xEF\xBF\xBD";
                step = 1;
            }
        }
        if (esc) {
            kc_strbuf_append(b, s + run, i - run);
            kc_strbuf_puts(b, esc);
            run = i + step;
        }
        i += step;
    }
    kc_strbuf_append(b, s + run, n - run);
    return kc_strbuf_putc(b, '"');
}

int kc_json_write_string(kc_strbuf *b, const char *s) {
    return kc_json_write_stringn(b, s, strlen(s));
}

static const char *non_finite(double x) {
    if (isnan(x)) return "NaN";
    if (isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
    return NULL;
}

/* Starting at 15 significant digits (6 for float) finds the shortest form of
 * every normal number: %g drops trailing zeros, and any shorter decimal that
 * reads back correctly is what those digits round to. */
int kc_json_write_double(kc_strbuf *b, double x) {
    if (non_finite(x)) return kc_strbuf_puts(b, non_finite(x));
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    return kc_strbuf_puts(b, buf);
}

int kc_json_write_float(kc_strbuf *b, float x) {
    if (non_finite(x)) return kc_strbuf_puts(b, non_finite(x));
    char buf[40];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return kc_strbuf_puts(b, buf);
}

int kc_json_write_int(kc_strbuf *b, int64_t x) {
    return kc_strbuf_printf(b, "%lld", (long long)x);
}

static void write_newline(kc_strbuf *b, int indent, int level) {
    kc_strbuf_putc(b, '\n');
    for (int i = 0; i < indent * level; i++)
        kc_strbuf_putc(b, ' ');
}

static void write_value(kc_strbuf *b, const kc_json *v, int indent, int level);

/* Items (or members) of a non-empty container, with Python's separators. */
static void write_items(kc_strbuf *b, const kc_json *v, int indent, int level) {
    for (size_t i = 0; i < v->len; i++) {
        if (i) kc_strbuf_puts(b, indent == 0 ? ", " : ",");
        if (indent > 0) write_newline(b, indent, level + 1);
        const kc_json *item = v->kind == KC_JSON_ARRAY ? v->items[i] : v->members[i].val;
        if (v->kind == KC_JSON_OBJECT) {
            kc_json_write_stringn(b, v->members[i].key, v->members[i].key_len);
            kc_strbuf_puts(b, indent < 0 ? ":" : ": ");
        }
        write_value(b, item, indent, level + 1);
    }
    if (indent > 0) write_newline(b, indent, level);
}

static void write_value(kc_strbuf *b, const kc_json *v, int indent, int level) {
    switch (v->kind) {
    case KC_JSON_BOOL:
        kc_strbuf_puts(b, v->boolean ? "true" : "false");
        break;
    case KC_JSON_NUMBER:
        if (v->text)
            kc_strbuf_append(b, v->text, v->len);
        else
            kc_json_write_double(b, v->num);
        break;
    case KC_JSON_STRING:
        kc_json_write_stringn(b, v->text, v->len);
        break;
    case KC_JSON_ARRAY:
    case KC_JSON_OBJECT: {
        int obj = v->kind == KC_JSON_OBJECT;
        kc_strbuf_putc(b, obj ? '{' : '[');
        if (v->len) write_items(b, v, indent, level);
        kc_strbuf_putc(b, obj ? '}' : ']');
        break;
    }
    default:
        kc_strbuf_puts(b, "null");
        break;
    }
}

int kc_json_write(kc_strbuf *b, const kc_json *v, int indent) {
    if (!v) return kc_strbuf_puts(b, "null");
    write_value(b, v, indent, 0);
    return b->failed ? KC_ERUNTIME : KC_OK;
}

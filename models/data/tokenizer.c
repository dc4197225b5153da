/* Keras's Tokenizer and TextVectorization: splitting, fitting a vocabulary,
 * mapping texts to ids, and the vocabulary's JSON form. */
#include "models/data/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kc_text_opts_default(kc_text_opts *o, kc_text_mode mode) {
    memset(o, 0, sizeof *o);
    o->mode = mode;
    snprintf(o->filters, sizeof o->filters, "%s", KC_TOKENIZER_FILTERS);
    o->lower = 1;
    snprintf(o->split, sizeof o->split, " ");
    o->standardize = KC_STD_LOWER_AND_STRIP;
}

/* ---------------------------------------------------------------- UTF-8 --- */

/* Decodes one code point at s (n > 0 bytes left); returns its length, 0 when invalid. */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (!len || c > 0xF4 || (size_t)len > n) return 0;
    uint32_t v = c & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < least[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int64_t kc_utf8_check(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_next(p + i, n - i, &cp);
        if (!l) return (int64_t)i;
        i += (size_t)l;
    }
    return -1;
}

static int utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Python's str.lower() for the scripts the header names. */
static uint32_t lower_cp(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c >= 0x100 && c <= 0x137 && c != 0x130) return c | 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return c & 1 ? c + 1 : c;
    if (c >= 0x14A && c <= 0x177) return c | 1;
    if (c == 0x178) return 0xFF;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

/* ------------------------------------------------------------- tokens --- */

void kc_tokens_free(kc_tokens *t) {
    free(t->off);
    free(t->len);
    free(t->buf);
    memset(t, 0, sizeof *t);
}

static int buf_reserve(kc_tokens *t, size_t more, kc_error *e) {
    if (t->buf_len + more <= t->buf_cap) return KC_OK;
    size_t cap = t->buf_cap ? t->buf_cap : 256;
    while (cap < t->buf_len + more) {
        if (cap > SIZE_MAX / 2) return kc_fail(e, KC_ERUNTIME, "a text too large for memory");
        cap *= 2;
    }
    char *p = realloc(t->buf, cap);
    if (!p) return kc_fail(e, KC_ERUNTIME, "out of memory splitting a text");
    t->buf = p;
    t->buf_cap = cap;
    return KC_OK;
}

static int tok_push(kc_tokens *t, size_t off, size_t len, kc_error *e) {
    if (t->n == t->cap) {
        int64_t cap = t->cap ? t->cap * 2 : 64;
        size_t *o = realloc(t->off, (size_t)cap * sizeof *o);
        if (o) t->off = o;
        size_t *l = realloc(t->len, (size_t)cap * sizeof *l);
        if (l) t->len = l;
        if (!o || !l) return kc_fail(e, KC_ERUNTIME, "out of memory splitting a text");
        t->cap = cap;
    }
    t->off[t->n] = off;
    t->len[t->n++] = len;
    return KC_OK;
}

static int in_filters(const char *filters, uint32_t cp) {
    const unsigned char *f = (const unsigned char *)filters;
    size_t n = strlen(filters);
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int l = utf8_next(f + i, n - i, &c);
        if (!l) return 0;
        if (c == cp) return 1;
        i += (size_t)l;
    }
    return 0;
}

static int is_tv_punct(uint32_t c) {
    return c < 0x80 && c && strchr("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'", (int)c);
}

/* The standardized text into t->buf (code point by code point). */
static int standardize(const kc_text_opts *o, const char *text, kc_tokens *t, kc_error *e) {
    const unsigned char *p = (const unsigned char *)text;
    size_t n = strlen(text), slen = strlen(o->split);
    int tok = o->mode == KC_TEXT_TOKENIZER;
    int lower = tok ? o->lower : o->standardize <= KC_STD_LOWER;
    int strip =
        !tok && (o->standardize == KC_STD_LOWER_AND_STRIP || o->standardize == KC_STD_STRIP);
    t->buf_len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_next(p + i, n - i, &cp);
        if (!l) return kc_fail(e, KC_ERUNTIME, "invalid UTF-8 at byte %zu of a text", i);
        i += (size_t)l;
        if (buf_reserve(t, 8 + slen, e)) return e->code;
        if (lower && tok && cp == 0x130) { /* İ -> i + combining dot above */
            t->buf_len += (size_t)utf8_put(t->buf + t->buf_len, 'i');
            cp = 0x307;
        } else if (lower) {
            cp = tok ? lower_cp(cp) : (cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        }
        if (strip && is_tv_punct(cp)) continue;
        if (tok && !o->char_level && in_filters(o->filters, cp)) {
            memcpy(t->buf + t->buf_len, o->split, slen);
            t->buf_len += slen;
            continue;
        }
        t->buf_len += (size_t)utf8_put(t->buf + t->buf_len, cp);
    }
    return KC_OK;
}

static int split_chars(kc_tokens *t, kc_error *e) {
    const unsigned char *p = (const unsigned char *)t->buf;
    for (size_t i = 0; i < t->buf_len;) {
        uint32_t cp;
        int l = utf8_next(p + i, t->buf_len - i, &cp);
        if (!l) l = 1;
        if (tok_push(t, i, (size_t)l, e)) return e->code;
        i += (size_t)l;
    }
    return KC_OK;
}

/* Python's str.split(sep) without the empty pieces. */
static int split_on(kc_tokens *t, const char *sep, kc_error *e) {
    size_t slen = strlen(sep), start = 0, i = 0;
    while (i + slen <= t->buf_len) {
        if (!memcmp(t->buf + i, sep, slen)) {
            if (i > start && tok_push(t, start, i - start, e)) return e->code;
            i += slen;
            start = i;
        } else {
            i++;
        }
    }
    if (t->buf_len > start && tok_push(t, start, t->buf_len - start, e)) return e->code;
    return KC_OK;
}

static int is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int split_whitespace(kc_tokens *t, kc_error *e) {
    size_t i = 0;
    while (i < t->buf_len) {
        while (i < t->buf_len && is_ascii_space(t->buf[i]))
            i++;
        size_t start = i;
        while (i < t->buf_len && !is_ascii_space(t->buf[i]))
            i++;
        if (i > start && tok_push(t, start, i - start, e)) return e->code;
    }
    return KC_OK;
}

int kc_text_split(const kc_text_opts *o, const char *text, kc_tokens *t, kc_error *e) {
    t->n = 0;
    if (standardize(o, text, t, e)) return e->code;
    if (o->mode == KC_TEXT_TOKENIZER)
        return o->char_level ? split_chars(t, e) : split_on(t, o->split, e);
    return o->split_character ? split_chars(t, e) : split_whitespace(t, e);
}

/* -------------------------------------------------------- vocabulary --- */

void kc_vocab_free(kc_vocab *v) {
    for (int64_t i = 0; i < v->n; i++)
        free(v->tok[i]);
    free(v->tok);
    free(v->counts);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* The slot holding tok, or the empty one where it would go. */
static size_t find_slot(const kc_vocab *v, const char *tok, size_t len) {
    size_t mask = v->nslots - 1, i = (size_t)hash_bytes(tok, len) & mask;
    for (;; i = (i + 1) & mask) {
        int64_t k = v->slots[i];
        if (k < 0) return i;
        if (strlen(v->tok[k]) == len && !memcmp(v->tok[k], tok, len)) return i;
    }
}

static int rehash(kc_vocab *v, kc_error *e) {
    size_t n = v->nslots ? v->nslots * 2 : 64;
    int64_t *s = malloc(n * sizeof *s);
    if (!s) return kc_fail(e, KC_ERUNTIME, "out of memory for a vocabulary");
    for (size_t i = 0; i < n; i++)
        s[i] = -1;
    free(v->slots);
    v->slots = s;
    v->nslots = n;
    for (int64_t k = 0; k < v->n; k++)
        v->slots[find_slot(v, v->tok[k], strlen(v->tok[k]))] = k;
    return KC_OK;
}

int64_t kc_vocab_id(const kc_vocab *v, const char *tok, size_t len) {
    if (!v->nslots) return -1;
    int64_t k = v->slots[find_slot(v, tok, len)];
    return k < 0 ? -1 : v->first + k;
}

int kc_vocab_push(kc_vocab *v, const char *tok, size_t len, int64_t count, kc_error *e) {
    if ((size_t)(v->n + 1) * 2 > v->nslots && rehash(v, e)) return e->code;
    if ((v->n & (v->n - 1)) == 0) { /* grow at powers of two */
        size_t cap = v->n ? (size_t)v->n * 2 : 1;
        char **t = realloc(v->tok, cap * sizeof *t);
        if (t) v->tok = t;
        int64_t *c = realloc(v->counts, cap * sizeof *c);
        if (c) v->counts = c;
        if (!t || !c) return kc_fail(e, KC_ERUNTIME, "out of memory for a vocabulary");
    }
    char *s = malloc(len + 1);
    if (!s) return kc_fail(e, KC_ERUNTIME, "out of memory for a vocabulary");
    memcpy(s, tok, len);
    s[len] = 0;
    v->tok[v->n] = s;
    v->counts[v->n] = count;
    v->slots[find_slot(v, tok, len)] = v->n; /* a duplicate: the later one wins */
    v->n++;
    return KC_OK;
}

/* Counting: tokens in first-seen order with their counts. */
typedef struct counter {
    kc_vocab seen; /* first = 0: the id is the index */
} counter;

static int count_text(counter *c, const kc_tokens *t, kc_error *e) {
    for (int64_t i = 0; i < t->n; i++) {
        const char *s = t->buf + t->off[i];
        int64_t k = kc_vocab_id(&c->seen, s, t->len[i]);
        if (k >= 0)
            c->seen.counts[k]++;
        else if (kc_vocab_push(&c->seen, s, t->len[i], 1, e))
            return e->code;
    }
    return KC_OK;
}

static const kc_vocab *sort_ctx;
/* Tokenizer: count descending; equal counts keep first-seen order. */
static int by_count_stable(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int64_t cx = sort_ctx->counts[x], cy = sort_ctx->counts[y];
    if (cx != cy) return cx > cy ? -1 : 1;
    return x < y ? -1 : x > y;
}
/* TextVectorization: count descending, then the token's bytes descending. */
static int by_count_token(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int64_t cx = sort_ctx->counts[x], cy = sort_ctx->counts[y];
    if (cx != cy) return cx > cy ? -1 : 1;
    const char *s = sort_ctx->tok[x], *t = sort_ctx->tok[y];
    size_t ls = strlen(s), lt = strlen(t), m = ls < lt ? ls : lt;
    int r = memcmp(s, t, m);
    if (r) return r > 0 ? -1 : 1;
    return ls == lt ? 0 : ls > lt ? -1 : 1;
}

static int build_vocab(const kc_text_opts *o, const kc_vocab *seen, kc_vocab *v, kc_error *e) {
    int tok = o->mode == KC_TEXT_TOKENIZER;
    int64_t *order = malloc((size_t)(seen->n ? seen->n : 1) * sizeof *order);
    if (!order) return kc_fail(e, KC_ERUNTIME, "out of memory for a vocabulary");
    int64_t m = 0;
    for (int64_t i = 0; i < seen->n; i++)
        if (tok || (strcmp(seen->tok[i], "") && strcmp(seen->tok[i], "[UNK]"))) order[m++] = i;
    sort_ctx = seen;
    if (m > 1) qsort(order, (size_t)m, sizeof *order, tok ? by_count_stable : by_count_token);
    v->first = tok ? 1 : 0;
    int rc = KC_OK;
    if (tok && o->has_oov) rc = kc_vocab_push(v, o->oov_token, strlen(o->oov_token), 0, e);
    if (!tok && !(rc = kc_vocab_push(v, "", 0, 0, e))) rc = kc_vocab_push(v, "[UNK]", 5, 0, e);
    if (!tok && o->max_tokens > 0 && m > o->max_tokens - 2) m = o->max_tokens - 2;
    for (int64_t i = 0; !rc && i < m; i++) {
        const char *s = seen->tok[order[i]];
        rc = kc_vocab_push(v, s, strlen(s), seen->counts[order[i]], e);
    }
    free(order);
    return rc;
}

int kc_text_fit(const kc_text_opts *o, const char *const *texts, int64_t n, kc_vocab *v,
                kc_error *e) {
    memset(v, 0, sizeof *v);
    counter c = {{0}};
    kc_tokens t = {0};
    int rc = KC_OK;
    for (int64_t i = 0; !rc && i < n; i++)
        if (!(rc = kc_text_split(o, texts[i], &t, e))) rc = count_text(&c, &t, e);
    if (!rc) rc = build_vocab(o, &c.seen, v, e);
    if (rc) kc_vocab_free(v);
    kc_tokens_free(&t);
    kc_vocab_free(&c.seen);
    return rc;
}

/* The id a token maps to, or -1 to drop it. */
static int64_t token_id(const kc_text_opts *o, const kc_vocab *v, int64_t oov, const char *s,
                        size_t len) {
    int64_t id = kc_vocab_id(v, s, len);
    if (o->mode == KC_TEXT_VECTORIZATION) return id < 0 ? 1 : id;
    if (id >= 0 && o->num_words > 0 && id >= o->num_words) return oov;
    return id >= 0 ? id : oov;
}

static int ragged_append(kc_ragged *r, int64_t *used, int64_t *cap, int64_t id, kc_error *e) {
    if (*used == *cap) {
        int64_t c = *cap ? *cap * 2 : 256;
        int32_t *p = realloc(r->tok, (size_t)c * sizeof *p);
        if (!p) return kc_fail(e, KC_ERUNTIME, "out of memory for token ids");
        r->tok = p;
        *cap = c;
    }
    if (id > INT32_MAX) return kc_fail(e, KC_ERUNTIME, "token id %lld too large", (long long)id);
    r->tok[(*used)++] = (int32_t)id;
    return KC_OK;
}

int kc_text_to_sequences(const kc_text_opts *o, const kc_vocab *v, const char *const *texts,
                         int64_t n, kc_ragged *out, kc_error *e) {
    memset(out, 0, sizeof *out);
    out->off = calloc((size_t)n + 1, sizeof *out->off);
    if (!out->off) return kc_fail(e, KC_ERUNTIME, "out of memory for token ids");
    int64_t oov = o->mode == KC_TEXT_TOKENIZER && o->has_oov
                      ? kc_vocab_id(v, o->oov_token, strlen(o->oov_token))
                      : -1;
    kc_tokens t = {0};
    int64_t cap = 0, used = 0;
    int rc = KC_OK;
    for (int64_t i = 0; !rc && i < n; i++) {
        rc = kc_text_split(o, texts[i], &t, e);
        for (int64_t k = 0; !rc && k < t.n; k++) {
            int64_t id = token_id(o, v, oov, t.buf + t.off[k], t.len[k]);
            if (id >= 0) rc = ragged_append(out, &used, &cap, id, e);
        }
        out->off[i + 1] = used;
    }
    out->n = n;
    kc_tokens_free(&t);
    if (rc) kc_ragged_free(out);
    return rc;
}

/* ------------------------------------------------------------- JSON --- */

int kc_vocab_to_json(const kc_text_opts *o, const kc_vocab *v, kc_strbuf *b) {
    int tok = o->mode == KC_TEXT_TOKENIZER;
    kc_strbuf_printf(b, "{\"class\": \"%s\", \"first_index\": %lld, \"vocabulary\": [",
                     tok ? "Tokenizer" : "TextVectorization", (long long)v->first);
    for (int64_t i = 0; i < v->n; i++) {
        if (i) kc_strbuf_puts(b, ", ");
        kc_json_write_string(b, v->tok[i]);
    }
    kc_strbuf_puts(b, "], \"word_index\": {");
    int first = 1;
    for (int64_t i = 0; i < v->n; i++) {
        if (kc_vocab_id(v, v->tok[i], strlen(v->tok[i])) != v->first + i) continue;
        if (!first) kc_strbuf_puts(b, ", ");
        first = 0;
        kc_json_write_string(b, v->tok[i]);
        kc_strbuf_printf(b, ": %lld", (long long)(v->first + i));
    }
    kc_strbuf_puts(b, "}, \"word_counts\": {");
    first = 1;
    for (int64_t i = 0; i < v->n; i++) {
        if (!v->counts[i]) continue;
        if (!first) kc_strbuf_puts(b, ", ");
        first = 0;
        kc_json_write_string(b, v->tok[i]);
        kc_strbuf_printf(b, ": %lld", (long long)v->counts[i]);
    }
    return kc_strbuf_puts(b, "}}");
}

int kc_vocab_from_json(const char *text, size_t len, kc_text_mode mode, const char *what,
                       kc_vocab *v, kc_error *e) {
    memset(v, 0, sizeof *v);
    kc_json *j = kc_json_parse(text, len, e);
    if (!j) return kc_error_prefix(e, "%s", what);
    const char *want = mode == KC_TEXT_TOKENIZER ? "Tokenizer" : "TextVectorization";
    const kc_json *cls = kc_json_get(j, "class"), *first = kc_json_get(j, "first_index"),
                  *voc = kc_json_get(j, "vocabulary");
    int64_t f = -1;
    int rc = KC_OK;
    if (!cls || !kc_json_str(cls) || strcmp(kc_json_str(cls), want))
        rc = kc_fail(e, KC_ECONFIG, "%s: the vocabulary is not a %s's (the text settings changed?)",
                     what, want);
    else if (!first || kc_json_int64(first, &f) || f != (mode == KC_TEXT_TOKENIZER ? 1 : 0) ||
             !voc || kc_json_kind_of(voc) != KC_JSON_ARRAY)
        rc = kc_fail(e, KC_ERUNTIME, "%s: the vocabulary is malformed", what);
    v->first = f;
    for (size_t i = 0; !rc && i < kc_json_len(voc); i++) {
        const kc_json *s = kc_json_at(voc, i);
        if (kc_json_kind_of(s) != KC_JSON_STRING)
            rc = kc_fail(e, KC_ERUNTIME, "%s: vocabulary entry %zu is not a string", what, i);
        else
            rc = kc_vocab_push(v, kc_json_str(s), strlen(kc_json_str(s)), 0, e);
    }
    kc_json_free(j);
    if (rc) kc_vocab_free(v);
    return rc;
}

/* --------------------------------------------------------------- md5 --- */

static uint32_t rol(uint32_t x, int c) {
    return x << c | x >> (32 - c);
}

static void md5_block(uint32_t h[4], const unsigned char *p) {
    static const uint32_t K[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391};
    static const int R[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};
    uint32_t w[16], a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g, r = i / 16;
        if (r == 0)
            f = (b & c) | (~b & d), g = i;
        else if (r == 1)
            f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
        else if (r == 2)
            f = b ^ c ^ d, g = (3 * i + 5) % 16;
        else
            f = c ^ (b | ~d), g = (7 * i) % 16;
        uint32_t t = d;
        d = c;
        c = b;
        b = b + rol(a + f + K[i] + w[g], R[r * 4 + i % 4]);
        a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d;
}

void kc_md5(const void *s, size_t n, unsigned char out[16]) {
    uint32_t h[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    const unsigned char *p = s;
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        md5_block(h, p + i);
    unsigned char tail[128] = {0};
    size_t rest = n - i, tl = rest + 9 <= 64 ? 64 : 128;
    memcpy(tail, p + i, rest);
    tail[rest] = 0x80;
    uint64_t bits = (uint64_t)n * 8;
    for (int k = 0; k < 8; k++)
        tail[tl - 8 + k] = (unsigned char)(bits >> (8 * k));
    md5_block(h, tail);
    if (tl == 128) md5_block(h, tail + 64);
    for (int k = 0; k < 16; k++)
        out[k] = (unsigned char)(h[k / 4] >> (8 * (k % 4)));
}

/* The 128-bit digest read as a big-endian integer, mod m. */
static int64_t md5_mod(const unsigned char d[16], int64_t m) {
    unsigned __int128 r = 0;
    for (int k = 0; k < 16; k++)
        r = ((r << 8) | d[k]) % (unsigned __int128)m;
    return (int64_t)r;
}

int kc_hashing_trick_md5(const kc_text_opts *o, const char *text, int64_t n, int32_t **ids,
                         int64_t *count, kc_error *e) {
    *ids = NULL;
    *count = 0;
    if (n < 2 || n > INT32_MAX)
        return kc_fail(e, KC_ECONFIG, "hashing: n must be in 2..%d", INT32_MAX);
    kc_text_opts w = *o;
    w.mode = KC_TEXT_TOKENIZER;
    w.char_level = 0;
    kc_tokens t = {0};
    int rc = kc_text_split(&w, text, &t, e);
    if (!rc && !(*ids = malloc((size_t)(t.n ? t.n : 1) * sizeof **ids)))
        rc = kc_fail(e, KC_ERUNTIME, "out of memory hashing a text");
    for (int64_t i = 0; !rc && i < t.n; i++) {
        unsigned char d[16];
        kc_md5(t.buf + t.off[i], t.len[i], d);
        (*ids)[i] = (int32_t)(md5_mod(d, n - 1) + 1);
    }
    if (!rc) *count = t.n;
    kc_tokens_free(&t);
    return rc;
}

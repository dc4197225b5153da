/* IDX, NPY and NPZ readers. Every format is parsed from a byte source (a
 * plain file, a gzip file, or a stored / deflated zip entry) that knows an
 * upper bound on how many bytes it can deliver, so a header is checked against
 * the data really present before anything large is allocated, and data is
 * read (or inflated) straight into the destination array. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "models/data/data.h"

enum { SRC_FILE, SRC_GZ, SRC_INFLATE };

/* A deflate stream expands at most about 1032:1; used to bound what a gzip
 * file or zip entry can hold. */
#define KC_MAX_INFLATE_RATIO 1032u
#define IN_CHUNK (64u * 1024u)

typedef struct src {
    int kind;
    char name[1200]; /* the path, plus the entry for zip members; starts every message */
    FILE *f;
    gzFile gz;
    z_stream zs;
    int zs_live, z_end;
    unsigned char *in;
    uint64_t in_left;   /* FILE: bytes left in the range; INFLATE: compressed bytes not yet read */
    uint64_t pos;       /* bytes delivered */
    uint64_t max_total; /* upper bound on the bytes the source can deliver */
    int exact;          /* max_total is the exact length */
    int crc_check;
    uint32_t crc, crc_expect;
} src;

static int src_fail(const src *s, kc_error *e, const char *what) {
    return kc_fail(e, KC_ERUNTIME, "%s: %s", s->name, what);
}

static void src_close(src *s) {
    if (s->f) fclose(s->f);
    if (s->gz) gzclose(s->gz);
    if (s->zs_live) inflateEnd(&s->zs);
    free(s->in);
    s->f = NULL;
    s->gz = NULL;
    s->zs_live = 0;
    s->in = NULL;
}

/* Opens a regular file and returns its size. */
static int open_regular(const char *path, FILE **f, uint64_t *size, kc_error *e) {
    *f = fopen(path, "rb");
    if (!*f) return kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
    struct stat st = {0};
    if (fstat(fileno(*f), &st) != 0 || !S_ISREG(st.st_mode)) {
        int dir = S_ISDIR(st.st_mode);
        fclose(*f);
        *f = NULL;
        return kc_fail(e, KC_ERUNTIME, "%s: %s", path,
                       dir ? "is a directory, expected a file" : "is not a regular file");
    }
    *size = (uint64_t)st.st_size;
    return KC_OK;
}

static int src_open_file(src *s, const char *path, kc_error *e) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", path);
    uint64_t size = 0;
    int rc = open_regular(path, &s->f, &size, e);
    if (rc) return rc;
    s->kind = SRC_FILE;
    s->in_left = s->max_total = size;
    s->exact = 1;
    return KC_OK;
}

/* A plain file, or a gzip file when it starts with the gzip magic. */
static int src_open_auto(src *s, const char *path, kc_error *e) {
    int rc = src_open_file(s, path, e);
    if (rc) return rc;
    unsigned char m[2] = {0, 0};
    size_t got = fread(m, 1, 2, s->f);
    if (got == 2 && m[0] == 0x1f && m[1] == 0x8b) {
        uint64_t size = s->max_total;
        fclose(s->f);
        s->f = NULL;
        s->gz = gzopen(path, "rb");
        if (!s->gz) return kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
        gzbuffer(s->gz, 256u * 1024u);
        s->kind = SRC_GZ;
        s->max_total = size * KC_MAX_INFLATE_RATIO + 1024;
        s->exact = 0;
        return KC_OK;
    }
    if (fseeko(s->f, 0, SEEK_SET) != 0) {
        src_close(s);
        return kc_fail(e, KC_ERUNTIME, "%s: cannot seek: %s", path, strerror(errno));
    }
    return KC_OK;
}

static int64_t read_file(src *s, unsigned char *p, size_t n, kc_error *e) {
    size_t want = n < s->in_left ? n : (size_t)s->in_left;
    size_t got = want ? fread(p, 1, want, s->f) : 0;
    if (got < want && ferror(s->f)) {
        kc_fail(e, KC_ERUNTIME, "%s: read error: %s", s->name, strerror(errno));
        return -1;
    }
    s->in_left -= got;
    return (int64_t)got;
}

static int64_t read_gz(src *s, unsigned char *p, size_t n, kc_error *e) {
    size_t done = 0;
    while (done < n) {
        unsigned chunk = (unsigned)((n - done) < (1u << 30) ? (n - done) : (1u << 30));
        int r = gzread(s->gz, p + done, chunk);
        int zerr = Z_OK;
        const char *msg = gzerror(s->gz, &zerr);
        if (r < 0 || (zerr != Z_OK && zerr != Z_STREAM_END)) {
            kc_fail(e, KC_ERUNTIME, "%s: corrupt or truncated gzip data (zlib: %s)", s->name,
                    msg && *msg ? msg : "read error");
            return -1;
        }
        done += (size_t)r;
        if ((unsigned)r < chunk) break;
    }
    return (int64_t)done;
}

static int inflate_refill(src *s, kc_error *e) {
    size_t want = s->in_left < IN_CHUNK ? (size_t)s->in_left : IN_CHUNK;
    size_t got = want ? fread(s->in, 1, want, s->f) : 0;
    if (got == 0) {
        src_fail(s, e, "truncated archive: compressed data ends early");
        return -1;
    }
    s->in_left -= got;
    s->zs.next_in = s->in;
    s->zs.avail_in = (uInt)got;
    return 0;
}

static int64_t read_inflate(src *s, unsigned char *p, size_t n, kc_error *e) {
    size_t done = 0;
    while (done < n && !s->z_end) {
        uInt chunk = (uInt)((n - done) < (1u << 30) ? (n - done) : (1u << 30));
        s->zs.next_out = p + done;
        s->zs.avail_out = chunk;
        while (s->zs.avail_out > 0 && !s->z_end) {
            if (s->zs.avail_in == 0 && inflate_refill(s, e) != 0) return -1;
            int ret = inflate(&s->zs, Z_NO_FLUSH);
            if (ret == Z_STREAM_END) {
                s->z_end = 1;
            } else if (ret != Z_OK) {
                kc_fail(e, KC_ERUNTIME, "%s: corrupt deflate data (zlib: %s)", s->name,
                        s->zs.msg ? s->zs.msg : zError(ret));
                return -1;
            }
        }
        done += chunk - s->zs.avail_out;
    }
    return (int64_t)done;
}

/* Reads up to n bytes; fewer only at the end of the data. -1 on error. */
static int64_t src_read(src *s, void *buf, size_t n, kc_error *e) {
    /* a zip entry delivers no more than its directory entry declares */
    if (s->exact && n > s->max_total - s->pos) n = (size_t)(s->max_total - s->pos);
    int64_t got = s->kind == SRC_FILE ? read_file(s, buf, n, e)
                  : s->kind == SRC_GZ ? read_gz(s, buf, n, e)
                                      : read_inflate(s, buf, n, e);
    if (got <= 0) return got;
    if (s->crc_check) {
        const unsigned char *p = buf;
        for (int64_t off = 0; off < got;) {
            uInt c = (uInt)((got - off) < (1 << 30) ? (got - off) : (1 << 30));
            s->crc = (uint32_t)crc32(s->crc, p + off, c);
            off += c;
        }
    }
    s->pos += (uint64_t)got;
    return got;
}

static int src_read_exact(src *s, void *buf, size_t n, const char *what, kc_error *e) {
    int64_t got = src_read(s, buf, n, e);
    if (got < 0) return KC_ERUNTIME;
    if ((size_t)got < n)
        return kc_fail(e, KC_ERUNTIME, "%s: truncated: %s needs %zu bytes, only %lld present",
                       s->name, what, n, (long long)got);
    return KC_OK;
}

/* Bytes the source can still deliver, at most. */
static uint64_t src_room(const src *s) {
    return s->max_total - s->pos;
}

/* After the array: nothing may follow, and a zip entry's CRC must match. */
static int src_finish(src *s, kc_error *e) {
    if (s->exact && s->pos < s->max_total)
        return kc_fail(e, KC_ERUNTIME,
                       "%s: %llu bytes of unexpected data after the array (the header's shape "
                       "does not match the data length)",
                       s->name, (unsigned long long)(s->max_total - s->pos));
    if (s->kind == SRC_INFLATE && !s->z_end) {
        unsigned char extra;
        int64_t got = read_inflate(s, &extra, 1, e);
        if (got < 0) return KC_ERUNTIME;
        if (got > 0)
            return kc_fail(e, KC_ERUNTIME,
                           "%s: corrupt zip: the entry inflates to more than the %llu bytes its "
                           "directory entry declares",
                           s->name, (unsigned long long)s->max_total);
    }
    if (!s->exact) {
        unsigned char extra;
        int64_t got = src_read(s, &extra, 1, e);
        if (got < 0) return KC_ERUNTIME;
        if (got > 0)
            return src_fail(s, e,
                            "unexpected data after the array (the header's shape does not "
                            "match the data length)");
    }
    if (s->crc_check && s->crc != s->crc_expect)
        return src_fail(s, e, "CRC mismatch: the archive is corrupt");
    return KC_OK;
}

/* ---- element conversion ---- */

typedef struct elem {
    char kind; /* 'b' bool, 'u' unsigned, 'i' signed, 'f' float */
    int size;  /* bytes */
    int big;   /* big-endian */
} elem;

static int host_big_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 0;
}

static uint64_t load_uint(const unsigned char *p, int size, int big) {
    uint64_t u = 0;
    for (int i = 0; i < size; i++)
        u |= (uint64_t)p[big ? i : size - 1 - i] << (8 * (size - 1 - i));
    return u;
}

static float elem_to_float(const unsigned char *p, elem t) {
    uint64_t u = load_uint(p, t.size, t.big);
    switch (t.kind) {
    case 'b':
        return u != 0 ? 1.0f : 0.0f;
    case 'u':
        return (float)u;
    case 'i':
        if (t.size == 8) {
            int64_t v;
            memcpy(&v, &u, 8);
            return (float)v;
        } else {
            /* sign-extend without implementation-defined shifts */
            uint64_t m = 1ull << (8 * t.size - 1);
            return (float)((int64_t)(u ^ m) - (int64_t)m);
        }
    default:
        if (t.size == 4) {
            uint32_t w = (uint32_t)u;
            float f;
            memcpy(&f, &w, 4);
            return f;
        } else {
            double d;
            memcpy(&d, &u, 8);
            return (float)d;
        }
    }
}

static uint64_t sat_mul(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* Bytes the file stores per sample (saturating). */
static uint64_t row_bytes(const kc_shape *shape, elem t) {
    uint64_t n = (uint64_t)t.size;
    for (int i = 1; i < shape->rank; i++)
        n = sat_mul(n, (uint64_t)shape->d[i]);
    return n;
}

static kc_dtype out_dtype(elem t) {
    return t.kind == 'u' && t.size == 1 ? KC_DT_U8 : KC_DT_F32;
}

/* Checks the header's shape against what the source can hold and what
 * memory can address; *numel gets its element count. */
static int check_shape(src *s, elem t, const kc_shape *shape, uint64_t *numel, kc_error *e) {
    uint64_t room = src_room(s), need = (uint64_t)t.size;
    for (int i = 0; i < shape->rank; i++)
        need = sat_mul(need, (uint64_t)shape->d[i]);
    char buf[256];
    kc_shape_str(shape, 0, buf, sizeof buf);
    if (need > room) {
        uint64_t per = row_bytes(shape, t);
        if (s->exact)
            return kc_fail(
                e, KC_ERUNTIME,
                "%s: truncated or wrong shape: the header says %lld samples but the "
                "file holds %llu (shape %s needs %s%llu bytes of data, the file has "
                "%llu after the header)",
                s->name, (long long)shape->d[0], (unsigned long long)(per ? room / per : 0), buf,
                need == UINT64_MAX ? "more than " : "",
                (unsigned long long)(need == UINT64_MAX ? room : need), (unsigned long long)room);
        return kc_fail(e, KC_ERUNTIME,
                       "%s: corrupt header: shape %s is larger than the compressed file can hold",
                       s->name, buf);
    }
    /* a zero dim empties the array, but the others must still be addressable */
    size_t osize = kc_dtype_size(out_dtype(t)), bytes;
    if (!kc_shape_bytes(shape, osize > (size_t)t.size ? osize : (size_t)t.size, &bytes))
        return kc_fail(e, KC_ERUNTIME,
                       "%s: corrupt header: shape %s has more elements than memory can address",
                       s->name, buf);
    *numel = (uint64_t)kc_shape_numel(shape);
    return KC_OK;
}

/* The data ended before the header's shape was filled. */
static int short_data(const src *s, elem t, const kc_shape *shape, uint64_t got, kc_error *e) {
    char buf[256];
    uint64_t per = row_bytes(shape, t);
    return kc_fail(e, KC_ERUNTIME,
                   "%s: truncated: the header says %lld samples but the file holds %llu "
                   "(shape %s, %llu bytes of data)",
                   s->name, (long long)shape->d[0], (unsigned long long)(per ? got / per : 0),
                   kc_shape_str(shape, 0, buf, sizeof buf), (unsigned long long)got);
}

/* Room for the bytes up to `end` of a buffer that holds at most `total`. */
static int reserve(kc_array *out, size_t *cap, size_t end, size_t total) {
    if (end <= *cap) return 1;
    size_t want = *cap > total / 2 ? total : *cap * 2;
    if (want < end) want = end;
    void *p = realloc(out->data, want);
    if (!p) return 0;
    out->data = p;
    *cap = want;
    return 1;
}

/* The first allocation for a source whose length is only bounded: a header
 * claiming more than the data holds costs no more than the data. */
#define GROW_FIRST (1u << 20)

/* Reads numel elements of type t into a new array of the header's shape (u8
 * stays bytes, the rest become float32), converting in small chunks so no
 * second full-size buffer exists. A source of exact length was checked
 * against the header, so its array is allocated at once; a compressed one
 * grows its array as the data arrives. */
static int read_array(src *s, elem t, const kc_shape *shape, uint64_t numel, kc_array *out,
                      kc_error *e) {
    out->dtype = out_dtype(t);
    out->shape = *shape;
    size_t osize = kc_dtype_size(out->dtype), total = (size_t)numel * osize;
    size_t cap = s->kind == SRC_FILE || total < GROW_FIRST ? total : GROW_FIRST;
    if (!(out->data = malloc(cap ? cap : 1))) return src_fail(s, e, "out of memory");
    int direct = (t.kind == 'u' && t.size == 1) ||
                 (t.kind == 'f' && t.size == 4 && t.big == host_big_endian());
    enum { CHUNK = 16384 };
    unsigned char raw[CHUNK];
    size_t per = direct ? (4u << 20) / osize : CHUNK / (size_t)t.size;
    for (uint64_t i = 0; i < numel;) {
        size_t n = numel - i < per ? (size_t)(numel - i) : per;
        if (!reserve(out, &cap, (size_t)(i + n) * osize, total))
            return src_fail(s, e, "out of memory");
        unsigned char *dst = (unsigned char *)out->data + (size_t)i * osize;
        int64_t got = src_read(s, direct ? dst : raw, n * (size_t)t.size, e);
        if (got < 0) return KC_ERUNTIME;
        if (!direct)
            for (size_t j = 0; j < (size_t)got / (size_t)t.size; j++)
                ((float *)dst)[j] = elem_to_float(raw + j * (size_t)t.size, t);
        if ((size_t)got < n * (size_t)t.size)
            return short_data(s, t, shape, i * (uint64_t)t.size + (uint64_t)got, e);
        i += n;
    }
    return KC_OK;
}

/* ---- IDX ---- */

static int idx_elem(unsigned char code, elem *t) {
    switch (code) {
    case 0x08:
        *t = (elem){'u', 1, 1};
        return 1;
    case 0x09:
        *t = (elem){'i', 1, 1};
        return 1;
    case 0x0B:
        *t = (elem){'i', 2, 1};
        return 1;
    case 0x0C:
        *t = (elem){'i', 4, 1};
        return 1;
    case 0x0D:
        *t = (elem){'f', 4, 1};
        return 1;
    case 0x0E:
        *t = (elem){'f', 8, 1};
        return 1;
    default:
        return 0;
    }
}

static int idx_read(src *s, kc_array *out, kc_error *e) {
    unsigned char m[4];
    int rc = src_read_exact(s, m, 4, "the IDX magic", e);
    if (rc) return rc;
    elem t;
    if (m[0] != 0 || m[1] != 0 || !idx_elem(m[2], &t))
        return kc_fail(e, KC_ERUNTIME,
                       "%s: bad IDX magic %02x %02x %02x %02x (expected 00 00 then a type "
                       "08/09/0B/0C/0D/0E)",
                       s->name, m[0], m[1], m[2], m[3]);
    if (m[3] < 1 || m[3] > KC_MAX_RANK)
        return kc_fail(e, KC_ERUNTIME, "%s: IDX rank %d is outside 1..%d", s->name, m[3],
                       KC_MAX_RANK);
    kc_shape shape = {.rank = m[3]};
    for (int i = 0; i < shape.rank; i++) {
        unsigned char d[4];
        rc = src_read_exact(s, d, 4, "the IDX dimensions", e);
        if (rc) return rc;
        shape.d[i] = (int64_t)load_uint(d, 4, 1);
    }
    uint64_t numel;
    rc = check_shape(s, t, &shape, &numel, e);
    if (!rc) rc = read_array(s, t, &shape, numel, out, e);
    if (!rc) rc = src_finish(s, e);
    return rc;
}

/* ---- NPY ---- */

typedef struct npy_header {
    char descr[32];
    int has_descr, has_fortran, has_shape;
    int fortran;
    kc_shape shape;
} npy_header;

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int eat(cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes, into buf. */
static int parse_str(cursor *c, char *buf, size_t n) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t len = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || len + 1 >= n) return 0;
        buf[len++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    buf[len] = 0;
    return 1;
}

static int parse_word(cursor *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return 0;
    c->p += n;
    return 1;
}

/* A non-negative integer, optionally with Python 2's L suffix. */
static int parse_dim(cursor *c, int64_t *v) {
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
    int64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (x > (INT64_MAX - 9) / 10) return 0;
        x = x * 10 + (*c->p++ - '0');
    }
    if (c->p < c->end && *c->p == 'L') c->p++;
    *v = x;
    return 1;
}

/* "(3, 4)", "(3,)" or "()". Returns 0 on a syntax error, -1 when the rank is too high. */
static int parse_shape(cursor *c, kc_shape *s) {
    if (!eat(c, '(')) return 0;
    s->rank = 0;
    if (eat(c, ')')) return 1;
    for (;;) {
        int64_t v;
        if (!parse_dim(c, &v)) return 0;
        if (s->rank == KC_MAX_RANK) return -1;
        s->d[s->rank++] = v;
        int comma = eat(c, ',');
        if (eat(c, ')')) return 1;
        if (!comma) return 0;
    }
}

static int npy_bad_header(const src *s, kc_error *e, const char *why) {
    return kc_fail(e, KC_ERUNTIME, "%s: malformed .npy header: %s", s->name, why);
}

static int parse_header_value(const src *s, cursor *c, const char *key, npy_header *h,
                              kc_error *e) {
    if (!strcmp(key, "descr")) {
        skip_ws(c);
        if (c->p < c->end && *c->p == '[')
            return kc_fail(e, KC_ERUNTIME,
                           "%s: structured (record) dtypes are not supported; save a plain "
                           "numeric array",
                           s->name);
        if (!parse_str(c, h->descr, sizeof h->descr))
            return npy_bad_header(s, e, "'descr' is not a dtype string");
        h->has_descr = 1;
    } else if (!strcmp(key, "fortran_order")) {
        if (parse_word(c, "True"))
            h->fortran = 1;
        else if (parse_word(c, "False"))
            h->fortran = 0;
        else
            return npy_bad_header(s, e, "'fortran_order' is not True or False");
        h->has_fortran = 1;
    } else if (!strcmp(key, "shape")) {
        int r = parse_shape(c, &h->shape);
        if (r < 0)
            return kc_fail(e, KC_ERUNTIME, "%s: array rank exceeds the supported %d", s->name,
                           KC_MAX_RANK);
        if (!r) return npy_bad_header(s, e, "'shape' is not a tuple of integers");
        h->has_shape = 1;
    } else {
        return npy_bad_header(s, e, "unexpected key (expected descr, fortran_order, shape)");
    }
    return KC_OK;
}

static int parse_npy_header(const src *s, const char *text, size_t len, npy_header *h,
                            kc_error *e) {
    memset(h, 0, sizeof *h);
    cursor c = {text, text + len};
    if (!eat(&c, '{')) return npy_bad_header(s, e, "no '{'");
    while (!eat(&c, '}')) {
        char key[32];
        if (!parse_str(&c, key, sizeof key)) return npy_bad_header(s, e, "expected a quoted key");
        if (!eat(&c, ':')) return npy_bad_header(s, e, "expected ':' after a key");
        int rc = parse_header_value(s, &c, key, h, e);
        if (rc) return rc;
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) return npy_bad_header(s, e, "expected ',' or '}'");
            break;
        }
    }
    if (!h->has_descr || !h->has_fortran || !h->has_shape)
        return npy_bad_header(s, e, "descr, fortran_order and shape are all required");
    return KC_OK;
}

static int npy_elem(const src *s, const char *descr, elem *t, kc_error *e) {
    const char *d = descr;
    int big = host_big_endian();
    if (*d == '<' || *d == '>' || *d == '|' || *d == '=') {
        if (*d == '<') big = 0;
        if (*d == '>') big = 1;
        d++;
    }
    char kind = *d;
    char *end = NULL;
    long size = *d ? strtol(d + 1, &end, 10) : 0;
    int ok =
        end && !*end && d[1] >= '0' && d[1] <= '9' &&
        ((kind == 'b' && size == 1) ||
         ((kind == 'u' || kind == 'i') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
         (kind == 'f' && (size == 4 || size == 8)));
    if (!ok) {
        if (kind == 'O')
            return kc_fail(e, KC_ERUNTIME,
                           "%s: object arrays (Python pickles) cannot be read; save a numeric "
                           "array",
                           s->name);
        return kc_fail(e, KC_ERUNTIME,
                       "%s: dtype '%s' is not supported (supported: |u1 |b1 |i1 <i2 <i4 <i8 <u2 "
                       "<u4 <u8 <f4 <f8, either byte order)",
                       s->name, descr);
    }
    *t = (elem){kind, (int)size, big};
    return KC_OK;
}

/* Column-major order reads the same as row-major when at most one dimension exceeds 1. */
static int fortran_is_c_order(const kc_shape *s) {
    int big = 0;
    for (int i = 0; i < s->rank; i++)
        big += s->d[i] > 1;
    return big <= 1;
}

static int npy_read_header(src *s, npy_header *h, kc_error *e) {
    unsigned char pre[12];
    int rc = src_read_exact(s, pre, 8, "the .npy magic", e);
    if (rc) return rc;
    if (memcmp(pre, "\x93NUMPY", 6) != 0) return src_fail(s, e, "bad .npy magic");
    int major = pre[6], minor = pre[7];
    size_t hlen_bytes = major == 1 ? 2 : (major == 2 || major == 3) ? 4 : 0;
    if (!hlen_bytes)
        return kc_fail(e, KC_ERUNTIME, "%s: .npy format version %d.%d is not supported", s->name,
                       major, minor);
    rc = src_read_exact(s, pre + 8, hlen_bytes, "the .npy header length", e);
    if (rc) return rc;
    uint64_t hlen = load_uint(pre + 8, (int)hlen_bytes, 0);
    if (hlen > (1u << 20) || hlen > src_room(s))
        return kc_fail(e, KC_ERUNTIME, "%s: truncated or corrupt: header length %llu is too large",
                       s->name, (unsigned long long)hlen);
    char *text = malloc((size_t)hlen + 1);
    if (!text) return src_fail(s, e, "out of memory");
    rc = src_read_exact(s, text, (size_t)hlen, "the .npy header", e);
    if (!rc) {
        text[hlen] = 0;
        rc = parse_npy_header(s, text, (size_t)hlen, h, e);
    }
    free(text);
    return rc;
}

static int npy_read(src *s, kc_array *out, kc_error *e) {
    npy_header h;
    int rc = npy_read_header(s, &h, e);
    if (rc) return rc;
    elem t = {0, 1, 0};
    rc = npy_elem(s, h.descr, &t, e);
    if (rc) return rc;
    if (h.fortran && !fortran_is_c_order(&h.shape))
        return src_fail(s, e,
                        "fortran_order is True (column-major data) and is not supported; save "
                        "with np.save(path, np.ascontiguousarray(a))");
    if (h.shape.rank == 0)
        return src_fail(s, e, "holds a 0-dimensional scalar; an array of samples is needed");
    uint64_t numel;
    rc = check_shape(s, t, &h.shape, &numel, e);
    if (!rc) rc = read_array(s, t, &h.shape, numel, out, e);
    if (!rc) rc = src_finish(s, e);
    return rc;
}

/* ---- NPZ (zip) ---- */

static uint32_t le16(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t le32(const unsigned char *p) {
    return le16(p) | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct zip_dir {
    unsigned char *cd; /* the central directory */
    uint32_t size, entries;
    uint64_t end; /* where the central directory starts: entry data lies below */
} zip_dir;

typedef struct zip_entry {
    uint32_t method, flags, crc, csize, usize, local;
    const unsigned char *name;
    uint32_t name_len;
} zip_entry;

static int zip_fail(const char *path, kc_error *e, const char *what) {
    return kc_fail(e, KC_ERUNTIME, "%s: %s", path, what);
}

static int read_at(FILE *f, uint64_t off, void *buf, size_t n) {
    return fseeko(f, (off_t)off, SEEK_SET) == 0 && fread(buf, 1, n, f) == n;
}

/* Finds the end-of-central-directory record and reads the directory. */
static int zip_read_dir(FILE *f, uint64_t fsize, const char *path, zip_dir *z, kc_error *e) {
    memset(z, 0, sizeof *z);
    size_t tail = fsize < 22 + 65535 ? (size_t)fsize : 22 + 65535;
    unsigned char *buf = malloc(tail ? tail : 1);
    if (!buf) return zip_fail(path, e, "out of memory");
    if (!read_at(f, fsize - tail, buf, tail)) {
        free(buf);
        return zip_fail(path, e, "cannot read the zip directory");
    }
    long at = -1;
    for (long i = (long)tail - 22; i >= 0; i--)
        if (!memcmp(buf + i, "PK\5\6", 4) && (size_t)i + 22 + le16(buf + i + 20) <= tail) {
            at = i;
            break;
        }
    if (at < 0) {
        free(buf);
        return zip_fail(path, e,
                        "truncated or not a zip archive: no end-of-central-directory record");
    }
    const unsigned char *r = buf + at;
    int zip64 = (at >= 20 && !memcmp(r - 20, "PK\6\7", 4)) || le16(r + 8) == 0xFFFF ||
                le16(r + 10) == 0xFFFF || le32(r + 12) == 0xFFFFFFFF || le32(r + 16) == 0xFFFFFFFF;
    int multi = le16(r + 4) != 0 || le16(r + 6) != 0 || le16(r + 8) != le16(r + 10);
    z->entries = le16(r + 10);
    z->size = le32(r + 12);
    z->end = le32(r + 16);
    uint64_t eocd = fsize - tail + (uint64_t)at;
    free(buf);
    if (zip64)
        return zip_fail(
            path, e, "ZIP64 archives are not supported (re-save the arrays in a zip under 4 GB)");
    if (multi) return zip_fail(path, e, "multi-part zip archives are not supported");
    if (z->end + z->size > eocd)
        return zip_fail(path, e,
                        "corrupt or truncated zip: central directory lies outside the file");
    z->cd = malloc(z->size ? z->size : 1);
    if (!z->cd) return zip_fail(path, e, "out of memory");
    if (!read_at(f, z->end, z->cd, z->size)) {
        free(z->cd);
        z->cd = NULL;
        return zip_fail(path, e, "cannot read the zip central directory");
    }
    return KC_OK;
}

/* Decodes the entry at *off and advances it. */
static int zip_next(const zip_dir *z, uint32_t *off, zip_entry *ent, const char *path,
                    kc_error *e) {
    const unsigned char *p = z->cd + *off;
    if ((uint64_t)*off + 46 > z->size || memcmp(p, "PK\1\2", 4) != 0)
        return zip_fail(path, e, "corrupt zip: bad central directory entry");
    ent->flags = le16(p + 8);
    ent->method = le16(p + 10);
    ent->crc = le32(p + 16);
    ent->csize = le32(p + 20);
    ent->usize = le32(p + 24);
    ent->name_len = le16(p + 28);
    uint64_t total = 46ull + ent->name_len + le16(p + 30) + le16(p + 32);
    ent->local = le32(p + 42);
    ent->name = p + 46;
    if (*off + total > z->size)
        return zip_fail(path, e, "corrupt zip: central directory entry overruns");
    if (ent->csize == 0xFFFFFFFF || ent->usize == 0xFFFFFFFF || ent->local == 0xFFFFFFFF)
        return zip_fail(
            path, e, "ZIP64 archives are not supported (re-save the arrays in a zip under 4 GB)");
    *off += (uint32_t)total;
    return KC_OK;
}

static int is_npy_name(const zip_entry *z) {
    return z->name_len > 4 && !memcmp(z->name + z->name_len - 4, ".npy", 4);
}

static int name_matches(const zip_entry *z, const char *key) {
    size_t k = strlen(key);
    int has_ext = k > 4 && !strcmp(key + k - 4, ".npy");
    size_t want = has_ext ? k : k + 4;
    return z->name_len == want && !memcmp(z->name, key, k) && (has_ext || is_npy_name(z));
}

/* "a, b, c" from the archive's array names, for messages. */
static void list_keys(const zip_dir *z, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    uint32_t off = 0;
    for (uint32_t i = 0; i < z->entries; i++) {
        zip_entry ent;
        if (zip_next(z, &off, &ent, "", NULL) != KC_OK) break;
        if (!is_npy_name(&ent)) continue;
        int w = snprintf(buf + used, n - used, "%s%.*s", used ? ", " : "", (int)ent.name_len - 4,
                         (const char *)ent.name);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
}

static int zip_find(const zip_dir *z, const char *path, const char *key, zip_entry *found,
                    kc_error *e) {
    uint32_t off = 0, npy = 0;
    int hit = 0;
    for (uint32_t i = 0; i < z->entries; i++) {
        zip_entry ent;
        int rc = zip_next(z, &off, &ent, path, e);
        if (rc) return rc;
        npy += (uint32_t)is_npy_name(&ent);
        if (!hit && (key ? name_matches(&ent, key) : is_npy_name(&ent))) {
            *found = ent;
            hit = 1;
        }
    }
    char keys[600];
    list_keys(z, keys, sizeof keys);
    if (!npy) return zip_fail(path, e, "the archive holds no .npy arrays");
    if (!key && npy > 1)
        return kc_fail(e, KC_ECONFIG, "%s: the archive holds %u arrays (%s); choose one with a key",
                       path, npy, keys);
    if (!hit)
        return kc_fail(e, KC_ECONFIG, "%s: no array '%s' in the archive (it holds: %s)", path, key,
                       keys);
    return KC_OK;
}

/* Sets up s to deliver the entry's uncompressed bytes. */
static int zip_open_entry(src *s, const zip_dir *z, const zip_entry *ent, uint64_t fsize,
                          kc_error *e) {
    if (ent->flags & 1) return src_fail(s, e, "the entry is encrypted");
    unsigned char lh[30];
    if (!read_at(s->f, ent->local, lh, 30) || memcmp(lh, "PK\3\4", 4) != 0)
        return src_fail(s, e, "corrupt zip: bad local header");
    uint64_t data = (uint64_t)ent->local + 30 + le16(lh + 26) + le16(lh + 28);
    if (data + ent->csize > z->end || data + ent->csize > fsize)
        return src_fail(s, e, "corrupt or truncated zip: entry data lies outside the file");
    if (fseeko(s->f, (off_t)data, SEEK_SET) != 0) return src_fail(s, e, "cannot seek");
    s->max_total = ent->usize;
    s->exact = 1;
    s->crc_check = 1;
    s->crc_expect = ent->crc;
    s->crc = (uint32_t)crc32(0, Z_NULL, 0);
    if (ent->method == 0) {
        if (ent->csize != ent->usize)
            return src_fail(s, e, "corrupt zip: stored entry with differing sizes");
        s->kind = SRC_FILE;
        s->in_left = ent->usize;
        return KC_OK;
    }
    if (ent->method != 8)
        return kc_fail(e, KC_ERUNTIME,
                       "%s: compression method %u is not supported (only stored and deflate)",
                       s->name, ent->method);
    if ((uint64_t)ent->usize > (uint64_t)ent->csize * KC_MAX_INFLATE_RATIO + 1024)
        return src_fail(s, e, "corrupt zip: impossible compression ratio");
    s->kind = SRC_INFLATE;
    s->in_left = ent->csize;
    s->in = malloc(IN_CHUNK);
    if (!s->in) return src_fail(s, e, "out of memory");
    if (inflateInit2(&s->zs, -MAX_WBITS) != Z_OK) return src_fail(s, e, "cannot start inflate");
    s->zs_live = 1;
    return KC_OK;
}

int kc_npz_load(const char *path, const char *key, kc_array *out, kc_error *e) {
    memset(out, 0, sizeof *out);
    if (key && !*key) key = NULL;
    src s;
    int rc = src_open_file(&s, path, e);
    if (rc) return rc;
    uint64_t fsize = s.max_total;
    zip_dir z;
    rc = zip_read_dir(s.f, fsize, path, &z, e);
    zip_entry ent = {0};
    if (!rc) rc = zip_find(&z, path, key, &ent, e);
    if (!rc) {
        snprintf(s.name, sizeof s.name, "%s (entry %.*s)", path, (int)ent.name_len,
                 (const char *)ent.name);
        rc = zip_open_entry(&s, &z, &ent, fsize, e);
    }
    if (!rc) rc = npy_read(&s, out, e);
    free(z.cd);
    src_close(&s);
    if (rc) kc_array_free(out);
    return rc;
}

/* Any member, not only arrays: .keras archives keep config.json beside the
 * weights. */
static int zip_find_member(const zip_dir *z, const char *path, const char *member, zip_entry *found,
                           kc_error *e) {
    uint32_t off = 0;
    size_t want = strlen(member);
    for (uint32_t i = 0; i < z->entries; i++) {
        zip_entry ent;
        int rc = zip_next(z, &off, &ent, path, e);
        if (rc) return rc;
        if (ent.name_len == want && !memcmp(ent.name, member, want)) {
            *found = ent;
            return KC_OK;
        }
    }
    return kc_fail(e, KC_ECONFIG, "%s: the archive has no member '%s'", path, member);
}

int kc_zip_read_member(const char *path, const char *member, size_t max_bytes, char **data,
                       size_t *len, kc_error *e) {
    *data = NULL;
    *len = 0;
    src s;
    int rc = src_open_file(&s, path, e);
    if (rc) return rc;
    uint64_t fsize = s.max_total;
    zip_dir z;
    rc = zip_read_dir(s.f, fsize, path, &z, e);
    zip_entry ent = {0};
    if (!rc) rc = zip_find_member(&z, path, member, &ent, e);
    if (!rc) {
        snprintf(s.name, sizeof s.name, "%s (member %s)", path, member);
        if (ent.usize > max_bytes)
            rc = kc_fail(e, KC_ERUNTIME, "%s: %u bytes, more than the %zu allowed", s.name,
                         ent.usize, max_bytes);
    }
    if (!rc) rc = zip_open_entry(&s, &z, &ent, fsize, e);
    char *buf = NULL;
    if (!rc && !(buf = malloc((size_t)ent.usize + 1))) rc = src_fail(&s, e, "out of memory");
    if (!rc) rc = src_read_exact(&s, buf, ent.usize, "the member", e);
    if (!rc) rc = src_finish(&s, e);
    free(z.cd);
    src_close(&s);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[ent.usize] = 0;
    *data = buf;
    *len = ent.usize;
    return KC_OK;
}

/* ---- plain files ---- */

static int load_with(const char *path, int (*reader)(src *, kc_array *, kc_error *), kc_array *out,
                     kc_error *e) {
    memset(out, 0, sizeof *out);
    src s;
    int rc = src_open_auto(&s, path, e);
    if (!rc) rc = reader(&s, out, e);
    src_close(&s);
    if (rc) kc_array_free(out);
    return rc;
}

int kc_idx_load(const char *path, kc_array *out, kc_error *e) {
    return load_with(path, idx_read, out, e);
}

int kc_npy_load(const char *path, kc_array *out, kc_error *e) {
    return load_with(path, npy_read, out, e);
}

enum { FMT_IDX, FMT_NPY, FMT_NPZ };

/* Which format the (decompressed) content starts with. */
static int sniff(const char *path, int *fmt, kc_error *e) {
    src s;
    int rc = src_open_auto(&s, path, e);
    if (rc) return rc;
    unsigned char m[6] = {0};
    int64_t got = src_read(&s, m, sizeof m, e);
    int gz = s.kind == SRC_GZ;
    src_close(&s);
    if (got < 0) return KC_ERUNTIME;
    if (got == 0) return kc_fail(e, KC_ERUNTIME, "%s: the file is empty", path);
    if (got >= 6 && !memcmp(m, "\x93NUMPY", 6))
        *fmt = FMT_NPY;
    else if (!gz && got >= 4 && (!memcmp(m, "PK\3\4", 4) || !memcmp(m, "PK\5\6", 4)))
        *fmt = FMT_NPZ;
    else if (got >= 4 && m[0] == 0 && m[1] == 0)
        *fmt = FMT_IDX;
    else
        return kc_fail(e, KC_ERUNTIME,
                       "%s: unrecognized format: not IDX, .npy or .npz (first bytes %02x %02x "
                       "%02x %02x%s)",
                       path, m[0], m[1], m[2], m[3], gz ? " after gunzip" : "");
    return KC_OK;
}

int kc_array_load(const char *path, const char *key, kc_array *out, kc_error *e) {
    memset(out, 0, sizeof *out);
    int fmt;
    int rc = sniff(path, &fmt, e);
    if (rc) return rc;
    if (fmt == FMT_NPZ) return kc_npz_load(path, key, out, e);
    if (key && *key)
        return kc_fail(e, KC_ECONFIG, "%s: a key ('%s') applies only to .npz archives; this is %s",
                       path, key, fmt == FMT_NPY ? "a single .npy array" : "an IDX file");
    return fmt == FMT_NPY ? kc_npy_load(path, out, e) : kc_idx_load(path, out, e);
}

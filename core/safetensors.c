#include "core/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"

/* Tensor bytes are copied to and from memory as they are; the format is
 * little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors I/O assumes a little-endian host"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[KC_ST_DTYPE_COUNT] = {
    [KC_ST_F32] = {"F32", 4},   [KC_ST_F64] = {"F64", 8}, [KC_ST_I64] = {"I64", 8},
    [KC_ST_I32] = {"I32", 4},   [KC_ST_U8] = {"U8", 1},   [KC_ST_I8] = {"I8", 1},
    [KC_ST_I16] = {"I16", 2},   [KC_ST_U16] = {"U16", 2}, [KC_ST_U32] = {"U32", 4},
    [KC_ST_U64] = {"U64", 8},   [KC_ST_F16] = {"F16", 2}, [KC_ST_BF16] = {"BF16", 2},
    [KC_ST_BOOL] = {"BOOL", 1},
};

static int dtype_ok(kc_st_dtype t) {
    return (unsigned)t < KC_ST_DTYPE_COUNT;
}

size_t kc_st_dtype_size(kc_st_dtype t) {
    return dtype_ok(t) ? dtypes[t].size : 0;
}

const char *kc_st_dtype_name(kc_st_dtype t) {
    return dtype_ok(t) ? dtypes[t].name : "?";
}

size_t kc_st_nbytes(const kc_st_tensor *t) {
    size_t bytes;
    return kc_shape_bytes(&t->shape, kc_st_dtype_size(t->dtype), &bytes) ? bytes : 0;
}

/* numel * elem in *out, or 0 when that would exceed limit. The product of
 * the non-zero dims must stay within the limit too: a zero dim makes the
 * tensor empty, but (0, 2^62, 2^62) is still a shape no size can hold, and
 * the element count of every shape read is then representable. */
static int shape_bytes(const kc_shape *s, size_t elem, uint64_t limit, uint64_t *out) {
    uint64_t bytes = elem;
    int empty = 0;
    if (bytes > limit) return 0;
    for (int i = 0; i < s->rank; i++) {
        if (s->d[i] < 0) return 0;
        if (s->d[i] == 0) {
            empty = 1;
            continue;
        }
        if ((uint64_t)s->d[i] > limit / bytes) return 0;
        bytes *= (uint64_t)s->d[i];
    }
    *out = empty ? 0 : bytes;
    return 1;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* First name that occurs twice, or NULL. */
static const char *find_duplicate(const char **names, size_t n) {
    qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

/* ================================================================ writing */

static int check_tensor(const char *path, const kc_st_tensor *t, int i, kc_error *e) {
    if (!t->name) return kc_fail(e, KC_ERUNTIME, "%s: tensor %d has no name", path, i);
    if (!kc_json_utf8_valid(t->name, strlen(t->name)))
        return kc_fail(e, KC_ERUNTIME, "%s: tensor %d: name is not valid UTF-8", path, i);
    if (strcmp(t->name, "__metadata__") == 0)
        return kc_fail(e, KC_ERUNTIME, "%s: \"__metadata__\" is reserved, not a tensor name", path);
    if (!dtype_ok(t->dtype))
        return kc_fail(e, KC_ERUNTIME, "%s: tensor '%s': invalid dtype %d", path, t->name,
                       (int)t->dtype);
    if (t->shape.rank < 0 || t->shape.rank > KC_MAX_RANK)
        return kc_fail(e, KC_ERUNTIME, "%s: tensor '%s': rank %d is outside 0..%d", path, t->name,
                       t->shape.rank, KC_MAX_RANK);
    for (int k = 0; k < t->shape.rank; k++)
        if (t->shape.d[k] < 0)
            return kc_fail(e, KC_ERUNTIME, "%s: tensor '%s': negative dimension %lld", path,
                           t->name, (long long)t->shape.d[k]);
    uint64_t bytes;
    if (!shape_bytes(&t->shape, kc_st_dtype_size(t->dtype), SIZE_MAX / 4, &bytes))
        return kc_fail(e, KC_ERUNTIME, "%s: tensor '%s' is too large", path, t->name);
    if (bytes && !t->data)
        return kc_fail(e, KC_ERUNTIME, "%s: tensor '%s' has no data", path, t->name);
    return KC_OK;
}

static int check_tensors(const char *path, const kc_st_tensor *t, int n, kc_error *e) {
    if (n < 0 || (n > 0 && !t))
        return kc_fail(e, KC_ERUNTIME, "%s: invalid tensor list (%d tensors)", path, n);
    for (int i = 0; i < n; i++)
        if (check_tensor(path, &t[i], i, e)) return e ? e->code : KC_ERUNTIME;
    const char **names = malloc(((size_t)n + 1) * sizeof *names);
    if (!names) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", path);
    for (int i = 0; i < n; i++)
        names[i] = t[i].name;
    const char *dup = find_duplicate(names, (size_t)n);
    int rc = dup ? kc_fail(e, KC_ERUNTIME, "%s: duplicate tensor name '%s'", path, dup) : KC_OK;
    free(names);
    return rc;
}

static int check_meta(const char *path, const char *const *meta, kc_error *e) {
    size_t n = 0;
    for (; meta && meta[2 * n]; n++) {
        const char *key = meta[2 * n], *val = meta[2 * n + 1];
        if (!val) return kc_fail(e, KC_ERUNTIME, "%s: metadata key '%s' has no value", path, key);
        if (!kc_json_utf8_valid(key, strlen(key)) || !kc_json_utf8_valid(val, strlen(val)))
            return kc_fail(e, KC_ERUNTIME, "%s: metadata '%s' is not valid UTF-8", path, key);
    }
    const char **keys = malloc((n + 1) * sizeof *keys);
    if (!keys) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        keys[i] = meta[2 * i];
    const char *dup = find_duplicate(keys, n);
    int rc = dup ? kc_fail(e, KC_ERUNTIME, "%s: duplicate metadata key '%s'", path, dup) : KC_OK;
    free(keys);
    return rc;
}

/* The header exactly as the Python package writes it: compact JSON,
 * metadata first, then one entry per tensor, padded with spaces so the data
 * section starts 8-byte aligned. */
static void build_header(kc_strbuf *b, const kc_st_tensor *t, int n, const char *const *meta) {
    kc_strbuf_putc(b, '{');
    int first = 1;
    if (meta && meta[0]) {
        kc_strbuf_puts(b, "\"__metadata__\":{");
        for (size_t i = 0; meta[2 * i]; i++) {
            if (i) kc_strbuf_putc(b, ',');
            kc_json_write_string(b, meta[2 * i]);
            kc_strbuf_putc(b, ':');
            kc_json_write_string(b, meta[2 * i + 1]);
        }
        kc_strbuf_putc(b, '}');
        first = 0;
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        if (!first) kc_strbuf_putc(b, ',');
        first = 0;
        kc_json_write_string(b, t[i].name);
        kc_strbuf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", kc_st_dtype_name(t[i].dtype));
        for (int k = 0; k < t[i].shape.rank; k++)
            kc_strbuf_printf(b, "%s%lld", k ? "," : "", (long long)t[i].shape.d[k]);
        uint64_t end = offset + kc_st_nbytes(&t[i]);
        kc_strbuf_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                         (unsigned long long)end);
        offset = end;
    }
    kc_strbuf_putc(b, '}');
    while (b->len % 8)
        kc_strbuf_putc(b, ' ');
}

static int write_bytes(FILE *f, const void *p, size_t n) {
    return n == 0 || fwrite(p, 1, n, f) == n;
}

static int write_body(FILE *f, const kc_strbuf *header, const kc_st_tensor *t, int n) {
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)header->len >> (8 * i));
    if (!write_bytes(f, len, sizeof len) || !write_bytes(f, header->s, header->len)) return 0;
    for (int i = 0; i < n; i++)
        if (!write_bytes(f, t[i].data, kc_st_nbytes(&t[i]))) return 0;
    return 1;
}

/* Makes the rename itself durable. Filesystems that cannot sync a directory
 * say EINVAL; the data is in place either way. */
static int sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return errno;
    int rc = fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
    close(fd);
    return rc;
}

/* Creates the temporary file. One left by an earlier process that had our
 * pid is stale and may be replaced. */
static int create_temp(const char *tmp) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    return fd;
}

static int write_atomic(const char *path, const kc_strbuf *header, const kc_st_tensor *t, int n,
                        kc_error *e) {
    size_t cap = strlen(path) + 32;
    char *tmp = malloc(cap);
    if (!tmp) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", path);
    snprintf(tmp, cap, "%s.tmp-%ld", path, (long)getpid());
    int fd = create_temp(tmp);
    if (fd < 0) {
        int err = errno;
        kc_fail(e, KC_ERUNTIME, "%s: cannot create %s: %s", path, tmp, strerror(err));
        free(tmp);
        return KC_ERUNTIME;
    }
    FILE *f = fdopen(fd, "wb");
    const char *step = "write";
    int ok = f && write_body(f, header, t, n);
    if (ok) {
        step = "flush";
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    }
    int err = errno;
    int closed = f ? fclose(f) : close(fd);
    if (ok && closed != 0) {
        step = "close";
        err = errno;
        ok = 0;
    }
    if (ok && rename(tmp, path) != 0) {
        step = "rename";
        err = errno;
        ok = 0;
    }
    if (!ok) {
        unlink(tmp);
        kc_fail(e, KC_ERUNTIME, "%s: %s of %s failed: %s", path, step, tmp, strerror(err));
        free(tmp);
        return KC_ERUNTIME;
    }
    free(tmp);
    err = sync_parent_dir(path);
    if (err)
        return kc_fail(e, KC_ERUNTIME, "%s: written, but syncing its directory failed: %s", path,
                       strerror(err));
    return KC_OK;
}

int kc_st_write(const char *path, const kc_st_tensor *tensors, int n, const char *const *meta,
                kc_error *e) {
    if (!path || !*path) return kc_fail(e, KC_ERUNTIME, "safetensors: empty file name");
    if (check_tensors(path, tensors, n, e) || check_meta(path, meta, e))
        return e ? e->code : KC_ERUNTIME;
    kc_strbuf header = {0};
    build_header(&header, tensors, n, meta);
    int rc;
    if (header.failed)
        rc = kc_fail(e, KC_ERUNTIME, "%s: out of memory", path);
    else if (header.len > KC_ST_MAX_HEADER)
        rc = kc_fail(e, KC_ERUNTIME, "%s: header of %zu bytes is over the %u-byte limit", path,
                     header.len, KC_ST_MAX_HEADER);
    else
        rc = write_atomic(path, &header, tensors, n, e);
    kc_strbuf_free(&header);
    return rc;
}

/* ================================================================ reading */

struct kc_st_file {
    kc_json *header; /* owns the names and metadata strings */
    int n;
    kc_st_tensor *tensors;
    uint64_t (*offsets)[2];
    int *by_name; /* tensor indices in strcmp order of names, for kc_st_find */
    int n_meta;
    const char **meta_keys, **meta_vals;
    unsigned char *data;
    void **copies; /* realigned copies of tensors whose offset suits no dtype */
};

void kc_st_close(kc_st_file *f) {
    if (!f) return;
    if (f->copies)
        for (int i = 0; i < f->n; i++)
            free(f->copies[i]);
    free(f->copies);
    free(f->data);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->by_name);
    free(f->offsets);
    free(f->tensors);
    kc_json_free(f->header);
    free(f);
}

static int bad(kc_error *e, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "path: message" for a malformed file. */
static int bad(kc_error *e, const char *path, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kc_fail(e, KC_ERUNTIME, "%s: %s", path, msg);
}

static int has_nul(const kc_json *s) {
    return strlen(kc_json_str(s)) != kc_json_len(s);
}

static int read_meta(kc_st_file *f, const kc_json *m, const char *path, kc_error *e) {
    if (kc_json_is_null(m)) return KC_OK;
    if (kc_json_kind_of(m) != KC_JSON_OBJECT)
        return bad(e, path, "__metadata__ is %s, expected an object",
                   kc_json_kind_name(kc_json_kind_of(m)));
    size_t n = kc_json_len(m);
    f->meta_keys = malloc((n + 1) * sizeof *f->meta_keys);
    f->meta_vals = malloc((n + 1) * sizeof *f->meta_vals);
    if (!f->meta_keys || !f->meta_vals) return bad(e, path, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *key = kc_json_key_at(m, i);
        const kc_json *v = kc_json_at(m, i);
        if (kc_json_kind_of(v) != KC_JSON_STRING)
            return bad(e, path, "metadata '%s' is %s, expected a string", key,
                       kc_json_kind_name(kc_json_kind_of(v)));
        if (strlen(key) != kc_json_key_len(m, i) || has_nul(v))
            return bad(e, path, "metadata '%s' contains a NUL character", key);
        f->meta_keys[i] = key;
        f->meta_vals[i] = kc_json_str(v);
    }
    f->n_meta = (int)n;
    const char **keys = malloc((n + 1) * sizeof *keys);
    if (!keys) return bad(e, path, "out of memory");
    memcpy(keys, f->meta_keys, n * sizeof *keys);
    const char *dup = find_duplicate(keys, n);
    int rc = dup ? bad(e, path, "duplicate metadata key '%s'", dup) : KC_OK;
    free(keys);
    return rc;
}

/* A JSON number written as a plain non-negative integer (no sign, fraction or exponent). */
static int read_count(const kc_json *v, uint64_t *out) {
    const char *t = kc_json_num_text(v);
    if (!t || !*t || strspn(t, "0123456789") != strlen(t)) return 0;
    int64_t x;
    if (kc_json_int64(v, &x) || x < 0) return 0;
    *out = (uint64_t)x;
    return 1;
}

static int read_dtype(const kc_json *v, kc_st_dtype *out) {
    const char *s = kc_json_str(v);
    for (int i = 0; s && i < KC_ST_DTYPE_COUNT; i++)
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (kc_st_dtype)i;
            return 1;
        }
    return 0;
}

static int read_shape(const kc_json *v, kc_shape *out, const char *path, const char *name,
                      kc_error *e) {
    if (kc_json_kind_of(v) != KC_JSON_ARRAY)
        return bad(e, path, "tensor '%s': \"shape\" is %s, expected an array", name,
                   kc_json_kind_name(kc_json_kind_of(v)));
    if (kc_json_len(v) > KC_MAX_RANK)
        return bad(e, path, "tensor '%s': rank %zu is over the limit of %d", name, kc_json_len(v),
                   KC_MAX_RANK);
    out->rank = (int)kc_json_len(v);
    for (int k = 0; k < out->rank; k++) {
        uint64_t d;
        if (!read_count(kc_json_at(v, (size_t)k), &d))
            return bad(e, path, "tensor '%s': shape entry %d is not a non-negative integer", name,
                       k);
        out->d[k] = (int64_t)d;
    }
    return KC_OK;
}

static int read_offsets(const kc_json *v, uint64_t off[2], const char *path, const char *name,
                        kc_error *e) {
    if (kc_json_kind_of(v) != KC_JSON_ARRAY || kc_json_len(v) != 2 ||
        !read_count(kc_json_at(v, 0), &off[0]) || !read_count(kc_json_at(v, 1), &off[1]))
        return bad(e, path,
                   "tensor '%s': \"data_offsets\" must be [begin, end] (non-negative "
                   "integers)",
                   name);
    if (off[0] > off[1])
        return bad(e, path, "tensor '%s': data_offsets [%llu, %llu] end before they begin", name,
                   (unsigned long long)off[0], (unsigned long long)off[1]);
    return KC_OK;
}

static int read_tensor(kc_st_file *f, int i, const char *name, const kc_json *v, uint64_t data_len,
                       const char *path, kc_error *e) {
    kc_st_tensor *t = &f->tensors[i];
    t->name = name;
    if (kc_json_kind_of(v) != KC_JSON_OBJECT)
        return bad(e, path, "tensor '%s' is %s, expected an object", name,
                   kc_json_kind_name(kc_json_kind_of(v)));
    const kc_json *dt = kc_json_get(v, "dtype");
    if (!dt) return bad(e, path, "tensor '%s' has no \"dtype\"", name);
    if (!read_dtype(dt, &t->dtype)) {
        const char *s = kc_json_str(dt);
        return bad(e, path, "tensor '%s': unknown dtype %s%s%s", name, s ? "'" : "",
                   s ? s : kc_json_kind_name(kc_json_kind_of(dt)), s ? "'" : "");
    }
    if (!kc_json_get(v, "shape")) return bad(e, path, "tensor '%s' has no \"shape\"", name);
    if (read_shape(kc_json_get(v, "shape"), &t->shape, path, name, e)) return KC_ERUNTIME;
    if (!kc_json_get(v, "data_offsets"))
        return bad(e, path, "tensor '%s' has no \"data_offsets\"", name);
    uint64_t *off = f->offsets[i];
    if (read_offsets(kc_json_get(v, "data_offsets"), off, path, name, e)) return KC_ERUNTIME;
    if (off[1] > data_len)
        return bad(e, path,
                   "tensor '%s': data_offsets [%llu, %llu] run past the %llu-byte data "
                   "section",
                   name, (unsigned long long)off[0], (unsigned long long)off[1],
                   (unsigned long long)data_len);
    uint64_t want;
    char sh[256];
    kc_shape_str(&t->shape, 0, sh, sizeof sh);
    if (!shape_bytes(&t->shape, dtypes[t->dtype].size, INT64_MAX, &want))
        return bad(e, path, "tensor '%s': %s %s is larger than the %llu-byte data section", name,
                   dtypes[t->dtype].name, sh, (unsigned long long)data_len);
    if (want != off[1] - off[0])
        return bad(e, path, "tensor '%s': %s %s needs %llu bytes but data_offsets span %llu", name,
                   dtypes[t->dtype].name, sh, (unsigned long long)want,
                   (unsigned long long)(off[1] - off[0]));
    return KC_OK;
}

typedef struct span {
    uint64_t begin, end;
    int idx;
} span;

static int cmp_spans(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* The tensors must tile [0, data_len) exactly: sorted by offset, each begins
 * where the previous one ended. */
static int check_layout(const kc_st_file *f, uint64_t data_len, const char *path, kc_error *e) {
    span *order = malloc(((size_t)f->n + 1) * sizeof *order);
    if (!order) return bad(e, path, "out of memory");
    for (int i = 0; i < f->n; i++)
        order[i] = (span){f->offsets[i][0], f->offsets[i][1], i};
    qsort(order, (size_t)f->n, sizeof *order, cmp_spans);
    uint64_t at = 0;
    int rc = KC_OK;
    for (int k = 0; k < f->n && !rc; k++) {
        const uint64_t o[2] = {order[k].begin, order[k].end};
        const char *name = f->tensors[order[k].idx].name;
        if (o[0] < at)
            rc = bad(e, path, "tensor '%s' (bytes %llu..%llu) overlaps the tensor before it", name,
                     (unsigned long long)o[0], (unsigned long long)o[1]);
        else if (o[0] > at)
            rc = bad(e, path,
                     "bytes %llu..%llu of the data section belong to no tensor (hole "
                     "before tensor '%s')",
                     (unsigned long long)at, (unsigned long long)o[0], name);
        at = o[1];
    }
    if (!rc && at != data_len)
        rc = bad(e, path, "the last %llu bytes of the data section belong to no tensor",
                 (unsigned long long)(data_len - at));
    free(order);
    return rc;
}

typedef struct named {
    const char *name;
    int idx;
} named;

static int cmp_named(const void *a, const void *b) {
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* Sorts tensor indices by name for kc_st_find; equal neighbours are duplicates. */
static int index_names(kc_st_file *f, const char *path, kc_error *e) {
    named *v = malloc(((size_t)f->n + 1) * sizeof *v);
    f->by_name = malloc(((size_t)f->n + 1) * sizeof *f->by_name);
    if (!v || !f->by_name) {
        free(v);
        return bad(e, path, "out of memory");
    }
    for (int i = 0; i < f->n; i++)
        v[i] = (named){f->tensors[i].name, i};
    qsort(v, (size_t)f->n, sizeof *v, cmp_named);
    int rc = KC_OK;
    for (int i = 0; i < f->n; i++) {
        f->by_name[i] = v[i].idx;
        if (i && !rc && strcmp(v[i - 1].name, v[i].name) == 0)
            rc = bad(e, path, "duplicate tensor name '%s'", v[i].name);
    }
    free(v);
    return rc;
}

static int read_tensors(kc_st_file *f, uint64_t data_len, const char *path, kc_error *e) {
    const kc_json *h = f->header;
    size_t members = kc_json_len(h);
    f->tensors = calloc(members + 1, sizeof *f->tensors);
    f->offsets = calloc(members + 1, sizeof *f->offsets);
    if (!f->tensors || !f->offsets) return bad(e, path, "out of memory");
    int seen_meta = 0;
    for (size_t i = 0; i < members; i++) {
        const char *key = kc_json_key_at(h, i);
        if (strlen(key) != kc_json_key_len(h, i))
            return bad(e, path, "a tensor name contains a NUL character");
        if (strcmp(key, "__metadata__") == 0) {
            if (seen_meta++) return bad(e, path, "__metadata__ appears twice");
            if (read_meta(f, kc_json_at(h, i), path, e)) return KC_ERUNTIME;
            continue;
        }
        if (read_tensor(f, f->n, key, kc_json_at(h, i), data_len, path, e)) return KC_ERUNTIME;
        f->n++;
    }
    if (index_names(f, path, e)) return KC_ERUNTIME;
    return check_layout(f, data_len, path, e);
}

static int read_exact(FILE *fp, void *buf, size_t n) {
    return n == 0 || fread(buf, 1, n, fp) == n;
}

/* Reads the length prefix and the header text; *data_len is what follows. */
static int read_header(FILE *fp, uint64_t size, char **text, uint64_t *hlen, uint64_t *data_len,
                       const char *path, kc_error *e) {
    if (size < 8)
        return bad(e, path, "too short to be a safetensors file (%llu bytes)",
                   (unsigned long long)size);
    unsigned char len[8];
    if (!read_exact(fp, len, 8)) return bad(e, path, "read error");
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | len[i];
    if (n > KC_ST_MAX_HEADER)
        return bad(e, path, "header length %llu is implausible (the limit is %u bytes)",
                   (unsigned long long)n, KC_ST_MAX_HEADER);
    if (n > size - 8)
        return bad(e, path, "header length %llu runs past the end of the %llu-byte file",
                   (unsigned long long)n, (unsigned long long)size);
    *text = malloc(n + 1);
    if (!*text) return bad(e, path, "out of memory");
    if (!read_exact(fp, *text, n)) return bad(e, path, "read error in the header");
    (*text)[n] = '\0';
    *hlen = n;
    *data_len = size - 8 - n;
    return KC_OK;
}

static int parse_header(kc_st_file *f, const char *text, uint64_t n, const char *path,
                        kc_error *e) {
    size_t lead = 0;
    while (lead < n && text[lead] == ' ')
        lead++;
    if (lead == n || text[lead] != '{') return bad(e, path, "the header is not a JSON object");
    kc_error je = {0};
    f->header = kc_json_parse(text, n, &je);
    if (!f->header) return bad(e, path, "the header is not valid JSON: %s", je.msg);
    return KC_OK;
}

/* Tensor data is handed out aligned for its dtype: the data buffer comes from
 * malloc, so only offsets that are not a multiple of the element size (files
 * written in an unlucky order) need a copy. */
static int place_data(kc_st_file *f, const char *path, kc_error *e) {
    f->copies = calloc((size_t)f->n + 1, sizeof *f->copies);
    if (!f->copies) return bad(e, path, "out of memory");
    for (int i = 0; i < f->n; i++) {
        kc_st_tensor *t = &f->tensors[i];
        const unsigned char *src = f->data + f->offsets[i][0];
        size_t bytes = (size_t)(f->offsets[i][1] - f->offsets[i][0]);
        if (bytes == 0) {
            t->data = f->data; /* nothing to read; keep a valid, aligned address */
            continue;
        }
        if (f->offsets[i][0] % dtypes[t->dtype].size == 0) {
            t->data = src;
            continue;
        }
        f->copies[i] = malloc(bytes);
        if (!f->copies[i]) return bad(e, path, "out of memory");
        memcpy(f->copies[i], src, bytes);
        t->data = f->copies[i];
    }
    return KC_OK;
}

static int load(kc_st_file *f, FILE *fp, uint64_t size, const char *path, kc_error *e) {
    char *text = NULL;
    uint64_t hlen = 0, data_len = 0;
    int rc = read_header(fp, size, &text, &hlen, &data_len, path, e);
    if (!rc) rc = parse_header(f, text, hlen, path, e);
    free(text);
    if (rc) return rc;
    if (data_len > SIZE_MAX / 2) return bad(e, path, "data section too large for memory");
    rc = read_tensors(f, data_len, path, e);
    if (rc) return rc;
    f->data = malloc((size_t)data_len + 1);
    if (!f->data)
        return bad(e, path, "out of memory for %llu bytes of data", (unsigned long long)data_len);
    if (!read_exact(fp, f->data, (size_t)data_len)) return bad(e, path, "read error in the data");
    return place_data(f, path, e);
}

int kc_st_open(const char *path, kc_st_file **out, kc_error *e) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return bad(e, path, "not a regular file");
    }
    kc_st_file *f = calloc(1, sizeof *f);
    int rc = f ? load(f, fp, (uint64_t)st.st_size, path, e) : bad(e, path, "out of memory");
    fclose(fp);
    if (rc) {
        kc_st_close(f);
        return rc;
    }
    *out = f;
    return KC_OK;
}

int kc_st_count(const kc_st_file *f) {
    return f ? f->n : 0;
}

const kc_st_tensor *kc_st_at(const kc_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const kc_st_tensor *kc_st_find(const kc_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int lo = 0, hi = f->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0) return &f->tensors[f->by_name[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *kc_st_meta(const kc_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

int kc_st_meta_count(const kc_st_file *f) {
    return f ? f->n_meta : 0;
}

const char *kc_st_meta_at(const kc_st_file *f, int i, const char **value) {
    if (!f || i < 0 || i >= f->n_meta) return NULL;
    if (value) *value = f->meta_vals[i];
    return f->meta_keys[i];
}

/* CSV of numbers: one sample per line, an optional header, one optional label
 * column. Lines are streamed; values go straight into growing float buffers. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/data/data.h"
#include "models/data/text.h"

typedef struct csv_state {
    const char *path;
    FILE *f;
    char *line;
    size_t line_cap;
    long lineno;
    char **fields;
    int nfields, fields_cap;
    char **names; /* header names, or NULL */
    int ncols;
    int label; /* column index, -1 for none */
    float *x, *y;
    size_t rows, rows_cap;
} csv_state;

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *trim(char *s) {
    while (is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n && is_space(s[n - 1]))
        s[--n] = 0;
    return s;
}

static int push_field(csv_state *st, char *f, kc_error *e) {
    if (st->nfields == st->fields_cap) {
        if (st->fields_cap > INT_MAX / 2)
            return kc_fail(e, KC_ERUNTIME, "%s:%ld: more than %d fields on a line", st->path,
                           st->lineno, INT_MAX / 2);
        int cap = st->fields_cap ? st->fields_cap * 2 : 16;
        char **p = realloc(st->fields, (size_t)cap * sizeof *p);
        if (!p) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", st->path);
        st->fields = p;
        st->fields_cap = cap;
    }
    st->fields[st->nfields++] = f;
    return KC_OK;
}

/* Splits st->line in place into comma-separated fields; "..." quotes a field
 * and "" inside quotes is a literal quote. */
static int split_line(csv_state *st, kc_error *e) {
    st->nfields = 0;
    char *r = st->line, *w = st->line;
    for (;;) {
        char *start = w;
        while (*r == ' ' || *r == '\t')
            r++;
        if (*r == '"') {
            r++;
            for (;;) {
                if (!*r)
                    return kc_fail(e, KC_ERUNTIME, "%s:%ld: unterminated quoted field", st->path,
                                   st->lineno);
                if (*r == '"' && r[1] == '"') {
                    *w++ = '"';
                    r += 2;
                } else if (*r == '"') {
                    r++;
                    break;
                } else {
                    *w++ = *r++;
                }
            }
            while (*r == ' ' || *r == '\t')
                r++;
            if (*r && *r != ',')
                return kc_fail(e, KC_ERUNTIME, "%s:%ld: text after a closing quote", st->path,
                               st->lineno);
        } else {
            while (*r && *r != ',')
                *w++ = *r++;
        }
        char sep = *r;
        *w++ = 0;
        int rc = push_field(st, trim(start), e);
        if (rc) return rc;
        if (!sep) return KC_OK;
        r++;
    }
}

/* Reads the next non-blank line and splits it; 0 at end of file. */
static int next_row(csv_state *st, int *have, kc_error *e) {
    *have = 0;
    for (;;) {
        errno = 0;
        ssize_t n = getline(&st->line, &st->line_cap, st->f);
        if (n < 0) {
            if (ferror(st->f))
                return kc_fail(e, KC_ERUNTIME, "%s: read error: %s", st->path, strerror(errno));
            return KC_OK;
        }
        st->lineno++;
        if ((size_t)n != strlen(st->line))
            return kc_fail(e, KC_ERUNTIME, "%s:%ld: NUL byte in a text file", st->path, st->lineno);
        char *s = st->line;
        if (st->lineno == 1 && !strncmp(s, "\xEF\xBB\xBF", 3)) memmove(s, s + 3, strlen(s + 3) + 1);
        if (!*trim(s)) continue;
        int rc = split_line(st, e);
        if (rc) return rc;
        *have = 1;
        return KC_OK;
    }
}

static int parse_number(const char *s, double *v) {
    if (!*s) return 0;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && *end == 0;
}

static int row_is_numeric(const csv_state *st) {
    for (int i = 0; i < st->nfields; i++) {
        double v;
        if (!parse_number(st->fields[i], &v)) return 0;
    }
    return 1;
}

static void column_desc(const csv_state *st, int col, char *buf, size_t n) {
    if (st->names)
        snprintf(buf, n, "column '%s'", st->names[col]);
    else
        snprintf(buf, n, "column %d", col);
}

static int keep_names(csv_state *st, kc_error *e) {
    st->names = calloc((size_t)st->ncols, sizeof *st->names);
    if (!st->names) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", st->path);
    for (int i = 0; i < st->ncols; i++) {
        st->names[i] = strdup(st->fields[i]);
        if (!st->names[i]) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", st->path);
    }
    return KC_OK;
}

static void list_names(const csv_state *st, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < st->ncols; i++) {
        int w = snprintf(buf + used, n - used, "%s'%s'", i ? ", " : "", st->names[i]);
        if (w < 0 || (size_t)w >= n - used) break;
        used += (size_t)w;
    }
}

static int resolve_label(csv_state *st, const char *label, kc_error *e) {
    st->label = -1;
    if (!label) return KC_OK;
    for (int i = 0; st->names && i < st->ncols; i++)
        if (!strcmp(st->names[i], label)) {
            st->label = i;
            return KC_OK;
        }
    char *end;
    errno = 0;
    long v = strtol(label, &end, 10);
    if (end != label && !*end && errno == 0) {
        long idx = v < 0 ? st->ncols + v : v;
        if (idx < 0 || idx >= st->ncols)
            return kc_fail(e, KC_ECONFIG,
                           "%s: label column index %ld is out of range for %d columns", st->path, v,
                           st->ncols);
        st->label = (int)idx;
        return KC_OK;
    }
    if (!st->names)
        return kc_fail(e, KC_ECONFIG,
                       "%s: label column '%s' is not an index and the file has no header row",
                       st->path, label);
    char names[800];
    list_names(st, names, sizeof names);
    return kc_fail(e, KC_ECONFIG, "%s: no column named '%s' (columns: %s)", st->path, label, names);
}

static int grow(csv_state *st, kc_error *e) {
    size_t nfeat = (size_t)st->ncols - (st->label >= 0), xbytes, ybytes;
    /* the first block holds at most 256 rows or 1 MiB of values; after that
     * the buffer doubles with what was read, so it stays within a few times
     * the text's size however wide one line claims to be */
    size_t first = (1u << 18) / (nfeat ? nfeat : 1);
    size_t cap = st->rows_cap ? st->rows_cap * 2 : first < 1 ? 1 : first > 256 ? 256 : first;
    if (cap < st->rows_cap ||
        __builtin_mul_overflow(cap, (nfeat ? nfeat : 1) * sizeof(float), &xbytes) ||
        __builtin_mul_overflow(cap, sizeof(float), &ybytes) || xbytes > INT64_MAX)
        return kc_fail(e, KC_ERUNTIME, "%s:%ld: more values than memory can address", st->path,
                       st->lineno);
    float *x = realloc(st->x, xbytes);
    if (x) st->x = x;
    float *y = realloc(st->y, ybytes);
    if (y) st->y = y;
    if (!x || !y) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", st->path);
    st->rows_cap = cap;
    return KC_OK;
}

static int add_row(csv_state *st, kc_error *e) {
    if (st->nfields != st->ncols)
        return kc_fail(e, KC_ERUNTIME, "%s:%ld: expected %d fields, found %d", st->path, st->lineno,
                       st->ncols, st->nfields);
    if (st->rows == st->rows_cap) {
        int rc = grow(st, e);
        if (rc) return rc;
    }
    size_t nfeat = (size_t)st->ncols - (st->label >= 0);
    float *xr = st->x + st->rows * nfeat;
    for (int i = 0; i < st->ncols; i++) {
        double v;
        if (!parse_number(st->fields[i], &v)) {
            char col[300];
            column_desc(st, i, col, sizeof col);
            if (!*st->fields[i])
                return kc_fail(e, KC_ERUNTIME, "%s:%ld: %s is empty", st->path, st->lineno, col);
            return kc_fail(e, KC_ERUNTIME, "%s:%ld: %s: '%.100s' is not a number%s", st->path,
                           st->lineno, col, st->fields[i],
                           i == st->label ? " (labels must be class indices or numeric targets)"
                                          : "");
        }
        if (i == st->label)
            st->y[st->rows] = (float)v;
        else
            *xr++ = (float)v;
    }
    st->rows++;
    return KC_OK;
}

/* Reads the first row, decides on the header and the label column. */
static int read_start(csv_state *st, const char *label, int header, kc_error *e) {
    int have;
    int rc = next_row(st, &have, e);
    if (rc) return rc;
    if (!have) return kc_fail(e, KC_ERUNTIME, "%s: the file has no rows", st->path);
    st->ncols = st->nfields;
    int is_header = header == 1 || (header < 0 && !row_is_numeric(st));
    if (is_header && (rc = keep_names(st, e))) return rc;
    if ((rc = resolve_label(st, label, e))) return rc;
    if (st->ncols - (st->label >= 0) < 1)
        return kc_fail(e, KC_ERUNTIME, "%s: no feature columns besides the label", st->path);
    return is_header ? KC_OK : add_row(st, e);
}

static int read_all(csv_state *st, const char *label, int header, kc_error *e) {
    int rc = read_start(st, label, header, e);
    for (int have = 1; !rc;) {
        rc = next_row(st, &have, e);
        if (rc || !have) break;
        rc = add_row(st, e);
    }
    if (!rc && st->rows == 0) rc = kc_fail(e, KC_ERUNTIME, "%s: no data rows", st->path);
    return rc;
}

static void csv_state_free(csv_state *st) {
    if (st->f) fclose(st->f);
    free(st->line);
    free(st->fields);
    for (int i = 0; st->names && i < st->ncols; i++)
        free(st->names[i]);
    free(st->names);
    free(st->x);
    free(st->y);
}

int kc_csv_load(const char *path, const char *label_column, int header, kc_array *x, kc_array *y,
                kc_error *e) {
    memset(x, 0, sizeof *x);
    if (y) memset(y, 0, sizeof *y);
    if (label_column && !y)
        return kc_fail(e, KC_ERUNTIME, "%s: a label column needs an output array", path);
    csv_state st = {.path = path};
    st.f = fopen(path, "r");
    if (!st.f) return kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
    int rc = read_all(&st, label_column, header, e);
    if (!rc) {
        size_t nfeat = (size_t)st.ncols - (st.label >= 0);
        x->dtype = KC_DT_F32;
        x->shape = kc_shape2((int64_t)st.rows, (int64_t)nfeat);
        /* give back the growth slack */
        size_t n = st.rows * nfeat;
        float *fit = realloc(st.x, (n > 0 ? n : 1) * sizeof *fit);
        x->data = fit ? fit : st.x;
        st.x = NULL;
        if (st.label >= 0) {
            y->dtype = KC_DT_F32;
            y->shape = kc_shape1((int64_t)st.rows);
            y->data = st.y;
            st.y = NULL;
        }
    }
    csv_state_free(&st);
    return rc;
}

/* ------------------------------------------------- CSV with text fields --- */

typedef struct tcsv {
    const char *path;
    const char *d;
    size_t n, at;
    long line, row_line; /* the line under way, and where the last row began */
    char delim;
    char **f; /* the row's fields (malloc'd) */
    int nf, cap;
} tcsv;

static void tcsv_clear(tcsv *c) {
    for (int i = 0; i < c->nf; i++)
        free(c->f[i]);
    c->nf = 0;
}

static int tcsv_push(tcsv *c, const char *s, size_t len, kc_error *e) {
    if (c->nf == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        char **p = cap > 1 << 20 ? NULL : realloc(c->f, (size_t)cap * sizeof *p);
        if (!p) return kc_fail(e, KC_ERUNTIME, "%s:%ld: too many fields", c->path, c->line);
        c->f = p;
        c->cap = cap;
    }
    char *v = malloc(len + 1);
    if (!v) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", c->path);
    memcpy(v, s, len);
    v[len] = 0;
    c->f[c->nf++] = v;
    return KC_OK;
}

/* One quoted field starting at c->at (the opening quote), unquoted into buf. */
static int tcsv_quoted(tcsv *c, char **buf, size_t *len, size_t *cap, kc_error *e) {
    long start = c->line;
    c->at++;
    for (;;) {
        if (c->at >= c->n)
            return kc_fail(e, KC_ERUNTIME, "%s:%ld: unterminated quoted field", c->path, start);
        char ch = c->d[c->at];
        if (ch == '"' && c->at + 1 < c->n && c->d[c->at + 1] == '"') {
            c->at += 2;
        } else if (ch == '"') {
            c->at++;
            return KC_OK;
        } else {
            c->at++;
            c->line += ch == '\n';
        }
        if (*len + 1 >= *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            char *p = realloc(*buf, nc);
            if (!p) return kc_fail(e, KC_ERUNTIME, "%s: out of memory", c->path);
            *buf = p;
            *cap = nc;
        }
        (*buf)[(*len)++] = ch;
    }
}

/* The next row's fields; *have = 0 at the end. Blank lines are skipped. */
static int tcsv_row(tcsv *c, int *have, kc_error *e) {
    tcsv_clear(c);
    *have = 0;
    while (c->at < c->n && (c->d[c->at] == '\n' || c->d[c->at] == '\r'))
        c->line += c->d[c->at++] == '\n';
    if (c->at >= c->n) return KC_OK;
    *have = 1;
    c->row_line = c->line;
    char *buf = NULL;
    size_t cap = 0;
    int rc = KC_OK;
    for (;;) {
        size_t len = 0;
        if (c->d[c->at] == '"') {
            if ((rc = tcsv_quoted(c, &buf, &len, &cap, e))) break;
            if (c->at < c->n && c->d[c->at] != c->delim && c->d[c->at] != '\n' &&
                c->d[c->at] != '\r') {
                rc =
                    kc_fail(e, KC_ERUNTIME, "%s:%ld: text after a closing quote", c->path, c->line);
                break;
            }
            rc = tcsv_push(c, buf ? buf : "", len, e);
        } else {
            size_t s = c->at;
            while (c->at < c->n && c->d[c->at] != c->delim && c->d[c->at] != '\n')
                c->at++;
            size_t l = c->at - s;
            if (l && c->d[s + l - 1] == '\r' && (c->at >= c->n || c->d[c->at] == '\n')) l--;
            rc = tcsv_push(c, c->d + s, l, e);
        }
        if (rc) break;
        if (c->at < c->n && c->d[c->at] == '\r') c->at++;
        if (c->at >= c->n || c->d[c->at] == '\n') {
            if (c->at < c->n) c->at++, c->line++;
            break;
        }
        c->at++; /* the delimiter */
    }
    free(buf);
    return rc;
}

/* A column given by name (header) or index; -1 with an error when it is neither. */
static int tcsv_column(const tcsv *c, char **names, int ncols, const char *col, const char *what,
                       int *out, kc_error *e) {
    for (int i = 0; names && i < ncols; i++)
        if (!strcmp(names[i], col)) return *out = i, KC_OK;
    char *end;
    errno = 0;
    long v = strtol(col, &end, 10);
    if (end != col && !*end && !errno) {
        long idx = v < 0 ? ncols + v : v;
        if (idx < 0 || idx >= ncols)
            return kc_fail(e, KC_ECONFIG, "%s: %s index %ld is out of range for %d columns",
                           c->path, what, v, ncols);
        return *out = (int)idx, KC_OK;
    }
    char list[800] = "";
    size_t used = 0;
    for (int i = 0; names && i < ncols && used + 8 < sizeof list; i++)
        used +=
            (size_t)snprintf(list + used, sizeof list - used, "%s'%.60s'", i ? ", " : "", names[i]);
    return kc_fail(e, KC_ECONFIG, "%s: no column named '%s'%s%s%s", c->path, col,
                   names ? " (columns: " : " (the file has no header row)", list, names ? ")" : "");
}

static int tcsv_label(const tcsv *c, const char *s, long line, float *out, kc_error *e) {
    char *end;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == s || *end || !isfinite(v))
        return kc_fail(e, KC_ERUNTIME, "%s:%ld: label '%.40s' is not a number", c->path, line, s);
    *out = (float)v;
    return KC_OK;
}

static int tcsv_read(tcsv *c, int header, const char *text_column, const char *label_column,
                     kc_texts *t, kc_error *e) {
    int have, ncols, tc = -1, lc = -1;
    int rc = tcsv_row(c, &have, e);
    if (rc) return rc;
    if (!have) return kc_fail(e, KC_ERUNTIME, "%s: the file has no rows", c->path);
    ncols = c->nf;
    if (header < 0) { /* a column named rather than numbered implies a header */
        char *end;
        strtol(text_column, &end, 10);
        header = end == text_column || *end;
        for (int i = 0; i < ncols; i++)
            header |= !strcmp(c->f[i], text_column);
    }
    char **names = header ? c->f : NULL;
    if ((rc = tcsv_column(c, names, ncols, text_column, "text_column", &tc, e))) return rc;
    if (label_column && (rc = tcsv_column(c, names, ncols, label_column, "label_column", &lc, e)))
        return rc;
    char **keep = NULL;
    if (header) { /* the names stay with the header row's fields */
        keep = c->f;
        c->f = NULL;
        c->nf = c->cap = 0;
    }
    for (int row = header ? 0 : 1; !rc; row = 0) {
        if (!row && ((rc = tcsv_row(c, &have, e)) || !have)) break;
        long line = c->row_line;
        if (c->nf != ncols) {
            rc = kc_fail(e, KC_ERUNTIME, "%s:%ld: expected %d fields, found %d", c->path, line,
                         ncols, c->nf);
            break;
        }
        if ((rc = kc_texts_push(t, c->f[tc], strlen(c->f[tc]), e))) break;
        if (lc >= 0) rc = tcsv_label(c, c->f[lc], line, &t->label[t->n - 1], e);
    }
    for (int i = 0; keep && i < ncols; i++)
        free(keep[i]);
    free(keep);
    if (!rc && t->n == 0) rc = kc_fail(e, KC_ERUNTIME, "%s: no data rows", c->path);
    return rc;
}

int kc_text_read_csv(const char *path, char delimiter, int header, const char *text_column,
                     const char *label_column, kc_texts *t, kc_error *e) {
    memset(t, 0, sizeof *t);
    char *d;
    size_t n;
    int rc = kc_text_read_file(path, &d, &n, e);
    if (rc) return rc;
    tcsv c = {.path = path, .d = d, .n = n, .line = 1, .delim = delimiter};
    rc = tcsv_read(&c, header, text_column, label_column, t, e);
    tcsv_clear(&c);
    free(c.f);
    free(d);
    if (!rc && !label_column) {
        free(t->label);
        t->label = NULL;
    }
    if (rc) kc_texts_free(t);
    return rc;
}

/* kerasc plot-history: the curves of a history.csv (Keras CSVLogger's
 * columns: epoch, then the logged values) drawn with cairo into a PNG.
 *
 * One panel per quantity - loss first, then each metric in the file's order -
 * with the training values and, when the file has them, the validation
 * values (val_<name>) per epoch. Epochs are numbered from 1 as the progress
 * bar shows them (the file's epoch column counts from 0). Empty, NA and nan
 * cells leave gaps. Panels are PANEL_W x PANEL_H pixels, two to a row (three
 * from five panels on), under an optional title strip. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cairo.h>

#include "cli/commands.h"
#include "core/atomic_file.h"

#define PANEL_W 520
#define PANEL_H 360
#define TITLE_H 44
#define MAX_FILE_BYTES (64u << 20)
#define MAX_DOTS 60 /* longer runs get lines only */

/* Plot area inside a panel: room for the panel title and legend above, tick
 * labels and the axis label below and to the left. */
#define PLOT_LEFT 88
#define PLOT_RIGHT 22
#define PLOT_TOP 46
#define PLOT_BOTTOM 52

static const double TRAIN_RGB[3] = {31 / 255.0, 119 / 255.0, 180 / 255.0};
static const double VAL_RGB[3] = {255 / 255.0, 127 / 255.0, 14 / 255.0};

/* ---- reading the history ---- */

typedef struct history {
    int ncols, nrows; /* columns after epoch */
    char **keys;
    double *epoch; /* nrows */
    double **vals; /* ncols x nrows, NAN for gaps */
} history;

static void history_free(history *h) {
    for (int i = 0; i < h->ncols; i++) {
        free(h->keys[i]);
        free(h->vals[i]);
    }
    free(h->keys);
    free(h->vals);
    free(h->epoch);
    memset(h, 0, sizeof *h);
}

static int read_file(const char *path, char **out, kc_error *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return kc_fail(e, KC_ERUNTIME, "cannot read %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            if (cap >= MAX_FILE_BYTES) {
                free(buf);
                fclose(f);
                return kc_fail(e, KC_ECONFIG, "%s: larger than %u MiB; not a history file", path,
                               MAX_FILE_BYTES >> 20);
            }
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) break;
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return kc_fail(e, KC_ERUNTIME, "cannot read %s", path);
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) {
        free(buf);
        return kc_fail(e, KC_ECONFIG, "%s: not a text file", path);
    }
    *out = buf;
    return KC_OK;
}

/* Splits `line` in place at `sep`, trimming spaces and one pair of quotes. */
static int split(char *line, char sep, char **fields, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        char *end = strchr(p, sep);
        if (end) *end = '\0';
        while (*p == ' ' || (*p == '\t' && sep != '\t'))
            p++;
        size_t len = strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\r'))
            p[--len] = '\0';
        if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
            p[len - 1] = '\0';
            p++;
        }
        if (n < max) fields[n] = p;
        n++;
        if (!end) return n;
        p = end + 1;
    }
}

/* Keras's CSVLogger writes ",", or the separator it was given. */
static char detect_sep(const char *header) {
    if (strchr(header, ',')) return ',';
    if (strchr(header, ';')) return ';';
    if (strchr(header, '\t')) return '\t';
    return ',';
}

static int is_gap(const char *s) {
    return !*s || !strcasecmp(s, "NA") || !strcasecmp(s, "nan") || !strcasecmp(s, "-nan") ||
           !strcasecmp(s, "none") || !strcasecmp(s, "null");
}

static int parse_cell(const char *s, double *out) {
    if (is_gap(s)) {
        *out = NAN;
        return 1;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE) return 0;
    *out = isfinite(v) ? v : NAN; /* an infinite loss cannot be drawn either */
    return 1;
}

static int count_fields(const char *line, char sep) {
    int n = 1;
    for (; *line; line++)
        n += *line == sep;
    return n;
}

static int parse_header(history *h, char *line, char sep, const char *path, kc_error *e) {
    if (!strncmp(line, "\xEF\xBB\xBF", 3)) line += 3; /* a UTF-8 byte order mark */
    int n = count_fields(line, sep);
    char **f = calloc((size_t)n, sizeof *f);
    if (!f) return kc_fail(e, KC_ERUNTIME, "out of memory");
    split(line, sep, f, n);
    if (strcmp(f[0], "epoch")) {
        kc_fail(e, KC_ECONFIG,
                "%s:1: expected a header starting with 'epoch' (a history.csv written by "
                "kerasc train or Keras's CSVLogger), got '%.60s'",
                path, f[0]);
        free(f);
        return KC_ECONFIG;
    }
    h->ncols = n - 1;
    h->keys = calloc((size_t)(n > 1 ? n - 1 : 1), sizeof *h->keys);
    h->vals = calloc((size_t)(n > 1 ? n - 1 : 1), sizeof *h->vals);
    int rc = h->keys && h->vals ? KC_OK : kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int i = 1; !rc && i < n; i++) {
        if (!*f[i]) rc = kc_fail(e, KC_ECONFIG, "%s:1: column %d has no name", path, i + 1);
        for (int j = 1; !rc && j < i; j++)
            if (!strcmp(f[i], f[j]))
                rc = kc_fail(e, KC_ECONFIG, "%s:1: column '%s' appears twice", path, f[i]);
        if (!rc && !(h->keys[i - 1] = strdup(f[i]))) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    free(f);
    return rc;
}

static int parse_row(history *h, char *line, char sep, int row, int lineno, char **fields,
                     const char *path, kc_error *e) {
    int n = split(line, sep, fields, h->ncols + 1);
    if (n != h->ncols + 1)
        return kc_fail(e, KC_ECONFIG, "%s:%d: expected %d values (as the header has), got %d", path,
                       lineno, h->ncols + 1, n);
    double ep;
    if (!parse_cell(fields[0], &ep) || (isfinite(ep) && ep != floor(ep)))
        return kc_fail(e, KC_ECONFIG, "%s:%d: epoch '%.40s' is not a whole number", path, lineno,
                       fields[0]);
    h->epoch[row] = isnan(ep) ? row : ep;
    for (int c = 0; c < h->ncols; c++)
        if (!parse_cell(fields[c + 1], &h->vals[c][row]))
            return kc_fail(e, KC_ECONFIG, "%s:%d: column '%s': '%.40s' is not a number", path,
                           lineno, h->keys[c], fields[c + 1]);
    return KC_OK;
}

static int blank(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    return !*s;
}

static int alloc_rows(history *h, int rows) {
    h->epoch = malloc((size_t)rows * sizeof *h->epoch);
    if (!h->epoch) return 0;
    for (int c = 0; c < h->ncols; c++)
        if (!(h->vals[c] = malloc((size_t)rows * sizeof *h->vals[c]))) return 0;
    return 1;
}

/* The next line of the text (cut at its newline), or NULL at the end. */
static char *next_line(char **cursor) {
    char *line = *cursor;
    if (!*line) return NULL;
    char *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *cursor = nl + 1;
    } else {
        *cursor = line + strlen(line);
    }
    return line;
}

static int parse_history(history *h, char *text, const char *path, kc_error *e) {
    memset(h, 0, sizeof *h);
    char *cursor = text, *line;
    int lineno = 0, max_rows = 1;
    for (const char *p = text; *p; p++)
        max_rows += *p == '\n';
    while ((line = next_line(&cursor)) && (++lineno, blank(line))) {
    }
    if (!line) return kc_fail(e, KC_ECONFIG, "%s: the file is empty; no epochs to plot", path);
    if (lineno != 1)
        return kc_fail(e, KC_ECONFIG, "%s:%d: the header must be the first line", path, lineno);
    char sep = detect_sep(line);
    int rc = parse_header(h, line, sep, path, e);
    if (rc) return rc;
    char **fields = calloc((size_t)h->ncols + 1, sizeof *fields);
    if (!fields || !alloc_rows(h, max_rows)) {
        free(fields);
        return kc_fail(e, KC_ERUNTIME, "out of memory");
    }
    while (!rc && (line = next_line(&cursor))) {
        lineno++;
        if (blank(line)) continue;
        rc = parse_row(h, line, sep, h->nrows, lineno, fields, path, e);
        if (!rc) h->nrows++;
    }
    free(fields);
    if (!rc && h->ncols == 0)
        rc = kc_fail(e, KC_ECONFIG, "%s:1: no columns besides 'epoch'; nothing to plot", path);
    if (!rc && h->nrows == 0)
        rc = kc_fail(e, KC_ECONFIG, "%s: the header has no rows under it; no epochs to plot", path);
    return rc;
}

/* ---- panels ---- */

typedef struct panel {
    const char *name;
    const double *train, *val; /* either may be NULL */
} panel;

static int find_key(const history *h, const char *key) {
    for (int c = 0; c < h->ncols; c++)
        if (!strcmp(h->keys[c], key)) return c;
    return -1;
}

/* loss first, then the file's order; val_x goes with x when both exist */
static int make_panels(const history *h, panel *out) {
    int n = 0, loss = find_key(h, "loss");
    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < h->ncols; c++) {
            const char *k = h->keys[c];
            if ((pass == 0) != (c == loss)) continue;
            if (!strncmp(k, "val_", 4)) {
                if (find_key(h, k + 4) >= 0) continue;
                out[n++] = (panel){k, NULL, h->vals[c]};
                continue;
            }
            char vkey[300];
            snprintf(vkey, sizeof vkey, "val_%s", k);
            int v = find_key(h, vkey);
            out[n++] = (panel){k, h->vals[c], v >= 0 ? h->vals[v] : NULL};
        }
    return n;
}

/* ---- drawing ---- */

/* A "nice" tick step (1, 2 or 5 times a power of ten) for about `target` ticks. */
static double nice_step(double span, int target) {
    double raw = span / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static void tick_label(double v, double step, char *buf, size_t n) {
    if (fabs(v) < step * 1e-9) v = 0;
    double a = fabs(v);
    if (a != 0 && (a >= 1e6 || a < 1e-4)) {
        snprintf(buf, n, "%.3g", v);
        return;
    }
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, n, "%.*f", decimals > 8 ? 8 : decimals, v);
}

typedef struct frame {
    double x0, y0, w, h; /* plot area in pixels */
    double xmin, xmax, ymin, ymax;
} frame;

static double px(const frame *f, double x) {
    return f->x0 + (x - f->xmin) / (f->xmax - f->xmin) * f->w;
}
static double py(const frame *f, double y) {
    return f->y0 + f->h - (y - f->ymin) / (f->ymax - f->ymin) * f->h;
}

static void set_rgb(cairo_t *cr, const double *rgb) {
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
}

/* Text placed by its box: align 0 = left/top, 0.5 = centre, 1 = right/bottom.
 * The vertical box is the font's (ascent + descent), so labels with and
 * without descenders share a baseline. */
static void text_at(cairo_t *cr, const char *s, double x, double y, double align_x,
                    double align_y) {
    cairo_text_extents_t ext;
    cairo_font_extents_t fe;
    cairo_text_extents(cr, s, &ext);
    cairo_font_extents(cr, &fe);
    cairo_move_to(cr, x - ext.x_advance * align_x,
                  y + fe.ascent - (fe.ascent + fe.descent) * align_y);
    cairo_show_text(cr, s);
}

static double text_width(cairo_t *cr, const char *s) {
    cairo_text_extents_t ext;
    cairo_text_extents(cr, s, &ext);
    return ext.x_advance;
}

/* Sets a font size (from `size` down to `min_size`) at which `s` fits in
 * max_w and writes to out the text to show: `s`, or its start and "..." when
 * even the smallest size is too wide. */
static void fit_text(cairo_t *cr, const char *s, double max_w, double size, double min_size,
                     char *out, size_t n) {
    snprintf(out, n, "%s", s);
    double sz = size;
    cairo_set_font_size(cr, sz);
    while (sz > min_size && text_width(cr, out) > max_w)
        cairo_set_font_size(cr, sz -= 1);
    for (size_t len = strlen(s); len > 1 && text_width(cr, out) > max_w;)
        snprintf(out, n, "%.*s...", (int)--len, s);
}

static void data_range(const history *h, const panel *p, frame *f) {
    double lo = INFINITY, hi = -INFINITY;
    const double *series[2] = {p->train, p->val};
    for (int s = 0; s < 2; s++)
        for (int i = 0; series[s] && i < h->nrows; i++)
            if (isfinite(series[s][i])) {
                lo = fmin(lo, series[s][i]);
                hi = fmax(hi, series[s][i]);
            }
    if (!isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-12 * fmax(1.0, fabs(hi))) {
        double pad = fabs(hi) > 0 ? fabs(hi) * 0.1 : 1.0;
        lo -= pad;
        hi += pad;
    }
    double margin = (hi - lo) * 0.06;
    f->ymin = lo - margin;
    f->ymax = hi + margin;
    double emin = INFINITY, emax = -INFINITY;
    for (int i = 0; i < h->nrows; i++) {
        emin = fmin(emin, h->epoch[i] + 1);
        emax = fmax(emax, h->epoch[i] + 1);
    }
    if (emax - emin < 1) emin -= 1, emax += 1;
    double xm = (emax - emin) * 0.04;
    f->xmin = emin - xm;
    f->xmax = emax + xm;
}

static void draw_axes(cairo_t *cr, const frame *f, const char *ylabel) {
    cairo_set_line_width(cr, 1);
    cairo_set_font_size(cr, 11);
    double ystep = nice_step(f->ymax - f->ymin, 5);
    char buf[64];
    for (double v = ceil(f->ymin / ystep) * ystep; v <= f->ymax && ystep > 0; v += ystep) {
        double y = round(py(f, v)) + 0.5;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, f->x0, y);
        cairo_line_to(cr, f->x0 + f->w, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, f->x0 - 5, y);
        cairo_line_to(cr, f->x0, y);
        cairo_stroke(cr);
        tick_label(v, ystep, buf, sizeof buf);
        text_at(cr, buf, f->x0 - 8, y, 1.0, 0.5);
    }
    double xstep = fmax(1.0, nice_step(f->xmax - f->xmin, 6));
    for (double v = ceil(f->xmin / xstep) * xstep; v <= f->xmax && xstep > 0; v += xstep) {
        double x = round(px(f, v)) + 0.5;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, x, f->y0);
        cairo_line_to(cr, x, f->y0 + f->h);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, x, f->y0 + f->h);
        cairo_line_to(cr, x, f->y0 + f->h + 5);
        cairo_stroke(cr);
        tick_label(v, xstep, buf, sizeof buf);
        text_at(cr, buf, x, f->y0 + f->h + 8, 0.5, 0.0);
    }
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, f->x0 + 0.5, f->y0 + 0.5, f->w - 1, f->h - 1);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 12);
    text_at(cr, "epoch", f->x0 + f->w / 2, f->y0 + f->h + 30, 0.5, 0.0);
    char shown[256];
    fit_text(cr, ylabel, f->h - 8, 12, 9, shown, sizeof shown);
    cairo_save(cr);
    cairo_translate(cr, f->x0 - 74, f->y0 + f->h / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, shown, 0, 0, 0.5, 0.5);
    cairo_restore(cr);
}

/* Lines between consecutive finite values, a dot on each value. */
static void draw_series(cairo_t *cr, const frame *f, const history *h, const double *v,
                        const double *rgb) {
    set_rgb(cr, rgb);
    cairo_set_line_width(cr, 2);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    int open = 0;
    for (int i = 0; i < h->nrows; i++) {
        if (!isfinite(v[i])) {
            open = 0;
            continue;
        }
        double x = px(f, h->epoch[i] + 1), y = py(f, v[i]);
        if (open)
            cairo_line_to(cr, x, y);
        else
            cairo_move_to(cr, x, y);
        open = 1;
    }
    cairo_stroke(cr);
    for (int i = 0; i < h->nrows && h->nrows <= MAX_DOTS; i++)
        if (isfinite(v[i])) {
            cairo_new_sub_path(cr);
            cairo_arc(cr, px(f, h->epoch[i] + 1), py(f, v[i]), 3, 0, 2 * M_PI);
        }
    cairo_fill(cr);
}

static int has_values(const history *h, const double *v) {
    for (int i = 0; v && i < h->nrows; i++)
        if (isfinite(v[i])) return 1;
    return 0;
}

/* Above the plot area, right-aligned: a swatch and a name per series.
 * Returns where it starts on the left. */
static double draw_legend(cairo_t *cr, const frame *f, int train, int val) {
    cairo_set_font_size(cr, 12);
    double x = f->x0 + f->w, y = f->y0 - 16;
    const char *names[2] = {"training", "validation"};
    const double *colors[2] = {TRAIN_RGB, VAL_RGB};
    int show[2] = {train, val};
    for (int s = 1; s >= 0; s--) {
        if (!show[s]) continue;
        cairo_text_extents_t ext;
        cairo_text_extents(cr, names[s], &ext);
        x -= ext.x_advance;
        cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
        text_at(cr, names[s], x, y, 0.0, 0.5);
        x -= 24;
        set_rgb(cr, colors[s]);
        cairo_set_line_width(cr, 2);
        cairo_move_to(cr, x, y);
        cairo_line_to(cr, x + 18, y);
        cairo_stroke(cr);
        x -= 14;
    }
    return x;
}

static void draw_panel(cairo_t *cr, const history *h, const panel *p, double ox, double oy) {
    frame f = {ox + PLOT_LEFT,
               oy + PLOT_TOP,
               PANEL_W - PLOT_LEFT - PLOT_RIGHT,
               PANEL_H - PLOT_TOP - PLOT_BOTTOM,
               0,
               0,
               0,
               0};
    data_range(h, p, &f);
    int train = has_values(h, p->train), val = has_values(h, p->val);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    /* a learning rate is a setting, not a training curve: no legend */
    int setting = !strcmp(p->name, "lr") || !strcmp(p->name, "learning_rate");
    double legend_left = setting ? f.x0 + f.w : draw_legend(cr, &f, train, val);
    char shown[256];
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    fit_text(cr, p->name, legend_left - f.x0 - 12, 14, 10, shown, sizeof shown);
    text_at(cr, shown, f.x0, f.y0 - 16, 0.0, 0.5);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    draw_axes(cr, &f, p->name);
    cairo_save(cr);
    cairo_rectangle(cr, f.x0, f.y0, f.w, f.h);
    cairo_clip(cr);
    if (train) draw_series(cr, &f, h, p->train, TRAIN_RGB);
    if (val) draw_series(cr, &f, h, p->val, VAL_RGB);
    cairo_restore(cr);
    if (!train && !val) {
        cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
        cairo_set_font_size(cr, 12);
        text_at(cr, "no values", f.x0 + f.w / 2, f.y0 + f.h / 2, 0.5, 0.5);
    }
}

static cairo_status_t write_png_chunk(void *closure, const unsigned char *data, unsigned int len) {
    return fwrite(data, 1, len, closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

/* Temp file in the same directory, flushed, then renamed over `path`. */
static int write_png_atomic(cairo_surface_t *s, const char *path, kc_error *e) {
    kc_atomic_file a;
    int rc = kc_atomic_open(&a, path, e);
    if (rc) return rc;
    cairo_status_t st = cairo_surface_write_to_png_stream(s, write_png_chunk, a.f);
    if (st != CAIRO_STATUS_SUCCESS) {
        kc_atomic_abort(&a);
        return kc_fail(e, KC_ERUNTIME, "cannot write %s: %s", path, cairo_status_to_string(st));
    }
    return kc_atomic_commit(&a, e);
}

int kc_plot_history(const char *csv_path, const char *png_path, const char *title, kc_error *e) {
    char *text = NULL;
    int rc = read_file(csv_path, &text, e);
    if (rc) return rc;
    history h;
    rc = parse_history(&h, text, csv_path, e);
    panel *panels = rc ? NULL : calloc((size_t)h.ncols, sizeof *panels);
    if (!rc && !panels) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    if (rc) {
        free(text);
        history_free(&h);
        return rc;
    }
    int n = make_panels(&h, panels), cols = n >= 5 ? 3 : n >= 2 ? 2 : 1;
    int rows = (n + cols - 1) / cols, top = title && *title ? TITLE_H : 0;
    cairo_surface_t *s =
        cairo_image_surface_create(CAIRO_FORMAT_RGB24, cols * PANEL_W, top + rows * PANEL_H);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    if (top) {
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
        cairo_set_font_size(cr, 18);
        text_at(cr, title, cols * PANEL_W / 2.0, TITLE_H / 2.0 + 4, 0.5, 0.5);
    }
    for (int i = 0; i < n; i++)
        draw_panel(cr, &h, &panels[i], (i % cols) * PANEL_W, top + (i / cols) * PANEL_H);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st != CAIRO_STATUS_SUCCESS)
        rc = kc_fail(e, KC_ERUNTIME, "drawing %s failed: %s", png_path, cairo_status_to_string(st));
    else
        rc = write_png_atomic(s, png_path, e);
    cairo_surface_destroy(s);
    /* cairo keeps fonts in process-wide caches; kerasc draws nothing else,
     * so give them back rather than leave them to exit */
    cairo_debug_reset_static_data();
    free(panels);
    free(text);
    history_free(&h);
    return rc;
}

/* Leak checkers (LeakSanitizer) read this: fontconfig, which cairo uses to
 * find fonts, keeps the configuration it parsed for the life of the process. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libfontconfig.so\n";
}

/* ---- the verb ---- */

static const char usage[] =
    "Usage: kerasc plot-history HISTORY.csv [-o OUTPUT.png] [--title TITLE]\n"
    "\n"
    "Draws the loss and each metric of a training run per epoch - training and\n"
    "validation curves, one panel per quantity - from the history.csv that\n"
    "'kerasc train' (or Keras's CSVLogger) writes, as a PNG.\n"
    "\n"
    "  -o, --output FILE   the PNG to write (default: curves.png beside HISTORY.csv)\n"
    "  -t, --title TITLE   a title above the panels\n"
    "  -h, --help          show this help\n";

int kc_cmd_plot_history(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"title", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *title = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:t:h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        if (c == 'o')
            out = optarg;
        else if (c == 't')
            title = optarg;
        else
            return kc_cli_usage_error("plot-history", "unknown option");
    }
    if (optind != argc - 1)
        return kc_cli_usage_error("plot-history", "expected one HISTORY.csv file");
    const char *csv = argv[optind];
    char def[4200];
    if (!out) {
        const char *slash = strrchr(csv, '/');
        snprintf(def, sizeof def, "%.*scurves.png", slash ? (int)(slash - csv + 1) : 0, csv);
        out = def;
    }
    if (!*out) return kc_cli_usage_error("plot-history", "--output needs a file name");
    kc_error e = {0};
    if (kc_cli_prepare_output(out, "output file", &e) || kc_plot_history(csv, out, title, &e))
        return kc_cli_report("plot-history", &e);
    printf("wrote %s\n", out);
    return 0; /* kc_cli_finish checks standard output */
}

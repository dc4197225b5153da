#include "cli/table.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/format.h"
#include "core/error.h"

/* Styles a character can carry; SGR parameters as rich emits them for a
 * 256-colour terminal. */
enum { ST_PLAIN, ST_BOLD, ST_NUMBER, ST_NONE_KW, ST_CLASS };
static const char *const k_sgr[] = {"", "1", "38;5;34", "38;5;45", "38;5;33"};

enum { COL_NAME, COL_SHAPE, COL_PARAMS, COL_CONNECTED };

/* Past this the table is just very wide; the cap keeps buffer sizes sane. */
enum { MAX_LINE_LENGTH = 10000 };

static const double k_pos3[3] = {0.45, 0.80, 1.0};
static const double k_pos4[4] = {0.3, 0.56, 0.74, 1.0};
static const char *const k_headers[4] = {"Layer (type)", "Output Shape", "Param #", "Connected to"};

/* ---- geometry ------------------------------------------------------------ */

/* round(a / b) with Python's ties-to-even, for a >= 0, b > 0. */
static int div_round_half_even(int a, int b) {
    int q = a / b, r = a % b;
    if (2 * r > b || (2 * r == b && (q & 1))) q++;
    return q;
}

/* Keras's nominal widths, then rich's reduction: the table must fit in
 * L - (n + 1) cells, and rich takes the excess from the columns left to right,
 * each giving up round(excess_left / columns_left). Returns 0 when Keras would
 * refuse the length (a nominal width below 4) or a column has no room for text. */
static int widths_for(int four_columns, int line_length, int widths[4]) {
    int n = four_columns ? 4 : 3;
    const double *pos = four_columns ? k_pos4 : k_pos3;
    int used = 0, total = 0;
    for (int i = 0; i < n; i++) {
        int nominal = (int)(pos[i] * line_length) - used;
        if (nominal < 4) return 0;
        used += nominal;
        widths[i] = nominal + 2;
        total += widths[i];
    }
    int available = line_length - (n + 1);
    if (total > available) {
        int excess = total - available;
        for (int i = 0, left = n; i < n; i++, left--) {
            int give = div_round_half_even(excess, left);
            if (give > widths[i]) give = widths[i];
            widths[i] -= give;
            excess -= give;
        }
    }
    for (int i = 0; i < n; i++)
        if (widths[i] < 3) return 0;
    return 1;
}

static int resolve_line_length(int four_columns, int line_length, int widths[4]) {
    if (line_length <= 0) line_length = four_columns ? 108 : 88;
    if (line_length > MAX_LINE_LENGTH) line_length = MAX_LINE_LENGTH;
    while (!widths_for(four_columns, line_length, widths))
        line_length++;
    return line_length;
}

int kc_summary_column_widths(int four_columns, int line_length, int widths[4]) {
    resolve_line_length(four_columns, line_length, widths);
    return four_columns ? 4 : 3;
}

int kc_summary_line_length_for(int four_columns, int columns) {
    int def = four_columns ? 108 : 88;
    int length = columns - 4 < def ? columns - 4 : def;
    if (length < 1) length = 1;
    int widths[4];
    return resolve_line_length(four_columns, length, widths);
}

/* Python's int() on the variable: optional blanks and sign around digits. */
static int parse_columns(const char *s) {
    if (!s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno) return 0;
    while (*end == ' ' || *end == '\t' || *end == '\n')
        end++;
    if (*end || v <= 0 || v > INT_MAX) return 0;
    return (int)v;
}

int kc_summary_line_length(int four_columns, int is_tty) {
    int columns = parse_columns(getenv("COLUMNS"));
    if (columns <= 0) {
        columns = 80;
        struct winsize ws;
        if (is_tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
            columns = ws.ws_col;
    }
    return kc_summary_line_length_for(four_columns, columns);
}

/* ---- cells --------------------------------------------------------------- */

typedef struct cell_char {
    uint32_t off;  /* byte offset in the cell's text */
    uint8_t len;   /* bytes of its UTF-8 sequence */
    uint8_t style; /* ST_* or ST_PLAIN to take the cell's base style */
    uint8_t space;
} cell_char;

/* One wrapped line: chars [start, end), the last one drawn as an ellipsis when
 * cut, between lpad and rpad spaces of justification. */
typedef struct cell_line {
    int start, end, ellipsis, lpad, rpad;
} cell_line;

typedef struct cell {
    char *text;
    cell_char *chars;
    int nchars;
    cell_line *lines;
    int nlines;
    int *breaks;
} cell;

static void cell_free(cell *c) {
    free(c->text);
    free(c->chars);
    free(c->lines);
    free(c->breaks);
    memset(c, 0, sizeof *c);
}

static int utf8_seq_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if ((size_t)n > avail) return 1;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    return n;
}

/* Copies the text with control characters turned into spaces (a cell is one
 * paragraph) and splits it into characters, each one terminal cell wide. */
static int cell_decode(cell *c, const char *text) {
    size_t len = strlen(text);
    c->text = malloc(len + 1);
    c->chars = malloc((len + 1) * sizeof *c->chars);
    c->lines = malloc((len + 1) * sizeof *c->lines);
    c->breaks = malloc((len + 1) * sizeof *c->breaks);
    if (!c->text || !c->chars || !c->lines || !c->breaks) return KC_ERUNTIME;
    for (size_t i = 0; i <= len; i++) {
        unsigned char b = (unsigned char)text[i];
        c->text[i] = (i < len && (b < 0x20 || b == 0x7f)) ? ' ' : (char)b;
    }
    const unsigned char *s = (const unsigned char *)c->text;
    for (size_t i = 0; i < len;) {
        int n = utf8_seq_len(s + i, len - i);
        c->chars[c->nchars++] =
            (cell_char){.off = (uint32_t)i, .len = (uint8_t)n, .space = s[i] == ' '};
        i += (size_t)n;
    }
    return KC_OK;
}

static char cell_byte(const cell *c, int i) {
    return c->text[c->chars[i].off];
}

static int is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}

static int is_word_char(char ch) {
    return is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

/* Colours the parts Keras marks up: the class name in "name (Class)". */
static void classify_name(cell *c) {
    int n = c->nchars;
    if (n < 2 || cell_byte(c, n - 1) != ')') return;
    for (int i = n - 2; i >= 0; i--) {
        if (cell_byte(c, i) == '(') {
            for (int j = i + 1; j < n - 1; j++)
                c->chars[j].style = ST_CLASS;
            return;
        }
    }
}

/* Each dimension of a shape: numbers in one colour, None in another. */
static void classify_shape(cell *c) {
    int n = c->nchars;
    for (int i = 0; i < n;) {
        char ch = cell_byte(c, i);
        if (is_digit(ch)) {
            while (i < n && is_digit(cell_byte(c, i)))
                c->chars[i++].style = ST_NUMBER;
            continue;
        }
        if (ch == 'N' && i + 4 <= n && cell_byte(c, i + 1) == 'o' && cell_byte(c, i + 2) == 'n' &&
            cell_byte(c, i + 3) == 'e' && (i == 0 || !is_word_char(cell_byte(c, i - 1))) &&
            (i + 4 == n || !is_word_char(cell_byte(c, i + 4)))) {
            for (int j = 0; j < 4; j++)
                c->chars[i + j].style = ST_NONE_KW;
            i += 4;
            continue;
        }
        i++;
    }
}

static void classify_params(cell *c) {
    for (int i = 0; i < c->nchars; i++) {
        char ch = cell_byte(c, i);
        if (!is_digit(ch) && ch != ',') break;
        c->chars[i].style = ST_NUMBER;
    }
}

/* The node and tensor indices of "layer[0][0]". */
static void classify_connected(cell *c) {
    int n = c->nchars;
    for (int i = 0; i < n; i++) {
        if (cell_byte(c, i) != '[') continue;
        int j = i + 1;
        while (j < n && is_digit(cell_byte(c, j)))
            j++;
        if (j > i + 1 && j < n && cell_byte(c, j) == ']')
            for (int k = i + 1; k < j; k++)
                c->chars[k].style = ST_NUMBER;
    }
}

/* rich's divide_line without folding: words are runs of non-spaces with their
 * trailing spaces (the first also with its leading ones); a word that does not
 * fit moves to a new line, and one longer than the width gets a line of its own
 * to be cut with an ellipsis. Returns the number of break positions. */
static int divide_line(const cell_char *ch, int n, int width, int *breaks) {
    int nb = 0, offset = 0, pos = 0;
    while (pos < n) {
        int start = pos;
        while (pos < n && ch[pos].space)
            pos++;
        if (pos == n) break;
        while (pos < n && !ch[pos].space)
            pos++;
        int word_len = pos - start;
        while (pos < n && ch[pos].space)
            pos++;
        int full_len = pos - start;
        if (width - offset >= word_len) {
            offset += full_len;
        } else if (word_len > width || (offset && start)) {
            if (start) breaks[nb++] = start;
            offset = full_len;
        }
    }
    return nb;
}

static int trailing_spaces(const cell *c, int start, int end) {
    int t = 0;
    while (end - t > start && c->chars[end - t - 1].space)
        t++;
    return t;
}

/* Wraps into lines of exactly `width` cells, justified left or right, as rich's
 * Text.wrap does with overflow="ellipsis". */
static void cell_wrap(cell *c, int width, int right) {
    const int *breaks = c->breaks;
    int nb = divide_line(c->chars, c->nchars, width, c->breaks);
    c->nlines = nb + 1;
    for (int li = 0; li <= nb; li++) {
        int start = li == 0 ? 0 : breaks[li - 1];
        int end = li == nb ? c->nchars : breaks[li];
        cell_line line = {.start = start, .end = end};
        int len = end - start;
        if (len > width) { /* rstrip_end: drop trailing spaces beyond the width */
            int t = trailing_spaces(c, start, end);
            line.end -= t < len - width ? t : len - width;
        }
        if (right) line.end -= trailing_spaces(c, line.start, line.end);
        len = line.end - line.start;
        if (len > width) {
            line.end = line.start + width;
            line.ellipsis = 1;
            len = width;
        }
        if (right)
            line.lpad = width - len;
        else
            line.rpad = width - len;
        c->lines[li] = line;
    }
}

static int cell_build(cell *c, const char *text, int column, int header, int width, int color) {
    memset(c, 0, sizeof *c);
    if (cell_decode(c, text) != KC_OK) return KC_ERUNTIME;
    if (color && !header) {
        if (column == COL_NAME) classify_name(c);
        if (column == COL_SHAPE) classify_shape(c);
        if (column == COL_PARAMS) classify_params(c);
        if (column == COL_CONNECTED) classify_connected(c);
    }
    cell_wrap(c, width, column == COL_PARAMS);
    return KC_OK;
}

/* ---- output -------------------------------------------------------------- */

/* Collects consecutive text of one style, so each styled run is wrapped in a
 * single escape sequence the way rich writes a segment. */
typedef struct run_writer {
    FILE *out;
    int color, style;
    char *buf;
    size_t len, cap;
} run_writer;

static void rw_flush(run_writer *w) {
    if (!w->len) return;
    if (w->style != ST_PLAIN)
        fprintf(w->out, "\x1b[%sm%.*s\x1b[0m", k_sgr[w->style], (int)w->len, w->buf);
    else
        fwrite(w->buf, 1, w->len, w->out);
    w->len = 0;
}

static void rw_put(run_writer *w, const char *s, size_t n, int style) {
    if (!w->color) {
        fwrite(s, 1, n, w->out);
        return;
    }
    if (style != w->style || w->len + n > w->cap) rw_flush(w);
    w->style = style;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void rw_spaces(run_writer *w, int n, int style) {
    for (int i = 0; i < n; i++)
        rw_put(w, " ", 1, style);
}

/* One styled segment on its own, like rich's cell padding. */
static void rw_segment_spaces(run_writer *w, int n, int style) {
    rw_flush(w);
    rw_spaces(w, n, style);
    rw_flush(w);
}

static void put_cell_line(run_writer *w, const cell *c, int li, int base) {
    const cell_line *line = &c->lines[li];
    rw_segment_spaces(w, 1, base);
    rw_spaces(w, line->lpad, base);
    for (int i = line->start; i < line->end; i++) {
        const cell_char *ch = &c->chars[i];
        int style = ch->style ? ch->style : base;
        if (line->ellipsis && i == line->end - 1)
            rw_put(w, "\xe2\x80\xa6", 3, style);
        else
            rw_put(w, c->text + ch->off, ch->len, style);
    }
    rw_spaces(w, line->rpad, base);
    rw_segment_spaces(w, 1, base);
}

/* Header cells sit at the bottom of their row, body cells at the top; the
 * filler lines carry the cell's style. */
static void put_row(run_writer *w, const cell *cells, int n, const int *widths, int header) {
    const char *edge = header ? "\xe2\x94\x83" : "\xe2\x94\x82"; /* ┃ or │ */
    int base = header ? ST_BOLD : ST_PLAIN;
    int height = 1;
    for (int i = 0; i < n; i++)
        if (cells[i].nlines > height) height = cells[i].nlines;
    for (int row = 0; row < height; row++) {
        fputs(edge, w->out);
        for (int i = 0; i < n; i++) {
            int li = row - (header ? height - cells[i].nlines : 0);
            if (li >= 0 && li < cells[i].nlines)
                put_cell_line(w, &cells[i], li, base);
            else
                rw_segment_spaces(w, widths[i], base);
            fputs(edge, w->out);
        }
        fputc('\n', w->out);
    }
}

static void put_rule(FILE *out, const int *widths, int n, const char *left, const char *fill,
                     const char *mid, const char *right) {
    fputs(left, out);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < widths[i]; j++)
            fputs(fill, out);
        fputs(i + 1 < n ? mid : right, out);
    }
    fputc('\n', out);
}

static int put_cells(run_writer *w, const char *const *texts, int n, const int *widths,
                     int header) {
    cell cells[4];
    int rc = KC_OK, built = 0;
    for (; built < n; built++) {
        rc = cell_build(&cells[built], texts[built], built, header, widths[built] - 2, w->color);
        if (rc != KC_OK) {
            built++;
            break;
        }
    }
    if (rc == KC_OK) put_row(w, cells, n, widths, header);
    for (int i = 0; i < built; i++)
        cell_free(&cells[i]);
    return rc;
}

static void put_plain_or_styled(FILE *out, const char *s, int style, int color) {
    if (color)
        fprintf(out, "\x1b[%sm%s\x1b[0m", k_sgr[style], s);
    else
        fputs(s, out);
}

static void put_total(FILE *out, const char *label, int64_t count, int64_t bytes, int color) {
    char num[KC_FMT_CAP], size[KC_FMT_CAP];
    put_plain_or_styled(out, label, ST_BOLD, color);
    put_plain_or_styled(out, kc_fmt_grouped(num, sizeof num, count), ST_NUMBER, color);
    fprintf(out, " (%s)\n", kc_fmt_bytes(size, sizeof size, (double)bytes));
}

static void put_title(FILE *out, const char *name, int color) {
    if (color) fputs("\x1b[1m", out);
    fputs("Model: \"", out);
    for (const char *p = name; *p; p++) {
        unsigned char b = (unsigned char)*p;
        fputc(b < 0x20 || b == 0x7f ? ' ' : b, out);
    }
    fputc('"', out);
    if (color) fputs("\x1b[0m", out);
    fputc('\n', out);
}

int kc_summary_print_totals(FILE *out, const char *model_name, const kc_summary_row *rows,
                            int nrows, int four_columns, const kc_summary_totals *totals,
                            int line_length, int color) {
    int widths[4];
    int n = four_columns ? 4 : 3;
    int length = resolve_line_length(four_columns, line_length, widths);
    if (!rows) nrows = 0;

    run_writer w = {.out = out, .color = color, .cap = (size_t)length * 4 + 16};
    if (color && !(w.buf = malloc(w.cap))) return KC_ERUNTIME;

    put_title(out, model_name ? model_name : "", color);
    put_rule(out, widths, n, "\xe2\x94\x8f", "\xe2\x94\x81", "\xe2\x94\xb3", "\xe2\x94\x93");
    int rc = put_cells(&w, k_headers, n, widths, 1);
    put_rule(out, widths, n, "\xe2\x94\xa1", "\xe2\x94\x81", "\xe2\x95\x87", "\xe2\x94\xa9");
    for (int r = 0; r < nrows && rc == KC_OK; r++) {
        char params[KC_FMT_CAP];
        const char *texts[4] = {
            rows[r].name_type ? rows[r].name_type : "",
            rows[r].shape ? rows[r].shape : "?",
            kc_fmt_grouped(params, sizeof params, rows[r].params),
            rows[r].connected ? rows[r].connected : "-",
        };
        rc = put_cells(&w, texts, n, widths, 0);
        if (r + 1 < nrows)
            put_rule(out, widths, n, "\xe2\x94\x9c", "\xe2\x94\x80", "\xe2\x94\xbc",
                     "\xe2\x94\xa4");
    }
    free(w.buf);
    if (rc != KC_OK) return rc;
    put_rule(out, widths, n, "\xe2\x94\x94", "\xe2\x94\x80", "\xe2\x94\xb4", "\xe2\x94\x98");

    static const kc_summary_totals none = {.optimizer = -1};
    const kc_summary_totals *t = totals ? totals : &none;
    int64_t opt = t->optimizer > 0 ? t->optimizer : 0;
    int64_t opt_bytes = t->optimizer > 0 ? t->optimizer_bytes : 0;
    put_total(out, " Total params: ", t->trainable + t->non_trainable + opt,
              t->trainable_bytes + t->non_trainable_bytes + opt_bytes, color);
    put_total(out, " Trainable params: ", t->trainable, t->trainable_bytes, color);
    put_total(out, " Non-trainable params: ", t->non_trainable, t->non_trainable_bytes, color);
    if (t->optimizer >= 0)
        put_total(out, " Optimizer params: ", t->optimizer, t->optimizer_bytes, color);
    return KC_OK;
}

int kc_summary_print(FILE *out, const char *model_name, const kc_summary_row *rows, int nrows,
                     int four_columns, int64_t trainable, int64_t non_trainable,
                     int64_t optimizer_params, int line_length, int color) {
    kc_summary_totals t = {
        .trainable = trainable,
        .trainable_bytes = trainable * 4,
        .non_trainable = non_trainable,
        .non_trainable_bytes = non_trainable * 4,
        .optimizer = optimizer_params,
        .optimizer_bytes = optimizer_params > 0 ? optimizer_params * 4 : 0,
    };
    return kc_summary_print_totals(out, model_name, rows, nrows, four_columns, &t, line_length,
                                   color);
}

/* The model summary table, drawn as Keras 3's model.summary() draws it with
 * rich: HEAVY_HEAD box, a rule between rows, rich's column-width reduction and
 * word wrapping, and the parameter totals underneath. Knows nothing of models:
 * the caller passes one row of strings per layer. */
#ifndef KC_CLI_TABLE_H
#define KC_CLI_TABLE_H

#include <stdint.h>
#include <stdio.h>

typedef struct kc_summary_row {
    const char *name_type; /* "conv2d (Conv2D)" */
    const char *shape;     /* "(None, 26, 26, 32)" */
    int64_t params;        /* printed comma-grouped */
    const char *connected; /* four-column tables only; NULL prints "-" */
} kc_summary_row;

typedef struct kc_summary_totals {
    int64_t trainable, trainable_bytes;
    int64_t non_trainable, non_trainable_bytes;
    int64_t optimizer, optimizer_bytes; /* optimizer < 0: line omitted */
} kc_summary_totals;

/* Keras's default line length for a terminal `columns` wide:
 * min(88 or 108, columns - 4), never below the narrowest table that can be drawn. */
int kc_summary_line_length_for(int four_columns, int columns);

/* The same, with columns taken as Python's shutil.get_terminal_size does:
 * $COLUMNS when it holds a positive integer, else the width of the terminal on
 * stdout when is_tty, else 80. Piped output therefore gets 76. */
int kc_summary_line_length(int four_columns, int is_tty);

/* Fills widths[0..n) with each column's width including its one-space padding on
 * either side (borders excluded) and returns n (3 or 4). line_length is raised
 * to the smallest drawable length when needed; <= 0 means the layout's default. */
int kc_summary_column_widths(int four_columns, int line_length, int widths[4]);

/* Prints `Model: "name"`, the table and the totals lines. Sizes are taken as
 * 4 bytes per parameter (float32); optimizer_params < 0 omits that line. color
 * adds rich's ANSI styling (bold title, header and labels; 256-colour 34 for
 * numbers, 45 for None, 33 for class names): pass it only for a terminal.
 * Returns KC_OK, or KC_ERUNTIME when memory runs out (nothing sensible printed). */
int kc_summary_print(FILE *out, const char *model_name, const kc_summary_row *rows, int nrows,
                     int four_columns, int64_t trainable, int64_t non_trainable,
                     int64_t optimizer_params, int line_length, int color);

/* As kc_summary_print, with the byte sizes given per group (mixed dtypes, an
 * int64 optimizer iteration counter, ...). */
int kc_summary_print_totals(FILE *out, const char *model_name, const kc_summary_row *rows,
                            int nrows, int four_columns, const kc_summary_totals *totals,
                            int line_length, int color);

#endif

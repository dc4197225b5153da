/* Console presentation: number formats, the summary table, the progress line.
 * Expected tables are byte-for-byte what Keras 3's summary (rich) prints; the
 * first is copied from KERAS.md's worked example. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/format.h"
#include "cli/progress.h"
#include "cli/table.h"
#include "tests/testutil.h"

/* ---- capture helper -------------------------------------------------------- */

typedef struct capture {
    char *buf;
    size_t len;
    FILE *f;
} capture;

static FILE *cap_open(capture *c) {
    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
    ck_assert_ptr_nonnull(c->f);
    return c->f;
}

/* Closes the stream; the caller frees the returned text. */
static char *cap_close(capture *c) {
    fclose(c->f);
    return c->buf;
}

/* ---- format ---------------------------------------------------------------- */

START_TEST(test_grouped) {
    char b[KC_FMT_CAP];
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, 0), "0");
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, 999), "999");
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, 1000), "1,000");
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, 18496), "18,496");
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, 121930), "121,930");
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, 1234567), "1,234,567");
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, -1234567), "-1,234,567");
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, -999), "-999");
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, INT64_MAX), "9,223,372,036,854,775,807");
    ck_assert_str_eq(kc_fmt_grouped(b, sizeof b, INT64_MIN), "-9,223,372,036,854,775,808");
    char small[4];
    ck_assert_str_eq(kc_fmt_grouped(small, sizeof small, 18496), "18,");
}
END_TEST

START_TEST(test_bytes) {
    char b[KC_FMT_CAP];
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 0), "0.00 B");
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 1023), "1023.00 B");
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 1024), "1.00 KB");
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 1280), "1.25 KB");
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 487720), "476.29 KB");
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 975452), "952.59 KB");
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 1463172), "1.40 MB");
    /* Just under 1 MiB stays in KB and rounds up to 1024.00 */
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 1048575), "1024.00 KB");
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 1125899906842624.0), "1.00 PB");
    /* Keras divides once more past PB: 1024^6 bytes reads "1.00 PB" */
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 1152921504606846976.0), "1.00 PB");
    ck_assert_str_eq(kc_fmt_bytes(b, sizeof b, 1180591620717411303424.0), "1024.00 PB");
}
END_TEST

START_TEST(test_metric_values) {
    char b[KC_FMT_CAP];
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 0.3012, 1), "0.3012");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 1e-4, 1), "1.0000e-04");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 5e-4, 1), "5.0000e-04");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 0.0, 1), "0.0000e+00");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 0.001, 1), "1.0000e-03"); /* not > 1e-3 */
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 0.0011, 1), "0.0011");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, -0.5, 1), "-0.5000");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 123456.789, 1), "123456.7890");
    /* half-even on the exact binary value, as Python prints it */
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 0.40625, 1), "0.4062");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 0.12345, 1), "0.1235");
    /* verbose 2 compares without abs */
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, -0.5, 2), "-5.0000e-01");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 0.5, 2), "0.5000");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, 1e-4, 2), "1.0000e-04");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, NAN, 1), "nan");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, -NAN, 2), "nan");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, INFINITY, 1), "inf");
    ck_assert_str_eq(kc_fmt_metric(b, sizeof b, -INFINITY, 2), "-inf");
}
END_TEST

START_TEST(test_step_time) {
    char b[KC_FMT_CAP];
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 0.008, "step"), " 8ms/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 15, "step"), " 15s/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 0, "step"), " 0s/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 1, "step"), " 1s/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 1.5, "step"), " 2s/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 2.5, "step"), " 2s/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 0.9995, "step"), " 1000ms/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 0.25, "step"), " 250ms/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 0.0025, "step"), " 2ms/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 0.0015, "step"), " 2ms/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 0.000999, "step"), " 999us/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 0.0005, "step"), " 500us/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 2.5e-5, "step"), " 25us/step");
    ck_assert_str_eq(kc_fmt_step_time(b, sizeof b, 15, "epoch"), " 15s/epoch");
}
END_TEST

START_TEST(test_eta) {
    char b[KC_FMT_CAP];
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 0), "0s");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 4.9), "4s");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 60), "60s");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 60.5), "1:00");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 61), "1:01");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 1874), "31:14");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 3599.9), "59:59");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 3600), "60:00");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 3601), "1:00:01");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 3725.7), "1:02:05");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, 172805), "48:00:05");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, -3), "0s");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, NAN), "0s");
    ck_assert_str_eq(kc_fmt_eta(b, sizeof b, INFINITY), "0s");
}
END_TEST

/* ---- summary table ----------------------------------------------------------- */

static const kc_summary_row k_mnist[] = {
    {"conv2d (Conv2D)", "(None, 26, 26, 32)", 320, NULL},
    {"max_pooling2d (MaxPooling2D)", "(None, 13, 13, 32)", 0, NULL},
    {"conv2d_1 (Conv2D)", "(None, 11, 11, 64)", 18496, NULL},
    {"max_pooling2d_1 (MaxPooling2D)", "(None, 5, 5, 64)", 0, NULL},
    {"flatten (Flatten)", "(None, 1600)", 0, NULL},
    {"dense (Dense)", "(None, 64)", 102464, NULL},
    {"dense_1 (Dense)", "(None, 10)", 650, NULL},
};

static const kc_summary_row k_functional[] = {
    {"input_layer (InputLayer)", "(None, 28, 28, 1)", 0, NULL},
    {"conv2d (Conv2D)", "(None, 26, 26, 32)", 320, "input_layer[0][0]"},
    {"add (Add)", "(None, 26, 26, 32)", 0,
     "conv2d[0][0], conv2d_1[0][0], conv2d_2[0][0], conv2d_3[0][0]"},
};

START_TEST(test_summary_worked_example) {
    static const char *expected =
        "Model: \"sequential\"\n"
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓\n"
        "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩\n"
        "│ conv2d (Conv2D)                 │ (None, 26, 26, 32)     │           320 │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ max_pooling2d (MaxPooling2D)    │ (None, 13, 13, 32)     │             0 │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ conv2d_1 (Conv2D)               │ (None, 11, 11, 64)     │        18,496 │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ max_pooling2d_1 (MaxPooling2D)  │ (None, 5, 5, 64)       │             0 │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ flatten (Flatten)               │ (None, 1600)           │             0 │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ dense (Dense)                   │ (None, 64)             │       102,464 │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ dense_1 (Dense)                 │ (None, 10)             │           650 │\n"
        "└─────────────────────────────────┴────────────────────────┴───────────────┘\n"
        " Total params: 121,930 (476.29 KB)\n"
        " Trainable params: 121,930 (476.29 KB)\n"
        " Non-trainable params: 0 (0.00 B)\n";
    capture c;
    FILE *f = cap_open(&c);
    ck_assert_int_eq(kc_summary_print(f, "sequential", k_mnist, 7, 0, 121930, 0, -1, 76, 0), 0);
    char *got = cap_close(&c);
    ck_assert_str_eq(got, expected);
    free(got);
}
END_TEST

/* The top border of a table drawn at the given length. */
static char *top_border(int four_columns, int line_length) {
    capture c;
    FILE *f = cap_open(&c);
    kc_summary_print(f, "m", k_functional, 3, four_columns, 320, 0, -1, line_length, 0);
    char *got = cap_close(&c);
    char *line = strchr(got, '\n') + 1;
    *strchr(line, '\n') = '\0';
    char *top = strdup(line);
    free(got);
    return top;
}

static char *expected_border(const int *segments, int n) {
    size_t cap = 16;
    for (int i = 0; i < n; i++)
        cap += 3 * (size_t)(segments[i] + 1);
    char *s = calloc(cap, 1);
    strcat(s, "\xe2\x94\x8f"); /* ┏ */
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < segments[i]; j++)
            strcat(s, "\xe2\x94\x81");                          /* ━ */
        strcat(s, i + 1 < n ? "\xe2\x94\xb3" : "\xe2\x94\x93"); /* ┳ ┓ */
    }
    return s;
}

START_TEST(test_summary_column_widths) {
    int w[4];
    ck_assert_int_eq(kc_summary_column_widths(0, 76, w), 3);
    ck_assert_int_eq(w[0], 33);
    ck_assert_int_eq(w[1], 24);
    ck_assert_int_eq(w[2], 15);
    ck_assert_int_eq(kc_summary_column_widths(0, 88, w), 3);
    ck_assert_int_eq(w[0], 38);
    ck_assert_int_eq(w[1], 29);
    ck_assert_int_eq(w[2], 17);
    ck_assert_int_eq(kc_summary_column_widths(1, 76, w), 4);
    ck_assert_int_eq(w[0], 21);
    ck_assert_int_eq(w[1], 19);
    ck_assert_int_eq(w[2], 12);
    ck_assert_int_eq(w[3], 19);
    ck_assert_int_eq(kc_summary_column_widths(1, 108, w), 4);
    ck_assert_int_eq(w[0], 31);
    ck_assert_int_eq(w[1], 27);
    ck_assert_int_eq(w[2], 17);
    ck_assert_int_eq(w[3], 28);
    /* non-positive length: the layout's default */
    kc_summary_column_widths(0, 0, w);
    ck_assert_int_eq(w[0] + w[1] + w[2], 88 - 4);

    const int seg88[] = {38, 29, 17}, seg108[] = {31, 27, 17, 28}, seg76_4[] = {21, 19, 12, 19};
    struct {
        int four, length;
        const int *seg;
        int n;
    } cases[] = {{0, 88, seg88, 3}, {1, 108, seg108, 4}, {1, 76, seg76_4, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = top_border(cases[i].four, cases[i].length);
        char *want = expected_border(cases[i].seg, cases[i].n);
        ck_assert_str_eq(got, want);
        free(got);
        free(want);
    }
}
END_TEST

START_TEST(test_summary_line_length) {
    ck_assert_int_eq(kc_summary_line_length_for(0, 80), 76);
    ck_assert_int_eq(kc_summary_line_length_for(1, 80), 76);
    ck_assert_int_eq(kc_summary_line_length_for(0, 92), 88);
    ck_assert_int_eq(kc_summary_line_length_for(0, 200), 88);
    ck_assert_int_eq(kc_summary_line_length_for(1, 200), 108);
    ck_assert_int_eq(kc_summary_line_length_for(1, 100), 96);
    /* too narrow for Keras: the narrowest drawable table instead */
    int narrow = kc_summary_line_length_for(0, 10), w[4];
    ck_assert_int_eq(narrow, 16);
    kc_summary_column_widths(0, narrow, w);
    ck_assert_int_eq(w[0] + w[1] + w[2], narrow - 4);

    const char *saved = getenv("COLUMNS");
    char *keep = saved ? strdup(saved) : NULL;
    setenv("COLUMNS", "120", 1);
    ck_assert_int_eq(kc_summary_line_length(0, 0), 88);
    ck_assert_int_eq(kc_summary_line_length(1, 0), 108);
    setenv("COLUMNS", "100", 1);
    ck_assert_int_eq(kc_summary_line_length(1, 0), 96);
    setenv("COLUMNS", " 90 ", 1);
    ck_assert_int_eq(kc_summary_line_length(0, 0), 86);
    setenv("COLUMNS", "wide", 1);
    ck_assert_int_eq(kc_summary_line_length(0, 0), 76);
    setenv("COLUMNS", "-5", 1);
    ck_assert_int_eq(kc_summary_line_length(1, 0), 76);
    unsetenv("COLUMNS");
    ck_assert_int_eq(kc_summary_line_length(0, 0), 76); /* not a terminal: 80 columns */
    if (keep) {
        setenv("COLUMNS", keep, 1);
        free(keep);
    }
}
END_TEST

START_TEST(test_summary_four_columns) {
    static const char *expected =
        "Model: \"functional\"\n"
        "┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓\n"
        "┃ Layer (type)        ┃ Output Shape      ┃    Param # ┃ Connected to      ┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩\n"
        "│ input_layer         │ (None, 28, 28, 1) │          0 │ -                 │\n"
        "│ (InputLayer)        │                   │            │                   │\n"
        "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
        "│ conv2d (Conv2D)     │ (None, 26, 26,    │        320 │ input_layer[0][0] │\n"
        "│                     │ 32)               │            │                   │\n"
        "├─────────────────────┼───────────────────┼────────────┼───────────────────┤\n"
        "│ add (Add)           │ (None, 26, 26,    │          0 │ conv2d[0][0],     │\n"
        "│                     │ 32)               │            │ conv2d_1[0][0],   │\n"
        "│                     │                   │            │ conv2d_2[0][0],   │\n"
        "│                     │                   │            │ conv2d_3[0][0]    │\n"
        "└─────────────────────┴───────────────────┴────────────┴───────────────────┘\n"
        " Total params: 320 (1.25 KB)\n"
        " Trainable params: 320 (1.25 KB)\n"
        " Non-trainable params: 0 (0.00 B)\n";
    capture c;
    FILE *f = cap_open(&c);
    kc_summary_print(f, "functional", k_functional, 3, 1, 320, 0, -1, 76, 0);
    char *got = cap_close(&c);
    ck_assert_str_eq(got, expected);
    free(got);
}
END_TEST

static const kc_summary_row k_long[] = {
    {"a_really_long_layer_name_for_testing (Conv2D)", "(None, 26, 26, 32)", 320, NULL},
    {"short (MaxPooling2D)", "[(None, 64), (None, 64), (None, 64)]", 0, NULL},
    {"x_supercalifragilisticexpialidocious_abcdefg (Dense)", "(None, 10)", 1234567890123LL, NULL},
};

/* Long cells wrap at spaces; a word longer than the column is cut with "…"
 * (rich's default overflow for table columns), numbers included. */
START_TEST(test_summary_wrapping) {
    static const char *expected76 =
        "Model: \"wrapped\"\n"
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓\n"
        "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩\n"
        "│ a_really_long_layer_name_for_t… │ (None, 26, 26, 32)     │           320 │\n"
        "│ (Conv2D)                        │                        │               │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ short (MaxPooling2D)            │ [(None, 64), (None,    │             0 │\n"
        "│                                 │ 64), (None, 64)]       │               │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ x_supercalifragilisticexpialid… │ (None, 10)             │ 1,234,567,89… │\n"
        "│ (Dense)                         │                        │               │\n"
        "└─────────────────────────────────┴────────────────────────┴───────────────┘\n"
        " Total params: 0 (0.00 B)\n"
        " Trainable params: 0 (0.00 B)\n"
        " Non-trainable params: 0 (0.00 B)\n";
    static const char *expected40 = "Model: \"wrapped\"\n"
                                    "┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━┓\n"
                                    "┃                 ┃ Output     ┃ Param ┃\n"
                                    "┃ Layer (type)    ┃ Shape      ┃     # ┃\n"
                                    "┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━┩\n"
                                    "│ a_really_long_… │ (None, 26, │   320 │\n"
                                    "│ (Conv2D)        │ 26, 32)    │       │\n"
                                    "├─────────────────┼────────────┼───────┤\n"
                                    "│ short           │ [(None,    │     0 │\n"
                                    "│ (MaxPooling2D)  │ 64),       │       │\n"
                                    "│                 │ (None,     │       │\n"
                                    "│                 │ 64),       │       │\n"
                                    "│                 │ (None,     │       │\n"
                                    "│                 │ 64)]       │       │\n"
                                    "├─────────────────┼────────────┼───────┤\n"
                                    "│ x_supercalifra… │ (None, 10) │ 1,23… │\n"
                                    "│ (Dense)         │            │       │\n"
                                    "└─────────────────┴────────────┴───────┘\n"
                                    " Total params: 0 (0.00 B)\n"
                                    " Trainable params: 0 (0.00 B)\n"
                                    " Non-trainable params: 0 (0.00 B)\n";
    capture c;
    FILE *f = cap_open(&c);
    kc_summary_print(f, "wrapped", k_long, 3, 0, 0, 0, -1, 76, 0);
    char *got = cap_close(&c);
    ck_assert_str_eq(got, expected76);
    free(got);
    /* narrow: header cells wrap too and sit at the bottom of their row */
    f = cap_open(&c);
    kc_summary_print(f, "wrapped", k_long, 3, 0, 0, 0, -1, 40, 0);
    got = cap_close(&c);
    ck_assert_str_eq(got, expected40);
    free(got);
}
END_TEST

START_TEST(test_summary_optimizer_totals) {
    static const char *expected =
        "Model: \"sequential\"\n"
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┓\n"
        "┃ Layer (type)                         ┃ Output Shape                ┃         Param # ┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━┩\n"
        "│ conv2d (Conv2D)                      │ (None, 26, 26, 32)          │             320 │\n"
        "├──────────────────────────────────────┼─────────────────────────────┼─────────────────┤\n"
        "│ max_pooling2d (MaxPooling2D)         │ (None, 13, 13, 32)          │               0 │\n"
        "├──────────────────────────────────────┼─────────────────────────────┼─────────────────┤\n"
        "│ conv2d_1 (Conv2D)                    │ (None, 11, 11, 64)          │          18,496 │\n"
        "├──────────────────────────────────────┼─────────────────────────────┼─────────────────┤\n"
        "│ max_pooling2d_1 (MaxPooling2D)       │ (None, 5, 5, 64)            │               0 │\n"
        "├──────────────────────────────────────┼─────────────────────────────┼─────────────────┤\n"
        "│ flatten (Flatten)                    │ (None, 1600)                │               0 │\n"
        "├──────────────────────────────────────┼─────────────────────────────┼─────────────────┤\n"
        "│ dense (Dense)                        │ (None, 64)                  │         102,464 │\n"
        "├──────────────────────────────────────┼─────────────────────────────┼─────────────────┤\n"
        "│ dense_1 (Dense)                      │ (None, 10)                  │             650 │\n"
        "└──────────────────────────────────────┴─────────────────────────────┴─────────────────┘\n"
        " Total params: 365,792 (1.40 MB)\n"
        " Trainable params: 121,930 (476.29 KB)\n"
        " Non-trainable params: 0 (0.00 B)\n"
        " Optimizer params: 243,862 (952.59 KB)\n";
    capture c;
    FILE *f = cap_open(&c);
    kc_summary_print(f, "sequential", k_mnist, 7, 0, 121930, 0, 243862, 88, 0);
    char *got = cap_close(&c);
    ck_assert_str_eq(got, expected);
    free(got);

    /* exact bytes: the int64 iteration counter makes 975,452 B, same display */
    kc_summary_totals t = {.trainable = 121930,
                           .trainable_bytes = 487720,
                           .optimizer = 243862,
                           .optimizer_bytes = 975452};
    f = cap_open(&c);
    kc_summary_print_totals(f, "sequential", k_mnist, 7, 0, &t, 88, 0);
    got = cap_close(&c);
    ck_assert_str_eq(got, expected);
    free(got);
}
END_TEST

START_TEST(test_summary_color) {
    static const char *expected3 =
        "\x1b[1mModel: \"sequential\"\x1b[0m\n"
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓\n"
        "┃\x1b[1m \x1b[0m\x1b[1mLayer (type)                   \x1b[0m\x1b[1m \x1b[0m┃\x1b[1m "
        "\x1b[0m\x1b[1mOutput Shape          \x1b[0m\x1b[1m \x1b[0m┃\x1b[1m \x1b[0m\x1b[1m      "
        "Param #\x1b[0m\x1b[1m \x1b[0m┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩\n"
        "│ conv2d (\x1b[38;5;33mConv2D\x1b[0m)                 │ (\x1b[38;5;45mNone\x1b[0m, "
        "\x1b[38;5;34m26\x1b[0m, \x1b[38;5;34m26\x1b[0m, \x1b[38;5;34m32\x1b[0m)     │           "
        "\x1b[38;5;34m320\x1b[0m │\n"
        "├─────────────────────────────────┼────────────────────────┼───────────────┤\n"
        "│ max_pooling2d (\x1b[38;5;33mMaxPooling2D\x1b[0m)    │ (\x1b[38;5;45mNone\x1b[0m, "
        "\x1b[38;5;34m13\x1b[0m, \x1b[38;5;34m13\x1b[0m, \x1b[38;5;34m32\x1b[0m)     │             "
        "\x1b[38;5;34m0\x1b[0m │\n"
        "└─────────────────────────────────┴────────────────────────┴───────────────┘\n"
        "\x1b[1m Total params: \x1b[0m\x1b[38;5;34m320\x1b[0m (1.25 KB)\n"
        "\x1b[1m Trainable params: \x1b[0m\x1b[38;5;34m320\x1b[0m (1.25 KB)\n"
        "\x1b[1m Non-trainable params: \x1b[0m\x1b[38;5;34m0\x1b[0m (0.00 B)\n";
    static const char *expected4 =
        "\x1b[1mModel: \"functional\"\x1b[0m\n"
        "┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓\n"
        "┃\x1b[1m \x1b[0m\x1b[1mLayer (type)       \x1b[0m\x1b[1m \x1b[0m┃\x1b[1m "
        "\x1b[0m\x1b[1mOutput Shape     \x1b[0m\x1b[1m \x1b[0m┃\x1b[1m \x1b[0m\x1b[1m   Param "
        "#\x1b[0m\x1b[1m \x1b[0m┃\x1b[1m \x1b[0m\x1b[1mConnected to     \x1b[0m\x1b[1m \x1b[0m┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩\n"
        "│ conv2d (\x1b[38;5;33mConv2D\x1b[0m)     │ (\x1b[38;5;45mNone\x1b[0m, "
        "\x1b[38;5;34m26\x1b[0m, \x1b[38;5;34m26\x1b[0m,    │        \x1b[38;5;34m320\x1b[0m │ "
        "input_layer[\x1b[38;5;34m0\x1b[0m][\x1b[38;5;34m0\x1b[0m] │\n"
        "│                     │ \x1b[38;5;34m32\x1b[0m)               │            │              "
        "     │\n"
        "└─────────────────────┴───────────────────┴────────────┴───────────────────┘\n"
        "\x1b[1m Total params: \x1b[0m\x1b[38;5;34m320\x1b[0m (1.25 KB)\n"
        "\x1b[1m Trainable params: \x1b[0m\x1b[38;5;34m320\x1b[0m (1.25 KB)\n"
        "\x1b[1m Non-trainable params: \x1b[0m\x1b[38;5;34m0\x1b[0m (0.00 B)\n";
    capture c;
    FILE *f = cap_open(&c);
    kc_summary_print(f, "sequential", k_mnist, 2, 0, 320, 0, -1, 76, 1);
    char *got = cap_close(&c);
    ck_assert_str_eq(got, expected3);
    free(got);
    f = cap_open(&c);
    kc_summary_print(f, "functional", k_functional + 1, 1, 1, 320, 0, -1, 76, 1);
    got = cap_close(&c);
    ck_assert_str_eq(got, expected4);
    free(got);
}
END_TEST

START_TEST(test_summary_empty_and_odd_input) {
    static const char *expected =
        "Model: \"empty\"\n"
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓\n"
        "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩\n"
        "└─────────────────────────────────┴────────────────────────┴───────────────┘\n"
        " Total params: 0 (0.00 B)\n"
        " Trainable params: 0 (0.00 B)\n"
        " Non-trainable params: 0 (0.00 B)\n";
    capture c;
    FILE *f = cap_open(&c);
    kc_summary_print(f, "empty", NULL, 0, 0, 0, 0, -1, 76, 0);
    char *got = cap_close(&c);
    ck_assert_str_eq(got, expected);
    free(got);

    /* NULL cells and control characters neither crash nor break the frame */
    const kc_summary_row odd[] = {{NULL, NULL, 7, NULL},
                                  {"tab\there\n (X)", "(None,\t3)", 1, NULL}};
    f = cap_open(&c);
    ck_assert_int_eq(kc_summary_print(f, "o\nk", odd, 2, 1, 8, 0, -1, 76, 0), 0);
    got = cap_close(&c);
    ck_assert_ptr_nonnull(strstr(got, "Model: \"o k\"\n"));
    ck_assert_ptr_nonnull(strstr(got, "\xe2\x94\x82                     \xe2\x94\x82 ?   "));
    ck_assert_ptr_nonnull(strstr(
        got, "\xe2\x94\x82 tab here  (X)       \xe2\x94\x82 (None, 3)         \xe2\x94\x82"));
    ck_assert_ptr_null(strchr(got, '\t'));
    free(got);
}
END_TEST

/* ---- progress ---------------------------------------------------------------- */

static const char *const k_train_keys[] = {"loss", "accuracy"};
static const char *const k_all_keys[] = {"loss", "accuracy", "val_loss", "val_accuracy"};
static const double k_final_vals[] = {0.3012, 0.8921, 0.21, 0.94};

/* Ten steps: step 1 at 0.5 s, a throttled step 2, step 5 at 1.5 s with a
 * shorter loss text, the end at 2.75 s. */
static char *run_ten_steps(int verbose, int tty) {
    capture c;
    FILE *f = cap_open(&c);
    kc_progress p;
    kc_progress_begin(&p, f, 10, verbose, tty, 0.0);
    const double v1[] = {12.5, 0.25}, v2[] = {9.0, 0.3}, v5[] = {0.40625, 0.5};
    kc_progress_update(&p, 1, k_train_keys, v1, 2, 0.5);
    kc_progress_update(&p, 2, k_train_keys, v2, 2, 0.52);
    kc_progress_update(&p, 5, k_train_keys, v5, 2, 1.5);
    kc_progress_end(&p, k_all_keys, k_final_vals, 4, 2.75);
    return cap_close(&c);
}

START_TEST(test_progress_tty) {
    char *got = run_ten_steps(1, 1);
    ck_assert_str_eq(got,
                     "\r 1/10 [==>...........................] - ETA: 4s - loss: 12.5000 - "
                     "accuracy: 0.2500"
                     "\r 5/10 [==============>...............] - ETA: 1s - loss: 0.4062 - "
                     "accuracy: 0.5000 "
                     "\r10/10 [==============================] - 3s 250ms/step - loss: 0.3012 - "
                     "accuracy: 0.8921 - val_loss: 0.2100 - val_accuracy: 0.9400\n");
    free(got);
}
END_TEST

START_TEST(test_progress_not_tty) {
    char *got = run_ten_steps(1, 0);
    ck_assert_str_eq(got, "10/10 [==============================] - 3s 250ms/step - loss: 0.3012 - "
                          "accuracy: 0.8921 - val_loss: 0.2100 - val_accuracy: 0.9400\n");
    free(got);
}
END_TEST

START_TEST(test_progress_verbose2) {
    for (int tty = 0; tty <= 1; tty++) {
        char *got = run_ten_steps(2, tty);
        ck_assert_str_eq(got, "10/10 - 3s - 250ms/step - loss: 0.3012 - accuracy: 0.8921 - "
                              "val_loss: 0.2100 - val_accuracy: 0.9400\n");
        free(got);
    }
    capture c;
    FILE *f = cap_open(&c);
    kc_progress p;
    kc_progress_begin(&p, f, 3, 2, 0, 0.0);
    const char *keys[] = {"loss", "delta"};
    const double vals[] = {-0.5, 1e-4};
    kc_progress_end(&p, keys, vals, 2, 1.0);
    char *got = cap_close(&c);
    ck_assert_str_eq(got, "3/3 - 1s - 333ms/step - loss: -5.0000e-01 - delta: 1.0000e-04\n");
    free(got);
}
END_TEST

START_TEST(test_progress_silent) {
    char *got = run_ten_steps(0, 1);
    ck_assert_str_eq(got, "");
    free(got);
}
END_TEST

/* The product's example: 1875 steps, the first one slow. */
START_TEST(test_progress_mnist_epoch) {
    capture c;
    FILE *f = cap_open(&c);
    kc_progress p;
    kc_progress_begin(&p, f, 1875, 1, 1, 0.0);
    const double run[] = {0.21, 0.94};
    kc_progress_update(&p, 1, k_train_keys, run, 2, 0.1);
    kc_progress_update(&p, 1234, k_train_keys, run, 2, 0.1 + 0.007 * 1233);
    kc_progress_end(&p, k_all_keys, k_final_vals, 4, 15.092);
    char *got = cap_close(&c);
    const char *last = strrchr(got, '\r');
    ck_assert_ptr_nonnull(last);
    ck_assert_str_eq(last, "\r1875/1875 [==============================] - 15s 8ms/step - loss: "
                           "0.3012 - accuracy: 0.8921 - val_loss: 0.2100 - val_accuracy: "
                           "0.9400\n");
    /* each line starts with the redraw; the second is 2 shorter than the first */
    ck_assert_ptr_eq(strstr(got, "\r   1/1875 [..............................] - ETA: 3:07 - "
                                 "loss: 0.2100 - accuracy: 0.9400\r"),
                     got);
    ck_assert_ptr_nonnull(strstr(got, "\r1234/1875 [==================>...........] - ETA: 4s - "
                                      "loss: 0.2100 - accuracy: 0.9400  \r"));
    free(got);
}
END_TEST

START_TEST(test_progress_unknown_target) {
    capture c;
    FILE *f = cap_open(&c);
    kc_progress p;
    kc_progress_begin(&p, f, 0, 1, 1, 0.0);
    const char *keys[] = {"loss"};
    const double v[] = {0.5}, end[] = {0.25};
    kc_progress_update(&p, 1, keys, v, 1, 0.5);
    kc_progress_update(&p, 4, keys, v, 1, 2.0);
    kc_progress_end(&p, keys, end, 1, 2.5);
    char *got = cap_close(&c);
    ck_assert_str_eq(got, "\r      1/Unknown - 0s 500ms/step - loss: 0.5000"
                          "\r      4/Unknown - 2s 500ms/step - loss: 0.5000"
                          "\r4/4 [==============================] - 2s 667ms/step - loss: "
                          "0.2500\n");
    free(got);
}
END_TEST

START_TEST(test_progress_throttle_and_padding) {
    capture c;
    FILE *f = cap_open(&c);
    kc_progress p;
    kc_progress_begin(&p, f, 4, 1, 1, 0.0);
    const char *keys[] = {"loss", "a_long_metric_name"};
    const double v[] = {0.5, 0.5};
    kc_progress_update(&p, 1, keys, v, 2, 0.5);     /* drawn: the first update */
    kc_progress_update(&p, 2, keys, v, 2, 0.53125); /* 0.03125 s later: skipped */
    kc_progress_update(&p, 3, keys, v, 1, 0.5625);  /* 0.0625 s later: drawn, shorter */
    kc_progress_end(&p, keys, v, 1, 1.0);
    char *got = cap_close(&c);
    ck_assert_str_eq(got,
                     "\r1/4 [======>.......................] - ETA: 1s - loss: 0.5000 - "
                     "a_long_metric_name: 0.5000"
                     "\r3/4 [=====================>........] - ETA: 0s - loss: 0.5000"
                     "                             " /* 29 = 90 - 61 */
                     "\r4/4 [==============================] - 1s 167ms/step - loss: 0.5000\n");
    free(got);
}
END_TEST

START_TEST(test_progress_step_time) {
    kc_progress p;
    kc_progress_begin(&p, stdout, 10, 0, 0, 10.0);
    ck_assert_double_eq(kc_progress_step_time(&p, 0, 11.0), 0.0);
    ck_assert_double_eq(kc_progress_step_time(&p, 2, 12.0), 1.0); /* no step 1 seen */
    kc_progress_update(&p, 1, NULL, NULL, 0, 10.5);
    ck_assert_double_eq(kc_progress_step_time(&p, 1, 10.5), 0.5);
    ck_assert_double_eq(kc_progress_step_time(&p, 3, 11.5), 0.5); /* (11.5 - 10.5) / 2 */
    ck_assert_double_eq(kc_progress_step_time(&p, 5, 12.5), 0.5);
}
END_TEST

START_TEST(test_epoch_lines) {
    capture c;
    FILE *f = cap_open(&c);
    kc_progress_epoch(f, 1, 1, 1); /* a single epoch: no line */
    kc_progress_epoch(f, 1, 3, 0); /* silent */
    kc_progress_epoch(f, 1, 3, 1);
    kc_progress_epoch(f, 3, 3, 2);
    char *got = cap_close(&c);
    ck_assert_str_eq(got, "Epoch 1/3\nEpoch 3/3\n");
    free(got);
}
END_TEST

static Suite *cli_format_suite(void) {
    Suite *s = suite_create("cli_format");
    TCase *fmt = tcase_create("format");
    tcase_add_test(fmt, test_grouped);
    tcase_add_test(fmt, test_bytes);
    tcase_add_test(fmt, test_metric_values);
    tcase_add_test(fmt, test_step_time);
    tcase_add_test(fmt, test_eta);
    suite_add_tcase(s, fmt);
    TCase *table = tcase_create("summary");
    tcase_add_test(table, test_summary_worked_example);
    tcase_add_test(table, test_summary_column_widths);
    tcase_add_test(table, test_summary_line_length);
    tcase_add_test(table, test_summary_four_columns);
    tcase_add_test(table, test_summary_wrapping);
    tcase_add_test(table, test_summary_optimizer_totals);
    tcase_add_test(table, test_summary_color);
    tcase_add_test(table, test_summary_empty_and_odd_input);
    suite_add_tcase(s, table);
    TCase *prog = tcase_create("progress");
    tcase_add_test(prog, test_progress_tty);
    tcase_add_test(prog, test_progress_not_tty);
    tcase_add_test(prog, test_progress_verbose2);
    tcase_add_test(prog, test_progress_silent);
    tcase_add_test(prog, test_progress_mnist_epoch);
    tcase_add_test(prog, test_progress_unknown_target);
    tcase_add_test(prog, test_progress_throttle_and_padding);
    tcase_add_test(prog, test_progress_step_time);
    tcase_add_test(prog, test_epoch_lines);
    suite_add_tcase(s, prog);
    return s;
}

int main(void) {
    return kc_test_run(cli_format_suite());
}

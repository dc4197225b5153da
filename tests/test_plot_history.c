/* plot-history: a small history.csv drawn to a PNG that libpng reads back
 * with the documented size, curves in the plot areas (in the series'
 * colours, in the right direction), gaps for NA cells, atomic writes, and
 * every input error naming the file and line. */
#include "tests/testutil.h"

#include <dirent.h>
#include <png.h>
#include <sys/stat.h>

#include "cli/commands.h"

/* The layout cli/plot_history.c documents. */
enum { PANEL_W = 520, PANEL_H = 360, TITLE_H = 44 };
enum { PLOT_LEFT = 88, PLOT_RIGHT = 22, PLOT_TOP = 46, PLOT_BOTTOM = 52 };

static char *dir;

static void setup(void) {
    dir = kc_test_tmpdir();
    ck_assert_ptr_nonnull(dir);
}

static void teardown(void) {
    kc_test_rmdir(dir);
    free(dir);
}

static const char *path_in(const char *name) {
    static char buf[4][4200];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 4200, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

typedef struct image {
    int w, h;
    unsigned char *rgb;
} image;

static image read_png(const char *path) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&im, path), "libpng: %s", im.message);
    im.format = PNG_FORMAT_RGB;
    image out = {(int)im.width, (int)im.height, malloc(PNG_IMAGE_SIZE(im))};
    ck_assert_ptr_nonnull(out.rgb);
    ck_assert_msg(png_image_finish_read(&im, NULL, out.rgb, 0, NULL), "libpng: %s", im.message);
    return out;
}

static int near(const unsigned char *px, int r, int g, int b) {
    return abs(px[0] - r) < 40 && abs(px[1] - g) < 40 && abs(px[2] - b) < 40;
}

/* Pixels of the training (blue) or validation (orange) colour inside the
 * plot area of panel i. */
static int count_colour(const image *im, int i, int cols, int top, int orange) {
    int x0 = (i % cols) * PANEL_W + PLOT_LEFT, x1 = (i % cols + 1) * PANEL_W - PLOT_RIGHT;
    int y0 = top + (i / cols) * PANEL_H + PLOT_TOP,
        y1 = top + (i / cols + 1) * PANEL_H - PLOT_BOTTOM;
    int n = 0;
    for (int y = y0 + 2; y < y1 - 2; y++)
        for (int x = x0 + 2; x < x1 - 2; x++) {
            const unsigned char *p = im->rgb + 3 * ((size_t)y * im->w + x);
            n += orange ? near(p, 255, 127, 14) : near(p, 31, 119, 180);
        }
    return n;
}

/* Mean row of the blue pixels in a band of columns of panel i's plot area. */
static double blue_row(const image *im, int i, int cols, int top, int xa, int xb) {
    int ox = (i % cols) * PANEL_W, oy = top + (i / cols) * PANEL_H;
    double sum = 0;
    int n = 0;
    for (int y = oy + PLOT_TOP + 2; y < oy + PANEL_H - PLOT_BOTTOM - 2; y++)
        for (int x = ox + xa; x < ox + xb; x++)
            if (near(im->rgb + 3 * ((size_t)y * im->w + x), 31, 119, 180)) {
                sum += y;
                n++;
            }
    ck_assert_msg(n > 0, "no blue pixels in columns %d..%d of panel %d", xa, xb, i);
    return sum / n;
}

static const char *history4 = "epoch,accuracy,loss,val_accuracy,val_loss\n"
                              "0,0.5,1.2,0.55,1.1\n"
                              "1,0.7,0.8,0.6,0.9\n"
                              "2,0.8,0.6,NA,0.85\n"
                              "3,0.85,0.5,0.7,nan\n";

START_TEST(test_draws_two_panels) {
    const char *csv = path_in("history.csv"), *png = path_in("curves.png");
    write_text(csv, history4);
    kc_error e = {0};
    ck_assert_msg(kc_plot_history(csv, png, "fashion_mnist_cnn", &e) == KC_OK, "%s", e.msg);
    image im = read_png(png);
    ck_assert_int_eq(im.w, 2 * PANEL_W);
    ck_assert_int_eq(im.h, TITLE_H + PANEL_H);
    /* loss is the first panel, accuracy the second; both have both curves */
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(count_colour(&im, i, 2, TITLE_H, 0) > 150, "panel %d: training curve", i);
        ck_assert_msg(count_colour(&im, i, 2, TITLE_H, 1) > 100, "panel %d: validation curve", i);
    }
    /* the loss falls from left to right (rows grow downwards), accuracy rises */
    ck_assert(blue_row(&im, 0, 2, TITLE_H, PLOT_LEFT, PLOT_LEFT + 40) <
              blue_row(&im, 0, 2, TITLE_H, PANEL_W - PLOT_RIGHT - 40, PANEL_W - PLOT_RIGHT));
    ck_assert(blue_row(&im, 1, 2, TITLE_H, PLOT_LEFT, PLOT_LEFT + 40) >
              blue_row(&im, 1, 2, TITLE_H, PANEL_W - PLOT_RIGHT - 40, PANEL_W - PLOT_RIGHT));
    /* the corners outside every plot area stay white */
    const unsigned char *corner = im.rgb + 3 * ((size_t)(im.h - 2) * im.w + 2);
    ck_assert(corner[0] == 255 && corner[1] == 255 && corner[2] == 255);
    free(im.rgb);
    /* no temporary file is left beside the output */
    DIR *d = opendir(dir);
    struct dirent *ent;
    int files = 0;
    while ((ent = readdir(d)))
        if (ent->d_name[0] != '.') {
            files++;
            ck_assert_msg(!strstr(ent->d_name, ".tmp"), "left %s", ent->d_name);
        }
    closedir(d);
    ck_assert_int_eq(files, 2);
}
END_TEST

START_TEST(test_layouts_and_gaps) {
    const char *csv = path_in("h.csv"), *png = path_in("out.png");
    kc_error e = {0};
    /* training values only: one panel, no title strip, nothing orange */
    write_text(csv, "epoch,loss\n0,2.0\n1,1.5\n2,1.4\n");
    ck_assert_msg(kc_plot_history(csv, png, NULL, &e) == KC_OK, "%s", e.msg);
    image im = read_png(png);
    ck_assert_int_eq(im.w, PANEL_W);
    ck_assert_int_eq(im.h, PANEL_H);
    ck_assert(count_colour(&im, 0, 1, 0, 0) > 150);
    ck_assert_int_eq(count_colour(&im, 0, 1, 0, 1), 0);
    free(im.rgb);
    /* an all-NA validation column draws no validation curve */
    write_text(csv, "epoch,loss,val_loss\n0,2.0,NA\n1,1.5,NA\n");
    ck_assert_msg(kc_plot_history(csv, png, "", &e) == KC_OK, "%s", e.msg);
    im = read_png(png);
    ck_assert_int_eq(count_colour(&im, 0, 1, 0, 1), 0);
    ck_assert(count_colour(&im, 0, 1, 0, 0) > 100);
    free(im.rgb);
    /* one epoch still draws a point; a lone val_ column gets its own panel */
    write_text(csv, "epoch,loss,val_auc\n0,0.7,0.9\n");
    ck_assert_msg(kc_plot_history(csv, png, NULL, &e) == KC_OK, "%s", e.msg);
    im = read_png(png);
    ck_assert_int_eq(im.w, 2 * PANEL_W);
    ck_assert(count_colour(&im, 0, 2, 0, 0) > 10);
    ck_assert(count_colour(&im, 1, 2, 0, 1) > 10);
    free(im.rgb);
    /* five quantities: three panels to a row, two rows; ; separator, CRLF */
    write_text(csv, "epoch;a;b;c;d;loss\r\n0;1;2;3;4;5\r\n1;2;3;4;5;4\r\n");
    ck_assert_msg(kc_plot_history(csv, png, "t", &e) == KC_OK, "%s", e.msg);
    im = read_png(png);
    ck_assert_int_eq(im.w, 3 * PANEL_W);
    ck_assert_int_eq(im.h, TITLE_H + 2 * PANEL_H);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(count_colour(&im, i, 3, TITLE_H, 0) > 100, "panel %d", i);
    free(im.rgb);
}
END_TEST

static void expect_error(const char *text, int code, const char *needle) {
    const char *csv = path_in("bad.csv"), *png = path_in("keep.png");
    write_text(png, "earlier output");
    if (text) write_text(csv, text);
    kc_error e = {0};
    ck_assert_int_eq(kc_plot_history(text ? csv : path_in("missing.csv"), png, NULL, &e), code);
    char want[4400];
    snprintf(want, sizeof want, needle, dir);
    ck_assert_msg(strstr(e.msg, want), "'%s' lacks '%s'", e.msg, want);
    /* a failed run leaves an existing output as it was */
    FILE *f = fopen(png, "r");
    char buf[64] = {0};
    ck_assert_ptr_nonnull(f);
    ck_assert(fgets(buf, sizeof buf, f));
    fclose(f);
    ck_assert_str_eq(buf, "earlier output");
    unlink(csv);
}

START_TEST(test_input_errors) {
    expect_error(NULL, KC_ERUNTIME, "cannot read %s/missing.csv");
    expect_error("", KC_ECONFIG, "%s/bad.csv: the file is empty");
    expect_error("\n\n", KC_ECONFIG, "%s/bad.csv: the file is empty");
    expect_error("step,loss\n0,1\n", KC_ECONFIG,
                 "%s/bad.csv:1: expected a header starting with 'epoch'");
    expect_error("epoch,loss\n", KC_ECONFIG, "%s/bad.csv: the header has no rows under it");
    expect_error("epoch\n0\n", KC_ECONFIG, "%s/bad.csv:1: no columns besides 'epoch'");
    expect_error("epoch,loss,loss\n0,1,1\n", KC_ECONFIG,
                 "%s/bad.csv:1: column 'loss' appears twice");
    expect_error("epoch,loss,acc\n0,1,0.5\n\n1,0.5\n", KC_ECONFIG,
                 "%s/bad.csv:4: expected 3 values (as the header has), got 2");
    expect_error("epoch,loss\n0,1\n1,abc\n", KC_ECONFIG,
                 "%s/bad.csv:3: column 'loss': 'abc' is not a number");
    expect_error("epoch,loss\n0.5,1\n", KC_ECONFIG, "%s/bad.csv:2: epoch '0.5' is not a whole");
    /* binary data is not a history */
    FILE *f = fopen(path_in("bin.csv"), "wb");
    ck_assert_ptr_nonnull(f);
    static const char bytes[] = "epoch,loss\n0,1\0\1\n";
    fwrite(bytes, 1, sizeof bytes - 1, f);
    fclose(f);
    kc_error e = {0};
    ck_assert_int_eq(kc_plot_history(path_in("bin.csv"), path_in("o.png"), NULL, &e), KC_ECONFIG);
    ck_assert_msg(strstr(e.msg, "bin.csv: not a text file"), "%s", e.msg);
}
END_TEST

START_TEST(test_output_errors) {
    const char *csv = path_in("h.csv");
    write_text(csv, "epoch,loss\n0,1\n");
    kc_error e = {0};
    ck_assert_int_eq(kc_plot_history(csv, path_in("no/such/dir/c.png"), NULL, &e), KC_ERUNTIME);
    ck_assert_msg(strstr(e.msg, "cannot write") && strstr(e.msg, "no/such/dir/c.png"), "%s", e.msg);
}
END_TEST

START_TEST(test_command) {
    const char *csv = path_in("history.csv");
    write_text(csv, history4);
    char *argv1[] = {"plot-history", (char *)csv, NULL};
    ck_assert_int_eq(kc_cmd_plot_history(2, argv1), 0);
    struct stat st;
    ck_assert_int_eq(stat(path_in("curves.png"), &st), 0); /* beside the history by default */
    char *argv2[] = {"plot-history", (char *)csv, "-o", (char *)path_in("x.png"),
                     "--title",      "run 1",     NULL};
    ck_assert_int_eq(kc_cmd_plot_history(6, argv2), 0);
    image im = read_png(path_in("x.png"));
    ck_assert_int_eq(im.h, TITLE_H + PANEL_H);
    free(im.rgb);
    char *argv3[] = {"plot-history", NULL};
    ck_assert_int_eq(kc_cmd_plot_history(1, argv3), 2);
    char *argv4[] = {"plot-history", (char *)path_in("nope.csv"), NULL};
    ck_assert_int_eq(kc_cmd_plot_history(2, argv4), 1);
    write_text(path_in("bad.csv"), "loss\n1\n");
    char *argv5[] = {"plot-history", (char *)path_in("bad.csv"), NULL};
    ck_assert_int_eq(kc_cmd_plot_history(2, argv5), 2);
}
END_TEST

int main(void) {
    Suite *s = suite_create("plot_history");
    TCase *tc = tcase_create("plot_history");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_draws_two_panels);
    tcase_add_test(tc, test_layouts_and_gaps);
    tcase_add_test(tc, test_input_errors);
    tcase_add_test(tc, test_output_errors);
    tcase_add_test(tc, test_command);
    suite_add_tcase(s, tc);
    return kc_test_run(s);
}

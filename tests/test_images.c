/* Images from disk: PNG and JPEG decoding, Keras's resize and folder index
 * against keras.utils.image_dataset_from_directory on a tiny fixture folder
 * (tests/fixtures/images, written by make_images.py), and through the binary:
 * training the seed CNN from Fashion-MNIST PNG files in class folders as from
 * the same samples in an array, the class names in the checkpoint, predict on
 * image files and the errors. */
#include <stddef.h>
#include <stdio.h>

#include <jpeglib.h>
#include <png.h>

#include "clitest.h"
#include "core/json.h"
#include "models/data/images.h"

static kc_json *expected;

static const char *fixture(const char *name) {
    static char buf[4200];
    const char *root = getenv("KERASC_SRC");
    snprintf(buf, sizeof buf, "%s/tests/fixtures/images/%s", root && *root ? root : ".", name);
    return buf;
}

static void load_expected(void) {
    if (expected) return;
    kc_error e = {0};
    expected = kc_json_parse_file(fixture("expected.json"), &e);
    ck_assert_msg(expected != NULL, "%s", e.msg);
}

static int64_t jint(const kc_json *v) {
    int64_t x = 0;
    ck_assert_int_eq(kc_json_int64(v, &x), 0);
    return x;
}

static const char *rel(const char *path) {
    const char *p = strstr(path, "/tiny/");
    ck_assert_ptr_nonnull(p);
    return p + 6;
}

/* One case of expected.json: files, labels and every pixel as Keras has them
 * (PNG exactly, up to float rounding; the JPEG within a level). */
static void check_case(const char *name, int inferred) {
    load_expected();
    const kc_json *c = kc_json_get(expected, name), *v;
    ck_assert_ptr_nonnull(c);
    kc_image_opts o;
    kc_image_opts_default(&o);
    o.height = jint(kc_json_at(kc_json_get(c, "shape"), 0));
    o.width = jint(kc_json_at(kc_json_get(c, "shape"), 1));
    o.channels = (int)jint(kc_json_at(kc_json_get(c, "shape"), 2));
    if ((v = kc_json_get(c, "interpolation")))
        o.interpolation = !strcmp(kc_json_str(v), "nearest") ? KC_INTERP_NEAREST : 0;
    if ((v = kc_json_get(c, "crop_to_aspect_ratio"))) o.crop_to_aspect_ratio = kc_json_bool(v);
    kc_text_dir_opts d = {.inferred = inferred};
    char root[4200];
    snprintf(root, sizeof root, "%s", fixture(inferred ? "tiny" : "tiny/cat"));
    kc_image_index ix;
    kc_error e = {0};
    ck_assert_msg(kc_image_index_directory(root, &d, &ix, &e) == 0, "%s", e.msg);
    const kc_json *files = kc_json_get(c, "files"), *px = kc_json_get(c, "pixels");
    ck_assert_int_eq(ix.n, (int64_t)kc_json_len(files));
    kc_array x;
    ck_assert_msg(kc_image_load_all((const char *const *)ix.path, ix.n, &o, &x, &e) == 0, "%s",
                  e.msg);
    int64_t per = kc_array_row_size(&x);
    for (int64_t i = 0; i < ix.n; i++) {
        ck_assert_str_eq(rel(ix.path[i]), kc_json_str(kc_json_at(files, (size_t)i)));
        if (inferred)
            ck_assert_int_eq((int)ix.label[i], jint(kc_json_at(kc_json_get(c, "labels"), i)));
        const kc_json *want = kc_json_at(px, (size_t)i);
        ck_assert_int_eq((int64_t)kc_json_len(want), per);
        double tol = strstr(ix.path[i], ".jpg") ? 1.0 : 1e-4;
        for (int64_t k = 0; k < per; k++) {
            double got = x.dtype == KC_DT_U8 ? ((uint8_t *)x.data)[i * per + k]
                                             : ((float *)x.data)[i * per + k];
            double w = kc_json_num(kc_json_at(want, (size_t)k));
            ck_assert_msg(fabs(got - w) <= tol, "%s %s value %lld: %g, Keras %g", name, ix.path[i],
                          (long long)k, got, w);
        }
    }
    kc_array_free(&x);
    kc_image_index_free(&ix);
}

START_TEST(resize_and_decode_match_keras) {
    check_case("bilinear", 1);
    check_case("nearest", 1);
    check_case("crop", 1);
    check_case("grayscale", 1);
    check_case("up", 1);
    check_case("rgba", 0);
}
END_TEST

START_TEST(shuffle_and_split_match_keras) {
    load_expected();
    static const char *const names[] = {"shuffled_training", "shuffled_validation"};
    for (int s = 0; s < 2; s++) {
        kc_text_dir_opts d = {
            .inferred = 1, .shuffle = 1, .seed = 7, .validation_split = 0.4, .subset = s + 1};
        kc_image_index ix;
        kc_error e = {0};
        ck_assert_msg(kc_image_index_directory(fixture("tiny"), &d, &ix, &e) == 0, "%s", e.msg);
        const kc_json *want = kc_json_get(expected, names[s]);
        ck_assert_int_eq(ix.n, (int64_t)kc_json_len(want));
        for (int64_t i = 0; i < ix.n; i++)
            ck_assert_str_eq(rel(ix.path[i]), kc_json_str(kc_json_at(want, (size_t)i)));
        ck_assert_int_eq(ix.nclasses, 2);
        ck_assert_str_eq(ix.class_names[1], "dog");
        kc_image_index_free(&ix);
    }
}
END_TEST

/* ------------------------------------------------- writing test images --- */

static void write_png(const char *path, const uint8_t *px, int w, int h, int c) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    ck_assert_int_eq(setjmp(png_jmpbuf(p)), 0);
    png_init_io(p, f);
    int ct = c == 1 ? PNG_COLOR_TYPE_GRAY : c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA;
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, ct, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < h; y++)
        png_write_row(p, px + (size_t)y * w * c);
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    fclose(f);
}

static void write_jpeg(const char *path, const uint8_t *px, int w, int h, int quality) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    struct jpeg_compress_struct j;
    struct jpeg_error_mgr err;
    j.err = jpeg_std_error(&err);
    jpeg_create_compress(&j);
    jpeg_stdio_dest(&j, f);
    j.image_width = (JDIMENSION)w;
    j.image_height = (JDIMENSION)h;
    j.input_components = 3;
    j.in_color_space = JCS_RGB;
    jpeg_set_defaults(&j);
    jpeg_set_quality(&j, quality, TRUE);
    jpeg_start_compress(&j, TRUE);
    while (j.next_scanline < j.image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)j.next_scanline * w * 3);
        jpeg_write_scanlines(&j, &r, 1);
    }
    jpeg_finish_compress(&j);
    jpeg_destroy_compress(&j);
    fclose(f);
}

static void write_bytes(const char *name, const void *b, size_t n) {
    FILE *f = fopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(b, 1, n, f);
    fclose(f);
}

static void mkdirs(const char *name) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/%s'", dir, name);
    ck_assert_int_eq(system(cmd), 0);
}

static int have_fashion(kc_array *x, kc_array *y, kc_array *xt, kc_array *yt) {
    kc_error e = {0};
    return kc_dataset_load("fashion_mnist", NULL, x, y, xt, yt, &e) == 0;
}

START_TEST(png_and_jpeg_decode) {
    kc_array x = {0}, y = {0}, xt = {0}, yt = {0};
    if (!have_fashion(&x, &y, &xt, &yt)) return; /* make deps installs it */
    kc_error e = {0};
    for (int i = 0; i < 20; i++) { /* PNG: the bytes written come back */
        const uint8_t *src = (const uint8_t *)x.data + i * 784;
        write_png(path_in("s.png"), src, 28, 28, 1);
        kc_image img;
        ck_assert_msg(kc_image_read_file(path_in("s.png"), 1, &img, &e) == 0, "%s", e.msg);
        ck_assert(img.w == 28 && img.h == 28 && img.c == 1);
        ck_assert_int_eq(memcmp(img.px, src, 784), 0);
        kc_image_free(&img);
        ck_assert_int_eq(kc_image_read_file(path_in("s.png"), 3, &img, &e), 0);
        for (int k = 0; k < 784; k++)
            ck_assert(img.px[3 * k] == src[k] && img.px[3 * k + 2] == src[k]);
        kc_image_free(&img);
    }
    /* JPEG at quality 100: a smooth picture within a few levels; a sharp one
     * (a Fashion-MNIST sample) within 16 (both within 2 on average), as TensorFlow's
     * default (fast integer) decode has it */
    uint8_t rgb[28 * 28 * 3];
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < 784; k++)
            for (int c = 0; c < 3; c++)
                rgb[3 * k + c] = pass ? ((uint8_t *)x.data)[784 * 3 + k]
                                      : (uint8_t)(60 + (k % 28) * 3 + (k / 28) * 2 + c * 20);
        write_jpeg(path_in("s.jpg"), rgb, 28, 28, 100);
        kc_image img;
        ck_assert_msg(kc_image_read_file(path_in("s.jpg"), 3, &img, &e) == 0, "%s", e.msg);
        int worst = 0;
        double sum = 0;
        for (int k = 0; k < 784 * 3; k++) {
            int d = abs(img.px[k] - rgb[k]);
            worst = d > worst ? d : worst;
            sum += d;
        }
        ck_assert_msg(worst <= (pass ? 16 : 3) && sum / (784 * 3) < 2,
                      "JPEG off by %d levels, %g on average", worst, sum / (784 * 3));
        kc_image_free(&img);
    }
    kc_array_free(&x), kc_array_free(&y), kc_array_free(&xt), kc_array_free(&yt);
}
END_TEST

START_TEST(bad_files_name_themselves) {
    kc_error e = {0};
    kc_image img;
    uint8_t px[48];
    for (int i = 0; i < 48; i++)
        px[i] = (uint8_t)(i * 5);
    write_png(path_in("good.png"), px, 4, 4, 3);
    char buf[4096];
    FILE *f = fopen(path_in("good.png"), "rb");
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_bytes("cut.png", buf, n / 2);
    ck_assert_int_ne(kc_image_read_file(path_in("cut.png"), 3, &img, &e), 0);
    ck_assert_msg(strstr(e.msg, "cut.png: not a readable PNG"), "%s", e.msg);
    buf[n / 2] ^= 0x55; /* a damaged data chunk fails its CRC */
    write_bytes("crc.png", buf, n);
    ck_assert_int_ne(kc_image_read_file(path_in("crc.png"), 3, &img, &e), 0);
    ck_assert_msg(strstr(e.msg, "crc.png: not a readable PNG"), "%s", e.msg);
    write_bytes("a.gif", "GIF89a\x01\x00\x01\x00", 10);
    ck_assert_int_ne(kc_image_read_file(path_in("a.gif"), 3, &img, &e), 0);
    ck_assert_msg(strstr(e.msg, "a.gif: GIF images are not supported"), "%s", e.msg);
    write_bytes("t.png", "hello", 5);
    ck_assert_int_ne(kc_image_read_file(path_in("t.png"), 3, &img, &e), 0);
    ck_assert_msg(strstr(e.msg, "t.png: not a PNG or JPEG image"), "%s", e.msg);
    write_bytes("cut.jpg", "\xff\xd8\xff\xe0\x00\x10JFIF", 10);
    ck_assert_int_ne(kc_image_read_file(path_in("cut.jpg"), 3, &img, &e), 0);
    ck_assert_msg(strstr(e.msg, "cut.jpg: not a readable JPEG"), "%s", e.msg);
    uint8_t rgb[12] = {0};
    write_jpeg(path_in("ok.jpg"), rgb, 2, 2, 90);
    ck_assert_int_ne(kc_image_read_file(path_in("ok.jpg"), 4, &img, &e), 0);
    ck_assert_msg(strstr(e.msg, "ok.jpg: a JPEG has no alpha"), "%s", e.msg);
    /* folders: none of the classes hold an image; no class folders */
    mkdirs("empty/a");
    kc_text_dir_opts d = {.inferred = 1};
    kc_image_index ix;
    ck_assert_int_ne(kc_image_index_directory(path_in("empty"), &d, &ix, &e), 0);
    ck_assert_msg(strstr(e.msg, "empty: no images found"), "%s", e.msg);
    mkdirs("flat");
    ck_assert_int_ne(kc_image_index_directory(path_in("flat"), &d, &ix, &e), 0);
    ck_assert_msg(strstr(e.msg, "flat: no class subfolders"), "%s", e.msg);
}
END_TEST

/* --------------------------------------------------------- the binary --- */

static const char cnn[] =
    "model:\n  layers:\n    - Input: {shape: [28, 28, 1]}\n"
    "    - Conv2D: {filters: 32, kernel_size: [3, 3], activation: relu}\n"
    "    - MaxPooling2D: {pool_size: [2, 2]}\n"
    "    - Conv2D: {filters: 64, kernel_size: [3, 3], activation: relu}\n"
    "    - MaxPooling2D: {pool_size: [2, 2]}\n"
    "    - Flatten\n    - Dense: {units: 64, activation: relu}\n"
    "    - Dense: {units: 10, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    "fit: {epochs: 1, batch_size: 32, seed: 1, verbose: 0}\n";

/* The first n samples of a split as class folders c0..c9 of PNG files, and
 * the same samples, in the folder's (sorted) order, as .npy arrays. */
static void write_split(const kc_array *x, const kc_array *y, int n, const char *folder,
                        const char *xname, const char *yname) {
    float *fx = malloc((size_t)n * 784 * sizeof *fx), *fy = malloc((size_t)n * sizeof *fy);
    int k = 0;
    for (int c = 0; c < 10; c++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s/c%d", folder, c);
        mkdirs(sub);
        for (int i = 0; i < n; i++) {
            const uint8_t *lab = y->data, *px = (const uint8_t *)x->data + (size_t)i * 784;
            if (lab[i] != c) continue;
            char name[300];
            snprintf(name, sizeof name, "%s/%05d.png", sub, i);
            write_png(path_in(name), px, 28, 28, 1);
            for (int p = 0; p < 784; p++)
                fx[k * 784 + p] = px[p];
            fy[k++] = (float)c;
        }
    }
    write_npy(xname, fx, kc_shape4(n, 28, 28, 1));
    write_npy(yname, fy, kc_shape1(n));
    free(fx);
    free(fy);
}

static double json_number(const char *json, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(json, k);
    ck_assert_msg(p != NULL, "%s", json);
    return strtod(p + strlen(k), NULL);
}

START_TEST(train_from_png_folders_as_from_arrays) {
    kc_array x = {0}, y = {0}, xt = {0}, yt = {0};
    if (!have_fashion(&x, &y, &xt, &yt)) return;
    write_split(&x, &y, 300, "fm/train", "xtr.npy", "ytr.npy");
    write_split(&xt, &yt, 100, "fm/test", "xte.npy", "yte.npy");
    kc_array_free(&x), kc_array_free(&y), kc_array_free(&xt), kc_array_free(&yt);
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "%sdata:\n  train: {images: fm/train, color_mode: grayscale, image_size: [28, 28],"
             " shuffle: false}\n"
             "  test: {images: fm/test, color_mode: grayscale, image_size: [28, 28]}\n"
             "  rescale: 1/255\n",
             cnn);
    write_file("img.yaml", yaml);
    snprintf(yaml, sizeof yaml,
             "%sdata:\n  train: {x: xtr.npy, y: ytr.npy}\n  test: {x: xte.npy, y: yte.npy}\n"
             "  rescale: 1/255\n",
             cnn);
    write_file("arr.yaml", yaml);
    ck_assert_msg(run("train img.yaml --output irun") == 0, "%s", err_buf);
    ck_assert_msg(run("train arr.yaml --output arun") == 0, "%s", err_buf);
    ck_assert_msg(run("evaluate irun/last.safetensors --json") == 0, "%s", err_buf);
    double acc_img = json_number(out_buf, "accuracy"), loss_img = json_number(out_buf, "loss");
    ck_assert_msg(run("evaluate arun/last.safetensors --json") == 0, "%s", err_buf);
    double acc_arr = json_number(out_buf, "accuracy"), loss_arr = json_number(out_buf, "loss");
    ck_assert_msg(fabs(acc_img - acc_arr) <= 1e-4 && fabs(loss_img - loss_arr) <= 1e-4,
                  "images %g/%g, arrays %g/%g", acc_img, loss_img, acc_arr, loss_arr);
    ck_assert_msg(acc_img > 0.3, "accuracy %g after one epoch", acc_img);
    /* the classes travel in the checkpoint */
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_int_eq(kc_st_open(path_in("irun/last.safetensors"), &f, &e), 0);
    const char *cls = kc_st_meta(f, "image_classes");
    ck_assert_ptr_nonnull(cls);
    ck_assert_str_eq(cls, "[\"c0\", \"c1\", \"c2\", \"c3\", \"c4\", \"c5\", \"c6\", \"c7\", "
                          "\"c8\", \"c9\"]");
    kc_st_close(f);
    /* predict: files and a folder, the top classes by name */
    ck_assert_msg(run("predict irun/last.safetensors --input fm/test/c1 --input "
                      "fm/test/c9/00000.png --top 2") == 0,
                  "%s", err_buf);
    int lines = 0, ones = 0;
    for (char *l = strtok(out_buf, "\n"); l; l = strtok(NULL, "\n"), lines++) {
        ck_assert_msg(strstr(l, ".png: c"), "%s", l);
        ck_assert_int_eq((int)(strchr(l, ',') != NULL), 1);
        ones += strstr(l, "fm/test/c1/") && strstr(l, ": c1 ") != NULL;
    }
    ck_assert_msg(lines >= 3 && ones >= 1, "%d lines, %d right", lines, ones);
    ck_assert_msg(run("predict irun/last.safetensors --input fm/test/c9/00000.png --output "
                      "p.csv") == 0,
                  "%s", err_buf);
    ck_assert(file_exists("p.csv"));
}
END_TEST

START_TEST(image_config_errors) {
    static const struct {
        const char *data, *want;
    } cases[] = {
        {"  train: {images: fm, colour_mode: rgb}\n",
         "img_bad.yaml:14:23: unknown key 'colour_mode'"},
        {"  train: {images: fm, image_size: [0, 4]}\n", "image_size values must be in 1.."},
        {"  train: {images: fm, color_mode: cmyk}\n", "color_mode must be one of"},
        {"  train: {images: fm, interpolation: bicubic}\n", "interpolation must be one of"},
        {"  train: {images: fm, labels: null, label_mode: int}\n", "label_mode needs labels"},
        {"  train: {images: nowhere}\n", "nowhere: cannot open the folder"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char yaml[4096];
        snprintf(yaml, sizeof yaml, "%sdata:\n%s", cnn, cases[i].data);
        write_file("img_bad.yaml", yaml);
        ck_assert_int_ne(run("train img_bad.yaml --output bad"), 0);
        ck_assert_msg(strstr(err_buf, cases[i].want), "%s: %s", cases[i].want, err_buf);
    }
}
END_TEST

static Suite *images_suite(void) {
    Suite *s = suite_create("images");
    TCase *k = tcase_create("codec");
    tcase_add_test(k, resize_and_decode_match_keras);
    tcase_add_test(k, shuffle_and_split_match_keras);
    tcase_add_test(k, png_and_jpeg_decode);
    tcase_add_test(k, bad_files_name_themselves);
    suite_add_tcase(s, k);
    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 120);
    tcase_add_test(cli, train_from_png_folders_as_from_arrays);
    tcase_add_test(cli, image_config_errors);
    suite_add_tcase(s, cli);
    return s;
}

int main(void) {
    kerasc = getenv("KERASC");
    if (!kerasc) kerasc = "./kerasc";
    dir = kc_test_tmpdir();
    int rc = kc_test_run(images_suite());
    kc_json_free(expected);
    kc_test_rmdir(dir);
    free(dir);
    return rc;
}

/* PNG (libpng) and JPEG (libjpeg-turbo) decoding to 8-bit pixels with the
 * channels asked for, as tf.image.decode_image makes them. */
#include <errno.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "models/data/images.h"

void kc_image_free(kc_image *img) {
    free(img->px);
    memset(img, 0, sizeof *img);
}

static int check_size(const char *name, int64_t w, int64_t h, int channels, kc_image *img,
                      kc_error *e) {
    if (w < 1 || h < 1 || w > KC_IMAGE_MAX_SIDE || h > KC_IMAGE_MAX_SIDE ||
        w * h > KC_IMAGE_MAX_PIXELS)
        return kc_fail(e, KC_ERUNTIME,
                       "%s: an image of %lldx%lld pixels is not read (at most %d "
                       "a side and %lld pixels)",
                       name, (long long)w, (long long)h, KC_IMAGE_MAX_SIDE,
                       (long long)KC_IMAGE_MAX_PIXELS);
    img->w = w;
    img->h = h;
    img->c = channels;
    img->px = malloc((size_t)(w * h * channels));
    return img->px ? KC_OK : kc_fail(e, KC_ERUNTIME, "%s: out of memory", name);
}

/* ------------------------------------------------------------------ PNG --- */

typedef struct png_src {
    const uint8_t *buf;
    size_t n, at;
    char msg[200];
    jmp_buf jb;
} png_src;

static void png_read_mem(png_structp p, png_bytep out, size_t len) {
    png_src *s = png_get_io_ptr(p);
    if (len > s->n - s->at) png_error(p, "the file is truncated");
    memcpy(out, s->buf + s->at, len);
    s->at += len;
}

static void png_err(png_structp p, png_const_charp msg) {
    png_src *s = png_get_error_ptr(p);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    longjmp(s->jb, 1);
}

static void png_warn(png_structp p, png_const_charp msg) {
    (void)p;
    (void)msg;
}

/* The transforms that turn any PNG into 8-bit samples with `channels`. */
static void png_transforms(png_structp p, png_infop info, int channels) {
    int ct = png_get_color_type(p, info);
    if (png_get_bit_depth(p, info) == 16) png_set_strip_16(p);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
    if (ct == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(p, info) < 8)
        png_set_expand_gray_1_2_4_to_8(p);
    int has_trns = png_get_valid(p, info, PNG_INFO_tRNS) != 0;
    int color = (ct & PNG_COLOR_MASK_COLOR) || ct == PNG_COLOR_TYPE_PALETTE;
    int alpha = (ct & PNG_COLOR_MASK_ALPHA) || has_trns;
    if (channels == 4 && has_trns) png_set_tRNS_to_alpha(p);
    if (channels < 3 && color) png_set_rgb_to_gray_fixed(p, 1, 29900, 58700);
    if (channels >= 3 && !color) png_set_gray_to_rgb(p);
    if (channels == 4 && !alpha) png_set_add_alpha(p, 0xff, PNG_FILLER_AFTER);
    if (channels != 4 && (ct & PNG_COLOR_MASK_ALPHA)) png_set_strip_alpha(p);
}

static int png_decode(const char *name, const uint8_t *buf, size_t n, int channels, kc_image *img,
                      kc_error *e) {
    png_src src = {.buf = buf, .n = n};
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_err, png_warn);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&p, NULL, NULL);
        return kc_fail(e, KC_ERUNTIME, "%s: out of memory", name);
    }
    if (setjmp(src.jb)) {
        free(rows);
        png_destroy_read_struct(&p, &info, NULL);
        kc_image_free(img);
        return kc_fail(e, KC_ERUNTIME, "%s: not a readable PNG: %s", name, src.msg);
    }
    png_set_user_limits(p, KC_IMAGE_MAX_SIDE, KC_IMAGE_MAX_SIDE);
    png_set_read_fn(p, &src, png_read_mem);
    png_read_info(p, info);
    png_transforms(p, info, channels);
    png_read_update_info(p, info);
    int64_t w = png_get_image_width(p, info), h = png_get_image_height(p, info);
    int rc = check_size(name, w, h, channels, img, e);
    if (!rc && (int64_t)png_get_rowbytes(p, info) != w * channels)
        rc = kc_fail(e, KC_ERUNTIME, "%s: the PNG decodes to %d bytes a row, not %lld", name,
                     (int)png_get_rowbytes(p, info), (long long)(w * channels));
    if (!rc && !(rows = malloc((size_t)h * sizeof *rows)))
        rc = kc_fail(e, KC_ERUNTIME, "%s: out of memory", name);
    if (!rc) {
        for (int64_t y = 0; y < h; y++)
            rows[y] = img->px + y * w * channels;
        png_read_image(p, rows);
        png_read_end(p, NULL);
    }
    free(rows);
    png_destroy_read_struct(&p, &info, NULL);
    if (rc) kc_image_free(img);
    return rc;
}

/* ----------------------------------------------------------------- JPEG --- */

typedef struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
} jpeg_err;

static void jpeg_exit(j_common_ptr c) {
    longjmp(((jpeg_err *)c->err)->jb, 1);
}

static void jpeg_quiet(j_common_ptr c, int level) {
    (void)c;
    (void)level;
}

static void jpeg_rows(struct jpeg_decompress_struct *j, kc_image *img) {
    int64_t stride = img->w * img->c;
    uint8_t *row = img->px;
    int add_alpha = img->c == 4;
    while (j->output_scanline < j->output_height) {
        JSAMPROW r = row;
        jpeg_read_scanlines(j, &r, 1);
        if (add_alpha) /* RGB in place, spread to RGBA from the end */
            for (int64_t x = img->w - 1; x >= 0; x--) {
                uint8_t c0 = row[3 * x], c1 = row[3 * x + 1], c2 = row[3 * x + 2];
                row[4 * x] = c0, row[4 * x + 1] = c1, row[4 * x + 2] = c2, row[4 * x + 3] = 255;
            }
        row += stride;
    }
}

static int jpeg_decode(const char *name, const uint8_t *buf, size_t n, int channels, kc_image *img,
                       kc_error *e) {
    struct jpeg_decompress_struct j;
    jpeg_err err;
    j.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_exit;
    err.mgr.emit_message = jpeg_quiet;
    if (setjmp(err.jb)) {
        char msg[JMSG_LENGTH_MAX];
        err.mgr.format_message((j_common_ptr)&j, msg);
        jpeg_destroy_decompress(&j);
        kc_image_free(img);
        return kc_fail(e, KC_ERUNTIME, "%s: not a readable JPEG: %s", name, msg);
    }
    jpeg_create_decompress(&j);
    jpeg_mem_src(&j, buf, (unsigned long)n);
    jpeg_read_header(&j, TRUE);
    if (j.jpeg_color_space == JCS_CMYK || j.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&j);
        return kc_fail(e, KC_ERUNTIME, "%s: CMYK JPEGs are not supported (convert it to RGB)",
                       name);
    }
    if (channels == 4) { /* as tf.image.decode_image */
        jpeg_destroy_decompress(&j);
        return kc_fail(e, KC_ERUNTIME,
                       "%s: a JPEG has no alpha channel (color_mode rgba needs PNG files)", name);
    }
    j.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    j.dct_method = JDCT_IFAST;
    j.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&j);
    int rc = check_size(name, j.output_width, j.output_height, channels, img, e);
    if (!rc && j.output_components != (channels == 1 ? 1 : 3))
        rc = kc_fail(e, KC_ERUNTIME, "%s: the JPEG decodes to %d channels", name,
                     j.output_components);
    if (rc) {
        jpeg_destroy_decompress(&j);
        kc_image_free(img);
        return rc;
    }
    jpeg_rows(&j, img);
    jpeg_finish_decompress(&j);
    jpeg_destroy_decompress(&j);
    return KC_OK;
}

/* ------------------------------------------------------------ dispatch --- */

int kc_image_decode(const char *name, const uint8_t *buf, size_t n, int channels, kc_image *img,
                    kc_error *e) {
    memset(img, 0, sizeof *img);
    if (channels != 1 && channels != 3 && channels != 4)
        return kc_fail(e, KC_ECONFIG, "%s: images decode to 1, 3 or 4 channels, not %d", name,
                       channels);
    if (n >= 8 && !png_sig_cmp(buf, 0, 8)) return png_decode(name, buf, n, channels, img, e);
    if (n >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        return jpeg_decode(name, buf, n, channels, img, e);
    if (n >= 2 && buf[0] == 'B' && buf[1] == 'M')
        return kc_fail(e, KC_ERUNTIME, "%s: BMP images are not supported (convert it to PNG)",
                       name);
    if (n >= 6 && (!memcmp(buf, "GIF87a", 6) || !memcmp(buf, "GIF89a", 6)))
        return kc_fail(e, KC_ERUNTIME, "%s: GIF images are not supported (convert it to PNG)",
                       name);
    return kc_fail(e, KC_ERUNTIME, "%s: not a PNG or JPEG image", name);
}

int kc_image_read_file(const char *path, int channels, kc_image *img, kc_error *e) {
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f) return kc_fail(e, KC_ERUNTIME, "%s: cannot open: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = KC_OK;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            uint8_t *p = ncap <= ((size_t)1 << 31) ? realloc(buf, ncap) : NULL;
            if (!p) {
                rc = kc_fail(e, KC_ERUNTIME, "%s: too large or out of memory", path);
                break;
            }
            buf = p;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (!rc && ferror(f)) rc = kc_fail(e, KC_ERUNTIME, "%s: read error", path);
    fclose(f);
    if (!rc) rc = kc_image_decode(path, buf, n, channels, img, e);
    free(buf);
    return rc;
}

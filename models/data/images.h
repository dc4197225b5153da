/* Images from files: PNG and JPEG decoding, Keras's resize, and folders of
 * images as keras.utils.image_dataset_from_directory reads them.
 *
 * Pixels are 0..255. Decoding follows tf.image.decode_image (which Keras
 * uses): the channels asked for are made by the decoder (grayscale from RGB
 * by libpng's / libjpeg's conversion, RGB from gray by copying, alpha dropped
 * or added as 255), 16-bit PNG samples keep their high byte, JPEG uses the
 * fast integer DCT with fancy upsampling. Resizing is tf.image.resize
 * (half-pixel centres, no antialias): bilinear or nearest. A corrupt,
 * truncated or unsupported file is an error naming it. */
#ifndef KC_DATA_IMAGES_H
#define KC_DATA_IMAGES_H

#include <stdint.h>

#include "core/error.h"
#include "models/data/data.h"
#include "models/data/text.h"

/* Largest image decoded: width and height each, and pixels in all. */
#define KC_IMAGE_MAX_SIDE 32768
#define KC_IMAGE_MAX_PIXELS (INT64_C(1) << 28)

typedef struct kc_image {
    int64_t h, w;
    int c;       /* 1, 3 or 4 */
    uint8_t *px; /* h * w * c bytes, row-major, channels last */
} kc_image;

void kc_image_free(kc_image *img);

/* Decodes a PNG or JPEG (chosen by the bytes, not the name) to `channels`
 * (1, 3 or 4). BMP and GIF are recognised and refused by name. */
int kc_image_decode(const char *name, const uint8_t *buf, size_t n, int channels, kc_image *img,
                    kc_error *e);
int kc_image_read_file(const char *path, int channels, kc_image *img, kc_error *e);

typedef enum kc_interpolation { KC_INTERP_BILINEAR = 0, KC_INTERP_NEAREST } kc_interpolation;

typedef struct kc_image_opts {
    int64_t height, width; /* image_size: [h, w] (Keras's default [256, 256]) */
    int channels;          /* color_mode: grayscale 1, rgb 3 (default), rgba 4 */
    kc_interpolation interpolation;
    int crop_to_aspect_ratio; /* Keras's smart_resize: centre crop to the target's ratio */
} kc_image_opts;

void kc_image_opts_default(kc_image_opts *o);

/* Resizes img to o's size as Keras does (the centre crop first with
 * crop_to_aspect_ratio) into out (height * width * channels floats).
 * Returns 1 when every value is a whole number 0..255 (no interpolation
 * happened: the same size, or nearest), else 0. */
int kc_image_resize(const kc_image *img, const kc_image_opts *o, float *out);

/* Files and labels of a folder as Keras's index_directory: sorted subfolders
 * (not starting with '.') are the classes (or o->class_names, in their
 * order); every *.png, *.jpg, *.jpeg, *.bmp, *.gif below one (case-insensitive,
 * walked in sorted order) a sample; labels not inferred: every image below
 * the folder, unlabelled. Then shuffled (numpy's RandomState(seed).shuffle)
 * and split (validation_split, subset) as the text folders are. */
typedef struct kc_image_index {
    int64_t n;
    char **path;
    float *label; /* NULL when the labels are not inferred */
    int nclasses;
    char **class_names;
} kc_image_index;

void kc_image_index_free(kc_image_index *ix);
int kc_image_index_directory(const char *dir, const kc_text_dir_opts *o, kc_image_index *ix,
                             kc_error *e);

/* Decodes and resizes paths[0..n) into x: (n, height, width, channels),
 * uint8 while every value is whole, float32 once one is not. */
int kc_image_load_all(const char *const *paths, int64_t n, const kc_image_opts *o, kc_array *x,
                      kc_error *e);

/* Is the file name one of the image formats a folder is indexed for? */
int kc_image_is_image_name(const char *name);

#endif

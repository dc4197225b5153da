/* Keras 3's image augmentation layers: RandomFlip, RandomCrop,
 * RandomTranslation, RandomRotation, RandomZoom, RandomBrightness and
 * RandomContrast. Random only while training (RandomCrop also crops at
 * inference); parameters come from the counter RNG keyed by (seed,
 * stream(layer, step), sample), so they are the same bits on every backend
 * and thread count.
 *
 * The geometric layers are TensorFlow's ImageProjectiveTransformV3 (which
 * Keras's affine_transform runs): each output pixel (x, y) reads the input at
 * ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1,
 * mapped by the fill mode, with nearest or bilinear sampling. The host turns
 * the per-sample parameters into a table of source rows and weights (a gather
 * of the input viewed as (pixels + 1, channels), the extra row holding
 * fill_value); the device runs it with the embedding gather, and backward
 * runs the adjoint with the embedding scatter-add. The pointwise layers pass
 * dy through unchanged (Keras does not differentiate through them). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/layers/augment.h"
#include "models/layers/common.h"
#include "models/yaml.h"

typedef enum {
    AUG_FLIP,
    AUG_CROP,
    AUG_TRANSLATE,
    AUG_ROTATE,
    AUG_ZOOM,
    AUG_BRIGHTNESS,
    AUG_CONTRAST
} aug_kind;

enum { FILL_REFLECT, FILL_WRAP, FILL_CONSTANT, FILL_NEAREST };
enum { INTERP_BILINEAR, INTERP_NEAREST };
enum { FLIP_HORIZONTAL, FLIP_VERTICAL, FLIP_BOTH };

typedef struct aug_state {
    aug_kind kind;
    int flip_mode, fill_mode, interp;
    float fill_value;
    double lo[2], hi[2]; /* factor ranges: [0] height (or the only one), [1] width */
    int has_width;       /* RandomZoom's width_factor given */
    int height, width;   /* RandomCrop's target */
    double vr[2];        /* value_range */
    int has_seed;
    long long seed;
} aug_state;

/* Largest row count whose indices floats hold exactly. */
#define AUG_MAX_ROWS ((size_t)1 << 24)

/* ------------------------------------------------------------ arguments */

static int read_number(const kc_node *n, double *v, kc_error *e) {
    if (kc_node_float(n, v, e)) return KC_ECONFIG;
    if (!isfinite(*v)) return kc_node_fail(e, n, "expected a finite number");
    return KC_OK;
}

/* A factor: a number f (range [-|f|, |f|], or [max(-|f|, lo_bound), |f|]
 * when clamp_lo) or a list [a, b] (sorted). Each number must lie in
 * [lo_bound, hi_bound]; open_lo excludes lo_bound itself. */
static int read_factor(kc_args *a, const char *key, int required, double lo_bound, double hi_bound,
                       int open_lo, int clamp_lo, double *lo, double *hi, int *given, kc_error *e) {
    kc_node *n = kc_args_node(a, key);
    if (given) *given = n && !kc_node_is_null(n);
    if (!n || kc_node_is_null(n)) {
        if (required) return kc_node_fail(e, a->where, "%s needs argument '%s'", a->owner, key);
        *lo = *hi = 0.0;
        return KC_OK;
    }
    double v[2];
    int count = 1;
    if (n->kind == KC_NODE_SEQ) {
        if (n->n != 2)
            return kc_node_fail(e, n, "%s argument '%s' must be a number or a list of two numbers",
                                a->owner, key);
        count = 2;
        for (int i = 0; i < 2; i++)
            if (read_number(n->items[i], &v[i], e)) return KC_ECONFIG;
    } else if (read_number(n, &v[0], e)) {
        return KC_ECONFIG;
    }
    for (int i = 0; i < count; i++)
        if (v[i] > hi_bound || v[i] < lo_bound || (open_lo && v[i] == lo_bound))
            return kc_node_fail(e, n, "%s argument '%s' must be in %s%g, %g], got %g", a->owner,
                                key, open_lo ? "(" : "[", lo_bound, hi_bound, v[i]);
    if (count == 2) {
        *lo = fmin(v[0], v[1]);
        *hi = fmax(v[0], v[1]);
    } else {
        *hi = fabs(v[0]);
        *lo = clamp_lo ? fmax(-*hi, lo_bound) : -*hi;
    }
    return KC_OK;
}

static int read_seed(kc_layer *l, kc_args *a, kc_error *e) {
    aug_state *s = l->state;
    s->has_seed = kc_args_has(a, "seed");
    if (!s->has_seed) return KC_OK;
    return kc_args_int(a, "seed", 0, 0, LLONG_MIN, LLONG_MAX, &s->seed, e);
}

/* fill_mode, interpolation, fill_value, seed and data_format. */
static int read_geometry(kc_layer *l, kc_args *a, kc_error *e) {
    static const char *const modes[] = {"reflect", "wrap", "constant", "nearest", NULL};
    static const char *const interps[] = {"bilinear", "nearest", NULL};
    aug_state *s = l->state;
    double fv = 0.0;
    int rc = kc_args_enum(a, "fill_mode", "reflect", modes, &s->fill_mode, e);
    if (!rc) rc = kc_args_enum(a, "interpolation", "bilinear", interps, &s->interp, e);
    if (!rc) rc = kc_args_float(a, "fill_value", 0, 0.0, -INFINITY, INFINITY, &fv, e);
    if (!rc) rc = read_seed(l, a, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    s->fill_value = (float)fv;
    return rc;
}

static int read_value_range(kc_layer *l, kc_args *a, kc_error *e) {
    aug_state *s = l->state;
    s->vr[0] = 0.0;
    s->vr[1] = 255.0;
    kc_node *n = kc_args_node(a, "value_range");
    if (!n || kc_node_is_null(n)) return KC_OK;
    if (n->kind != KC_NODE_SEQ || n->n != 2)
        return kc_node_fail(e, n, "%s argument 'value_range' must be a list of two numbers",
                            a->owner);
    for (int i = 0; i < 2; i++)
        if (read_number(n->items[i], &s->vr[i], e)) return KC_ECONFIG;
    if (s->vr[0] > s->vr[1]) {
        double t = s->vr[0];
        s->vr[0] = s->vr[1];
        s->vr[1] = t;
    }
    return KC_OK;
}

static int flip_configure(kc_layer *l, kc_args *a, kc_error *e) {
    static const char *const modes[] = {"horizontal", "vertical", "horizontal_and_vertical", NULL};
    aug_state *s = l->state;
    s->kind = AUG_FLIP;
    s->interp = INTERP_NEAREST;
    int rc = kc_args_enum(a, "mode", "horizontal_and_vertical", modes, &s->flip_mode, e);
    if (!rc) rc = read_seed(l, a, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    return rc;
}

static int crop_configure(kc_layer *l, kc_args *a, kc_error *e) {
    aug_state *s = l->state;
    long long h = 0, w = 0;
    s->kind = AUG_CROP;
    int rc = kc_args_int(a, "height", 1, 0, 1, INT32_MAX, &h, e);
    if (!rc) rc = kc_args_int(a, "width", 1, 0, 1, INT32_MAX, &w, e);
    if (!rc) rc = read_seed(l, a, e);
    if (!rc) rc = kc_layer_data_format(a, e);
    s->height = (int)h;
    s->width = (int)w;
    return rc;
}

static int translate_configure(kc_layer *l, kc_args *a, kc_error *e) {
    aug_state *s = l->state;
    s->kind = AUG_TRANSLATE;
    int rc = read_factor(a, "height_factor", 1, -1, 1, 0, 0, &s->lo[0], &s->hi[0], NULL, e);
    if (!rc) rc = read_factor(a, "width_factor", 1, -1, 1, 0, 0, &s->lo[1], &s->hi[1], NULL, e);
    return rc ? rc : read_geometry(l, a, e);
}

static int rotate_configure(kc_layer *l, kc_args *a, kc_error *e) {
    aug_state *s = l->state;
    s->kind = AUG_ROTATE;
    int rc = read_factor(a, "factor", 1, -1, 1, 0, 1, &s->lo[0], &s->hi[0], NULL, e);
    return rc ? rc : read_geometry(l, a, e);
}

static int zoom_configure(kc_layer *l, kc_args *a, kc_error *e) {
    aug_state *s = l->state;
    s->kind = AUG_ZOOM;
    int rc = read_factor(a, "height_factor", 1, -1, 1, 1, 0, &s->lo[0], &s->hi[0], NULL, e);
    if (!rc)
        rc = read_factor(a, "width_factor", 0, -1, 1, 1, 0, &s->lo[1], &s->hi[1], &s->has_width, e);
    return rc ? rc : read_geometry(l, a, e);
}

static int brightness_configure(kc_layer *l, kc_args *a, kc_error *e) {
    aug_state *s = l->state;
    s->kind = AUG_BRIGHTNESS;
    int rc = read_factor(a, "factor", 1, -1, 1, 0, 1, &s->lo[0], &s->hi[0], NULL, e);
    if (!rc) rc = read_value_range(l, a, e);
    return rc ? rc : read_seed(l, a, e);
}

static int contrast_configure(kc_layer *l, kc_args *a, kc_error *e) {
    aug_state *s = l->state;
    s->kind = AUG_CONTRAST;
    int rc = read_factor(a, "factor", 1, 0, 1, 0, 1, &s->lo[0], &s->hi[0], NULL, e);
    if (!rc) rc = read_value_range(l, a, e);
    return rc ? rc : read_seed(l, a, e);
}

/* ---------------------------------------------------------------- build */

static int aug_build(kc_layer *l, kc_error *e) {
    const aug_state *s = l->state;
    if (l->in_shape.rank != 3)
        return kc_layer_fail(l, e, "expects images (height, width, channels), got rank %d",
                             l->in_shape.rank);
    l->out_shape = l->in_shape;
    if (s->kind == AUG_CROP) {
        l->out_shape.d[0] = s->height;
        l->out_shape.d[1] = s->width;
    }
    return KC_OK;
}

static int is_geometric(const aug_state *s) {
    return s->kind != AUG_BRIGHTNESS && s->kind != AUG_CONTRAST;
}

/* Taps per output pixel the layer may use: 4 when it can sample bilinearly. */
static size_t max_taps(const aug_state *s) {
    if (s->kind == AUG_FLIP) return 1;
    if (s->kind == AUG_CROP) return 4;
    return s->interp == INTERP_BILINEAR ? 4 : 1;
}

static size_t pixels(const kc_shape *sh) {
    return (size_t)sh->d[0] * (size_t)sh->d[1];
}

static size_t aug_workspace(const kc_layer *l, int max_batch, const kc_device *d) {
    const aug_state *s = l->state;
    size_t nb = (size_t)max_batch, c = (size_t)l->in_shape.d[2];
    if (!is_geometric(s)) return (nb + nb * c) * sizeof(float);
    size_t rows = nb * pixels(&l->in_shape) + 1, m = nb * pixels(&l->out_shape);
    size_t k = max_taps(s);
    return (rows * c + 2 * k * m + k * m * c) * sizeof(float);
}

/* ------------------------------------------------------------- drawing */

static double lerp(double lo, double hi, float u) {
    return lo + (double)u * (hi - lo);
}

static int crop_is_random(const kc_layer *l, const kc_exec *ex) {
    const aug_state *s = l->state;
    return ex->training && l->in_shape.d[0] > s->height && l->in_shape.d[1] > s->width;
}

int kc_augment_is(const kc_layer *l) {
    return l->cls->configure == flip_configure || l->cls->configure == crop_configure ||
           l->cls->configure == translate_configure || l->cls->configure == rotate_configure ||
           l->cls->configure == zoom_configure || l->cls->configure == brightness_configure ||
           l->cls->configure == contrast_configure;
}

void kc_augment_draw(const kc_layer *l, const kc_exec *ex, int i, double p[KC_AUG_NPARAM]) {
    const aug_state *s = l->state;
    uint64_t seed = s->has_seed ? (uint64_t)s->seed : ex->seed;
    uint64_t stream = kc_rng_stream(l->cls->base_name, (uint64_t)l->index, ex->step);
    uint64_t at = (uint64_t)(s->kind == AUG_CROP ? 0 : i) * KC_AUG_NPARAM;
    float u0 = kc_rng_uniform(seed, stream, at), u1 = kc_rng_uniform(seed, stream, at + 1);
    double h = (double)l->in_shape.d[0], w = (double)l->in_shape.d[1];
    p[0] = p[1] = 0.0;
    switch (s->kind) {
    case AUG_FLIP:
        p[0] = u0 <= 0.5f;
        break;
    case AUG_CROP:
        p[0] = floor((double)u0 * (h - s->height + 1));
        p[1] = floor((double)u1 * (w - s->width + 1));
        break;
    case AUG_TRANSLATE:
        p[0] = lerp(s->lo[0], s->hi[0], u0) * h;
        p[1] = lerp(s->lo[1], s->hi[1], u1) * w;
        break;
    case AUG_ROTATE:
        p[0] = lerp(s->lo[0], s->hi[0], u0) * 360.0;
        break;
    case AUG_ZOOM:
        p[0] = 1.0 + lerp(s->lo[0], s->hi[0], u0);
        p[1] = s->has_width ? 1.0 + lerp(s->lo[1], s->hi[1], u1) : p[0];
        break;
    case AUG_BRIGHTNESS:
        p[0] = lerp(s->lo[0], s->hi[0], u0) * (s->vr[1] - s->vr[0]);
        break;
    case AUG_CONTRAST:
        p[0] = lerp(1.0 - s->lo[0], 1.0 + s->hi[0], u0);
        break;
    }
}

/* ------------------------------------------------------ the sample plan */

/* One sample's geometry: output (x, y) reads window coordinates
 * t(x, y); the window is rows [h0, h0 + hc) x cols [w0, w0 + wc). */
typedef struct geo {
    float t[8];
    int h0, w0, hc, wc;
    int mode, interp;
} geo;

static void geo_identity(geo *g, int h, int w) {
    memset(g, 0, sizeof *g);
    g->t[0] = g->t[4] = 1.0f;
    g->hc = h;
    g->wc = w;
}

/* RandomCrop: the random box while training (when the input is larger in
 * both axes), else the centred box of the target's aspect ratio resized to
 * the target (TF's half-pixel bilinear resize). */
static void crop_plan(const kc_layer *l, const kc_exec *ex, const double *p, geo *g) {
    const aug_state *s = l->state;
    int h = (int)l->in_shape.d[0], w = (int)l->in_shape.d[1];
    g->mode = FILL_NEAREST;
    g->interp = INTERP_NEAREST;
    if (crop_is_random(l, ex)) {
        g->hc = s->height;
        g->wc = s->width;
        g->h0 = (int)p[0];
        g->w0 = (int)p[1];
        return;
    }
    int ch = (int)((double)w * s->height / s->width), cw = (int)((double)h * s->width / s->height);
    ch = ch < h ? ch : h;
    cw = cw < w ? cw : w;
    g->hc = ch < 1 ? 1 : ch;
    g->wc = cw < 1 ? 1 : cw;
    g->h0 = (int)((double)(h - g->hc) / 2);
    g->w0 = (int)((double)(w - g->wc) / 2);
    if (g->hc == s->height && g->wc == s->width) return;
    float sy = (float)g->hc / (float)s->height, sx = (float)g->wc / (float)s->width;
    g->interp = INTERP_BILINEAR;
    g->t[0] = sx;
    g->t[2] = 0.5f * sx - 0.5f;
    g->t[4] = sy;
    g->t[5] = 0.5f * sy - 0.5f;
}

static void geo_plan(const kc_layer *l, const kc_exec *ex, const double *p, geo *g) {
    const aug_state *s = l->state;
    int h = (int)l->in_shape.d[0], w = (int)l->in_shape.d[1];
    geo_identity(g, h, w);
    g->mode = s->fill_mode;
    g->interp = s->interp;
    float *t = g->t;
    switch (s->kind) {
    case AUG_FLIP:
        if (p[0] == 0.0) break;
        if (s->flip_mode != FLIP_VERTICAL) t[0] = -1.0f, t[2] = (float)(w - 1);
        if (s->flip_mode != FLIP_HORIZONTAL) t[4] = -1.0f, t[5] = (float)(h - 1);
        break;
    case AUG_CROP:
        crop_plan(l, ex, p, g);
        break;
    case AUG_TRANSLATE:
        t[2] = (float)-p[1];
        t[5] = (float)-p[0];
        break;
    case AUG_ROTATE: {
        double th = p[0] * 3.14159265358979323846 / 180.0, c = cos(th), sn = sin(th);
        double cx = 0.5 * (w - 1), cy = 0.5 * (h - 1);
        t[0] = (float)c;
        t[1] = (float)-sn;
        t[2] = (float)(cx - cx * c + cy * sn);
        t[3] = (float)sn;
        t[4] = (float)c;
        t[5] = (float)(cy - cx * sn - cy * c);
        break;
    }
    case AUG_ZOOM:
        t[0] = (float)p[1];
        t[2] = (float)((w - 1.0) / 2.0 * (1.0 - p[1]));
        t[4] = (float)p[0];
        t[5] = (float)((h - 1.0) / 2.0 * (1.0 - p[0]));
        break;
    default:
        break;
    }
}

/* TF's MapCoordinate for each fill mode (constant leaves c as it is). */
static float map_coord(float c, int len, int mode) {
    float hi = (float)(len - 1);
    if (mode == FILL_CONSTANT) return c;
    if (mode == FILL_REFLECT && (c < 0 || c > hi)) {
        float sz2 = 2.0f * (float)len;
        if (len <= 1) {
            c = 0;
        } else if (c < 0) {
            c = sz2 * (float)(int64_t)(-c / sz2) + c;
            c = c < -(float)len ? c + sz2 : -c - 1.0f;
        } else {
            c -= sz2 * (float)(int64_t)(c / sz2);
            if (c >= (float)len) c = sz2 - c - 1.0f;
        }
    } else if (mode == FILL_WRAP && (c < 0 || c > hi)) {
        float sz = (float)(len - 1);
        if (len <= 1)
            c = 0;
        else if (c < 0)
            c += (float)len * ((float)(int64_t)(-c / sz) + 1.0f);
        else
            c -= (float)len * (float)(int64_t)(c / sz);
    }
    return c < 0 ? 0 : c > hi ? hi : c;
}

/* Row of the gathered table for window cell (ky, kx) of sample b, or the
 * fill row when the cell lies outside the window. */
static float tap_row(const geo *g, size_t base, int w, float ky, float kx, size_t fill) {
    if (!(ky >= 0 && kx >= 0 && ky < (float)g->hc && kx < (float)g->wc)) return (float)fill;
    return (float)(base + (size_t)(g->h0 + (int)ky) * (size_t)w + (size_t)(g->w0 + (int)kx));
}

/* Fills the k-tap table of output pixel m: ids[j * mt + m], wt[j * mt + m]. */
static void pixel_taps(const geo *g, int ox, int oy, size_t base, int w, size_t fill, size_t taps,
                       size_t mt, size_t m, float *ids, float *wt) {
    const float *t = g->t;
    float fx = (float)ox, fy = (float)oy, k = t[6] * fx + t[7] * fy + 1.0f;
    float x = map_coord((t[0] * fx + t[1] * fy + t[2]) / k, g->wc, g->mode);
    float y = map_coord((t[3] * fx + t[4] * fy + t[5]) / k, g->hc, g->mode);
    if (!(fabsf(x) < 1e8f && fabsf(y) < 1e8f)) x = y = -1.0f; /* far outside: fill */
    if (g->interp == INTERP_NEAREST) {
        ids[m] = tap_row(g, base, w, roundf(y), roundf(x), fill);
        if (taps == 4) {
            wt[m] = 1.0f;
            for (size_t j = 1; j < 4; j++)
                ids[j * mt + m] = (float)fill, wt[j * mt + m] = 0.0f;
        }
        return;
    }
    float y0 = floorf(y), x0 = floorf(x), y1 = y0 + 1.0f, x1 = x0 + 1.0f;
    float ky[4] = {y0, y0, y1, y1}, kx[4] = {x0, x1, x0, x1};
    float wy[4] = {y1 - y, y1 - y, y - y0, y - y0}, wx[4] = {x1 - x, x - x0, x1 - x, x - x0};
    for (size_t j = 0; j < 4; j++) {
        ids[j * mt + m] = tap_row(g, base, w, ky[j], kx[j], fill);
        wt[j * mt + m] = wy[j] * wx[j];
    }
}

/* The whole batch's table: ids and weights (taps x m each). */
static void build_table(const kc_layer *l, const kc_exec *ex, const double *p, size_t taps,
                        float *ids, float *wt) {
    int h = (int)l->in_shape.d[0], w = (int)l->in_shape.d[1];
    int oh = (int)l->out_shape.d[0], ow = (int)l->out_shape.d[1];
    size_t nb = (size_t)ex->batch, fill = nb * (size_t)h * (size_t)w;
    size_t mt = nb * (size_t)oh * (size_t)ow;
    for (size_t b = 0; b < nb; b++) {
        geo g;
        geo_plan(l, ex, p + b * KC_AUG_NPARAM, &g);
        if (taps == 1) g.interp = INTERP_NEAREST;
        size_t base = b * (size_t)h * (size_t)w;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                size_t m = (b * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox;
                pixel_taps(&g, ox, oy, base, w, fill, taps, mt, m, ids, wt);
            }
    }
}

/* Does any sample of this call sample bilinearly? */
static size_t call_taps(const kc_layer *l, const kc_exec *ex, const double *p) {
    if (max_taps(l->state) == 1) return 1;
    for (int b = 0; b < ex->batch; b++) {
        geo g;
        geo_plan(l, ex, p + (size_t)b * KC_AUG_NPARAM, &g);
        if (g.interp == INTERP_BILINEAR) return 4;
    }
    return 1;
}

/* --------------------------------------------------- the device side */

typedef struct geo_ws {
    size_t rows, c, m, taps;
    kc_buf ext, ids, wt, tmp;
} geo_ws;

/* Builds and uploads the table; lays out the workspace. */
static int geo_prepare(kc_layer *l, const kc_exec *ex, const double *p, geo_ws *g) {
    kc_device *d = ex->dev;
    g->c = (size_t)l->in_shape.d[2];
    g->rows = (size_t)ex->batch * pixels(&l->in_shape) + 1;
    g->m = (size_t)ex->batch * pixels(&l->out_shape);
    if (g->rows > AUG_MAX_ROWS)
        return kc_device_fail(d, KC_ECONFIG,
                              "layer '%s': %zu input pixels in one batch, at most %zu", l->name,
                              g->rows - 1, AUG_MAX_ROWS - 1);
    g->taps = call_taps(l, ex, p);
    size_t km = g->taps * g->m;
    g->ext = ex->ws;
    g->ids = kc_buf_f(g->ext, g->rows * g->c);
    g->wt = kc_buf_f(g->ids, km);
    g->tmp = kc_buf_f(g->wt, km);
    float *host = malloc(2 * km * sizeof(float));
    if (!host) return kc_device_fail(d, KC_ERUNTIME, "layer '%s': out of memory", l->name);
    build_table(l, ex, p, g->taps, host, host + km);
    kc_upload(d, g->ids, host, 2 * km * sizeof(float));
    free(host);
    return kc_device_status(d);
}

static int geo_forward(kc_layer *l, const kc_exec *ex, const double *p, kc_buf x, kc_buf y) {
    kc_device *d = ex->dev;
    const aug_state *s = l->state;
    geo_ws g;
    if (geo_prepare(l, ex, p, &g)) return kc_device_status(d);
    size_t n_in = (g.rows - 1) * g.c, km = g.taps * g.m;
    kc_layer_copy(d, g.ext, x, n_in);
    kc_fill(d, kc_buf_f(g.ext, n_in), s->kind == AUG_CROP ? 0.0f : s->fill_value, g.c);
    if (g.taps == 1) return kc_embedding_forward(d, g.ids, g.ext, y, g.m, g.rows, g.c);
    kc_embedding_forward(d, g.ids, g.ext, g.tmp, km, g.rows, g.c);
    kc_bcast bc = kc_bcast_cols(km, g.c);
    kc_binary(d, KC_BIN_MUL, &bc, g.tmp, g.wt, g.tmp);
    kc_reduce_desc rd = {1, (int64_t)g.taps, (int64_t)(g.m * g.c)};
    return kc_reduce(d, KC_RED_SUM, &rd, 1.0f, g.tmp, 0.0f, y);
}

static int geo_adjoint(kc_layer *l, const kc_exec *ex, const double *p, kc_buf dy, kc_buf dx) {
    kc_device *d = ex->dev;
    geo_ws g;
    if (geo_prepare(l, ex, p, &g)) return kc_device_status(d);
    size_t n_in = (g.rows - 1) * g.c, n_out = g.m * g.c, km = g.taps * g.m;
    kc_fill(d, g.ext, 0.0f, g.rows * g.c);
    if (g.taps == 1) {
        kc_embedding_backward(d, g.ids, dy, g.ext, g.m, g.rows, g.c);
    } else {
        for (size_t j = 0; j < g.taps; j++)
            kc_layer_copy(d, kc_buf_f(g.tmp, j * n_out), dy, n_out);
        kc_bcast bc = kc_bcast_cols(km, g.c);
        kc_binary(d, KC_BIN_MUL, &bc, g.tmp, g.wt, g.tmp);
        kc_embedding_backward(d, g.ids, g.tmp, g.ext, km, g.rows, g.c);
    }
    return kc_layer_copy(d, dx, g.ext, n_in);
}

/* Per-sample values (p[i * KC_AUG_NPARAM]) uploaded to the workspace. */
static kc_buf upload_per_sample(const kc_exec *ex, const double *p) {
    float *v = malloc((size_t)ex->batch * sizeof(float));
    if (!v) {
        kc_device_fail(ex->dev, KC_ERUNTIME, "out of memory");
        return ex->ws;
    }
    for (int i = 0; i < ex->batch; i++)
        v[i] = (float)p[(size_t)i * KC_AUG_NPARAM];
    kc_upload(ex->dev, ex->ws, v, (size_t)ex->batch * sizeof(float));
    free(v);
    return ex->ws;
}

/* Brightness: y = clip(x + delta); contrast: y = clip((x - mean) f + mean),
 * the mean per image and channel. */
static int point_forward(kc_layer *l, const kc_exec *ex, const double *p, kc_buf x, kc_buf y) {
    kc_device *d = ex->dev;
    const aug_state *s = l->state;
    size_t nb = (size_t)ex->batch, hw = pixels(&l->in_shape), c = (size_t)l->in_shape.d[2];
    kc_buf v = upload_per_sample(ex, p);
    kc_bcast per_image = kc_bcast_cols(nb, hw * c);
    if (s->kind == AUG_BRIGHTNESS) {
        kc_binary(d, KC_BIN_ADD, &per_image, x, v, y);
    } else {
        kc_buf mean = kc_buf_f(v, nb);
        kc_reduce_desc rd = {(int64_t)nb, (int64_t)hw, (int64_t)c};
        kc_reduce(d, KC_RED_MEAN, &rd, 1.0f, x, 0.0f, mean);
        int64_t xs[3] = {(int64_t)nb, (int64_t)hw, (int64_t)c},
                ms[3] = {(int64_t)nb, 1, (int64_t)c};
        kc_bcast per_channel;
        int rc = kc_bcast_make(&per_channel, xs, 3, ms, 3, NULL);
        if (rc) return kc_device_fail(d, rc, "layer '%s': contrast geometry", l->name);
        kc_binary(d, KC_BIN_SUB, &per_channel, x, mean, y);
        kc_binary(d, KC_BIN_MUL, &per_image, y, v, y);
        kc_binary(d, KC_BIN_ADD, &per_channel, y, mean, y);
    }
    return kc_clip(d, y, y, (float)s->vr[0], (float)s->vr[1], nb * hw * c);
}

int kc_augment_apply(kc_layer *l, const kc_exec *ex, const double *p, kc_buf x, kc_buf y) {
    if (is_geometric(l->state)) return geo_forward(l, ex, p, x, y);
    return point_forward(l, ex, p, x, y);
}

int kc_augment_adjoint(kc_layer *l, const kc_exec *ex, const double *p, kc_buf dy, kc_buf dx) {
    if (is_geometric(l->state)) return geo_adjoint(l, ex, p, dy, dx);
    return kc_layer_copy(ex->dev, dx, dy, (size_t)ex->batch * (size_t)kc_shape_numel(&l->in_shape));
}

/* ------------------------------------------------- forward / backward */

/* Inference is the identity, except RandomCrop's centred crop. */
static int aug_is_identity(const kc_layer *l, const kc_exec *ex) {
    const aug_state *s = l->state;
    return !ex->training && s->kind != AUG_CROP;
}

static double *draw_all(const kc_layer *l, const kc_exec *ex) {
    double *p = calloc((size_t)ex->batch * KC_AUG_NPARAM + 1, sizeof(double));
    if (!p) {
        kc_device_fail(ex->dev, KC_ERUNTIME, "layer '%s': out of memory", l->name);
        return NULL;
    }
    if (ex->training)
        for (int i = 0; i < ex->batch; i++)
            kc_augment_draw(l, ex, i, p + (size_t)i * KC_AUG_NPARAM);
    return p;
}

static int aug_forward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y) {
    if (aug_is_identity(l, ex))
        return kc_layer_copy(ex->dev, y, x,
                             (size_t)ex->batch * (size_t)kc_shape_numel(&l->in_shape));
    double *p = draw_all(l, ex);
    if (!p) return kc_device_status(ex->dev);
    int rc = kc_augment_apply(l, ex, p, x, y);
    free(p);
    return rc;
}

/* dx = the adjoint of the forward's transform (the same draws again). */
static int aug_backward(kc_layer *l, const kc_exec *ex, kc_buf x, kc_buf y, kc_buf dy, kc_buf dx) {
    if (!kc_buf_ok(dx)) return kc_device_status(ex->dev);
    if (aug_is_identity(l, ex))
        return kc_layer_copy(ex->dev, dx, dy,
                             (size_t)ex->batch * (size_t)kc_shape_numel(&l->in_shape));
    double *p = draw_all(l, ex);
    if (!p) return kc_device_status(ex->dev);
    int rc = kc_augment_adjoint(l, ex, p, dy, dx);
    free(p);
    return rc;
}

#define AUG_CLASS(var, cname, bname, conf)                                                         \
    const kc_layer_class var = {                                                                   \
        .class_name = cname,                                                                       \
        .base_name = bname,                                                                        \
        .state_size = sizeof(aug_state),                                                           \
        .configure = conf,                                                                         \
        .build = aug_build,                                                                        \
        .workspace_bytes = aug_workspace,                                                          \
        .forward = aug_forward,                                                                    \
        .backward = aug_backward,                                                                  \
    }

AUG_CLASS(kc_random_flip_class, "RandomFlip", "random_flip", flip_configure);
AUG_CLASS(kc_random_crop_class, "RandomCrop", "random_crop", crop_configure);
AUG_CLASS(kc_random_translation_class, "RandomTranslation", "random_translation",
          translate_configure);
AUG_CLASS(kc_random_rotation_class, "RandomRotation", "random_rotation", rotate_configure);
AUG_CLASS(kc_random_zoom_class, "RandomZoom", "random_zoom", zoom_configure);
AUG_CLASS(kc_random_brightness_class, "RandomBrightness", "random_brightness",
          brightness_configure);
AUG_CLASS(kc_random_contrast_class, "RandomContrast", "random_contrast", contrast_configure);

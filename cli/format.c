#include "cli/format.h"

#include <math.h>
#include <stdio.h>

char *kc_fmt_grouped(char *buf, size_t cap, int64_t v) {
    /* Work on the magnitude as unsigned so INT64_MIN is representable. */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char rev[32];
    int n = 0, digits = 0;
    do {
        if (digits > 0 && digits % 3 == 0) rev[n++] = ',';
        rev[n++] = (char)('0' + (int)(mag % 10));
        mag /= 10;
        digits++;
    } while (mag);
    if (v < 0) rev[n++] = '-';
    size_t o = 0;
    while (n > 0 && o + 1 < cap)
        buf[o++] = rev[--n];
    if (cap) buf[o] = '\0';
    return buf;
}

char *kc_fmt_bytes(char *buf, size_t cap, double bytes) {
    static const char *const units[] = {"B", "KB", "MB", "GB", "TB", "PB"};
    const int nunits = (int)(sizeof units / sizeof units[0]);
    if (isnan(bytes)) {
        snprintf(buf, cap, "nan B");
        return buf;
    }
    /* Keras divides once more after the last unit before printing it, so
     * sizes past 1024 PB come out scaled down by 1024: kept for fidelity. */
    for (int i = 0; i < nunits; i++) {
        if (bytes / 1024 < 1) {
            snprintf(buf, cap, "%.2f %s", bytes, units[i]);
            return buf;
        }
        bytes /= 1024;
    }
    snprintf(buf, cap, "%.2f %s", bytes, units[nunits - 1]);
    return buf;
}

char *kc_fmt_metric(char *buf, size_t cap, double v, int verbose) {
    if (isnan(v)) {
        snprintf(buf, cap, "nan");
        return buf;
    }
    int fixed = verbose == 2 ? v > 1e-3 : fabs(v) > 1e-3;
    snprintf(buf, cap, fixed ? "%.4f" : "%.4e", v);
    return buf;
}

char *kc_fmt_step_time(char *buf, size_t cap, double t, const char *unit) {
    double shown;
    const char *scale;
    if (t >= 1 || t == 0) {
        shown = t;
        scale = "s";
    } else if (t >= 1e-3) {
        shown = t * 1000.0;
        scale = "ms";
    } else {
        shown = t * 1000000.0;
        scale = "us";
    }
    if (isnan(shown))
        snprintf(buf, cap, " nan%s/%s", scale, unit);
    else
        snprintf(buf, cap, " %.0f%s/%s", shown, scale, unit);
    return buf;
}

/* Python's float floor division for positive operands. */
static double floor_div(double a, double b) {
    return floor((a - fmod(a, b)) / b);
}

char *kc_fmt_eta(char *buf, size_t cap, double eta) {
    if (!(eta > 0) || !isfinite(eta)) eta = 0;
    if (eta > 1e15) eta = 1e15; /* keeps the integer conversions defined */
    if (eta > 3600) {
        long long h = (long long)floor_div(eta, 3600);
        long long m = (long long)floor_div(fmod(eta, 3600), 60);
        long long s = (long long)fmod(eta, 60);
        snprintf(buf, cap, "%lld:%02lld:%02lld", h, m, s);
    } else if (eta > 60) {
        long long m = (long long)floor_div(eta, 60);
        long long s = (long long)fmod(eta, 60);
        snprintf(buf, cap, "%lld:%02lld", m, s);
    } else {
        snprintf(buf, cap, "%llds", (long long)eta);
    }
    return buf;
}

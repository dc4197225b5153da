/* Number and time formats shared by the console output of the kerasc commands.
 * Each function writes a NUL-terminated string into buf (truncated to cap bytes,
 * like snprintf) and returns buf, so calls can be nested in a printf argument
 * list. KC_FMT_CAP bytes is always enough. */
#ifndef KC_CLI_FORMAT_H
#define KC_CLI_FORMAT_H

#include <stddef.h>
#include <stdint.h>

enum { KC_FMT_CAP = 64 };

/* 18496 -> "18,496", -1234567 -> "-1,234,567" (Python's f"{v:,}"). */
char *kc_fmt_grouped(char *buf, size_t cap, int64_t v);

/* A byte count as Keras's summary prints it: "476.29 KB", "0.00 B".
 * Divides by 1024 while the value is >= 1024, units B KB MB GB TB PB. */
char *kc_fmt_bytes(char *buf, size_t cap, double bytes);

/* A metric value as the progress bar prints it. verbose 1: "%.4f" when
 * |v| > 1e-3, else "%.4e"; verbose 2 compares v itself, so negative values
 * take the exponent form. NaN prints as "nan" whatever its sign bit. */
char *kc_fmt_metric(char *buf, size_t cap, double v, int verbose);

/* Time per unit with a leading space: " 15s/step", " 8ms/step", " 120us/step".
 * Seconds when t >= 1 or t == 0, milliseconds when t >= 1e-3, else
 * microseconds; rounded half-even like Python's "%.0f". unit is e.g. "step". */
char *kc_fmt_step_time(char *buf, size_t cap, double t, const char *unit);

/* Remaining time, truncated: "h:mm:ss" above 3600 s, "m:ss" above 60 s,
 * otherwise "Ns". Negative or non-finite input counts as 0. */
char *kc_fmt_eta(char *buf, size_t cap, double seconds);

#endif

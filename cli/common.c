#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "models/keras_import.h"
#include "models/keras_weights.h"

int kc_cli_report(const char *verb, const kc_error *e) {
    fprintf(stderr, "kerasc %s: %s\n", verb, e->msg);
    if (e->code == KC_EINTERRUPTED) return 130;
    return e->code == KC_ECONFIG ? 2 : 1;
}

int kc_cli_usage_error(const char *verb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kerasc %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'kerasc %s --help'.\n", verb);
    va_end(ap);
    return 2;
}

/* The one parser of integer options: decimal digits only (no sign, space
 * or suffix), from min to INT_MAX, since the counts they set are ints. */
int kc_cli_parse_count(const char *verb, const char *opt, const char *s, long long min,
                       long long *out) {
    char *end = NULL;
    errno = 0;
    int digits = *s >= '0' && *s <= '9';
    long long v = digits ? strtoll(s, &end, 10) : 0;
    if (!digits || *end || errno || v < min || v > INT_MAX)
        return kc_cli_usage_error(verb, "%s expects an integer from %lld to %d, got '%s'", opt, min,
                                  INT_MAX, s);
    *out = v;
    return 0;
}

int kc_cli_load_config(const char *path, kc_config **out, int *is_checkpoint, kc_error *e) {
    kc_weights_kind k = kc_weights_kind_of(path);
    *is_checkpoint = kc_weights_has_model(k);
    if (k != KC_WEIGHTS_UNKNOWN) return kc_weights_config(path, out, e);
    if (kc_keras_is_model_path(path)) return kc_keras_config_load(path, out, e);
    return kc_config_load(path, out, e);
}

int kc_cli_verbose(int cfg_verbose) {
    if (cfg_verbose >= 0) return cfg_verbose;
    return isatty(STDOUT_FILENO) ? 1 : 2;
}

void kc_cli_warn_mask_dropped(const char *verb, const kc_config *cfg) {
    if (cfg && cfg->model && cfg->model->mask_dropped[0])
        fprintf(stderr, "kerasc %s: warning: %s; the layers after it do not see the mask\n", verb,
                cfg->model->mask_dropped);
}

/* The options shared by the verbs that run a model: overrides of the fit
 * section, threads, and where to compute (--backend, --device or
 * $KERASC_DEVICE). */
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"

void kc_cli_run_opts_init(kc_run_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = -1;
}

/* A device index (kerasc --list-devices). `what` is the option or variable. */
static int parse_device(const char *verb, const char *what, const char *s, int *out) {
    long long v;
    if (kc_cli_parse_count(verb, what, s, 0, &v)) return 2;
    *out = (int)v;
    return 0;
}

static int parse_backend(const char *verb, const char *arg, kc_run_opts *o) {
    if (!kc_backend_by_name(arg))
        return kc_cli_usage_error(verb, "unknown backend '%s' (%s)", arg, kc_backend_names());
    o->backend = arg;
    return 0;
}

int kc_cli_parse_run_opt(const char *verb, int c, const char *arg, kc_run_opts *o,
                         long long *verbose) {
    long long v;
    switch (c) {
    case KC_OPT_EPOCHS:
        return kc_cli_parse_count(verb, "--epochs", arg, 1, &o->epochs);
    case KC_OPT_BATCH:
        return kc_cli_parse_count(verb, "--batch-size", arg, 1, &o->batch_size);
    case KC_OPT_STEPS:
        return kc_cli_parse_count(verb, "--steps-per-epoch", arg, 1, &o->steps_per_epoch);
    case KC_OPT_SEED:
        o->has_seed = 1;
        return kc_cli_parse_count(verb, "--seed", arg, 0, &o->seed);
    case KC_OPT_THREADS:
        if (kc_cli_parse_count(verb, "--threads", arg, 0, &v)) return 2;
        o->threads = (int)v;
        return 0;
    case KC_OPT_OUTPUT:
        o->output_dir = arg;
        return 0;
    case KC_OPT_VERBOSE:
        if (kc_cli_parse_count(verb, "--verbose", arg, 0, verbose)) return 2;
        if (*verbose > 2) return kc_cli_usage_error(verb, "--verbose expects 0, 1 or 2");
        return 0;
    case KC_OPT_BACKEND:
        return parse_backend(verb, arg, o);
    case KC_OPT_DEVICE:
        return parse_device(verb, "--device", arg, &o->device);
    }
    return 2;
}

int kc_cli_run_opts_finish(const char *verb, kc_run_opts *o) {
    if (o->device >= 0) return 0; /* --device wins */
    o->device = 0;
    const char *env = getenv("KERASC_DEVICE");
    if (!env || !*env) return 0;
    return parse_device(verb, "KERASC_DEVICE", env, &o->device);
}

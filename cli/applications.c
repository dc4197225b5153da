/* kerasc applications: a Keras Application's architecture as a kerasc model file. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "models/applications/applications.h"

static const char usage[] =
    "Usage: kerasc applications [NAME [options] [-o FILE.yaml]]\n"
    "\n"
    "Writes the kerasc model file of a Keras Application, the model\n"
    "keras.applications.NAME(weights=None, ...) builds: Keras's layers, names,\n"
    "order and shapes, and commented compile, data and fit lines to fill in.\n"
    "Without NAME, lists the architectures. NAME is kerasc's or Keras's spelling\n"
    "in any case (resnet50, ResNet50).\n"
    "\n"
    "  --include-top              the classifier on top (the default)\n"
    "  --no-top                   without it: include_top=False\n"
    "  --input-shape ROWS,COLS,CHANNELS\n"
    "                             the image size (default: the architecture's;\n"
    "                             needed with --no-top)\n"
    "  --classes N                the classifier's classes (default 1000)\n"
    "  --pooling avg|max|none     without the classifier: global pooling at the end\n"
    "  --classifier-activation NAME|none\n"
    "                             the classifier's activation (default softmax;\n"
    "                             none: logits)\n"
    "  --alpha A                  MobileNetV2's width multiplier (default 1.0;\n"
    "                             Keras has ImageNet weights for 0.35, 0.5, 0.75,\n"
    "                             1.0, 1.3 and 1.4)\n"
    "  -o, --output FILE          where to write; - or no -o: standard output\n"
    "  -h, --help                 show this help\n";

enum {
    OPT_INCLUDE_TOP = 300,
    OPT_NO_TOP,
    OPT_INPUT_SHAPE,
    OPT_CLASSES,
    OPT_POOLING,
    OPT_CLASSIFIER_ACTIVATION,
    OPT_ALPHA,
};

static int list_architectures(void) {
    printf("Keras Applications (kerasc applications NAME [options]):\n\n");
    printf("  %-16s %-16s %-14s %s\n", "NAME", "Keras", "default input", "smallest");
    for (size_t i = 0; i < kc_app_count(); i++) {
        const kc_app_arch *a = kc_app_get(i);
        char size[32];
        snprintf(size, sizeof size, "%dx%dx3", a->default_size, a->default_size);
        printf("  %-16s %-16s %-14s %dx%d\n", a->name, a->keras_name, size, a->min_size,
               a->min_size);
    }
    return 0;
}

/* ROWS,COLS,CHANNELS: three decimal integers. */
static int parse_shape(const char *s, long long out[3]) {
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        if (*p < '0' || *p > '9') return -1;
        errno = 0;
        char *end;
        out[i] = strtoll(p, &end, 10);
        if (errno || out[i] > INT_MAX) return -1;
        p = end;
        if (i < 2 && *p++ != ',') return -1;
    }
    return *p ? -1 : 0;
}

static int parse_alpha(const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    *out = strtod(s, &end);
    return !*s || *end || errno || !isfinite(*out) ? -1 : 0;
}

/* An activation name (kc_app_model_file checks it), or none/None/null for logits. */
static int parse_activation(const char *s, kc_app_opts *o) {
    if (!strcmp(s, "none") || !strcmp(s, "None") || !strcmp(s, "null")) {
        o->classifier_activation[0] = 0;
        return 0;
    }
    if (strlen(s) < sizeof o->classifier_activation) {
        snprintf(o->classifier_activation, sizeof o->classifier_activation, "%s", s);
        return 0;
    }
    return kc_cli_usage_error("applications", "--classifier-activation: unknown activation '%s'",
                              s);
}

typedef struct given {
    int pooling, classes, activation;
} given;

static int parse_opt(int c, const char *arg, kc_app_opts *o, given *g) {
    long long n;
    switch (c) {
    case OPT_INCLUDE_TOP:
    case OPT_NO_TOP:
        o->include_top = c == OPT_INCLUDE_TOP;
        return 0;
    case OPT_INPUT_SHAPE:
        if (strstr(arg, "None") || strstr(arg, "null"))
            return kc_cli_usage_error("applications",
                                      "--input-shape '%s': kerasc builds models of fixed "
                                      "sizes; give ROWS,COLS,CHANNELS as numbers",
                                      arg);
        if (parse_shape(arg, o->input_shape))
            return kc_cli_usage_error("applications",
                                      "--input-shape expects ROWS,COLS,CHANNELS (three "
                                      "integers, e.g. 224,224,3), got '%s'",
                                      arg);
        o->has_input_shape = 1;
        return 0;
    case OPT_CLASSES:
        g->classes = 1;
        if (kc_cli_parse_count("applications", "--classes", arg, 1, &n)) return 2;
        o->classes = n;
        return 0;
    case OPT_POOLING:
        g->pooling = 1;
        if (!strcmp(arg, "avg") || !strcmp(arg, "max") || !strcmp(arg, "none")) {
            o->pooling = arg[0] == 'a'   ? KC_APP_POOL_AVG
                         : arg[0] == 'm' ? KC_APP_POOL_MAX
                                         : KC_APP_POOL_NONE;
            return 0;
        }
        return kc_cli_usage_error("applications", "--pooling expects avg, max or none, got '%s'",
                                  arg);
    case OPT_CLASSIFIER_ACTIVATION:
        g->activation = 1;
        return parse_activation(arg, o);
    case OPT_ALPHA:
        o->has_alpha = 1;
        if (!parse_alpha(arg, &o->alpha)) return 0;
        return kc_cli_usage_error("applications", "--alpha expects a number, got '%s'", arg);
    }
    return kc_cli_usage_error("applications", "unknown or incomplete option");
}

/* What Keras accepts and ignores, or warns about. */
static void warn(const kc_app_opts *o, const given *g) {
    const char *w = "kerasc applications: warning:";
    if (o->include_top && g->pooling && o->pooling != KC_APP_POOL_NONE)
        fprintf(stderr,
                "%s --pooling is ignored with the classifier, as Keras ignores pooling "
                "when include_top=True (add --no-top)\n",
                w);
    if (!o->include_top && (g->classes || g->activation))
        fprintf(stderr,
                "%s --classes and --classifier-activation are ignored with --no-top, as "
                "Keras ignores them without the classifier\n",
                w);
    if (o->has_input_shape && o->input_shape[2] != 1 && o->input_shape[2] != 3)
        fprintf(stderr,
                "%s This model usually expects 1 or 3 input channels. However, it was "
                "passed an input_shape with %lld input channels.\n",
                w, o->input_shape[2]);
}

static int write_atomic(const char *path, const char *text, kc_error *e) {
    kc_atomic_file a;
    int rc = kc_atomic_open(&a, path, e);
    if (rc) return rc;
    fputs(text, a.f); /* a failed write is found by the commit */
    return kc_atomic_commit(&a, e);
}

static int emit(const kc_app_arch *a, const kc_app_opts *o, const given *g, const char *output) {
    int to_stdout = !output || !strcmp(output, "-");
    kc_error e = {0};
    char *text;
    if ((!to_stdout && kc_cli_prepare_output(output, "output file", &e)) ||
        kc_app_model_file(a, o, &text, &e))
        return kc_cli_report("applications", &e);
    warn(o, g);
    int rc = 0;
    if (to_stdout)
        fputs(text, stdout); /* kc_cli_finish checks standard output */
    else if (write_atomic(output, text, &e))
        rc = kc_cli_report("applications", &e);
    free(text);
    return rc;
}

int kc_cmd_applications(int argc, char **argv) {
    static const struct option opts[] = {
        {"include-top", no_argument, 0, OPT_INCLUDE_TOP},
        {"no-top", no_argument, 0, OPT_NO_TOP},
        {"input-shape", required_argument, 0, OPT_INPUT_SHAPE},
        {"classes", required_argument, 0, OPT_CLASSES},
        {"pooling", required_argument, 0, OPT_POOLING},
        {"classifier-activation", required_argument, 0, OPT_CLASSIFIER_ACTIVATION},
        {"alpha", required_argument, 0, OPT_ALPHA},
        {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    kc_app_opts o;
    kc_app_opts_init(&o);
    given g = {0};
    const char *output = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        if (c == 'o') {
            output = optarg;
            continue;
        }
        if (c == '?' || c == ':')
            return kc_cli_usage_error("applications", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        int rc = parse_opt(c, optarg, &o, &g);
        if (rc) return rc;
    }
    if (optind == argc) return list_architectures();
    if (optind != argc - 1)
        return kc_cli_usage_error("applications", "expected one architecture name, got %d",
                                  argc - optind);
    const kc_app_arch *a = kc_app_find(argv[optind]);
    if (!a)
        return kc_cli_usage_error("applications",
                                  "unknown architecture '%s' (run 'kerasc applications' for "
                                  "the list)",
                                  argv[optind]);
    return emit(a, &o, &g, output);
}

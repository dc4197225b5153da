/* kerasc: Keras-style deep learning from the command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"

typedef struct verb {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} verb;

static const verb verbs[] = {
    {"train", kc_cmd_train, "train a model described in a YAML file, writing checkpoints"},
    {"evaluate", kc_cmd_evaluate, "loss and metrics of a trained model on the test data"},
    {"summary", kc_cmd_summary, "the Keras summary table of a model"},
    {"predict", kc_cmd_predict, "outputs of a trained model for the samples in a file"},
    {"plot", kc_cmd_plot, "a picture of the model's layer graph (.png, .svg, .dot)"},
    {"plot-history", kc_cmd_plot_history, "loss and metric curves of a history.csv as a PNG"},
    {"convert", kc_cmd_convert, "a Keras model (.json, .keras) as a kerasc model file"},
    {"export", kc_cmd_export, "a trained model as Keras's .keras or .weights.h5"},
    {"applications", kc_cmd_applications, "a Keras Application (ResNet50, ...) as a model file"},
    {"bench", kc_cmd_bench, "time training (per layer) and inference of a model on its data"},
    {"preprocess", kc_cmd_preprocess, "texts to token ids, pad_sequences, one_hot, skipgrams"},
};

static void usage(FILE *f) {
    fprintf(f, "Usage: kerasc COMMAND [ARGS...]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(f, "  %-13s %s\n", verbs[i].name, verbs[i].help);
    fprintf(
        f, "\nOptions:\n  -h, --help        show this help\n  -V, --version     print the version\n"
           "  --list-devices    the compute backends of this build and their devices\n"
           "\nRun 'kerasc COMMAND --help' for the options of a command. Commands that run a\n"
           "model take --backend NAME and --device N (or KERASC_DEVICE=N).\n");
}

/* OpenMP's worker threads spin for a long time between parallel sections by
 * default; when another program holds a core that turns every section into a
 * wait for a descheduled thread. Measured on 2 cores with a busy loop on one:
 * the seed CNN at 2 threads took 24 ms/step with a spin count of 10000, 12 ms
 * with 1000 (5 ms either way on idle cores). The spin limit is read when the
 * OpenMP runtime loads, before main, so it is set and the program started
 * again - unless the user chose a policy. */
static void bound_openmp_spinning(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "1000", 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* could not restart: carry on as loaded */
}

static int run_verb(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--list-devices")) return kc_cli_list_devices(stdout);
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("kerasc %s\n", KC_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (!strcmp(cmd, verbs[i].name)) return verbs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "kerasc: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv) {
    bound_openmp_spinning(argv);
    /* every verb's output reaches standard output, or the status says it did not */
    return kc_cli_finish(run_verb(argc, argv));
}

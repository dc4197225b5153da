#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"

static const char usage[] =
    "Usage: kerasc predict CHECKPOINT --input FILE [--output FILE] [options]\n"
    "\n"
    "Runs the trained model on every sample of FILE (IDX, NPY, NPZ or CSV of\n"
    "features) and writes one row of outputs per sample - class probabilities\n"
    "for a classifier - as CSV (stdout, or a .csv file) or NPY (a .npy file).\n"
    "Inputs get the model file's preprocessing (rescale, offset, reshape).\n"
    "\n"
    "  --input FILE          samples to predict\n"
    "  --key NAME            array inside an .npz input (default: its only array)\n"
    "  --output FILE         .csv or .npy (default: CSV on stdout)\n"
    "  --batch-size N        samples per batch\n"
    "  --threads N           compute threads (default: all cores)\n"
    "  --backend NAME        cpu (default) or reference\n"
    "  -h, --help            show this help\n";

enum { O_BATCH = 257, O_THREADS = 260, O_BACKEND = 263, O_INPUT = 400, O_OUTPUT_FILE, O_KEY };

int kc_cli_parse_run_opt(const char *verb, int c, const char *arg, kc_run_opts *o, long long *verbose);

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int load_input(const char *path, const char *key, kc_array *x, kc_error *e) {
    if (ends_with(path, ".csv") || ends_with(path, ".CSV")) return kc_csv_load(path, NULL, -1, x, NULL, e);
    return kc_array_load(path, key, x, e);
}

/* Rows become the model's input shape when their sizes agree. */
static int fit_input(kc_session *s, kc_array *x, const char *path, kc_error *e) {
    const kc_shape *in = &s->model->input_shape;
    if (kc_array_row_size(x) != kc_shape_numel(in)) {
        char a[128];
        return kc_fail(e, KC_ECONFIG, "%s: samples have %lld values but the model input %s needs %lld", path,
                       (long long)kc_array_row_size(x), kc_shape_str(in, 1, a, sizeof a),
                       (long long)kc_shape_numel(in));
    }
    x->shape.rank = 1 + in->rank;
    for (int i = 0; i < in->rank; i++) x->shape.d[i + 1] = in->d[i];
    return KC_OK;
}

static int write_csv_stdout(const float *v, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) printf("%.9g%c", v[r * cols + c], c + 1 == cols ? '\n' : ',');
    return fflush(stdout) ? 1 : 0;
}

int kc_cmd_predict(int argc, char **argv) {
    static const struct option opts[] = {
        {"input", required_argument, 0, O_INPUT},     {"output", required_argument, 0, O_OUTPUT_FILE},
        {"key", required_argument, 0, O_KEY},         {"batch-size", required_argument, 0, O_BATCH},
        {"threads", required_argument, 0, O_THREADS}, {"backend", required_argument, 0, O_BACKEND},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    kc_run_opts o = {0};
    long long verbose = -1;
    const char *input = NULL, *output = NULL, *key = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        if (c == '?' || c == ':')
            return kc_cli_usage_error("predict", "unknown or incomplete option '%s'", argv[optind - 1]);
        if (c == O_INPUT)
            input = optarg;
        else if (c == O_OUTPUT_FILE)
            output = optarg;
        else if (c == O_KEY)
            key = optarg;
        else if (kc_cli_parse_run_opt("predict", c, optarg, &o, &verbose))
            return 2;
    }
    if (optind != argc - 1) return kc_cli_usage_error("predict", "expected one CHECKPOINT file");
    if (!input) return kc_cli_usage_error("predict", "--input FILE is required");
    if (output && !ends_with(output, ".csv") && !ends_with(output, ".npy"))
        return kc_cli_usage_error("predict", "--output must end in .csv or .npy, got '%s'", output);
    const char *ckpt = argv[optind];
    if (!kc_is_checkpoint(ckpt))
        return kc_cli_usage_error("predict", "%s is not a kerasc checkpoint (.safetensors written by kerasc train)", ckpt);

    kc_error e = {0};
    kc_config *cfg = NULL;
    kc_session s;
    kc_array x = {0};
    float *out = NULL;
    int status = 0;
    memset(&s, 0, sizeof s);
    if (kc_checkpoint_config(ckpt, &cfg, &e) || load_input(input, key, &x, &e) ||
        kc_session_open(&s, cfg, &o, 0, 0, &e) || kc_checkpoint_load(&s, ckpt, &e) ||
        fit_input(&s, &x, input, &e) || kc_predict(&s, &x, &out, &e)) {
        status = kc_cli_report("predict", &e);
    } else {
        int64_t rows = kc_array_rows(&x), cols = s.out_rows * s.out_cols;
        if (!output) {
            status = write_csv_stdout(out, rows, cols);
        } else if (ends_with(output, ".npy")) {
            kc_shape sh = *kc_model_output_shape(s.model);
            kc_shape full = {.rank = sh.rank + 1};
            full.d[0] = rows;
            for (int i = 0; i < sh.rank; i++) full.d[i + 1] = sh.d[i];
            if (kc_npy_write(output, out, &full, &e)) status = kc_cli_report("predict", &e);
        } else if (kc_csv_write(output, out, rows, cols, NULL, &e)) {
            status = kc_cli_report("predict", &e);
        }
    }
    free(out);
    kc_array_free(&x);
    kc_session_close(&s);
    kc_config_free(cfg);
    return status;
}

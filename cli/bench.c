/* kerasc bench: times training steps layer by layer after a warm-up (forward,
 * backward and the optimizer update, like Caffe's `time`), then inference on
 * the test data, and reports ms per step, samples/s, achieved GFLOP/s from
 * the model's FLOP count, host<->device traffic per step and the peak
 * resident memory. The steps are kc_train_step, the one kc_fit trains with. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/commands.h"
#include "core/json.h"
#include "core/ops.h"
#include "core/rng.h"
#include "models/step.h"

static const char usage[] =
    "Usage: kerasc bench CONFIG [options]\n"
    "\n"
    "Trains the model of CONFIG on its data for a fixed number of steps after a\n"
    "warm-up and prints, per layer, the forward and backward time, then the\n"
    "whole step: ms/step, samples/s, achieved GFLOP/s (training counted as 3x\n"
    "the forward FLOPs), bytes moved between host and device per step and peak\n"
    "memory. Then times inference over the test data (as `kerasc evaluate` runs\n"
    "it). Weights are not saved.\n"
    "\n"
    "  --batch-size N   override fit.batch_size\n"
    "  --steps N        timed training steps (default 200)\n"
    "  --warmup N       untimed steps before them (default 20)\n"
    "  --threads N      compute threads (default: all cores)\n"
    "  --seed N         override fit.seed\n"
    "  --backend NAME   where to compute: cpu (default), reference, ...\n"
    "                   (kerasc --list-devices shows what this build has)\n"
    "  --device N       the backend's device (default: $KERASC_DEVICE, else 0)\n"
    "  --inference      only time inference (loads only the test data)\n"
    "  --no-inference   skip the inference pass\n"
    "  --json           one JSON object instead of the table\n"
    "  -h, --help       show this help\n";

enum { O_STEPS = 300, O_WARMUP, O_INFER, O_NO_INFER, O_JSON };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU time of every thread of the process: with 1 thread, what the step costs
 * even when other processes share the cores. */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return NAN;
    return (double)ru.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

/* Clocks filled by the step's probe: per layer, per phase of the step. */
typedef struct timer {
    kc_device *dev;
    int nlayers;
    int timing;         /* accumulate only after the warm-up */
    double mark;        /* time of the previous hook call (or of the step's start) */
    double phase_start; /* end of the previous phase (or the step's start) */
    double *fwd, *bwd;
    double phase[KC_PHASE_COUNT]; /* totals over the timed steps */
} timer;

/* The clock once the device has finished what was queued, so that time
 * spent is charged to the layer or phase that queued it. */
static double device_now(timer *t) {
    kc_synchronize(t->dev);
    return now_s();
}

static void on_layer(void *ctx, int layer, int phase) {
    timer *t = ctx;
    double n = device_now(t);
    if (t->timing && layer >= 0 && layer < t->nlayers)
        (phase ? t->bwd : t->fwd)[layer] += n - t->mark;
    t->mark = n;
}

/* Layers mark their own ends; a phase's time runs from the previous phase's end. */
static void on_phase(void *ctx, kc_step_phase phase) {
    timer *t = ctx;
    double n = device_now(t);
    if (t->timing) t->phase[phase] += n - t->phase_start;
    t->mark = t->phase_start = n;
}

typedef struct opts {
    kc_run_opts run;
    long long steps, warmup;
    int inference_only, no_inference, json;
} opts;

/* One option; returns 0, -1 after --help, or the exit status of a usage error. */
static int parse_opt(int c, char **argv, opts *o) {
    long long verbose = -1;
    switch (c) {
    case 'h':
        fputs(usage, stdout);
        return -1;
    case O_STEPS:
        return kc_cli_parse_count("bench", "--steps", optarg, 1, &o->steps);
    case O_WARMUP:
        return kc_cli_parse_count("bench", "--warmup", optarg, 0, &o->warmup);
    case O_INFER:
        o->inference_only = 1;
        return 0;
    case O_NO_INFER:
        o->no_inference = 1;
        return 0;
    case O_JSON:
        o->json = 1;
        return 0;
    case KC_OPT_BATCH:
    case KC_OPT_THREADS:
    case KC_OPT_SEED:
    case KC_OPT_BACKEND:
    case KC_OPT_DEVICE:
        return kc_cli_parse_run_opt("bench", c, optarg, &o->run, &verbose);
    }
    return kc_cli_usage_error("bench", "unknown or incomplete option '%s'", argv[optind - 1]);
}

static int parse_opts(int argc, char **argv, opts *o, const char **config) {
    static const struct option lo[] = {{"batch-size", required_argument, 0, KC_OPT_BATCH},
                                       {"steps", required_argument, 0, O_STEPS},
                                       {"warmup", required_argument, 0, O_WARMUP},
                                       {"threads", required_argument, 0, KC_OPT_THREADS},
                                       {"seed", required_argument, 0, KC_OPT_SEED},
                                       {"backend", required_argument, 0, KC_OPT_BACKEND},
                                       {"device", required_argument, 0, KC_OPT_DEVICE},
                                       {"inference", no_argument, 0, O_INFER},
                                       {"no-inference", no_argument, 0, O_NO_INFER},
                                       {"json", no_argument, 0, O_JSON},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    kc_cli_run_opts_init(&o->run);
    o->steps = 200;
    o->warmup = 20;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int rc = parse_opt(c, argv, o);
        if (rc) return rc < 0 ? -1 : 2;
    }
    if (optind != argc - 1) return kc_cli_usage_error("bench", "expected one CONFIG file");
    if (o->inference_only && o->no_inference)
        return kc_cli_usage_error("bench", "--inference and --no-inference exclude each other");
    if (kc_cli_run_opts_finish("bench", &o->run)) return 2;
    *config = argv[optind];
    return 0;
}

typedef struct result {
    int trained;
    double setup_s, first_step_ms;
    double total_s; /* over the timed steps */
    double cpu_s;   /* process CPU time over the timed steps */
    double step_flops;
    uint64_t bytes_up, bytes_down, transfers; /* over the timed steps */
    int inferred;
    double infer_s;
    int64_t infer_n;
    double infer_acc;
} result;

typedef struct bench {
    kc_session *s;
    timer tm;
    kc_feed feed;
    int64_t *idx;
    int64_t rows;
} bench;

/* Training step number `step`: full batches in one shuffled order, as the
 * first epoch of training sees it. */
static int bench_step(bench *b, int64_t step, kc_error *e) {
    int bs = (int)b->s->batch_size;
    int64_t nb = b->rows / bs, first = (step % nb) * bs;
    kc_step_probe probe = {.on_layer = on_layer, .on_phase = on_phase, .ctx = &b->tm};
    b->tm.mark = b->tm.phase_start = device_now(&b->tm);
    return kc_train_step(b->s, &b->feed, b->idx + first, bs, &probe, e);
}

static int shuffled_rows(bench *b, kc_error *e) {
    kc_session *s = b->s;
    int rc = kc_session_feed(s, KC_SPLIT_TRAIN, &b->feed, e);
    if (rc) return rc;
    b->rows = b->feed.rows;
    if (b->rows < s->batch_size)
        return kc_fail(e, KC_ECONFIG,
                       "the training data has %lld samples, fewer than one batch of %lld",
                       (long long)b->rows, s->batch_size);
    b->idx = malloc((size_t)b->rows * sizeof *b->idx);
    if (!b->idx) return kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int64_t i = 0; i < b->rows; i++)
        b->idx[i] = i;
    uint64_t stream = kc_rng_stream("shuffle", 0, 0);
    for (int64_t i = b->rows - 1; i > 0; i--) {
        int64_t j = (int64_t)kc_rng_below(s->seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = b->idx[i];
        b->idx[i] = b->idx[j];
        b->idx[j] = t;
    }
    return KC_OK;
}

/* The timed steps, with the CPU time and the device's traffic over them. */
static int timed_steps(bench *b, const opts *o, result *r, kc_error *e) {
    kc_device *d = &b->s->dev;
    b->tm.timing = 1;
    kc_device_reset_traffic(d);
    double c0 = cpu_s(), t0 = device_now(&b->tm);
    int rc = KC_OK;
    for (long long i = 0; !rc && i < o->steps; i++)
        rc = bench_step(b, o->warmup + i, e);
    r->total_s = device_now(&b->tm) - t0;
    r->cpu_s = cpu_s() - c0;
    r->bytes_up = d->bytes_up;
    r->bytes_down = d->bytes_down;
    r->transfers = d->transfers;
    b->tm.timing = 0;
    return rc;
}

static int run_training(kc_session *s, const opts *o, bench *b, result *r, kc_error *e) {
    int rc = shuffled_rows(b, e);
    if (rc) return rc;
    double t = now_s();
    if ((rc = bench_step(b, 0, e))) return rc;
    r->first_step_ms = 1000.0 * (now_s() - t);
    for (long long i = 1; i < o->warmup; i++)
        if ((rc = bench_step(b, i, e))) return rc;
    if ((rc = timed_steps(b, o, r, e))) return rc;
    r->step_flops = 3.0 * (double)kc_model_flops(s->model) * (double)s->batch_size;
    r->trained = 1;
    return KC_OK;
}

static int run_inference(kc_session *s, result *r, kc_error *e) {
    if (!s->has_test) return KC_OK;
    kc_logs logs;
    double t = now_s();
    int rc = kc_evaluate_split(s, KC_SPLIT_TEST, NULL, &logs, e);
    if (rc) return rc;
    r->infer_s = now_s() - t;
    r->infer_n =
        s->x_test.data ? kc_array_rows(&s->x_test) : kc_array_rows(&s->named[KC_SPLIT_TEST].arr[0]);
    r->infer_acc = NAN;
    for (int i = 0; i < logs.n; i++)
        if (strstr(logs.keys[i], "accuracy")) r->infer_acc = logs.vals[i];
    r->inferred = 1;
    return KC_OK;
}

static void print_header(const kc_session *s, const result *r) {
    int threads = s->threads > 0 ? s->threads : 0;
    printf("kerasc bench: %s, batch %lld, ", s->model->name, s->batch_size);
    if (threads)
        printf("%d thread%s", threads, threads == 1 ? "" : "s");
    else
        printf("all cores");
    printf(", %s backend", s->dev.be->name);
    if (strcmp(s->dev.name, s->dev.be->name)) printf(", device %s", s->dev.name);
    printf("\nsetup (data, plan, init) %.3f s\n", r->setup_s);
}

static void print_layers(const kc_session *s, const bench *b, double n) {
    const kc_model *m = s->model;
    printf("%-36s %12s %12s %10s %10s\n", "layer", "forward ms", "backward ms", "fwd MFLOP",
           "fwd GFLOP/s");
    double fw = 0, bw = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const kc_layer *l = m->layers[i];
        char name[300];
        snprintf(name, sizeof name, "%s (%s)", l->name, l->cls->class_name);
        double f = l->cls->flops ? (double)l->cls->flops(l) * (double)s->batch_size : 0;
        double fms = 1000.0 * b->tm.fwd[i] / n, bms = 1000.0 * b->tm.bwd[i] / n;
        printf("%-36.36s %12.3f %12.3f %10.2f", name, fms, bms, f / 1e6);
        if (f > 0 && fms > 0)
            printf(" %10.1f\n", f / (fms * 1e6));
        else
            printf(" %10s\n", "");
        fw += b->tm.fwd[i], bw += b->tm.bwd[i];
    }
    printf("%-36s %12.3f %12.3f\n", "all layers", 1000.0 * fw / n, 1000.0 * bw / n);
}

/* What a step spends outside the layers. */
static void print_step_parts(const kc_session *s, const bench *b, double n) {
    const double *ph = b->tm.phase;
    printf("%-36s %12.3f\n", "batch gather + upload", 1000.0 * ph[KC_PHASE_DATA] / n);
    printf("%-36s %12.3f\n", "loss and its gradient", 1000.0 * ph[KC_PHASE_LOSS] / n);
    char upd[120];
    snprintf(upd, sizeof upd, "update (%s)", kc_optimizer_name(s->opt));
    printf("%-36s %12.3f\n\n", upd, 1000.0 * ph[KC_PHASE_UPDATE] / n);
}

static void print_training(const kc_session *s, const opts *o, const bench *b, const result *r) {
    double n = (double)o->steps;
    printf("first training step %.1f ms; %lld steps timed after %lld warm-up steps\n\n",
           r->first_step_ms, o->steps, o->warmup);
    print_layers(s, b, n);
    print_step_parts(s, b, n);
    double ms = 1000.0 * r->total_s / n;
    double epoch_steps = ceil((double)b->rows / (double)s->batch_size);
    printf("training: %.3f ms/step, %.0f samples/s, %.1f GFLOP/s (%.1f MFLOP/step), "
           "%.2f s per epoch of %lld samples; %.3f ms of CPU time per step\n",
           ms, (double)s->batch_size * 1000.0 / ms, r->step_flops / (ms * 1e6), r->step_flops / 1e6,
           ms * epoch_steps / 1000.0, (long long)b->rows, 1000.0 * r->cpu_s / n);
    printf("host<->device traffic: %.0f bytes/step (%.0f up, %.0f down) in %.1f transfers\n",
           (double)(r->bytes_up + r->bytes_down) / n, (double)r->bytes_up / n,
           (double)r->bytes_down / n, (double)r->transfers / n);
}

static void print_table(const kc_session *s, const opts *o, const bench *b, const result *r) {
    const kc_model *m = s->model;
    print_header(s, r);
    if (r->trained) print_training(s, o, b, r);
    if (r->inferred)
        printf(
            "inference: %lld test images in %.3f s, %.0f images/s, %.1f GFLOP/s, accuracy %.4f\n",
            (long long)r->infer_n, r->infer_s, (double)r->infer_n / r->infer_s,
            (double)kc_model_flops(m) * (double)r->infer_n / (r->infer_s * 1e9), r->infer_acc);
    printf("peak memory: %.1f MB\n", peak_rss_mb());
}

static void json_training(const kc_session *s, const opts *o, const bench *b, const result *r) {
    const kc_model *m = s->model;
    double n = (double)o->steps, ms = 1000.0 * r->total_s / n;
    printf(", \"first_step_s\": %.4f, \"ms_per_step\": %.4f, \"samples_per_s\": %.1f, "
           "\"gflops\": %.2f, \"epoch_s\": %.3f, \"cpu_ms_per_step\": %.4f, \"layers\": [",
           r->first_step_ms / 1000.0, ms, (double)s->batch_size * 1000.0 / ms,
           r->step_flops / (ms * 1e6), ms * ceil((double)b->rows / (double)s->batch_size) / 1000.0,
           1000.0 * r->cpu_s / n);
    for (int i = 0; i < m->nlayers; i++)
        printf("%s{\"name\": \"%s\", \"forward_ms\": %.4f, \"backward_ms\": %.4f}", i ? ", " : "",
               m->layers[i]->name, 1000.0 * b->tm.fwd[i] / n, 1000.0 * b->tm.bwd[i] / n);
    printf("], \"update_ms\": %.4f", 1000.0 * b->tm.phase[KC_PHASE_UPDATE] / n);
    printf(", \"bytes_per_step\": %.1f, \"bytes_up_per_step\": %.1f, "
           "\"bytes_down_per_step\": %.1f, \"transfers_per_step\": %.2f",
           (double)(r->bytes_up + r->bytes_down) / n, (double)r->bytes_up / n,
           (double)r->bytes_down / n, (double)r->transfers / n);
}

static void print_json(const kc_session *s, const opts *o, const bench *b, const result *r) {
    const kc_model *m = s->model;
    kc_strbuf dev = {0};
    kc_json_write_string(&dev, s->dev.name);
    printf("{\"framework\": \"kerasc %s\", \"model\": \"%s\", \"backend\": \"%s\", \"device\": %s, "
           "\"threads\": %d, \"batch_size\": %lld, \"setup_s\": %.4f",
           KC_VERSION, m->name, s->dev.be->name, kc_strbuf_str(&dev), s->threads, s->batch_size,
           r->setup_s);
    kc_strbuf_free(&dev);
    if (r->trained) json_training(s, o, b, r);
    if (r->inferred)
        printf(", \"images_per_s\": %.1f, \"infer_s\": %.4f, \"test_accuracy\": %.4f",
               (double)r->infer_n / r->infer_s, r->infer_s, r->infer_acc);
    printf(", \"peak_rss_mb\": %.1f}\n", peak_rss_mb());
}

/* Training (unless --inference), inference (unless --no-inference), the report. */
static int bench_session(kc_session *s, const opts *o, bench *b, result *r, kc_error *e) {
    b->tm.dev = &s->dev;
    b->tm.nlayers = s->model->nlayers;
    b->tm.fwd = calloc((size_t)b->tm.nlayers, sizeof(double));
    b->tm.bwd = calloc((size_t)b->tm.nlayers, sizeof(double));
    if (!b->tm.fwd || !b->tm.bwd) return kc_fail(e, KC_ERUNTIME, "out of memory");
    int rc;
    if (!o->inference_only && (rc = run_training(s, o, b, r, e))) return rc;
    if (!o->no_inference && (rc = run_inference(s, r, e))) return rc;
    if (o->json)
        print_json(s, o, b, r);
    else
        print_table(s, o, b, r);
    return KC_OK;
}

int kc_cmd_bench(int argc, char **argv) {
    opts o;
    const char *path = NULL;
    int rc = parse_opts(argc, argv, &o, &path);
    if (rc) return rc < 0 ? 0 : rc;
    kc_error e = {0};
    kc_config *cfg;
    int is_ckpt;
    if (kc_cli_load_config(path, &cfg, &is_ckpt, &e)) return kc_cli_report("bench", &e);
    int training = !o.inference_only;
    int need = (training ? KC_NEED_TRAIN : 0) | (o.no_inference ? 0 : KC_NEED_TEST);
    if (!o.no_inference && !cfg->data.dataset && !cfg->data.has_test) need &= ~KC_NEED_TEST;
    kc_session s;
    result r = {0};
    bench b = {.s = &s};
    int status = 0;
    double t = now_s();
    rc = kc_session_open(&s, cfg, &o.run, need, training, &e);
    r.setup_s = now_s() - t;
    if (rc || bench_session(&s, &o, &b, &r, &e)) status = kc_cli_report("bench", &e);
    free(b.tm.fwd);
    free(b.tm.bwd);
    free(b.idx);
    kc_session_close(&s);
    kc_config_free(cfg);
    return status;
}

/* kerasc bench: times training steps layer by layer after a warm-up (forward,
 * backward and the optimizer update, like Caffe's `time`), then inference on
 * the test data, and reports ms per step, samples/s, achieved GFLOP/s from
 * the model's FLOP count and the peak resident memory. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/commands.h"
#include "core/rng.h"

static const char usage[] =
    "Usage: kerasc bench CONFIG [options]\n"
    "\n"
    "Trains the model of CONFIG on its data for a fixed number of steps after a\n"
    "warm-up and prints, per layer, the forward and backward time, then the\n"
    "whole step: ms/step, samples/s, achieved GFLOP/s (training counted as 3x\n"
    "the forward FLOPs) and peak memory. Then times inference over the test\n"
    "data (as `kerasc evaluate` runs it). Weights are not saved.\n"
    "\n"
    "  --batch-size N   override fit.batch_size\n"
    "  --steps N        timed training steps (default 200)\n"
    "  --warmup N       untimed steps before them (default 20)\n"
    "  --threads N      compute threads (default: all cores)\n"
    "  --seed N         override fit.seed\n"
    "  --backend NAME   cpu (default) or reference\n"
    "  --inference      only time inference (loads only the test data)\n"
    "  --no-inference   skip the inference pass\n"
    "  --json           one JSON object instead of the table\n"
    "  -h, --help       show this help\n";

enum {
    O_BATCH = 256,
    O_STEPS,
    O_WARMUP,
    O_THREADS,
    O_SEED,
    O_BACKEND,
    O_INFER,
    O_NO_INFER,
    O_JSON
};

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

/* Per-layer clocks filled by the model's on_layer hook. */
typedef struct timer {
    int nlayers;
    int timing;  /* accumulate only after the warm-up */
    double mark; /* time of the previous hook call (or of the pass start) */
    double *fwd, *bwd;
} timer;

static void on_layer(void *ctx, int layer, int phase) {
    timer *t = ctx;
    double n = now_s();
    if (t->timing && layer >= 0 && layer < t->nlayers)
        (phase ? t->bwd : t->fwd)[layer] += n - t->mark;
    t->mark = n;
}

/* What a step spends outside the layers. */
typedef struct step_times {
    double data, loss, update, total;
} step_times;

typedef struct bench {
    kc_session *s;
    timer tm;
    int64_t *idx;
    int64_t rows;
    int fused;
} bench;

static void gather_targets(kc_session *s, const int64_t *idx, int n) {
    if (!s->one_hot) {
        kc_array_gather(&s->y_train, idx, n, 1.0f, 0.0f, s->hy);
        return;
    }
    int64_t rows = (int64_t)n * s->out_rows;
    kc_array_gather(&s->y_train, idx, n, 1.0f, 0.0f, s->hz);
    memset(s->hy, 0, (size_t)(rows * s->out_cols) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        s->hy[r * s->out_cols + (int64_t)s->hz[r]] = 1.0f;
}

/* One training step as kc_fit runs it, with the clock read between phases. */
static void train_step(bench *b, int64_t step, float **w, float **g, step_times *acc) {
    kc_session *s = b->s;
    kc_model *m = s->model;
    int bs = (int)s->batch_size;
    int64_t nb = b->rows / bs, first = (step % nb) * bs;
    double t0 = now_s();
    const kc_data_spec *d = &s->cfg->data;
    size_t in = (size_t)kc_shape_numel(&m->input_shape);
    kc_array_gather(&s->x_train, b->idx + first, bs, (float)d->rescale, (float)d->offset, s->hx);
    s->be->upload(m->x, s->hx, (size_t)bs * in * sizeof(float));
    gather_targets(s, b->idx + first, bs);
    double t1 = now_s();
    kc_exec ex = {.be = s->be,
                  .batch = bs,
                  .training = 1,
                  .seed = s->seed,
                  .step = (uint64_t)step,
                  .on_layer = on_layer,
                  .hook_ctx = &b->tm};
    b->tm.mark = t1;
    const float *out = kc_model_forward(m, &ex);
    double t2 = now_s();
    int rows = (int)(bs * s->out_rows), c = s->out_cols;
    size_t bytes = (size_t)rows * (size_t)c * sizeof(float);
    if (b->fused) {
        s->be->download(s->hz, kc_model_output_z(m, 0), bytes);
        kc_loss_compute(&s->loss, s->hz, s->hy, rows, c, 1, NULL, s->hgrad);
    } else {
        s->be->download(s->hpred, out, bytes);
        kc_loss_compute(&s->loss, s->hpred, s->hy, rows, c, 0, NULL, s->hgrad);
    }
    s->be->upload(kc_model_dy(m), s->hgrad, bytes);
    double t3 = now_s();
    b->tm.mark = t3;
    kc_model_backward(m, &ex, b->fused);
    double t4 = now_s();
    kc_optimizer_step(s->opt, w, (const float *const *)g);
    double t5 = now_s();
    if (acc) {
        acc->data += t1 - t0;
        acc->loss += t3 - t2;
        acc->update += t5 - t4;
        acc->total += t5 - t0;
    }
}

typedef struct opts {
    kc_run_opts run;
    long long steps, warmup;
    int inference_only, no_inference, json;
} opts;

static int parse_opts(int argc, char **argv, opts *o, const char **config) {
    static const struct option lo[] = {{"batch-size", required_argument, 0, O_BATCH},
                                       {"steps", required_argument, 0, O_STEPS},
                                       {"warmup", required_argument, 0, O_WARMUP},
                                       {"threads", required_argument, 0, O_THREADS},
                                       {"seed", required_argument, 0, O_SEED},
                                       {"backend", required_argument, 0, O_BACKEND},
                                       {"inference", no_argument, 0, O_INFER},
                                       {"no-inference", no_argument, 0, O_NO_INFER},
                                       {"json", no_argument, 0, O_JSON},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->steps = 200;
    o->warmup = 20;
    int c;
    long long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return -1;
        case O_BATCH:
            rc = kc_cli_parse_count("bench", "--batch-size", optarg, 1, &o->run.batch_size);
            break;
        case O_STEPS:
            rc = kc_cli_parse_count("bench", "--steps", optarg, 1, &o->steps);
            break;
        case O_WARMUP:
            rc = kc_cli_parse_count("bench", "--warmup", optarg, 0, &o->warmup);
            break;
        case O_THREADS:
            rc = kc_cli_parse_count("bench", "--threads", optarg, 0, &v);
            o->run.threads = (int)v;
            break;
        case O_SEED:
            o->run.has_seed = 1;
            rc = kc_cli_parse_count("bench", "--seed", optarg, 0, &o->run.seed);
            break;
        case O_BACKEND:
            if (!kc_backend_by_name(optarg))
                return kc_cli_usage_error("bench", "unknown backend '%s' (cpu, reference)", optarg);
            o->run.backend = optarg;
            break;
        case O_INFER:
            o->inference_only = 1;
            break;
        case O_NO_INFER:
            o->no_inference = 1;
            break;
        case O_JSON:
            o->json = 1;
            break;
        default:
            return kc_cli_usage_error("bench", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
        if (rc) return 2;
    }
    if (optind != argc - 1) return kc_cli_usage_error("bench", "expected one CONFIG file");
    if (o->inference_only && o->no_inference)
        return kc_cli_usage_error("bench", "--inference and --no-inference exclude each other");
    *config = argv[optind];
    return 0;
}

typedef struct result {
    int trained;
    double setup_s, first_step_ms;
    step_times t; /* totals over the timed steps */
    double cpu_s; /* process CPU time over the timed steps */
    double step_flops;
    int inferred;
    double infer_s;
    int64_t infer_n;
    double infer_acc;
} result;

static int run_training(kc_session *s, const opts *o, bench *b, result *r, kc_error *e) {
    kc_model *m = s->model;
    kc_param_ref refs[256];
    int np = kc_model_params(m, refs, 256);
    if (np > 256) return kc_fail(e, KC_ERUNTIME, "too many weights (%d)", np);
    float *w[256], *g[256];
    int k = 0;
    for (int i = 0; i < np; i++) {
        if (!refs[i].param->trainable || !refs[i].layer->trainable) continue;
        w[k] = refs[i].param->value;
        g[k] = refs[i].param->grad;
        k++;
    }
    if (m->ninputs != 1 || s->nouts != 1 || !s->x_train.data)
        return kc_fail(e, KC_ECONFIG,
                       "kerasc bench times training of models with one input and one output fed "
                       "from x/y data; use --inference for this model");
    b->rows = kc_array_rows(&s->x_train);
    if (b->rows < s->batch_size)
        return kc_fail(e, KC_ECONFIG,
                       "the training data has %lld samples, fewer than one batch of %lld",
                       (long long)b->rows, s->batch_size);
    b->idx = malloc((size_t)b->rows * sizeof *b->idx);
    if (!b->idx) return kc_fail(e, KC_ERUNTIME, "out of memory");
    /* a shuffled order, as training sees it */
    for (int64_t i = 0; i < b->rows; i++)
        b->idx[i] = i;
    uint64_t stream = kc_rng_stream("shuffle", 0, 0);
    for (int64_t i = b->rows - 1; i > 0; i--) {
        int64_t j = (int64_t)kc_rng_below(s->seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = b->idx[i];
        b->idx[i] = b->idx[j];
        b->idx[j] = t;
    }
    const kc_layer *last = m->layers[m->nlayers - 1];
    b->fused = !s->loss.from_logits && kc_loss_has_logits_form(&s->loss) &&
               last->activation.act != KC_ACT_LINEAR &&
               last->activation.act == kc_loss_logits_activation(&s->loss);
    double t = now_s();
    train_step(b, 0, w, g, NULL);
    r->first_step_ms = 1000.0 * (now_s() - t);
    for (long long i = 1; i < o->warmup; i++)
        train_step(b, i, w, g, NULL);
    b->tm.timing = 1;
    double c0 = cpu_s();
    for (long long i = 0; i < o->steps; i++)
        train_step(b, o->warmup + i, w, g, &r->t);
    r->cpu_s = cpu_s() - c0;
    b->tm.timing = 0;
    r->step_flops = 3.0 * (double)kc_model_flops(m) * (double)s->batch_size;
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

static void print_table(const kc_session *s, const opts *o, const bench *b, const result *r) {
    const kc_model *m = s->model;
    int threads = s->threads > 0 ? s->threads : 0;
    printf("kerasc bench: %s, batch %lld, ", m->name, s->batch_size);
    if (threads)
        printf("%d thread%s", threads, threads == 1 ? "" : "s");
    else
        printf("all cores");
    printf(", %s backend\n", s->be->name);
    printf("setup (data, plan, init) %.3f s\n", r->setup_s);
    if (r->trained) {
        double n = (double)o->steps;
        printf("first training step %.1f ms; %lld steps timed after %lld warm-up steps\n\n",
               r->first_step_ms, o->steps, o->warmup);
        printf("%-36s %12s %12s %10s %10s\n", "layer", "forward ms", "backward ms", "fwd MFLOP",
               "fwd GFLOP/s");
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
        }
        double fw = 0, bw = 0;
        for (int i = 0; i < m->nlayers; i++)
            fw += b->tm.fwd[i], bw += b->tm.bwd[i];
        printf("%-36s %12.3f %12.3f\n", "all layers", 1000.0 * fw / n, 1000.0 * bw / n);
        printf("%-36s %12.3f\n", "batch gather + upload", 1000.0 * r->t.data / n);
        printf("%-36s %12.3f\n", "loss and its gradient", 1000.0 * r->t.loss / n);
        char upd[120];
        snprintf(upd, sizeof upd, "update (%s)", kc_optimizer_name(s->opt));
        printf("%-36s %12.3f\n\n", upd, 1000.0 * r->t.update / n);
        double ms = 1000.0 * r->t.total / n;
        double epoch_steps = ceil((double)b->rows / (double)s->batch_size);
        printf("training: %.3f ms/step, %.0f samples/s, %.1f GFLOP/s (%.1f MFLOP/step), "
               "%.2f s per epoch of %lld samples; %.3f ms of CPU time per step\n",
               ms, (double)s->batch_size * 1000.0 / ms, r->step_flops / (ms * 1e6),
               r->step_flops / 1e6, ms * epoch_steps / 1000.0, (long long)b->rows,
               1000.0 * r->cpu_s / n);
    }
    if (r->inferred)
        printf(
            "inference: %lld test images in %.3f s, %.0f images/s, %.1f GFLOP/s, accuracy %.4f\n",
            (long long)r->infer_n, r->infer_s, (double)r->infer_n / r->infer_s,
            (double)kc_model_flops(m) * (double)r->infer_n / (r->infer_s * 1e9), r->infer_acc);
    printf("peak memory: %.1f MB\n", peak_rss_mb());
}

static void print_json(const kc_session *s, const opts *o, const bench *b, const result *r) {
    const kc_model *m = s->model;
    printf(
        "{\"framework\": \"kerasc %s\", \"model\": \"%s\", \"backend\": \"%s\", \"threads\": %d, "
        "\"batch_size\": %lld, \"setup_s\": %.4f",
        KC_VERSION, m->name, s->be->name, s->threads, s->batch_size, r->setup_s);
    if (r->trained) {
        double n = (double)o->steps, ms = 1000.0 * r->t.total / n;
        printf(", \"first_step_s\": %.4f, \"ms_per_step\": %.4f, \"samples_per_s\": %.1f, "
               "\"gflops\": %.2f, \"epoch_s\": %.3f, \"cpu_ms_per_step\": %.4f, \"layers\": [",
               r->first_step_ms / 1000.0, ms, (double)s->batch_size * 1000.0 / ms,
               r->step_flops / (ms * 1e6),
               ms * ceil((double)b->rows / (double)s->batch_size) / 1000.0, 1000.0 * r->cpu_s / n);
        for (int i = 0; i < m->nlayers; i++)
            printf("%s{\"name\": \"%s\", \"forward_ms\": %.4f, \"backward_ms\": %.4f}",
                   i ? ", " : "", m->layers[i]->name, 1000.0 * b->tm.fwd[i] / n,
                   1000.0 * b->tm.bwd[i] / n);
        printf("], \"update_ms\": %.4f", 1000.0 * r->t.update / n);
    }
    if (r->inferred)
        printf(", \"images_per_s\": %.1f, \"infer_s\": %.4f, \"test_accuracy\": %.4f",
               (double)r->infer_n / r->infer_s, r->infer_s, r->infer_acc);
    printf(", \"peak_rss_mb\": %.1f}\n", peak_rss_mb());
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
    if (kc_session_open(&s, cfg, &o.run, need, training, &e)) {
        status = kc_cli_report("bench", &e);
        goto out;
    }
    r.setup_s = now_s() - t;
    b.tm.nlayers = s.model->nlayers;
    b.tm.fwd = calloc((size_t)b.tm.nlayers, sizeof(double));
    b.tm.bwd = calloc((size_t)b.tm.nlayers, sizeof(double));
    if (!b.tm.fwd || !b.tm.bwd) {
        kc_fail(&e, KC_ERUNTIME, "out of memory");
        status = kc_cli_report("bench", &e);
        goto out;
    }
    if (training && run_training(&s, &o, &b, &r, &e)) {
        status = kc_cli_report("bench", &e);
        goto out;
    }
    if (!o.no_inference && run_inference(&s, &r, &e)) {
        status = kc_cli_report("bench", &e);
        goto out;
    }
    if (o.json)
        print_json(&s, &o, &b, &r);
    else
        print_table(&s, &o, &b, &r);
out:
    free(b.tm.fwd);
    free(b.tm.bwd);
    free(b.idx);
    kc_session_close(&s);
    kc_config_free(cfg);
    if (fflush(stdout) && !status) status = 1;
    return status;
}

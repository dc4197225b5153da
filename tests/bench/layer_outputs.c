/* Every layer's output of a kerasc checkpoint for given inputs, for
 * tests/bench/accuracy.py (which builds and runs this; it is not part of
 * make check). The forward pass is the one `kerasc predict` runs, batch by
 * batch at the config's batch size, and every node's post-activation output
 * (and pre-activation, where the layer has an activation) is downloaded.
 *
 *   layer_outputs CKPT INPUT.f32 N OUTDIR [THREADS]
 *
 * INPUT.f32 holds N samples of model input 0, float32, row-major. OUTDIR
 * gets NN_name.y.f32 / NN_name.z.f32 for every layer node and a manifest,
 * one line per file: file name, layer class, activation, rank, then the
 * per-sample shape. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"
#include "models/activations.h"
#include "models/fit.h"
#include "models/model.h"

static int die(const char *what, const kc_error *e) {
    fprintf(stderr, "layer_outputs: %s%s%s\n", what, e ? ": " : "", e ? e->msg : "");
    return 1;
}

typedef struct dump {
    FILE *f;
    char file[300];
    size_t per; /* floats per sample */
    kc_buf src;
} dump;

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: layer_outputs CKPT INPUT.f32 N OUTDIR [THREADS]\n");
        return 2;
    }
    const char *ckpt = argv[1], *input = argv[2], *outdir = argv[4];
    long n = strtol(argv[3], NULL, 10);
    kc_run_opts o;
    memset(&o, 0, sizeof o);
    o.backend = "cpu";
    o.threads = argc > 5 ? atoi(argv[5]) : 0;

    kc_error e = {0};
    kc_config *cfg = NULL;
    kc_session s;
    memset(&s, 0, sizeof s);
    if (kc_checkpoint_config(ckpt, &cfg, &e) || kc_session_open(&s, cfg, &o, 0, 0, &e) ||
        kc_checkpoint_load(&s, ckpt, &e))
        return die("loading the checkpoint", &e);
    kc_model *m = s.model;
    if (m->ninputs != 1) return die("the model must have one input", NULL);

    size_t in_per = (size_t)kc_shape_numel(&m->inputs[0].shape);
    float *x = malloc((size_t)n * in_per * sizeof(float));
    FILE *fi = fopen(input, "rb");
    if (!x || !fi || fread(x, sizeof(float), (size_t)n * in_per, fi) != (size_t)n * in_per)
        return die("reading the input file", NULL);
    fclose(fi);

    char path[600];
    snprintf(path, sizeof path, "%s/manifest.txt", outdir);
    FILE *man = fopen(path, "w");
    if (!man) return die(strerror(errno), NULL);
    dump *d = calloc((size_t)m->nnodes * 2, sizeof *d);
    int nd = 0;
    size_t most = 0;
    for (int i = 0; i < m->nnodes; i++) {
        kc_model_node *nd_ = &m->nodes[i];
        if (!nd_->layer) continue;
        size_t per = (size_t)kc_shape_numel(&nd_->shape);
        if (per > most) most = per;
        for (int pre = 0; pre < 2; pre++) {
            if (pre && (nd_->layer->activation.act == KC_ACT_LINEAR || kc_buf_eq(nd_->z, nd_->y)))
                continue;
            dump *t = &d[nd++];
            snprintf(t->file, sizeof t->file, "%02d_%s.%s.f32", i, nd_->layer->name,
                     pre ? "z" : "y");
            t->per = per;
            t->src = pre ? nd_->z : nd_->y;
            snprintf(path, sizeof path, "%s/%s", outdir, t->file);
            if (!(t->f = fopen(path, "wb"))) return die(strerror(errno), NULL);
            fprintf(man, "%s %s %s %d", t->file, nd_->layer->cls->class_name,
                    kc_activation_name(nd_->layer->activation.act), nd_->shape.rank);
            for (int r = 0; r < nd_->shape.rank; r++)
                fprintf(man, " %lld", (long long)nd_->shape.d[r]);
            fprintf(man, "\n");
        }
    }
    fclose(man);

    long bs = s.batch_size;
    float *host = malloc((size_t)bs * most * sizeof(float));
    if (!host) return die("out of memory", NULL);
    for (long b0 = 0; b0 < n; b0 += bs) {
        int nb = (int)(n - b0 < bs ? n - b0 : bs);
        kc_upload(&s.dev, m->inputs[0].x, x + (size_t)b0 * in_per, (size_t)nb * in_per * 4);
        kc_exec ex = {.dev = &s.dev, .batch = nb, .training = 0, .seed = s.seed};
        if (kc_model_forward(m, &ex)) return die("forward pass failed", NULL);
        for (int t = 0; t < nd; t++) {
            kc_download(&s.dev, host, d[t].src, (size_t)nb * d[t].per * sizeof(float));
            fwrite(host, sizeof(float), (size_t)nb * d[t].per, d[t].f);
        }
    }
    for (int t = 0; t < nd; t++)
        fclose(d[t].f);
    free(host);
    free(d);
    free(x);
    kc_session_close(&s);
    kc_config_free(cfg);
    return 0;
}

/* kerasc preprocess: Keras's text and sequence preprocessing as files. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "models/data/sequences.h"
#include "models/data/text.h"
#include "models/data/tokenizer.h"
#include "models/fit.h"

static const char usage[] =
    "Usage: kerasc preprocess ACTION INPUT --output FILE.npy [options]\n"
    "\n"
    "Actions:\n"
    "  text       texts (one per line) -> token ids, padded, as float32 NPY (N, maxlen),\n"
    "             with the fitted vocabulary as JSON beside it (FILE.json, or\n"
    "             --vocabulary FILE): Keras's Tokenizer, or --tokenizer text_vectorization\n"
    "  pad        sequences -> pad_sequences: INPUT.npy rows, or a text file of\n"
    "             whitespace-separated integer ids per line\n"
    "  one_hot    texts -> hashing_trick(text, n, hash_function=\"md5\") ids, padded\n"
    "             (Keras's one_hot uses Python's hash(), which is not reproducible)\n"
    "  skipgrams  one sequence (INPUT.npy, or ids in a text file) -> couples (M, 2) in\n"
    "             --output and labels (M,) in --labels, as Keras's skipgrams with\n"
    "             Python's random seeded by --seed\n"
    "  timeseries a series (INPUT.csv, or .npy (steps,) / (steps, features)) -> windows\n"
    "             (N, steps, features) in --output and, with --targets FILE.npy, their\n"
    "             targets, as Keras's timeseries_dataset_from_array\n"
    "\n"
    "Tokenizer:   --num-words N, --oov-token T, --filters S, --split S, --no-lower,\n"
    "             --char-level\n"
    "TextVectorization: --max-tokens N, --standardize lower_and_strip_punctuation|\n"
    "             lower|strip_punctuation|none, --split whitespace|character,\n"
    "             --output-sequence-length N\n"
    "Padding:     --maxlen N (default: the longest), --padding pre|post,\n"
    "             --truncating pre|post, --value V (Keras's defaults: pre, pre, 0)\n"
    "one_hot:     --n N (ids 1..N-1)\n"
    "skipgrams:   --vocabulary-size N, --window-size N (4), --negative-samples X (1),\n"
    "             --no-shuffle, --seed S (0), --labels FILE.npy (required)\n"
    "timeseries:  --sequence-length N (required), --sequence-stride N (1),\n"
    "             --sampling-rate N (1), --start-index N (0), --end-index N (the end;\n"
    "             negative indices count from the end), --columns A,B (names or indices;\n"
    "             default all), --targets FILE.npy, --target-column C[,D] (default: the\n"
    "             --columns), --offset K (target of the window starting at s: step s+K;\n"
    "             default the step after the window), --shuffle, --seed S (1337),\n"
    "             --header auto|true|false (CSV)\n"
    "  -h, --help  show this help\n";

enum {
    O_OUTPUT = 300,
    O_VOCAB,
    O_TOKENIZER,
    O_NUM_WORDS,
    O_OOV,
    O_FILTERS,
    O_SPLIT,
    O_NO_LOWER,
    O_CHAR,
    O_MAX_TOKENS,
    O_STANDARDIZE,
    O_OSL,
    O_MAXLEN,
    O_PADDING,
    O_TRUNCATING,
    O_VALUE,
    O_N,
    O_VSIZE,
    O_WINDOW,
    O_NEG,
    O_NO_SHUFFLE,
    O_SEED,
    O_LABELS,
    O_SEQ_LEN,
    O_SEQ_STRIDE,
    O_RATE,
    O_START,
    O_END,
    O_COLUMNS,
    O_TARGETS,
    O_TARGET_COL,
    O_OFFSET,
    O_SHUFFLE,
    O_HEADER
};

/* The timeseries action's settings. */
typedef struct pp_ts {
    kc_ts_opts o;
    int64_t start, end, offset;
    int has_end, has_offset, shuffle, header, has_seed;
    const char *columns, *target_columns, *targets;
} pp_ts;

typedef struct pp_args {
    const char *action, *input, *output, *vocab, *labels, *split;
    kc_text_opts t;
    kc_pad_opts pad;
    long long n;
    kc_skipgram_opts sg;
    pp_ts ts;
} pp_args;

static int side(const char *s, kc_pad_side *out) {
    if (!strcmp(s, "pre")) return *out = KC_PAD_PRE, 0;
    if (!strcmp(s, "post")) return *out = KC_PAD_POST, 0;
    return kc_cli_usage_error("preprocess", "expected pre or post, got '%s'", s);
}

static int count(const char *opt, const char *s, long long min, int64_t *out) {
    long long v;
    if (kc_cli_parse_count("preprocess", opt, s, min, &v)) return 2;
    *out = v;
    return 0;
}

static int number(const char *opt, const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    if (end == s || *end)
        return kc_cli_usage_error("preprocess", "%s expects a number, got '%s'", opt, s);
    return 0;
}

static int set_string(char *dst, size_t cap, const char *opt, const char *s, int nonempty) {
    if (strlen(s) >= cap || (nonempty && !*s))
        return kc_cli_usage_error("preprocess", "%s must be %s1..%zu bytes", opt,
                                  nonempty ? "" : "0 or ", cap - 1);
    snprintf(dst, cap, "%s", s);
    return 0;
}

static int std_mode(const char *s, kc_standardize *out) {
    static const char *const n[] = {"lower_and_strip_punctuation", "lower", "strip_punctuation",
                                    "none"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, n[i])) return *out = (kc_standardize)i, 0;
    return kc_cli_usage_error("preprocess", "unknown --standardize '%s'", s);
}

/* A signed step index (negative: from the series' end). */
static int step_index(const char *opt, const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno)
        return kc_cli_usage_error("preprocess", "%s expects an integer, got '%s'", opt, s);
    *out = v;
    return 0;
}

static int ts_opt(pp_ts *t, int c, const char *v) {
    switch (c) {
    case O_SEQ_LEN:
        return count("--sequence-length", v, 1, &t->o.sequence_length);
    case O_SEQ_STRIDE:
        return count("--sequence-stride", v, 1, &t->o.sequence_stride);
    case O_RATE:
        return count("--sampling-rate", v, 1, &t->o.sampling_rate);
    case O_START:
        return step_index("--start-index", v, &t->start);
    case O_END:
        t->has_end = 1;
        return step_index("--end-index", v, &t->end);
    case O_COLUMNS:
        t->columns = v;
        return 0;
    case O_TARGETS:
        t->targets = v;
        return 0;
    case O_TARGET_COL:
        t->target_columns = v;
        return 0;
    case O_OFFSET:
        t->has_offset = 1;
        return count("--offset", v, 0, &t->offset);
    case O_SHUFFLE:
        t->shuffle = 1;
        return 0;
    case O_HEADER:
        if (!strcmp(v, "auto")) return t->header = -1, 0;
        if (!strcmp(v, "true")) return t->header = 1, 0;
        if (!strcmp(v, "false")) return t->header = 0, 0;
        return kc_cli_usage_error("preprocess", "--header: auto, true or false, got '%s'", v);
    default:
        return kc_cli_usage_error("preprocess", "unknown or incomplete option");
    }
}

static int one_opt(pp_args *a, int c, const char *v) {
    double d;
    int rc = 0;
    switch (c) {
    case O_OUTPUT:
        a->output = v;
        break;
    case O_VOCAB:
        a->vocab = v;
        break;
    case O_LABELS:
        a->labels = v;
        break;
    case O_TOKENIZER:
        if (strcmp(v, "tokenizer") && strcmp(v, "text_vectorization"))
            return kc_cli_usage_error("preprocess", "--tokenizer: tokenizer or text_vectorization");
        a->t.mode = !strcmp(v, "tokenizer") ? KC_TEXT_TOKENIZER : KC_TEXT_VECTORIZATION;
        break;
    case O_NUM_WORDS:
        rc = count("--num-words", v, 1, &a->t.num_words);
        break;
    case O_OOV:
        rc = set_string(a->t.oov_token, sizeof a->t.oov_token, "--oov-token", v, 1);
        a->t.has_oov = 1;
        break;
    case O_FILTERS:
        rc = set_string(a->t.filters, sizeof a->t.filters, "--filters", v, 0);
        break;
    case O_SPLIT:
        a->split = v;
        break;
    case O_NO_LOWER:
        a->t.lower = 0;
        break;
    case O_CHAR:
        a->t.char_level = 1;
        break;
    case O_MAX_TOKENS:
        rc = count("--max-tokens", v, 3, &a->t.max_tokens);
        break;
    case O_STANDARDIZE:
        rc = std_mode(v, &a->t.standardize);
        break;
    case O_OSL:
        rc = count("--output-sequence-length", v, 1, &a->t.output_sequence_length);
        break;
    case O_MAXLEN:
        rc = count("--maxlen", v, 1, &a->pad.maxlen);
        break;
    case O_PADDING:
        rc = side(v, &a->pad.padding);
        break;
    case O_TRUNCATING:
        rc = side(v, &a->pad.truncating);
        break;
    case O_VALUE:
        if (!(rc = number("--value", v, &d))) a->pad.value = (float)d;
        break;
    case O_N:
        rc = kc_cli_parse_count("preprocess", "--n", v, 2, &a->n);
        break;
    case O_VSIZE:
        rc = count("--vocabulary-size", v, 2, &a->sg.vocabulary_size);
        break;
    case O_WINDOW:
        rc = count("--window-size", v, 0, &a->sg.window_size);
        break;
    case O_NEG:
        rc = number("--negative-samples", v, &a->sg.negative_samples);
        break;
    case O_NO_SHUFFLE:
        a->sg.shuffle = 0;
        break;
    case O_SEED: {
        int64_t s;
        if (!(rc = count("--seed", v, 0, &s))) a->sg.seed = (uint64_t)s;
        a->ts.has_seed = 1;
        break;
    }
    default:
        return ts_opt(&a->ts, c, v);
    }
    return rc;
}

static int parse_args(int argc, char **argv, pp_args *a) {
    static const struct option opts[] = {{"output", 1, 0, O_OUTPUT},
                                         {"vocabulary", 1, 0, O_VOCAB},
                                         {"tokenizer", 1, 0, O_TOKENIZER},
                                         {"num-words", 1, 0, O_NUM_WORDS},
                                         {"oov-token", 1, 0, O_OOV},
                                         {"filters", 1, 0, O_FILTERS},
                                         {"split", 1, 0, O_SPLIT},
                                         {"no-lower", 0, 0, O_NO_LOWER},
                                         {"char-level", 0, 0, O_CHAR},
                                         {"max-tokens", 1, 0, O_MAX_TOKENS},
                                         {"standardize", 1, 0, O_STANDARDIZE},
                                         {"output-sequence-length", 1, 0, O_OSL},
                                         {"maxlen", 1, 0, O_MAXLEN},
                                         {"padding", 1, 0, O_PADDING},
                                         {"truncating", 1, 0, O_TRUNCATING},
                                         {"value", 1, 0, O_VALUE},
                                         {"n", 1, 0, O_N},
                                         {"vocabulary-size", 1, 0, O_VSIZE},
                                         {"window-size", 1, 0, O_WINDOW},
                                         {"negative-samples", 1, 0, O_NEG},
                                         {"no-shuffle", 0, 0, O_NO_SHUFFLE},
                                         {"seed", 1, 0, O_SEED},
                                         {"labels", 1, 0, O_LABELS},
                                         {"sequence-length", 1, 0, O_SEQ_LEN},
                                         {"sequence-stride", 1, 0, O_SEQ_STRIDE},
                                         {"sampling-rate", 1, 0, O_RATE},
                                         {"start-index", 1, 0, O_START},
                                         {"end-index", 1, 0, O_END},
                                         {"columns", 1, 0, O_COLUMNS},
                                         {"targets", 1, 0, O_TARGETS},
                                         {"target-column", 1, 0, O_TARGET_COL},
                                         {"offset", 1, 0, O_OFFSET},
                                         {"shuffle", 0, 0, O_SHUFFLE},
                                         {"header", 1, 0, O_HEADER},
                                         {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    kc_text_opts_default(&a->t, KC_TEXT_TOKENIZER);
    a->sg = (kc_skipgram_opts){.window_size = 4, .negative_samples = 1.0, .shuffle = 1};
    kc_ts_opts_default(&a->ts.o);
    a->ts.header = -1;
    int c, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return -1;
        }
        if (c == '?' || c == ':')
            return kc_cli_usage_error("preprocess", "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        if ((rc = one_opt(a, c, optarg))) return rc;
    }
    if (optind + 2 != argc) return kc_cli_usage_error("preprocess", "expected ACTION and INPUT");
    a->action = argv[optind];
    a->input = argv[optind + 1];
    if (!a->output) return kc_cli_usage_error("preprocess", "--output FILE.npy is required");
    if (a->split && a->t.mode == KC_TEXT_TOKENIZER &&
        (rc = set_string(a->t.split, sizeof a->t.split, "--split", a->split, 1)))
        return rc;
    if (a->split && a->t.mode == KC_TEXT_VECTORIZATION) {
        if (strcmp(a->split, "whitespace") && strcmp(a->split, "character"))
            return kc_cli_usage_error("preprocess", "--split: whitespace or character");
        a->t.split_character = !strcmp(a->split, "character");
    }
    return 0;
}

/* Writes the vocabulary JSON atomically. */
static int write_vocab(const pp_args *a, const kc_vocab *v, kc_error *e) {
    char path[4096];
    const char *p = a->vocab;
    if (!p) {
        snprintf(path, sizeof path, "%s", a->output);
        char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
        if (dot && (!slash || dot > slash)) *dot = 0;
        strncat(path, ".json", sizeof path - strlen(path) - 1);
        p = path;
    }
    kc_atomic_file f;
    int rc = kc_atomic_open(&f, p, e);
    if (rc) return rc;
    kc_strbuf b = {0};
    kc_vocab_to_json(&a->t, v, &b);
    fputs(kc_strbuf_str(&b), f.f);
    fputc('\n', f.f);
    kc_strbuf_free(&b);
    return kc_atomic_commit(&f, e);
}

static int write_padded(const pp_args *a, const kc_ragged *r, kc_pad_opts p, kc_error *e) {
    kc_array y;
    int rc = kc_pad_sequences(r, &p, &y, e);
    if (!rc) rc = kc_npy_write(a->output, y.data, &y.shape, e);
    kc_array_free(&y);
    return rc;
}

static int do_text(const pp_args *a, kc_error *e) {
    kc_texts t;
    kc_vocab v = {0};
    kc_ragged r = {0};
    int rc = kc_text_read_lines(a->input, &t, e);
    if (!rc) rc = kc_text_fit(&a->t, (const char *const *)t.text, t.n, &v, e);
    if (!rc) rc = kc_text_to_sequences(&a->t, &v, (const char *const *)t.text, t.n, &r, e);
    kc_pad_opts p = a->pad;
    if (a->t.mode == KC_TEXT_VECTORIZATION)
        p = (kc_pad_opts){.maxlen = a->t.output_sequence_length,
                          .padding = KC_PAD_POST,
                          .truncating = KC_PAD_POST};
    if (!rc) rc = write_padded(a, &r, p, e);
    if (!rc) rc = write_vocab(a, &v, e);
    kc_ragged_free(&r);
    kc_vocab_free(&v);
    kc_texts_free(&t);
    return rc;
}

static int do_one_hot(const pp_args *a, kc_error *e) {
    if (!a->n) return kc_fail(e, KC_ECONFIG, "one_hot needs --n N (ids 1..N-1)");
    kc_texts t;
    int rc = kc_text_read_lines(a->input, &t, e);
    kc_ragged r = {0};
    int64_t used = 0;
    if (!rc && (!(r.off = calloc((size_t)t.n + 1, sizeof *r.off))))
        rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int64_t i = 0; !rc && i < t.n; i++) {
        int32_t *ids;
        int64_t m;
        if ((rc = kc_hashing_trick_md5(&a->t, t.text[i], a->n, &ids, &m, e))) break;
        int32_t *p = realloc(r.tok, (size_t)(used + m + 1) * sizeof *p);
        if (!p)
            rc = kc_fail(e, KC_ERUNTIME, "out of memory");
        else
            memcpy((r.tok = p) + used, ids, (size_t)m * sizeof *ids);
        used += m;
        r.off[i + 1] = used;
        free(ids);
    }
    r.n = rc ? 0 : t.n;
    if (!rc) rc = write_padded(a, &r, a->pad, e);
    kc_ragged_free(&r);
    kc_texts_free(&t);
    return rc;
}

/* Sequences of ids: the rows of an NPY, or whitespace-separated integers per line. */
static int read_sequences(const char *path, kc_ragged *r, kc_error *e) {
    memset(r, 0, sizeof *r);
    size_t l = strlen(path);
    if (l > 4 && !strcmp(path + l - 4, ".npy")) {
        kc_array x;
        int rc = kc_array_load(path, NULL, &x, e);
        if (rc) return rc;
        int64_t n = x.shape.rank == 1 ? 1 : kc_array_rows(&x),
                w = kc_shape_numel(&x.shape) / (n ? n : 1);
        r->n = n;
        r->off = calloc((size_t)n + 1, sizeof *r->off);
        r->tok = malloc((size_t)(n * w + 1) * sizeof *r->tok);
        for (int64_t i = 0; r->off && r->tok && i < n * w; i++) {
            float v = x.dtype == KC_DT_U8 ? ((uint8_t *)x.data)[i] : ((float *)x.data)[i];
            if (!(v >= -2147483648.0f && v < 2147483648.0f && v == (float)(int32_t)v))
                rc = kc_fail(e, KC_ERUNTIME, "%s: value %g at %lld is not an integer id", path, v,
                             (long long)i);
            r->tok[i] = (int32_t)v;
        }
        for (int64_t i = 0; r->off && i < n; i++)
            r->off[i + 1] = (i + 1) * w;
        kc_array_free(&x);
        if (!rc && (!r->off || !r->tok)) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
        if (rc) kc_ragged_free(r);
        return rc;
    }
    kc_texts t;
    int rc = kc_text_read_lines(path, &t, e);
    int64_t used = 0, cap = 0;
    if (!rc && !(r->off = calloc((size_t)t.n + 1, sizeof *r->off)))
        rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int64_t i = 0; !rc && i < t.n; i++) {
        for (char *s = t.text[i], *end;; s = end) {
            while (*s == ' ' || *s == '\t')
                s++;
            if (!*s) break;
            long long v = strtoll(s, &end, 10);
            if (end == s || (*end && *end != ' ' && *end != '\t') || v < INT32_MIN ||
                v > INT32_MAX) {
                rc = kc_fail(e, KC_ERUNTIME, "%s:%lld: '%.20s' is not an integer id", path,
                             (long long)i + 1, s);
                break;
            }
            if (used == cap) {
                cap = cap ? cap * 2 : 256;
                int32_t *p = realloc(r->tok, (size_t)cap * sizeof *p);
                if (!p) {
                    rc = kc_fail(e, KC_ERUNTIME, "out of memory");
                    break;
                }
                r->tok = p;
            }
            r->tok[used++] = (int32_t)v;
        }
        r->off[i + 1] = used;
    }
    r->n = t.n;
    kc_texts_free(&t);
    if (rc) kc_ragged_free(r);
    return rc;
}

static int do_pad(const pp_args *a, kc_error *e) {
    kc_ragged r;
    int rc = read_sequences(a->input, &r, e);
    if (!rc) rc = write_padded(a, &r, a->pad, e);
    kc_ragged_free(&r);
    return rc;
}

static int do_skipgrams(const pp_args *a, kc_error *e) {
    if (!a->labels || !a->sg.vocabulary_size)
        return kc_fail(e, KC_ECONFIG, "skipgrams needs --vocabulary-size N and --labels FILE.npy");
    kc_ragged r;
    int rc = read_sequences(a->input, &r, e);
    if (rc) return rc;
    int64_t *pairs = NULL, m = 0;
    int32_t *labels = NULL;
    rc = kc_skipgrams(r.tok, r.off[r.n], &a->sg, &pairs, &labels, &m, e);
    float *c = rc ? NULL : malloc((size_t)(2 * m + 1) * sizeof *c);
    float *l = rc ? NULL : malloc((size_t)(m + 1) * sizeof *l);
    if (!rc && (!c || !l)) rc = kc_fail(e, KC_ERUNTIME, "out of memory");
    for (int64_t i = 0; !rc && i < m; i++) {
        c[2 * i] = (float)pairs[2 * i];
        c[2 * i + 1] = (float)pairs[2 * i + 1];
        l[i] = (float)labels[i];
    }
    kc_shape cs = kc_shape2(m, 2), ls = kc_shape1(m);
    if (!rc) rc = kc_npy_write(a->output, c, &cs, e);
    if (!rc) rc = kc_npy_write(a->labels, l, &ls, e);
    free(c), free(l), free(pairs), free(labels);
    kc_ragged_free(&r);
    return rc;
}

/* "A,B,C" as columns (the strings stay in `buf`). */
static int split_columns(const char *list, char *buf, size_t cap, char **names, int max,
                         kc_ts_columns *c, kc_error *e) {
    c->n = 0;
    if (!list) return KC_OK;
    if (strlen(list) >= cap) return kc_fail(e, KC_ECONFIG, "the column list is too long");
    snprintf(buf, cap, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (c->n == max) return kc_fail(e, KC_ECONFIG, "at most %d columns", max);
        names[c->n++] = tok;
    }
    if (!c->n) return kc_fail(e, KC_ECONFIG, "an empty column list");
    c->name = names;
    return KC_OK;
}

static int ends_in(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int do_timeseries(const pp_args *a, kc_error *e) {
    const pp_ts *p = &a->ts;
    if (!p->o.sequence_length)
        return kc_fail(e, KC_ECONFIG, "timeseries needs --sequence-length N");
    if (p->has_seed && a->sg.seed > UINT32_MAX)
        return kc_fail(e, KC_ECONFIG, "timeseries: --seed must be in 0..4294967295");
    uint32_t seed = p->has_seed ? (uint32_t)a->sg.seed : 1337;
    if ((p->target_columns || p->has_offset) && !p->targets)
        return kc_fail(e, KC_ECONFIG, "--target-column and --offset need --targets FILE.npy");
    kc_ts_spec t = {.csv_header = p->header, .opts = p->o, .has_target = p->targets != NULL};
    char *path = (char *)a->input;
    if (ends_in(path, ".npy") || ends_in(path, ".npz"))
        t.npy_path = path;
    else
        t.csv_path = path;
    static char cbuf[8192], tbuf[8192];
    static char *cnames[1024], *tnames[1024];
    int rc = split_columns(p->columns, cbuf, sizeof cbuf, cnames, 1024, &t.columns, e);
    if (!rc) rc = split_columns(p->target_columns, tbuf, sizeof tbuf, tnames, 1024, &t.target, e);
    if (rc) return rc;
    t.offset = p->has_offset ? p->offset : (p->o.sequence_length - 1) * p->o.sampling_rate + 1;
    t.split[0] = (kc_ts_split){.present = 1,
                               .start_index = p->start,
                               .end_index = p->end,
                               .has_end = p->has_end,
                               .shuffle = p->shuffle,
                               .seed = seed};
    if (p->has_end && !p->end) return kc_fail(e, KC_ECONFIG, "--end-index must not be 0");
    kc_ts_series ser;
    kc_array x = {0}, y = {0};
    if ((rc = kc_ts_series_load(&t, &ser, e))) return rc;
    rc = kc_ts_series_windows(&t, &ser, 0, &x, &y, e);
    if (!rc) rc = kc_npy_write(a->output, x.data, &x.shape, e);
    if (!rc && p->targets) rc = kc_npy_write(p->targets, y.data, &y.shape, e);
    kc_array_free(&x);
    kc_array_free(&y);
    kc_ts_series_free(&ser);
    return rc;
}

int kc_cmd_preprocess(int argc, char **argv) {
    pp_args a;
    int st = parse_args(argc, argv, &a);
    if (st) return st < 0 ? 0 : st;
    static const struct {
        const char *name;
        int (*run)(const pp_args *, kc_error *);
    } actions[] = {{"text", do_text},
                   {"pad", do_pad},
                   {"one_hot", do_one_hot},
                   {"skipgrams", do_skipgrams},
                   {"timeseries", do_timeseries}};
    kc_error e = {0};
    for (size_t i = 0; i < sizeof actions / sizeof *actions; i++)
        if (!strcmp(a.action, actions[i].name)) {
            if (actions[i].run(&a, &e)) return kc_cli_report("preprocess", &e);
            return 0;
        }
    return kc_cli_usage_error(
        "preprocess", "unknown action '%s' (text, pad, one_hot, skipgrams, timeseries)", a.action);
}

/* Text data: Keras's Tokenizer and TextVectorization on the fixture corpus
 * (tests/fixtures/text, written by Keras: make_text.py), pad_sequences,
 * hashing_trick with md5, skipgrams, numpy's shuffle; the text sources
 * (line files, CSV/TSV, class folders, record files); and through the
 * binary: training on text, the vocabulary in the checkpoint, predict on
 * raw text, the preprocess verb and the errors. */
#include "clitest.h"
#include "core/json.h"
#include "models/data/sequences.h"
#include "models/data/text.h"
#include "models/data/tokenizer.h"

static kc_json *expected;

static const char *fixture(const char *name) {
    static char buf[4200];
    const char *root = getenv("KERASC_SRC");
    snprintf(buf, sizeof buf, "%s/tests/fixtures/text/%s", root && *root ? root : ".", name);
    return buf;
}

static void load_expected(void) {
    if (expected) return;
    kc_error e = {0};
    expected = kc_json_parse_file(fixture("expected.json"), &e);
    ck_assert_msg(expected != NULL, "%s", e.msg);
}

static const char **corpus(int64_t *n) {
    load_expected();
    const kc_json *t = kc_json_get(expected, "texts");
    *n = (int64_t)kc_json_len(t);
    const char **s = calloc((size_t)*n, sizeof *s);
    for (int64_t i = 0; i < *n; i++)
        s[i] = kc_json_str(kc_json_at(t, (size_t)i));
    return s;
}

static int64_t jint(const kc_json *v) {
    int64_t x = 0;
    ck_assert_int_eq(kc_json_int64(v, &x), 0);
    return x;
}

/* Options of one fixture case onto kc_text_opts. */
static void case_opts(const kc_json *o, kc_text_mode mode, kc_text_opts *t) {
    kc_text_opts_default(t, mode);
    const kc_json *v;
    if ((v = kc_json_get(o, "num_words"))) t->num_words = jint(v);
    if ((v = kc_json_get(o, "oov_token"))) {
        t->has_oov = 1;
        snprintf(t->oov_token, sizeof t->oov_token, "%s", kc_json_str(v));
    }
    if ((v = kc_json_get(o, "char_level"))) t->char_level = kc_json_bool(v);
    if ((v = kc_json_get(o, "lower"))) t->lower = kc_json_bool(v);
    if ((v = kc_json_get(o, "filters")))
        snprintf(t->filters, sizeof t->filters, "%s", kc_json_str(v));
    if (mode == KC_TEXT_TOKENIZER && (v = kc_json_get(o, "split")))
        snprintf(t->split, sizeof t->split, "%s", kc_json_str(v));
    if (mode == KC_TEXT_VECTORIZATION && (v = kc_json_get(o, "split")))
        t->split_character = !strcmp(kc_json_str(v), "character");
    if ((v = kc_json_get(o, "max_tokens"))) t->max_tokens = jint(v);
    if ((v = kc_json_get(o, "output_sequence_length"))) t->output_sequence_length = jint(v);
    if ((v = kc_json_get(o, "standardize"))) {
        const char *s = kc_json_is_null(v) ? "none" : kc_json_str(v);
        t->standardize = !strcmp(s, "lower")               ? KC_STD_LOWER
                         : !strcmp(s, "strip_punctuation") ? KC_STD_STRIP
                         : !strcmp(s, "none")              ? KC_STD_NONE
                                                           : KC_STD_LOWER_AND_STRIP;
    }
}

static void check_vocab(const kc_vocab *v, const kc_json *want, int c) {
    ck_assert_msg(v->n == (int64_t)kc_json_len(want), "case %d: %lld tokens, Keras has %zu", c,
                  (long long)v->n, kc_json_len(want));
    for (int64_t i = 0; i < v->n; i++)
        ck_assert_msg(!strcmp(v->tok[i], kc_json_str(kc_json_at(want, (size_t)i))),
                      "case %d: token %lld is '%s', Keras has '%s'", c, (long long)(i + v->first),
                      v->tok[i], kc_json_str(kc_json_at(want, (size_t)i)));
}

static void check_ragged(const kc_ragged *r, const kc_json *want, int c) {
    ck_assert_int_eq(r->n, (int64_t)kc_json_len(want));
    for (int64_t i = 0; i < r->n; i++) {
        const kc_json *row = kc_json_at(want, (size_t)i);
        ck_assert_msg(r->off[i + 1] - r->off[i] == (int64_t)kc_json_len(row),
                      "case %d text %lld: %lld ids, Keras has %zu", c, (long long)i,
                      (long long)(r->off[i + 1] - r->off[i]), kc_json_len(row));
        for (size_t k = 0; k < kc_json_len(row); k++)
            ck_assert_msg(r->tok[r->off[i] + (int64_t)k] == jint(kc_json_at(row, k)),
                          "case %d text %lld id %zu: %d, Keras %lld", c, (long long)i, k,
                          r->tok[r->off[i] + (int64_t)k], (long long)jint(kc_json_at(row, k)));
    }
}

START_TEST(tokenizer_matches_keras) {
    int64_t n;
    const char **texts = corpus(&n);
    const kc_json *cases = kc_json_get(expected, "tokenizer");
    ck_assert_int_ge(kc_json_len(cases), 6);
    for (size_t c = 0; c < kc_json_len(cases); c++) {
        const kc_json *k = kc_json_at(cases, c);
        kc_text_opts o;
        case_opts(kc_json_get(k, "options"), KC_TEXT_TOKENIZER, &o);
        kc_vocab v;
        kc_ragged r;
        kc_error e = {0};
        ck_assert_msg(kc_text_fit(&o, texts, n, &v, &e) == 0, "%s", e.msg);
        check_vocab(&v, kc_json_get(k, "vocabulary"), (int)c);
        ck_assert_msg(kc_text_to_sequences(&o, &v, texts, n, &r, &e) == 0, "%s", e.msg);
        check_ragged(&r, kc_json_get(k, "sequences"), (int)c);
        kc_ragged_free(&r);
        kc_vocab_free(&v);
    }
    free(texts);
}
END_TEST

/* The layer's int output: ids padded (post) or cut to output_sequence_length,
 * or to the longest text when it has none. */
static void vectorize(const kc_text_opts *o, const kc_vocab *v, const char **texts, int64_t n,
                      kc_array *out) {
    kc_ragged r;
    kc_error e = {0};
    ck_assert_msg(kc_text_to_sequences(o, v, texts, n, &r, &e) == 0, "%s", e.msg);
    kc_pad_opts p = {
        .maxlen = o->output_sequence_length, .padding = KC_PAD_POST, .truncating = KC_PAD_POST};
    ck_assert_msg(kc_pad_sequences(&r, &p, out, &e) == 0, "%s", e.msg);
    kc_ragged_free(&r);
}

START_TEST(text_vectorization_matches_keras) {
    int64_t n;
    const char **texts = corpus(&n);
    const kc_json *cases = kc_json_get(expected, "vectorization");
    ck_assert_int_ge(kc_json_len(cases), 4);
    for (size_t c = 0; c < kc_json_len(cases); c++) {
        const kc_json *k = kc_json_at(cases, c);
        kc_text_opts o;
        case_opts(kc_json_get(k, "options"), KC_TEXT_VECTORIZATION, &o);
        kc_vocab v;
        kc_error e = {0};
        ck_assert_msg(kc_text_fit(&o, texts, n, &v, &e) == 0, "%s", e.msg);
        check_vocab(&v, kc_json_get(k, "vocabulary"), (int)c);
        kc_array y;
        vectorize(&o, &v, texts, n, &y);
        const kc_json *want = kc_json_get(k, "outputs");
        size_t cols = kc_json_len(kc_json_at(want, 0));
        ck_assert_int_eq(y.shape.d[0], n);
        ck_assert_int_eq(y.shape.d[1], (int64_t)cols);
        for (int64_t i = 0; i < n; i++)
            for (size_t j = 0; j < cols; j++)
                ck_assert_msg(((float *)y.data)[i * (int64_t)cols + (int64_t)j] ==
                                  (float)jint(kc_json_at(kc_json_at(want, (size_t)i), j)),
                              "case %zu text %lld position %zu", c, (long long)i, j);
        kc_array_free(&y);
        kc_vocab_free(&v);
    }
    free(texts);
}
END_TEST

START_TEST(pad_sequences_match_keras) {
    load_expected();
    const kc_json *cases = kc_json_get(expected, "pad");
    for (size_t c = 0; c < kc_json_len(cases); c++) {
        const kc_json *k = kc_json_at(cases, c), *o = kc_json_get(k, "options"), *v;
        const kc_json *seqs = kc_json_get(k, "sequences"), *want = kc_json_get(k, "outputs");
        kc_ragged r = {0};
        r.n = (int64_t)kc_json_len(seqs);
        r.off = calloc((size_t)r.n + 1, sizeof *r.off);
        r.tok = calloc(1024, sizeof *r.tok);
        for (int64_t i = 0; i < r.n; i++) {
            const kc_json *s = kc_json_at(seqs, (size_t)i);
            r.off[i + 1] = r.off[i] + (int64_t)kc_json_len(s);
            for (size_t j = 0; j < kc_json_len(s); j++)
                r.tok[r.off[i] + (int64_t)j] = (int32_t)jint(kc_json_at(s, j));
        }
        kc_pad_opts p = {0};
        if ((v = kc_json_get(o, "maxlen"))) p.maxlen = jint(v);
        if ((v = kc_json_get(o, "padding"))) p.padding = !strcmp(kc_json_str(v), "post");
        if ((v = kc_json_get(o, "truncating"))) p.truncating = !strcmp(kc_json_str(v), "post");
        if ((v = kc_json_get(o, "value"))) p.value = (float)kc_json_num(v);
        kc_array y;
        kc_error e = {0};
        ck_assert_msg(kc_pad_sequences(&r, &p, &y, &e) == 0, "%s", e.msg);
        size_t cols = kc_json_len(kc_json_at(want, 0));
        ck_assert_int_eq(y.shape.d[1], (int64_t)cols);
        for (int64_t i = 0; i < r.n; i++)
            for (size_t j = 0; j < cols; j++)
                ck_assert_msg(((float *)y.data)[i * (int64_t)cols + (int64_t)j] ==
                                  (float)kc_json_num(kc_json_at(kc_json_at(want, (size_t)i), j)),
                              "case %zu row %lld col %zu", c, (long long)i, j);
        kc_array_free(&y);
        kc_ragged_free(&r);
    }
}
END_TEST

START_TEST(hashing_trick_md5_matches_keras) {
    int64_t n;
    const char **texts = corpus(&n);
    const kc_json *cases = kc_json_get(expected, "hashing");
    kc_text_opts o;
    kc_text_opts_default(&o, KC_TEXT_TOKENIZER);
    for (size_t c = 0; c < kc_json_len(cases); c++) {
        const kc_json *k = kc_json_at(cases, c), *want = kc_json_get(k, "outputs");
        for (int64_t i = 0; i < n; i++) {
            int32_t *ids;
            int64_t m;
            kc_error e = {0};
            ck_assert_msg(
                kc_hashing_trick_md5(&o, texts[i], jint(kc_json_get(k, "n")), &ids, &m, &e) == 0,
                "%s", e.msg);
            const kc_json *row = kc_json_at(want, (size_t)i);
            ck_assert_int_eq(m, (int64_t)kc_json_len(row));
            for (int64_t j = 0; j < m; j++)
                ck_assert_int_eq(ids[j], jint(kc_json_at(row, (size_t)j)));
            free(ids);
        }
    }
    unsigned char d[16];
    kc_md5("abc", 3, d); /* RFC 1321's test vector */
    ck_assert_int_eq(d[0], 0x90);
    ck_assert_int_eq(d[15], 0x72);
    free(texts);
}
END_TEST

START_TEST(skipgrams_match_keras) {
    load_expected();
    const kc_json *cases = kc_json_get(expected, "skipgrams");
    for (size_t c = 0; c < kc_json_len(cases); c++) {
        const kc_json *k = kc_json_at(cases, c), *o = kc_json_get(k, "options");
        const kc_json *seq = kc_json_get(k, "sequence");
        int32_t s[64];
        int64_t n = (int64_t)kc_json_len(seq);
        for (int64_t i = 0; i < n; i++)
            s[i] = (int32_t)jint(kc_json_at(seq, (size_t)i));
        kc_skipgram_opts so = {.vocabulary_size = jint(kc_json_get(k, "vocabulary_size")),
                               .window_size = jint(kc_json_get(o, "window_size")),
                               .negative_samples = kc_json_num(kc_json_get(o, "negative_samples")),
                               .shuffle = kc_json_bool(kc_json_get(o, "shuffle")),
                               .seed = (uint64_t)jint(kc_json_get(o, "seed"))};
        int64_t *pairs, m;
        int32_t *labels;
        kc_error e = {0};
        ck_assert_msg(kc_skipgrams(s, n, &so, &pairs, &labels, &m, &e) == 0, "%s", e.msg);
        const kc_json *wc = kc_json_get(k, "couples"), *wl = kc_json_get(k, "labels");
        ck_assert_int_eq(m, (int64_t)kc_json_len(wc));
        for (int64_t i = 0; i < m; i++) {
            const kc_json *p = kc_json_at(wc, (size_t)i);
            ck_assert_msg(pairs[2 * i] == jint(kc_json_at(p, 0)) &&
                              pairs[2 * i + 1] == jint(kc_json_at(p, 1)),
                          "case %zu couple %lld", c, (long long)i);
            ck_assert_int_eq(labels[i], jint(kc_json_at(wl, (size_t)i)));
        }
        free(pairs);
        free(labels);
    }
}
END_TEST

START_TEST(numpy_shuffle_matches_numpy) {
    load_expected();
    const kc_json *k = kc_json_get(expected, "numpy_shuffle"), *order = kc_json_get(k, "order");
    int64_t n = jint(kc_json_get(k, "n")), idx[64];
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    kc_numpy_shuffle((uint32_t)jint(kc_json_get(k, "seed")), idx, n);
    for (int64_t i = 0; i < n; i++)
        ck_assert_int_eq(idx[i], jint(kc_json_at(order, (size_t)i)));
}
END_TEST

START_TEST(vocabulary_json_round_trip) {
    int64_t n;
    const char **texts = corpus(&n);
    kc_text_opts o;
    kc_text_opts_default(&o, KC_TEXT_TOKENIZER);
    o.has_oov = 1;
    snprintf(o.oov_token, sizeof o.oov_token, "<OOV>");
    kc_vocab v, w;
    kc_error e = {0};
    ck_assert_int_eq(kc_text_fit(&o, texts, n, &v, &e), 0);
    kc_strbuf b = {0};
    kc_vocab_to_json(&o, &v, &b);
    ck_assert_msg(kc_vocab_from_json(kc_strbuf_str(&b), strlen(kc_strbuf_str(&b)),
                                     KC_TEXT_TOKENIZER, "test", &w, &e) == 0,
                  "%s", e.msg);
    ck_assert_int_eq(w.n, v.n);
    for (int64_t i = 0; i < v.n; i++) {
        ck_assert_str_eq(w.tok[i], v.tok[i]);
        ck_assert_int_eq(kc_vocab_id(&w, v.tok[i], strlen(v.tok[i])), i + 1);
    }
    /* the other mode's vocabulary is refused */
    kc_vocab x;
    ck_assert_int_ne(kc_vocab_from_json(kc_strbuf_str(&b), strlen(kc_strbuf_str(&b)),
                                        KC_TEXT_VECTORIZATION, "test", &x, &e),
                     0);
    ck_assert_ptr_nonnull(strstr(e.msg, "TextVectorization"));
    kc_strbuf_free(&b);
    kc_vocab_free(&v);
    kc_vocab_free(&w);
    free(texts);
}
END_TEST

/* ------------------------------------------------------ text sources --- */

static void write_bytes(const char *name, const char *data, size_t n) {
    FILE *f = fopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(data, 1, n, f);
    fclose(f);
}

START_TEST(line_files_with_labels) {
    write_file("l.txt", "first line\r\n\nthird \xc3\xa9t\xc3\xa9\nno newline");
    write_file("l.lab", "1\n0\n2.5\n 3 \n\n");
    kc_texts t;
    kc_error e = {0};
    ck_assert_msg(kc_text_read_lines(path_in("l.txt"), &t, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(t.n, 4);
    ck_assert_str_eq(t.text[0], "first line");
    ck_assert_str_eq(t.text[1], "");
    ck_assert_str_eq(t.text[3], "no newline");
    ck_assert_msg(kc_text_read_labels(path_in("l.lab"), &t, &e) == 0, "%s", e.msg);
    ck_assert_float_eq(t.label[2], 2.5f);
    ck_assert_float_eq(t.label[3], 3.0f);
    write_file("short.lab", "1\n0\n");
    ck_assert_int_ne(kc_text_read_labels(path_in("short.lab"), &t, &e), 0);
    ck_assert_ptr_nonnull(strstr(e.msg, "2 labels for 4 texts"));
    write_file("bad.lab", "1\n0\nx\n1\n");
    ck_assert_int_ne(kc_text_read_labels(path_in("bad.lab"), &t, &e), 0);
    ck_assert_ptr_nonnull(strstr(e.msg, "bad.lab:3:"));
    kc_texts_free(&t);
    /* an empty file has no lines */
    write_file("empty.txt", "");
    ck_assert_int_eq(kc_text_read_lines(path_in("empty.txt"), &t, &e), 0);
    ck_assert_int_eq(t.n, 0);
    kc_texts_free(&t);
}
END_TEST

START_TEST(hostile_text_files) {
    kc_texts t;
    kc_error e = {0};
    write_bytes("bad.txt", "ok\nfine\nbad \xff byte\n", 18);
    ck_assert_int_ne(kc_text_read_lines(path_in("bad.txt"), &t, &e), 0);
    ck_assert_msg(strstr(e.msg, "bad.txt:3: invalid UTF-8"), "%s", e.msg);
    write_bytes("over.txt", "a\n\xc0\xaf\n", 5); /* an overlong '/' */
    ck_assert_int_ne(kc_text_read_lines(path_in("over.txt"), &t, &e), 0);
    ck_assert_msg(strstr(e.msg, "over.txt:2: invalid UTF-8"), "%s", e.msg);
    write_bytes("sur.txt", "\xed\xa0\x80", 3); /* a surrogate */
    ck_assert_int_ne(kc_text_read_lines(path_in("sur.txt"), &t, &e), 0);
    write_bytes("nul.txt", "a\nb\0c\n", 6);
    ck_assert_int_ne(kc_text_read_lines(path_in("nul.txt"), &t, &e), 0);
    ck_assert_msg(strstr(e.msg, "nul.txt:2: NUL byte"), "%s", e.msg);
    /* a huge line is one sample */
    size_t n = kc_test_quick() ? 1 << 20 : 8 << 20;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = i % 7 == 6 ? ' ' : 'a' + (char)(i % 5);
    big[n] = '\n';
    write_bytes("big.txt", big, n + 1);
    free(big);
    ck_assert_int_eq(kc_text_read_lines(path_in("big.txt"), &t, &e), 0);
    ck_assert_int_eq(t.n, 1);
    kc_text_opts o;
    kc_text_opts_default(&o, KC_TEXT_TOKENIZER);
    kc_vocab v;
    ck_assert_int_eq(kc_text_fit(&o, (const char *const *)t.text, 1, &v, &e), 0);
    ck_assert_int_gt(v.n, 0);
    kc_vocab_free(&v);
    kc_texts_free(&t);
    /* a BOM is dropped */
    write_file("bom.txt", "\xef\xbb\xbfhello\n");
    ck_assert_int_eq(kc_text_read_lines(path_in("bom.txt"), &t, &e), 0);
    ck_assert_str_eq(t.text[0], "hello");
    kc_texts_free(&t);
}
END_TEST

START_TEST(text_csv_and_tsv) {
    write_file("r.tsv", "id\treview\tlabel\n1\tgreat film\t1\n2\t\"a \"\"quoted\"\"\tone\"\t0\n"
                        "3\t\"two\nlines\"\t1\n");
    kc_texts t;
    kc_error e = {0};
    ck_assert_msg(kc_text_read_csv(path_in("r.tsv"), '\t', -1, "review", "label", &t, &e) == 0,
                  "%s", e.msg);
    ck_assert_int_eq(t.n, 3);
    ck_assert_str_eq(t.text[1], "a \"quoted\"\tone");
    ck_assert_str_eq(t.text[2], "two\nlines");
    ck_assert_float_eq(t.label[0], 1);
    ck_assert_float_eq(t.label[1], 0);
    kc_texts_free(&t);
    /* by index, no header */
    write_file("n.csv", "hello world,3\nbye,1\n");
    ck_assert_int_eq(kc_text_read_csv(path_in("n.csv"), ',', 0, "0", "-1", &t, &e), 0);
    ck_assert_int_eq(t.n, 2);
    ck_assert_str_eq(t.text[0], "hello world");
    ck_assert_float_eq(t.label[0], 3);
    kc_texts_free(&t);
    ck_assert_int_ne(kc_text_read_csv(path_in("r.tsv"), '\t', -1, "reviews", "label", &t, &e), 0);
    ck_assert_msg(strstr(e.msg, "no column named 'reviews'") && strstr(e.msg, "'review'"), "%s",
                  e.msg);
    write_file("bad.tsv", "review\tlabel\nok\t1\nbroken\n");
    ck_assert_int_ne(kc_text_read_csv(path_in("bad.tsv"), '\t', 1, "review", "label", &t, &e), 0);
    ck_assert_msg(strstr(e.msg, "bad.tsv:3: expected 2 fields, found 1"), "%s", e.msg);
    write_file("lab.tsv", "review\tlabel\nok\tpositive\n");
    ck_assert_int_ne(kc_text_read_csv(path_in("lab.tsv"), '\t', 1, "review", "label", &t, &e), 0);
    ck_assert_msg(strstr(e.msg, "lab.tsv:2: label 'positive' is not a number"), "%s", e.msg);
    write_file("q.csv", "text\n\"open\n");
    ck_assert_int_ne(kc_text_read_csv(path_in("q.csv"), ',', 1, "text", NULL, &t, &e), 0);
    ck_assert_msg(strstr(e.msg, "q.csv:2: unterminated"), "%s", e.msg);
}
END_TEST

static void mkdirs(const char *p) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path_in(p));
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(class_folders_as_keras) {
    mkdirs("td/neg/more");
    mkdirs("td/pos");
    mkdirs("td/.hidden");
    write_file("td/neg/b.txt", "bad");
    write_file("td/neg/a.txt", "awful");
    write_file("td/neg/more/c.TXT", "nested \xc3\xa9\xc3\xa9\xc3\xa9");
    write_file("td/neg/skip.md", "not a sample");
    write_file("td/pos/x.txt", "good");
    write_file("td/.hidden/h.txt", "hidden class");
    kc_text_dir_opts o = {.inferred = 1};
    kc_texts t;
    kc_error e = {0};
    ck_assert_msg(kc_text_read_directory(path_in("td"), &o, &t, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(t.nclasses, 2);
    ck_assert_str_eq(t.class_names[0], "neg");
    ck_assert_int_eq(t.n, 4);
    ck_assert_str_eq(t.text[0], "awful");
    ck_assert_str_eq(t.text[1], "bad");
    ck_assert_str_eq(t.text[2], "nested \xc3\xa9\xc3\xa9\xc3\xa9");
    ck_assert_str_eq(t.text[3], "good");
    ck_assert_float_eq(t.label[3], 1);
    kc_array y;
    ck_assert_int_eq(kc_texts_labels(&t, KC_LABELS_CATEGORICAL, &y, &e), 0);
    ck_assert_int_eq(y.shape.d[1], 2);
    ck_assert_float_eq(((float *)y.data)[3 * 2 + 1], 1);
    kc_array_free(&y);
    kc_texts_free(&t);
    /* max_length cuts bytes, keeping whole characters */
    o.max_length = 9;
    ck_assert_int_eq(kc_text_read_directory(path_in("td"), &o, &t, &e), 0);
    ck_assert_str_eq(t.text[2], "nested \xc3\xa9");
    kc_texts_free(&t);
    /* validation_split with a seed: numpy's shuffle, then the tail */
    o = (kc_text_dir_opts){
        .inferred = 1, .validation_split = 0.5, .subset = 2, .shuffle = 1, .seed = 1337};
    ck_assert_int_eq(kc_text_read_directory(path_in("td"), &o, &t, &e), 0);
    ck_assert_int_eq(t.n, 2);
    int64_t idx[4] = {0, 1, 2, 3};
    kc_numpy_shuffle(1337, idx, 4);
    const char *names[] = {"awful", "bad", "nested \xc3\xa9\xc3\xa9\xc3\xa9", "good"};
    ck_assert_str_eq(t.text[0], names[idx[2]]);
    ck_assert_str_eq(t.text[1], names[idx[3]]);
    kc_texts_free(&t);
    o.subset = 1;
    ck_assert_int_eq(kc_text_read_directory(path_in("td"), &o, &t, &e), 0);
    ck_assert_str_eq(t.text[0], names[idx[0]]);
    kc_texts_free(&t);
}
END_TEST

START_TEST(record_files_as_classes) {
    write_file("art", "A quote\nover two lines\n%\nAnother\n%\n%\n");
    write_file("law", "Murphy's law\n%\n");
    const char *paths[2];
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s", path_in("art"));
    snprintf(b, sizeof b, "%s", path_in("law"));
    paths[0] = a;
    paths[1] = b;
    kc_texts t;
    kc_error e = {0};
    ck_assert_msg(kc_text_read_records(paths, 2, "%", &t, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(t.n, 3);
    ck_assert_str_eq(t.text[0], "A quote\nover two lines");
    ck_assert_str_eq(t.text[1], "Another");
    ck_assert_str_eq(t.text[2], "Murphy's law");
    ck_assert_float_eq(t.label[2], 1);
    ck_assert_int_eq(t.nclasses, 2);
    ck_assert_str_eq(t.class_names[1], "law");
    kc_texts_free(&t);
}
END_TEST

/* ------------------------------------------------- through the binary --- */

/* Reviews: two words of the label's sentiment among filler words. */
static void write_reviews(const char *tname, const char *lname, int n, uint64_t seed) {
    static const char *pos[] = {"good", "great", "excellent", "wonderful", "love", "fine"};
    static const char *neg[] = {"bad", "awful", "terrible", "hate", "poor", "boring"};
    static const char *fill[] = {"the", "movie", "was", "a", "and", "it", "plot", "film"};
    FILE *t = fopen(path_in(tname), "w"), *l = fopen(path_in(lname), "w");
    for (int i = 0; i < n; i++) {
        int y = i % 2;
        for (int k = 0; k < 7; k++) {
            uint64_t r = kc_rng_below(seed, (uint64_t)k, (uint64_t)i, 6);
            const char *w = k == 2 || k == 5 ? (y ? pos : neg)[r] : fill[r];
            fprintf(t, "%s%s", k ? " " : "", k == 0 ? "The" : w);
        }
        fprintf(t, "!\n");
        fprintf(l, "%d\n", y);
    }
    fclose(t);
    fclose(l);
}

static const char *text_model =
    "model:\n"
    "  name: bag\n"
    "  layers:\n"
    "    - Input: {shape: [10]}\n"
    "    - Embedding: {input_dim: 30, output_dim: 8}\n"
    "    - GlobalAveragePooling1D\n"
    "    - Dense: {units: 2, activation: softmax}\n"
    "compile: {optimizer: {adam: {learning_rate: 0.02}}, loss: sparse_categorical_crossentropy,"
    " metrics: [accuracy]}\n"
    "fit: {epochs: 15, batch_size: 16, seed: 1, verbose: 0}\n";

START_TEST(train_predict_evaluate_on_raw_text) {
    write_reviews("tr.txt", "tr.lab", 160, 7);
    write_reviews("te.txt", "te.lab", 40, 8);
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "%sdata:\n  train: {text: tr.txt, labels: tr.lab}\n"
             "  test: {text: te.txt, labels: te.lab}\n"
             "  text: {num_words: 30, oov_token: \"<OOV>\", padding: post}\n",
             text_model);
    write_file("bag.yaml", yaml);
    ck_assert_msg(run("train bag.yaml --output run") == 0, "%s", err_buf);
    /* the vocabulary travels in the checkpoint */
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_int_eq(kc_st_open(path_in("run/last.safetensors"), &f, &e), 0);
    const char *v = kc_st_meta(f, "text_vocabulary");
    ck_assert_ptr_nonnull(v);
    ck_assert_ptr_nonnull(strstr(v, "\"vocabulary\": [\"<OOV>\", \"the\""));
    kc_st_close(f);
    /* the training texts are gone: predict and evaluate use the checkpoint's */
    write_file("tr.txt", "unrelated words only\n");
    write_file("new.txt", "The film was great and wonderful\nThe plot was awful and boring\n");
    ck_assert_msg(run("predict run/last.safetensors --input new.txt") == 0, "%s", err_buf);
    float p[4];
    ck_assert_int_eq(sscanf(out_buf, "%f,%f\n%f,%f", &p[0], &p[1], &p[2], &p[3]), 4);
    ck_assert_msg(p[1] > 0.8f && p[2] > 0.8f, "%s", out_buf);
    ck_assert_msg(run("evaluate run/last.safetensors --json") == 0, "%s", err_buf);
    ck_assert_msg(strstr(out_buf, "\"accuracy\": 1"), "%s", out_buf);
    /* ids as .npy still work */
    float ids[10] = {2, 3, 4, 0, 0, 0, 0, 0, 0, 0};
    write_npy("ids.npy", ids, kc_shape2(1, 10));
    ck_assert_msg(run("predict run/last.safetensors --input ids.npy") == 0, "%s", err_buf);
    write_bytes("badu.txt", "fine\n\xfe\n", 7);
    ck_assert_int_ne(run("predict run/last.safetensors --input badu.txt"), 0);
    ck_assert_msg(strstr(err_buf, "badu.txt:2: invalid UTF-8"), "%s", err_buf);
}
END_TEST

START_TEST(text_vectorization_from_a_folder) {
    mkdirs("fd/neg");
    mkdirs("fd/pos");
    for (int i = 0; i < 40; i++) {
        char name[64], text[128];
        snprintf(name, sizeof name, "fd/%s/%02d.txt", i % 2 ? "pos" : "neg", i);
        snprintf(text, sizeof text, "This film is %s, %s!", i % 2 ? "great" : "awful",
                 i % 4 < 2 ? "really" : "truly");
        write_file(name, text);
    }
    char yaml[4096];
    snprintf(
        yaml, sizeof yaml,
        "%sdata:\n"
        "  train: {directory: fd, validation_split: 0.25, subset: training, seed: 3,"
        " label_mode: int}\n"
        "  validation: {directory: fd, validation_split: 0.25, subset: validation, seed: 3}\n"
        "  test: {directory: fd}\n"
        "  text: {tokenizer: text_vectorization, max_tokens: 30, output_sequence_length: 10}\n",
        text_model);
    write_file("fd.yaml", yaml);
    ck_assert_msg(run("train fd.yaml --output fdrun") == 0, "%s", err_buf);
    kc_st_file *f;
    kc_error e = {0};
    ck_assert_int_eq(kc_st_open(path_in("fdrun/last.safetensors"), &f, &e), 0);
    const char *v = kc_st_meta(f, "text_vocabulary");
    ck_assert_msg(v && strstr(v, "\"class\": \"TextVectorization\"") &&
                      strstr(v, "[\"\", \"[UNK]\", \"this\""),
                  "%s", v ? v : "(none)");
    kc_st_close(f);
    ck_assert_msg(run("evaluate fdrun/last.safetensors --json") == 0, "%s", err_buf);
    ck_assert_msg(strstr(out_buf, "\"accuracy\": 1"), "%s", out_buf);
}
END_TEST

/* Config mistakes name file:line:column. */
START_TEST(text_config_errors) {
    static const struct {
        const char *data, *want;
    } cases[] = {
        {"  train: {text: a.txt, labels: a.lab}\n", "bad.yaml:11:10: text sources need a `text:`"},
        {"  train: {text: a.txt}\n  text: {num_word: 3}\n",
         "bad.yaml:12:10: unknown key 'num_word' in data.text (did you mean 'num_words'?)"},
        {"  train: {text: a.txt}\n  text: {max_tokens: 3}\n",
         "bad.yaml:12:10: text.max_tokens is a text_vectorization option"},
        {"  train: {text: a.txt}\n  text: {tokenizer: text_vectorization, maxlen: 3}\n",
         "text.maxlen is a tokenizer option"},
        {"  train: {text: a.txt}\n  text: {tokenizer: bert}\n",
         "bad.yaml:12:21: text.tokenizer must be one of tokenizer, text_vectorization"},
        {"  train: {text: a.txt, delimiter: \",\"}\n  text: {}\n",
         "bad.yaml:11:24: data.train: `delimiter` does not apply to a line file"},
        {"  train: {csv: a.tsv, label_column: y}\n  text: {}\n",
         "bad.yaml:12:9: data.text applies to text sources"},
        {"  train: {csv: a.tsv, text_column: t, delimiter: \"ab\"}\n  text: {}\n",
         "bad.yaml:11:50: delimiter must be one character"},
        {"  train: {directory: d, subset: training}\n  text: {}\n",
         "bad.yaml:11:33: subset needs validation_split"},
        {"  train: {text: a.txt}\n  text: {padding: middle}\n",
         "bad.yaml:12:19: text.padding must be one of pre, post"},
        {"  train: {text: a.txt}\n  text: {tokenizer: text_vectorization, ngrams: 2}\n",
         "text.ngrams: only none is supported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char yaml[4096];
        snprintf(yaml, sizeof yaml, "%sdata:\n%s", text_model, cases[i].data);
        write_file("bad.yaml", yaml);
        ck_assert_int_eq(run("summary bad.yaml"), 2);
        ck_assert_msg(strstr(err_buf, cases[i].want), "case %zu: %s", i, err_buf);
    }
}
END_TEST

START_TEST(preprocess_verb) {
    load_expected();
    /* the fixture corpus through `preprocess text`: Keras's sequences, pre-padded */
    ck_assert_msg(run("preprocess text '%s' --output ids.npy --num-words 5 --oov-token '<OOV>' "
                      "--maxlen 6",
                      fixture("corpus.txt")) == 0,
                  "%s", err_buf);
    kc_array x;
    kc_error e = {0};
    ck_assert_int_eq(kc_npy_load(path_in("ids.npy"), &x, &e), 0);
    const kc_json *seqs =
        kc_json_get(kc_json_at(kc_json_get(expected, "tokenizer"), 1), "sequences");
    ck_assert_int_eq(x.shape.d[0], (int64_t)kc_json_len(seqs));
    ck_assert_int_eq(x.shape.d[1], 6);
    for (size_t i = 0; i < kc_json_len(seqs); i++) {
        const kc_json *row = kc_json_at(seqs, i);
        int64_t len = (int64_t)kc_json_len(row), keep = len < 6 ? len : 6;
        for (int64_t j = 0; j < 6; j++) {
            float want = j < 6 - keep
                             ? 0
                             : (float)jint(kc_json_at(row, (size_t)(len - keep + j - (6 - keep))));
            ck_assert_msg(((float *)x.data)[(int64_t)i * 6 + j] == want, "row %zu col %lld", i,
                          (long long)j);
        }
    }
    kc_array_free(&x);
    ck_assert(file_exists("ids.json"));
    char js[1 << 14];
    slurp(path_in("ids.json"), js, sizeof js);
    ck_assert_msg(strstr(js, "\"word_index\": {\"<OOV>\": 1, \"the\": 2"), "%s", js);
    /* skipgrams: Keras's couples for the same seed */
    const kc_json *sk = kc_json_at(kc_json_get(expected, "skipgrams"), 0);
    write_file("seq.txt", "1 2 3 0 4 5 2 6 1 7\n");
    ck_assert_msg(run("preprocess skipgrams seq.txt --output c.npy --labels l.npy "
                      "--vocabulary-size 9 --window-size 2 --negative-samples 1 --seed 7") == 0,
                  "%s", err_buf);
    ck_assert_int_eq(kc_npy_load(path_in("c.npy"), &x, &e), 0);
    const kc_json *wc = kc_json_get(sk, "couples");
    ck_assert_int_eq(x.shape.d[0], (int64_t)kc_json_len(wc));
    for (size_t i = 0; i < kc_json_len(wc); i++)
        ck_assert(((float *)x.data)[2 * i + 1] == (float)jint(kc_json_at(kc_json_at(wc, i), 1)));
    kc_array_free(&x);
    /* pad: NPY rows re-padded */
    ck_assert_int_eq(run("preprocess pad ids.npy --output p.npy --maxlen 2 --truncating post"), 0);
    ck_assert_int_eq(kc_npy_load(path_in("p.npy"), &x, &e), 0);
    ck_assert_int_eq(x.shape.d[1], 2);
    kc_array_free(&x);
    /* one_hot is md5 hashing: ids in 1..n-1 */
    ck_assert_int_eq(run("preprocess one_hot '%s' --output h.npy --n 50", fixture("corpus.txt")),
                     0);
    ck_assert_int_eq(kc_npy_load(path_in("h.npy"), &x, &e), 0);
    const kc_json *h0 =
        kc_json_at(kc_json_get(kc_json_at(kc_json_get(expected, "hashing"), 1), "outputs"), 0);
    int64_t w = x.shape.d[1], l0 = (int64_t)kc_json_len(h0);
    for (int64_t j = 0; j < l0; j++)
        ck_assert(((float *)x.data)[w - l0 + j] == (float)jint(kc_json_at(h0, (size_t)j)));
    kc_array_free(&x);
    /* errors */
    write_file("ids.txt", "1 2 x\n");
    ck_assert_int_eq(run("preprocess pad ids.txt --output p.npy"), 1);
    ck_assert_msg(strstr(err_buf, "ids.txt:1: 'x' is not an integer id"), "%s", err_buf);
    ck_assert_int_eq(run("preprocess squash ids.txt --output p.npy"), 2);
    ck_assert_int_eq(run("preprocess --help"), 0);
    ck_assert_ptr_nonnull(strstr(out_buf, "skipgrams"));
}
END_TEST

Suite *text_suite(void);
Suite *text_suite(void) {
    Suite *s = suite_create("text");
    TCase *k = tcase_create("keras");
    tcase_add_test(k, tokenizer_matches_keras);
    tcase_add_test(k, text_vectorization_matches_keras);
    tcase_add_test(k, pad_sequences_match_keras);
    tcase_add_test(k, hashing_trick_md5_matches_keras);
    tcase_add_test(k, skipgrams_match_keras);
    tcase_add_test(k, numpy_shuffle_matches_numpy);
    tcase_add_test(k, vocabulary_json_round_trip);
    suite_add_tcase(s, k);
    TCase *src = tcase_create("sources");
    tcase_add_test(src, line_files_with_labels);
    tcase_add_test(src, hostile_text_files);
    tcase_add_test(src, text_csv_and_tsv);
    tcase_add_test(src, class_folders_as_keras);
    tcase_add_test(src, record_files_as_classes);
    suite_add_tcase(s, src);
    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 120);
    tcase_add_test(cli, train_predict_evaluate_on_raw_text);
    tcase_add_test(cli, text_vectorization_from_a_folder);
    tcase_add_test(cli, text_config_errors);
    tcase_add_test(cli, preprocess_verb);
    suite_add_tcase(s, cli);
    return s;
}

int main(void) {
    kerasc = getenv("KERASC");
    if (!kerasc) kerasc = "./kerasc";
    dir = kc_test_tmpdir();
    int rc = kc_test_run(text_suite());
    kc_json_free(expected);
    kc_test_rmdir(dir);
    free(dir);
    return rc;
}

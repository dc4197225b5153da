/* Text to token ids as Keras does it: the Keras 2 `Tokenizer`
 * (keras.preprocessing.text) and the `TextVectorization` layer (int output),
 * a fitted vocabulary with its JSON form, and Keras's hashing_trick with md5.
 *
 * Texts are UTF-8 (validated by whoever reads them: kc_utf8_check). Case
 * folding for the Tokenizer follows Python's str.lower() for ASCII, Latin-1,
 * Latin Extended-A, Greek and Cyrillic; other scripts are left as they are.
 * TextVectorization lowers ASCII only, as tf.strings.lower does. */
#ifndef KC_DATA_TOKENIZER_H
#define KC_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/json.h"
#include "models/data/sequences.h"

/* Keras's default Tokenizer filters: !"#$%&()*+,-./:;<=>?@[\]^_`{|}~\t\n */
#define KC_TOKENIZER_FILTERS "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n"

typedef enum kc_text_mode { KC_TEXT_TOKENIZER = 1, KC_TEXT_VECTORIZATION = 2 } kc_text_mode;

typedef enum kc_standardize {
    KC_STD_LOWER_AND_STRIP = 0, /* lower_and_strip_punctuation (the default) */
    KC_STD_LOWER,
    KC_STD_STRIP,
    KC_STD_NONE
} kc_standardize;

typedef struct kc_text_opts {
    kc_text_mode mode;
    /* Tokenizer */
    int64_t num_words; /* 0: no limit; else ids >= num_words are dropped (or oov) */
    char filters[256]; /* characters replaced by `split` (UTF-8) */
    int lower;
    char split[32]; /* the separator (non-empty) */
    int char_level;
    int has_oov;
    char oov_token[256];
    /* TextVectorization */
    kc_standardize standardize;
    int split_character;            /* split: character (else whitespace) */
    int64_t max_tokens;             /* 0: no limit; counts "" and [UNK] */
    int64_t output_sequence_length; /* 0: none */
} kc_text_opts;

/* Keras's defaults for a mode. */
void kc_text_opts_default(kc_text_opts *o, kc_text_mode mode);

/* A vocabulary: tok[i] has id first + i (Tokenizer: first = 1; TextVectorization:
 * first = 0, tok[0] = "" and tok[1] = "[UNK]"). counts[i] is the token's count
 * in the fitted texts (0 for the reserved tokens). */
typedef struct kc_vocab {
    int64_t n, first;
    char **tok;
    int64_t *counts;
    int64_t *slots; /* hash table of indices into tok, -1 empty */
    size_t nslots;
} kc_vocab;

void kc_vocab_free(kc_vocab *v);
/* The id of a token, or -1. With duplicate tokens the last one wins (as
 * Python's dict(zip(...)) in Tokenizer.fit_on_texts). */
int64_t kc_vocab_id(const kc_vocab *v, const char *tok, size_t len);
/* Appends a token (copied). */
int kc_vocab_push(kc_vocab *v, const char *tok, size_t len, int64_t count, kc_error *e);

/* The first invalid UTF-8 byte's offset in s[0..n), or -1 when valid. */
int64_t kc_utf8_check(const char *s, size_t n);

/* Tokens of one text, as the mode splits them (before any vocabulary). */
typedef struct kc_tokens {
    int64_t n, cap;
    size_t *off, *len; /* into buf */
    char *buf;
    size_t buf_len, buf_cap;
} kc_tokens;
void kc_tokens_free(kc_tokens *t);
int kc_text_split(const kc_text_opts *o, const char *text, kc_tokens *t, kc_error *e);

/* Fits the vocabulary on texts (Tokenizer.fit_on_texts / TextVectorization.adapt). */
int kc_text_fit(const kc_text_opts *o, const char *const *texts, int64_t n, kc_vocab *v,
                kc_error *e);
/* Token ids of each text (texts_to_sequences / the layer's int output before
 * output_sequence_length). */
int kc_text_to_sequences(const kc_text_opts *o, const kc_vocab *v, const char *const *texts,
                         int64_t n, kc_ragged *out, kc_error *e);

/* The vocabulary as JSON: {"class": "Tokenizer"|"TextVectorization",
 * "first_index": 1|0, "vocabulary": [tokens in id order],
 * "word_index": {token: id} (Tokenizer), "word_counts": {token: count}}. */
int kc_vocab_to_json(const kc_text_opts *o, const kc_vocab *v, kc_strbuf *b);
/* Reads what kc_vocab_to_json wrote; the class must be the mode's. `what`
 * names the source in errors. */
int kc_vocab_from_json(const char *text, size_t len, kc_text_mode mode, const char *what,
                       kc_vocab *v, kc_error *e);

/* Keras's hashing_trick(text, n, hash_function="md5", filters, lower, split):
 * md5(word) mod (n - 1) + 1 for each word, n >= 2. */
int kc_hashing_trick_md5(const kc_text_opts *o, const char *text, int64_t n, int32_t **ids,
                         int64_t *count, kc_error *e);
/* The md5 digest of s[0..n). */
void kc_md5(const void *s, size_t n, unsigned char out[16]);

#endif

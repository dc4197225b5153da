/* Keras's dataset files fetched on first use (keras.utils.get_file). The
 * transfer is libcurl's; the hash is OpenSSL's libcrypto (EVP), which
 * libcurl4-openssl-dev brings in through libssl-dev and which has both
 * digests get_file accepts (sha256 and md5). */
#include "models/data/download.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"

/* Largest file accepted (the biggest Keras dataset file is under 200 MB). */
#define MAX_DOWNLOAD_BYTES ((int64_t)1 << 30)

#define KERAS_STORE "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

/* Origins and hashes as keras/src/datasets/{mnist,fashion_mnist,imdb,
 * reuters,boston_housing,cifar10,cifar100}.py pass them to get_file (Keras
 * 3). fashion_mnist gives no hash; the word indexes give md5. */
static const kc_download_entry TABLE[] = {
    {"mnist.npz", KERAS_STORE "mnist.npz",
     "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1", 0},
    {"fashion-mnist/train-labels-idx1-ubyte.gz", KERAS_STORE "train-labels-idx1-ubyte.gz", NULL, 0},
    {"fashion-mnist/train-images-idx3-ubyte.gz", KERAS_STORE "train-images-idx3-ubyte.gz", NULL, 0},
    {"fashion-mnist/t10k-labels-idx1-ubyte.gz", KERAS_STORE "t10k-labels-idx1-ubyte.gz", NULL, 0},
    {"fashion-mnist/t10k-images-idx3-ubyte.gz", KERAS_STORE "t10k-images-idx3-ubyte.gz", NULL, 0},
    {"imdb.npz", KERAS_STORE "imdb.npz",
     "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f", 0},
    {"imdb_word_index.json", KERAS_STORE "imdb_word_index.json", "bfafd718b763782e994055a2d397834f",
     0},
    {"reuters.npz", KERAS_STORE "reuters.npz",
     "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916", 0},
    {"reuters_word_index.json", KERAS_STORE "reuters_word_index.json",
     "4d44cc38712099c9e383dc6e5f11a921", 0},
    {"boston_housing.npz", KERAS_STORE "boston_housing.npz",
     "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5", 0},
    {"cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
     "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 1},
    {"cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
     "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", 1},
};

static struct {
    int offline;
    kc_download_progress_fn progress;
    void *ctx;
} settings;

const kc_download_entry *kc_download_lookup(const char *name) {
    for (size_t i = 0; name && i < sizeof TABLE / sizeof TABLE[0]; i++)
        if (!strcmp(TABLE[i].name, name)) return &TABLE[i];
    return NULL;
}

void kc_download_set_offline(int offline) {
    settings.offline = offline;
}

void kc_download_set_progress(kc_download_progress_fn fn, void *ctx) {
    settings.progress = fn;
    settings.ctx = ctx;
}

int kc_download_allowed(void) {
    const char *env = getenv("KERASC_OFFLINE");
    return !settings.offline && !(env && *env && strcmp(env, "0"));
}

int kc_download_dir(char *out, size_t n) {
    const char *kh = getenv("KERAS_HOME"), *home = getenv("HOME");
    int len = kh && *kh       ? snprintf(out, n, "%s/datasets", kh)
              : home && *home ? snprintf(out, n, "%s/.keras/datasets", home)
                              : snprintf(out, n, "/tmp/.keras/datasets");
    return len > 0 && (size_t)len < n;
}

/* ---- hashing ---- */

static const EVP_MD *digest_for(int hex_len) {
    return hex_len == 64 ? EVP_sha256() : hex_len == 32 ? EVP_md5() : NULL;
}

static void to_hex(const unsigned char *d, unsigned len, char *out) {
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

int kc_download_hash_file(const char *path, int hex_len, char *out, kc_error *e) {
    const EVP_MD *md = digest_for(hex_len);
    if (!md) return kc_fail(e, KC_ECONFIG, "a hash has 64 (sha256) or 32 (md5) hex digits");
    FILE *f = fopen(path, "rb");
    if (!f) return kc_fail(e, KC_ERUNTIME, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, md, NULL);
    unsigned char buf[65536];
    size_t got;
    while (ok && (got = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(c, buf, got);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, d, &len);
    EVP_MD_CTX_free(c);
    fclose(f);
    if (!ok) return kc_fail(e, KC_ERUNTIME, "%s: could not read it to hash it", path);
    to_hex(d, len, out);
    return KC_OK;
}

/* ---- overrides ---- */

/* The hash KERASC_DOWNLOAD_HASHES gives for name into out[n]; 0 when it
 * gives none. */
static int hash_override(const char *name, char *out, size_t n) {
    const char *list = getenv("KERASC_DOWNLOAD_HASHES");
    size_t nl = strlen(name);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, " ,");
        if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            size_t hl = len - nl - 1;
            if (hl >= n) return 0;
            memcpy(out, p + nl + 1, hl);
            out[hl] = 0;
            return 1;
        }
        p += len;
    }
    return 0;
}

/* ---- the transfer ---- */

typedef struct transfer {
    FILE *f;
    EVP_MD_CTX *md; /* NULL when unchecked */
    int64_t got;
    int too_big, write_failed;
    const char *name;
} transfer;

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud) {
    transfer *t = ud;
    size_t n = size * nmemb;
    if (t->got + (int64_t)n > MAX_DOWNLOAD_BYTES) {
        t->too_big = 1;
        return 0;
    }
    if (fwrite(p, 1, n, t->f) != n) {
        t->write_failed = 1;
        return 0;
    }
    if (t->md) EVP_DigestUpdate(t->md, p, n);
    t->got += (int64_t)n;
    return n;
}

static int on_progress(void *ud, curl_off_t total, curl_off_t done, curl_off_t ut, curl_off_t un) {
    transfer *t = ud;
    /* the end is reported once, by transfer_run, after the checks */
    if (settings.progress && !(total > 0 && done >= total))
        settings.progress(settings.ctx, t->name, done, total > 0 ? total : -1);
    return 0;
}

static void set_options(CURL *c, const char *url, transfer *t, char *errbuf) {
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kerasc/" KC_VERSION);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
}

/* Runs the transfer into t; the reason of a failure into e. */
static int transfer_run(const char *url, const char *dest, transfer *t, kc_error *e) {
    CURL *c = curl_easy_init();
    if (!c) return kc_fail(e, KC_ERUNTIME, "download of %s: could not start libcurl", url);
    char errbuf[CURL_ERROR_SIZE] = "";
    set_options(c, url, t, errbuf);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t expect = -1;
    curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &expect);
    curl_easy_cleanup(c);
    const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    if (t->too_big)
        return kc_fail(e, KC_ERUNTIME, "download of %s into %s: more than %lld bytes, refused", url,
                       dest, (long long)MAX_DOWNLOAD_BYTES);
    if (t->write_failed)
        return kc_fail(e, KC_ERUNTIME, "download of %s into %s: writing failed: %s", url, dest,
                       strerror(errno));
    if (rc == CURLE_HTTP_RETURNED_ERROR)
        return kc_fail(e, KC_ERUNTIME,
                       "download of %s into %s failed: the server answered HTTP %ld", url, dest,
                       status);
    if (rc != CURLE_OK)
        return kc_fail(e, KC_ERUNTIME, "download of %s into %s failed after %lld bytes: %s", url,
                       dest, (long long)t->got, why);
    if (expect >= 0 && expect != t->got)
        return kc_fail(e, KC_ERUNTIME,
                       "download of %s into %s: %lld bytes of the %lld announced, incomplete", url,
                       dest, (long long)t->got, (long long)expect);
    if (settings.progress) settings.progress(settings.ctx, t->name, t->got, t->got);
    return KC_OK;
}

static int valid_hash(const char *h) {
    size_t n = strlen(h);
    if (n != 64 && n != 32) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)h[i])) return 0;
    return 1;
}

static int check_digest(EVP_MD_CTX *md, const char *hash, const char *url, const char *dest,
                        kc_error *e) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (!EVP_DigestFinal_ex(md, d, &len))
        return kc_fail(e, KC_ERUNTIME, "download of %s: hashing failed", url);
    to_hex(d, len, hex);
    if (strcasecmp(hex, hash))
        return kc_fail(e, KC_ERUNTIME,
                       "download of %s into %s: the file's %s is %s, not the expected %s; the "
                       "download is damaged and was removed",
                       url, dest, len == 32 ? "sha256" : "md5", hex, hash);
    return KC_OK;
}

int kc_download_url(const char *url, const char *hash, const char *dest, const char *name,
                    kc_error *e) {
    kc_error local;
    if (!e) e = &local;
    if (hash && *hash && !valid_hash(hash))
        return kc_fail(e, KC_ECONFIG, "%s: the hash '%s' is not 64 (sha256) or 32 (md5) hex digits",
                       name, hash);
    kc_atomic_file a = {0};
    if (kc_atomic_open(&a, dest, e)) return e->code;
    transfer t = {.f = a.f, .name = name};
    int rc = KC_OK;
    if (hash && *hash) {
        t.md = EVP_MD_CTX_new();
        if (!t.md || !EVP_DigestInit_ex(t.md, digest_for((int)strlen(hash)), NULL))
            rc = kc_fail(e, KC_ERUNTIME, "download of %s: hashing failed", url);
    }
    if (!rc) rc = transfer_run(url, dest, &t, e);
    if (!rc && t.md) rc = check_digest(t.md, hash, url, dest, e);
    EVP_MD_CTX_free(t.md);
    if (rc) {
        kc_atomic_abort(&a);
        return rc;
    }
    return kc_atomic_commit(&a, e);
}

/* The URL of entry d into out[n], KERASC_DOWNLOAD_URL_BASE applied; its
 * hash into hash[hn]. */
static int source_of(const kc_download_entry *d, char *out, size_t n, char *hash, size_t hn) {
    const char *base = getenv("KERASC_DOWNLOAD_URL_BASE");
    snprintf(hash, hn, "%s", d->hash ? d->hash : "");
    int len;
    if (base && *base) {
        size_t bl = strlen(base);
        len = snprintf(out, n, "%s%s%s", base, bl && base[bl - 1] == '/' ? "" : "/", d->name);
        hash_override(d->name, hash, hn);
    } else {
        len = snprintf(out, n, "%s", d->origin);
    }
    return len > 0 && (size_t)len < n;
}

int kc_download_fetch(const char *name, const char *dir, char *path, size_t n, kc_error *e) {
    kc_error local;
    if (!e) e = &local;
    const kc_download_entry *d = kc_download_lookup(name);
    if (!d) return kc_fail(e, KC_ERUNTIME, "%s is not a file kerasc knows how to download", name);
    if (!kc_download_allowed())
        return kc_fail(e, KC_ERUNTIME, "downloads are off (--offline or KERASC_OFFLINE)");
    if (d->archive)
        return kc_fail(e, KC_ERUNTIME,
                       "kerasc does not download %s (an archive to extract): download %s "
                       "and extract it into ~/.keras/datasets/",
                       name, d->origin);
    char root[1100], url[2200], hash[130];
    if (!dir && !kc_download_dir(root, sizeof root))
        return kc_fail(e, KC_ERUNTIME, "the Keras datasets folder's path is too long");
    int len = snprintf(path, n, "%s/%s", dir ? dir : root, name);
    if (len < 0 || (size_t)len >= n || !source_of(d, url, sizeof url, hash, sizeof hash))
        return kc_fail(e, KC_ERUNTIME, "%s: path or URL too long", name);
    char folder[4200];
    snprintf(folder, sizeof folder, "%s", path);
    char *slash = strrchr(folder, '/');
    if (slash) *slash = 0;
    if (kc_mkdir_p(folder, e)) return e->code;
    char glob[4200], base[600];
    kc_glob_escape(slash ? slash + 1 : folder, base, sizeof base);
    if (snprintf(glob, sizeof glob, "%s/%s", slash ? folder : ".", base) < (int)sizeof glob)
        kc_atomic_remove_stale(glob);
    return kc_download_url(url, hash, path, name, e);
}

/* Keras's dataset files fetched on first use, as keras.utils.get_file does:
 * into the Keras cache folder ($KERAS_HOME/datasets or ~/.keras/datasets),
 * checked against the hash Keras publishes, and only then put in place.
 *
 * The transfer (libcurl, http and https only) writes to a temporary file
 * beside the target (core/atomic_file.h); an HTTP error, a short body, a
 * hash mismatch or an interruption removes it, so a damaged download is
 * never used. The error says what happened, the URL and where the file was
 * meant to go.
 *
 * Downloads are refused (KC_ERUNTIME "downloads are off") when
 * kc_download_set_offline(1) was called or KERASC_OFFLINE is set to
 * anything but "" or "0".
 *
 * KERASC_DOWNLOAD_URL_BASE replaces the folder of every origin: the file is
 * fetched from BASE/<name> (the name as in the table, e.g. "imdb.npz" or
 * "fashion-mnist/train-images-idx3-ubyte.gz"). Only with it set,
 * KERASC_DOWNLOAD_HASHES ("name=hex name=hex ...", separated by spaces or
 * commas) replaces the hash of the files it lists ("name=" for none): a
 * local mirror of other files. */
#ifndef KC_DATA_DOWNLOAD_H
#define KC_DATA_DOWNLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* One file Keras downloads. hash: hex sha256 (64 digits) or md5 (32), as
 * get_file's file_hash; NULL where Keras checks none. */
typedef struct kc_download_entry {
    const char *name;   /* path under the datasets folder */
    const char *origin; /* full URL */
    const char *hash;
    int archive; /* a .tar.gz that Keras extracts: not downloaded here */
} kc_download_entry;

/* The entry of `name` (e.g. "mnist.npz"), or NULL when Keras downloads no
 * such file. */
const kc_download_entry *kc_download_lookup(const char *name);

/* Progress of one transfer: done bytes of total (-1 while unknown). Called
 * with done == total == the size at the end of a successful transfer. */
typedef void (*kc_download_progress_fn)(void *ctx, const char *name, int64_t done, int64_t total);

/* Process-wide settings, made by the command line before loading data. */
void kc_download_set_offline(int offline);
void kc_download_set_progress(kc_download_progress_fn fn, void *ctx);

/* Are downloads allowed now (not offline by call or environment)? */
int kc_download_allowed(void);

/* The folder downloads go to: $KERAS_HOME/datasets when KERAS_HOME is set,
 * else $HOME/.keras/datasets, else /tmp/.keras/datasets. 0 when it does not
 * fit in n bytes. */
int kc_download_dir(char *out, size_t n);

/* Fetches the table's file `name` into dir/name (dir NULL: kc_download_dir),
 * making the folders it needs; its path into path[n]. KC_ERUNTIME when
 * downloads are off, the file is not in the table or is an archive, or the
 * transfer or check failed (nothing is left at the target then). */
int kc_download_fetch(const char *name, const char *dir, char *path, size_t n, kc_error *e);

/* One URL into dest (atomically), checked against hash (NULL or "": none).
 * `name` is what progress reports. No offline check: the caller's. */
int kc_download_url(const char *url, const char *hash, const char *dest, const char *name,
                    kc_error *e);

/* The hash of a file as lowercase hex: sha256 when hex_len is 64, md5 when
 * 32 (out holds hex_len + 1). */
int kc_download_hash_file(const char *path, int hex_len, char *out, kc_error *e);

#endif

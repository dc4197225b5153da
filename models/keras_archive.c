/* .keras archives written as Keras 3's saving_lib writes them: a zip of
 * metadata.json, config.json and model.weights.h5, stored uncompressed, in
 * that order. libzip writes the zip (Python's zipfile reads what it
 * writes); the file appears under its name only once it is complete. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "core/atomic_file.h"
#include "core/json.h"
#include "models/keras_export.h"
#include "models/keras_weights.h"

static int add_member(zip_t *z, const char *name, zip_source_t *src, const char *path,
                      kc_error *e) {
    if (!src) return kc_fail(e, KC_ERUNTIME, "%s: cannot add %s: out of memory", path, name);
    zip_int64_t i = zip_file_add(z, name, src, ZIP_FL_ENC_UTF_8 | ZIP_FL_OVERWRITE);
    if (i < 0) {
        zip_source_free(src);
        return kc_fail(e, KC_ERUNTIME, "%s: cannot add %s: %s", path, name, zip_strerror(z));
    }
    if (zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_STORE, 0) < 0)
        return kc_fail(e, KC_ERUNTIME, "%s: cannot add %s: %s", path, name, zip_strerror(z));
    return KC_OK;
}

static int add_text(zip_t *z, const char *name, const kc_strbuf *b, const char *path, kc_error *e) {
    const char *s = kc_strbuf_str(b);
    return add_member(z, name, zip_source_buffer(z, s, strlen(s), 0), path, e);
}

/* The archive at tmp, from the JSON texts and the weights file h5. */
static int write_zip(const char *tmp, const kc_strbuf *meta, const kc_strbuf *config,
                     const char *h5, kc_error *e) {
    int err = 0;
    zip_t *z = zip_open(tmp, ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, err);
        int rc = kc_fail(e, KC_ERUNTIME, "cannot create %s: %s", tmp, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return rc;
    }
    int rc = add_text(z, "metadata.json", meta, tmp, e);
    if (!rc) rc = add_text(z, "config.json", config, tmp, e);
    if (!rc) rc = add_member(z, "model.weights.h5", zip_source_file(z, h5, 0, -1), tmp, e);
    if (rc) {
        zip_discard(z);
        return rc;
    }
    if (zip_close(z) < 0) {
        rc = kc_fail(e, KC_ERUNTIME, "cannot write %s: %s", tmp, zip_strerror(z));
        zip_discard(z);
        return rc;
    }
    return kc_fsync_path(tmp, e);
}

int kc_keras_archive_save(const kc_config *cfg, const kc_model *m, const kc_optimizer *opt,
                          const char *path, kc_error *e) {
    kc_strbuf meta = {0}, config = {0};
    char tmp[PATH_MAX + 32], h5[PATH_MAX + 48];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    snprintf(h5, sizeof h5, "%s.weights", tmp);
    int rc = kc_keras_export_metadata(&meta, e);
    if (!rc) rc = kc_keras_export_json(cfg, m, &config, e);
    if (!rc) rc = kc_keras_weights_write_file(m, opt, h5, e);
    if (!rc) rc = write_zip(tmp, &meta, &config, h5, e);
    unlink(h5);
    if (!rc && rename(tmp, path))
        rc = kc_fail(e, KC_ERUNTIME, "cannot write %s: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    kc_strbuf_free(&meta);
    kc_strbuf_free(&config);
    return rc;
}

/* The backend registry: one line per backend built into this binary. Tests
 * and the command line iterate it; nothing else names a backend. */
#include "core/backend.h"

#include <stdio.h>
#include <string.h>

extern const kc_backend kc_cpu_backend;
extern const kc_backend kc_reference_backend;
#ifdef KC_HAVE_OPENCL
extern const kc_backend kc_opencl_backend;
#endif

const kc_backend *const kc_backends[] = {
    &kc_cpu_backend,
    &kc_reference_backend,
#ifdef KC_HAVE_OPENCL
    &kc_opencl_backend,
#endif
    NULL,
};

const kc_backend *kc_backend_by_name(const char *name) {
    for (int i = 0; name && kc_backends[i]; i++)
        if (!strcmp(kc_backends[i]->name, name)) return kc_backends[i];
    return NULL;
}

const char *kc_backend_names(void) {
    static char buf[256];
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; kc_backends[i] && used < sizeof buf; i++)
        used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", i ? ", " : "",
                                 kc_backends[i]->name);
    return buf;
}

int kc_device_open(kc_device *d, const kc_backend *be, const kc_device_opts *o, kc_error *e) {
    kc_device_opts none = {0};
    memset(d, 0, sizeof *d);
    d->be = be;
    if (!o) o = &none;
    d->index = o->device;
    d->threads = o->threads;
    snprintf(d->name, sizeof d->name, "%s", be->name);
    if (o->device < 0) {
        memset(d, 0, sizeof *d);
        return kc_fail(e, KC_ECONFIG, "--device %d: expected 0 or more", o->device);
    }
    int rc = be->open(d, o);
    if (rc) {
        kc_fail(e, rc, "cannot open the %s backend: %s", be->name,
                d->err.code ? d->err.msg : "unavailable");
        memset(d, 0, sizeof *d);
        return rc;
    }
    return KC_OK;
}

int kc_device_open_name(kc_device *d, const char *name, const kc_device_opts *o, kc_error *e) {
    const kc_backend *be = kc_backend_by_name(name ? name : "cpu");
    if (!be) {
        memset(d, 0, sizeof *d);
        return kc_fail(e, KC_ECONFIG, "unknown backend '%s' (built in: %s)", name,
                       kc_backend_names());
    }
    return kc_device_open(d, be, o, e);
}

void kc_device_close(kc_device *d) {
    if (!d->be) return;
    if (kc_buf_ok(d->scratch)) d->be->free(d, d->scratch);
    if (d->be->close) d->be->close(d);
    memset(d, 0, sizeof *d);
}

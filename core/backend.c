/* Backend lookup by the name a user gives on the command line. */
#include "core/backend.h"

#include <string.h>

const kc_backend *kc_backend_by_name(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "cpu") == 0) return kc_backend_cpu();
    if (strcmp(name, "reference") == 0) return kc_backend_reference();
    return NULL;
}

/* Reading a layer's (or optimizer's, loss's ...) arguments from its YAML map
 * with Keras's names, defaults and ranges. Every getter records the name it
 * was asked for, so kc_args_finish can reject unknown keys and suggest the
 * closest valid one. Errors carry file:line:column of the offending value. */
#ifndef KC_ARGS_H
#define KC_ARGS_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "models/yaml.h"

#define KC_ARGS_MAX_KNOWN 48

typedef struct kc_args {
    kc_node *map;         /* may be NULL: no arguments given */
    const kc_node *where; /* node for errors about missing arguments */
    const char *owner;    /* "Conv2D" - used in messages */
    const char *known[KC_ARGS_MAX_KNOWN + 1];
    int nknown;
} kc_args;

void kc_args_init(kc_args *a, kc_node *map, const kc_node *where, const char *owner);

/* Has the key been given (and not null)? Records the name as known. */
int kc_args_has(kc_args *a, const char *key);
/* Raw node for a key (records the name). NULL if absent. */
kc_node *kc_args_node(kc_args *a, const char *key);

/* Integers in [min, max]; `required` makes absence an error, otherwise def is used. */
int kc_args_int(kc_args *a, const char *key, int required, long long def, long long min,
                long long max, long long *out, kc_error *e);
/* Floats in [min, max] (use -INFINITY/INFINITY for open ranges). */
int kc_args_float(kc_args *a, const char *key, int required, double def, double min, double max,
                  double *out, kc_error *e);
int kc_args_bool(kc_args *a, const char *key, int def, int *out, kc_error *e);
/* A string from choices (case-sensitive like Keras, but the message suggests the
 * closest); *out receives its index. */
int kc_args_enum(kc_args *a, const char *key, const char *def, const char *const *choices, int *out,
                 kc_error *e);
/* An int or a list of exactly n ints (Keras's kernel_size: 3 or [3, 3]), each in [min, max].
 * Absent: required -> error, else out = def. */
int kc_args_int_tuple(kc_args *a, const char *key, int n, int required, const int *def,
                      long long min, long long max, int *out, kc_error *e);
/* A list of ints (a shape), each >= min (use -1 to allow one -1 for Reshape). */
int kc_args_int_list(kc_args *a, const char *key, int required, int max_n, long long min,
                     int64_t *out, int *n_out, kc_error *e);
/* A string (any). */
int kc_args_str(kc_args *a, const char *key, int required, const char *def, const char **out,
                kc_error *e);

/* Rejects keys that no getter asked for. */
int kc_args_finish(kc_args *a, kc_error *e);

#endif

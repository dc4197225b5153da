/* `kerasc plot`: the layer graph as Keras's plot_model draws it (with
 * show_shapes and show_layer_names): one box per layer with its name, class and
 * input and output shapes, an arrow per connection. kerasc writes the DOT text;
 * Graphviz's `dot` program lays it out. */
#ifndef KC_CLI_PLOT_H
#define KC_CLI_PLOT_H

#include "core/json.h"
#include "models/model.h"

typedef struct kc_plot_opts {
    const char *rankdir; /* "TB" (Keras's default) or "LR" */
    int dpi;             /* 200 in Keras */
} kc_plot_opts;

/* Appends the graph in DOT to `out`: a Sequential stack is a chain of its
 * layers; a graph shows its Input layers and every edge once. */
int kc_plot_dot(const kc_model *m, const kc_plot_opts *o, kc_strbuf *out);

#endif

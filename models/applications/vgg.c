/* VGG16 (keras/src/applications/vgg16.py). */
#include <stdio.h>

#include "models/applications/builder.h"

static int vgg_block(kc_app_builder *b, int x, int block, int convs, int filters) {
    char name[32];
    for (int i = 1; i <= convs; i++) {
        snprintf(name, sizeof name, "block%d_conv%d", block, i);
        x = kc_app_conv2d(b, x, name, filters, 3, .activation = "relu", .padding = "same");
    }
    snprintf(name, sizeof name, "block%d_pool", block);
    return kc_app_max_pool(b, x, name, 2, 2, NULL);
}

int kc_app_build_vgg16(kc_app_builder *b, const kc_app_opts *o) {
    int x = kc_app_input(b);
    x = vgg_block(b, x, 1, 2, 64);
    x = vgg_block(b, x, 2, 2, 128);
    x = vgg_block(b, x, 3, 3, 256);
    x = vgg_block(b, x, 4, 3, 512);
    x = vgg_block(b, x, 5, 3, 512);
    if (!o->include_top) return kc_app_pooling(b, x, o, NULL, NULL);
    x = kc_app_flatten(b, x, "flatten");
    x = kc_app_dense(b, x, "fc1", 4096, "relu", NULL);
    x = kc_app_dense(b, x, "fc2", 4096, "relu", NULL);
    return kc_app_predictions(b, x, o, NULL);
}

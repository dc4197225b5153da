/* The CIFAR batch reader (a pickled dict of a uint8 array and label lists,
 * through the bounded pickle reader): any bytes give either images of
 * (N, 32, 32, 3) with N labels inside the classes, or an error with a
 * message and nothing left allocated. */
#include "models/data/cifar.h"
#include "tests/fuzz/fuzz_util.h"

static void one(const uint8_t *data, size_t size, const char *key, int nclasses) {
    kc_error e = {0};
    kc_array x = {0}, y = {0};
    int rc = kc_cifar_batch_parse(data, size, "fuzz.pkl", key, nclasses, &x, &y, &e);
    if (rc == KC_OK) {
        FUZZ_CHECK(x.dtype == KC_DT_U8 && x.shape.rank == 4 && x.shape.d[1] == 32 &&
                       x.shape.d[2] == 32 && x.shape.d[3] == 3,
                   "images not (N, 32, 32, 3) uint8");
        FUZZ_CHECK(y.dtype == KC_DT_U8 && y.shape.rank == 1 && y.shape.d[0] == x.shape.d[0],
                   "labels not (N,) uint8");
        int64_t sum = 0;
        for (int64_t i = 0; i < x.shape.d[0] * KC_CIFAR_PIXELS; i++)
            sum += ((const uint8_t *)x.data)[i]; /* every pixel readable */
        (void)sum;
        for (int64_t i = 0; i < y.shape.d[0]; i++)
            FUZZ_CHECK(((const uint8_t *)y.data)[i] < nclasses, "label outside the classes");
    } else {
        FUZZ_CHECK(e.msg[0], "failure without a message (rc %d)", rc);
        FUZZ_CHECK(!x.data && !y.data, "failed parse left arrays");
    }
    kc_array_free(&x);
    kc_array_free(&y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    one(data, size, "labels", 10);
    one(data, size, "coarse_labels", 20);
    return 0;
}

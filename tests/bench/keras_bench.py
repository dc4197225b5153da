"""Keras side of `make bench`: the same models, data, batch size and
optimizer as configs/ (Adam with Keras defaults, sparse categorical
crossentropy), trained with model.fit and evaluated with model.evaluate.
Prints one JSON object on stdout. Run only when Keras is importable."""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bench import load  # noqa: E402  (IDX reading only; no torch import)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    a = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    t0 = time.perf_counter()
    import numpy as np
    import keras
    try:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    except Exception:  # another backend: leave its threading alone
        pass
    keras.utils.set_random_seed(1)
    import_s = time.perf_counter() - t0
    L = keras.layers
    if a.model == "cnn":
        net = keras.Sequential([
            keras.Input((28, 28, 1)),
            L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
            L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    else:
        net = keras.Sequential([
            keras.Input((28, 28)), L.Flatten(), L.Dense(128, activation="relu"),
            L.Dropout(0.2), L.Dense(10, activation="softmax")])
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    split = "train" if a.mode == "train" else "test"
    xs, ys = load(split)
    x = xs.astype(np.float32) / 255.0
    if a.model == "cnn":
        x = x.reshape(-1, 28, 28, 1)
    y = ys.astype(np.int64)
    bs = a.batch_size
    out = {"framework": "keras " + keras.__version__ + " (" + keras.backend.backend() + ")",
           "model": a.model, "mode": a.mode, "threads": a.threads, "batch_size": bs,
           "import_s": round(import_s, 3)}
    if a.mode == "train":
        t = time.perf_counter()
        net.fit(x[:a.warmup * bs], y[:a.warmup * bs], batch_size=bs, epochs=1, verbose=0,
                shuffle=False)
        out["first_fit_s"] = round(time.perf_counter() - t, 3)
        n = a.steps * bs
        t = time.perf_counter()
        net.fit(x[:n], y[:n], batch_size=bs, epochs=1, verbose=0)
        dt = time.perf_counter() - t
        out["ms_per_step"] = round(1000 * dt / a.steps, 3)
        out["samples_per_s"] = round(n / dt, 1)
        out["epoch_s"] = round(dt / a.steps * ((60000 + bs - 1) // bs), 2)
    else:
        net.evaluate(x[:bs * 4], y[:bs * 4], batch_size=bs, verbose=0)
        t = time.perf_counter()
        net.evaluate(x, y, batch_size=bs, verbose=0)
        dt = time.perf_counter() - t
        out["images_per_s"] = round(x.shape[0] / dt, 1)
        out["seconds"] = round(dt, 3)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PyTorch side of `make bench`: the seed CNN (or the MLP) of configs/ on
Fashion-MNIST with the same batch size and optimizer (Adam, Keras defaults:
lr 1e-3, eps 1e-7), timed the way `kerasc bench` times itself. Prints one
JSON object per measurement on stdout."""
import argparse
import gzip
import json
import os
import resource
import struct
import sys
import time

import numpy as np

DATA = os.environ.get("KERASC_FASHION", "/usr/share/datasets/fashion-mnist")


def idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split):
    name = "train" if split == "train" else "t10k"
    x = idx(os.path.join(DATA, f"{name}-images-idx3-ubyte.gz"))
    y = idx(os.path.join(DATA, f"{name}-labels-idx1-ubyte.gz"))
    return x, y


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def model_for(torch, kind):
    nn = torch.nn
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10))
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    a = ap.parse_args()
    t0 = time.perf_counter()
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    import_s = time.perf_counter() - t0
    split = "train" if a.mode == "train" else "test"
    xs, ys = load(split)
    x = torch.from_numpy(xs.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(ys.astype(np.int64))
    net = model_for(torch, a.model)
    out = {"framework": "pytorch " + torch.__version__, "model": a.model, "mode": a.mode,
           "threads": a.threads, "batch_size": a.batch_size, "import_s": round(import_s, 3)}
    bs = a.batch_size
    if a.mode == "train":
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        lossf = torch.nn.CrossEntropyLoss()
        net.train()
        perm = torch.randperm(x.shape[0])
        nb = x.shape[0] // bs

        def step(i):
            j = perm[(i % nb) * bs:(i % nb + 1) * bs]
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(x[j]), y[j])
            loss.backward()
            opt.step()

        t = time.perf_counter()
        step(0)
        out["first_step_s"] = round(time.perf_counter() - t, 4)
        for i in range(1, a.warmup):
            step(i)
        t = time.perf_counter()
        for i in range(a.steps):
            step(a.warmup + i)
        dt = time.perf_counter() - t
        out["ms_per_step"] = round(1000 * dt / a.steps, 3)
        out["samples_per_s"] = round(a.steps * bs / dt, 1)
        out["epoch_s"] = round(dt / a.steps * ((60000 + bs - 1) // bs), 2)
    else:
        net.eval()
        with torch.no_grad():
            net(x[:bs])
            t = time.perf_counter()
            correct = 0
            for i in range(0, x.shape[0], bs):
                correct += int((net(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum())
            dt = time.perf_counter() - t
        out["images_per_s"] = round(x.shape[0] / dt, 1)
        out["seconds"] = round(dt, 3)
    out["peak_rss_mb"] = round(peak_mb(), 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sequence models of `make bench` in PyTorch or Keras: Keras's imdb_lstm
shape (Embedding 20000x128 -> LSTM 128 -> Dense 1 sigmoid), the same with a
GRU, and a Conv1D text model (Embedding -> Conv1D 128x5 relu ->
GlobalMaxPooling1D -> Dense 1 sigmoid), on random tokens (sequences of 80,
batch 32, Adam with Keras defaults, binary crossentropy). The tokens and
labels come from tests/bench/seq_data.py, the same files kerasc trains on.
Prints one JSON object on stdout, timed as `kerasc bench` times itself."""
import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seq_data  # noqa: E402


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def torch_model(torch, kind):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(seq_data.VOCAB, seq_data.WIDTH)
            if kind == "lstm":
                self.rnn = nn.LSTM(seq_data.WIDTH, seq_data.WIDTH, batch_first=True)
            elif kind == "gru":
                self.rnn = nn.GRU(seq_data.WIDTH, seq_data.WIDTH, batch_first=True)
            else:
                self.conv = nn.Conv1d(seq_data.WIDTH, seq_data.WIDTH, 5)
            self.out = nn.Linear(seq_data.WIDTH, 1)

        def forward(self, x):
            e = self.emb(x)
            if kind == "conv1d":
                h = torch.relu(self.conv(e.transpose(1, 2))).amax(dim=2)
            else:
                h = self.rnn(e)[0][:, -1, :]
            return self.out(h).squeeze(1)

    return Net()


def run_torch(a, x, y):
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    net = torch_model(torch, a.model)
    xt = torch.from_numpy(x.astype("int64"))
    yt = torch.from_numpy(y.astype("float32"))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    lossf = torch.nn.BCEWithLogitsLoss()
    bs = a.batch_size
    nb = x.shape[0] // bs

    def step(i):
        j = slice((i % nb) * bs, (i % nb + 1) * bs)
        opt.zero_grad(set_to_none=True)
        loss = lossf(net(xt[j]), yt[j])
        loss.backward()
        opt.step()

    for i in range(a.warmup):
        step(i)
    t = time.perf_counter()
    for i in range(a.steps):
        step(a.warmup + i)
    return time.perf_counter() - t, "pytorch " + torch.__version__


def run_keras(a, x, y):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    try:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    except Exception:
        pass
    keras.utils.set_random_seed(1)
    L = keras.layers
    body = {"lstm": [L.LSTM(seq_data.WIDTH)], "gru": [L.GRU(seq_data.WIDTH)],
            "conv1d": [L.Conv1D(seq_data.WIDTH, 5, activation="relu"), L.GlobalMaxPooling1D()]}
    net = keras.Sequential([keras.Input((seq_data.STEPS,)),
                            L.Embedding(seq_data.VOCAB, seq_data.WIDTH)] + body[a.model] +
                           [L.Dense(1, activation="sigmoid")])
    net.compile(optimizer="adam", loss="binary_crossentropy")
    bs = a.batch_size
    net.fit(x[:a.warmup * bs], y[:a.warmup * bs], batch_size=bs, epochs=1, verbose=0, shuffle=False)
    n = min(a.steps * bs, x.shape[0] // bs * bs)
    t = time.perf_counter()
    net.fit(x[:n], y[:n], batch_size=bs, epochs=1, verbose=0, shuffle=False)
    dt = (time.perf_counter() - t) * a.steps * bs / n
    return dt, "keras " + keras.__version__ + " (" + keras.backend.backend() + ")"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--framework", choices=["pytorch", "keras"], required=True)
    ap.add_argument("--model", choices=["lstm", "gru", "conv1d"], default="lstm")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    x, y = seq_data.arrays()
    dt, fw = (run_torch if a.framework == "pytorch" else run_keras)(a, x, y)
    out = {"framework": fw, "model": a.model, "mode": "train", "threads": a.threads,
           "batch_size": a.batch_size, "ms_per_step": round(1000 * dt / a.steps, 3),
           "samples_per_s": round(a.steps * a.batch_size / dt, 1),
           "peak_rss_mb": round(peak_mb(), 1)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

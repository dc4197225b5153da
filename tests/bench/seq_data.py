"""The random-token data of the sequence benchmarks and the kerasc model
files that train on it (tests/bench/seq_bench.py builds the same models in
PyTorch and Keras). Tokens are uniform in [1, VOCAB), labels 0/1, from a
fixed numpy seed, so every framework sees the same batches."""
import os

VOCAB, WIDTH, STEPS, SAMPLES = 20000, 128, 80, 3200

BODY = {
    "lstm": "    - LSTM: {units: %d}\n" % WIDTH,
    "gru": "    - GRU: {units: %d}\n" % WIDTH,
    "conv1d": "    - Conv1D: {filters: %d, kernel_size: 5, activation: relu}\n"
              "    - GlobalMaxPooling1D\n" % WIDTH,
}


def arrays():
    import numpy as np
    rng = np.random.RandomState(1)
    x = rng.randint(1, VOCAB, size=(SAMPLES, STEPS)).astype(np.int32)
    y = rng.randint(0, 2, size=(SAMPLES,)).astype(np.float32)
    return x, y


def write(folder):
    """Writes x.npy, y.npy and one model file per model into folder; returns
    {model: path}."""
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    x, y = arrays()
    np.save(os.path.join(folder, "x.npy"), x)
    np.save(os.path.join(folder, "y.npy"), y)
    paths = {}
    for name, body in BODY.items():
        text = ("model:\n  name: text_%s\n  layers:\n    - Input: {shape: [%d]}\n"
                "    - Embedding: {input_dim: %d, output_dim: %d}\n%s"
                "    - Dense: {units: 1, activation: sigmoid}\n"
                "compile: {optimizer: adam, loss: binary_crossentropy}\n"
                "data:\n  train: {x: x.npy, y: y.npy}\n  test: {x: x.npy, y: y.npy}\n"
                "fit: {batch_size: 32, epochs: 1, seed: 1}\n") % (name, STEPS, VOCAB, WIDTH, body)
        paths[name] = os.path.join(folder, name + ".yaml")
        with open(paths[name], "w") as f:
            f.write(text)
    return paths

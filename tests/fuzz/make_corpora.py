"""Writes the fuzz seed corpora (seeds/<name>/), the dictionaries
(<name>.dict) and the reproducers of known defects (crashes/<name>/).

Run from the repository root after `make`:

    python3 tests/fuzz/make_corpora.py [--kerasc ./kerasc]

Seeds are small valid files of each format: the checkpoints are written by
`kerasc train` on the fixed model of fuzz_checkpoint.c, the .npy files by
`kerasc predict` where it can, the rest by the byte-level writers below
(standard library only, no numpy). Re-running replaces seeds/ and the
dictionaries; crashes/ only gains files.
"""
import argparse
import glob
import gzip
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def out(kind, name, fname, data):
    d = os.path.join(HERE, kind, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def seed(name, fname, data):
    out("seeds", name, fname, data)


def crash(name, fname, data):
    out("crashes", name, fname, data)


# ------------------------------------------------------------------ arrays

IDX_TYPES = {"u1": (0x08, "B"), "i1": (0x09, "b"), "i2": (0x0B, "h"), "i4": (0x0C, "i"),
             "f4": (0x0D, "f"), "f8": (0x0E, "d")}


def idx_bytes(dims, values, t="u1"):
    code, fmt = IDX_TYPES[t]
    head = bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return head + struct.pack(">%d%s" % (len(values), fmt), *values)


def npy_bytes(descr, shape, payload, version=(1, 0), fortran=False):
    shp = "(" + "".join("%d, " % d for d in shape)[:-2] + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", shp)
    lenbytes = 2 if version[0] == 1 else 4
    header += " " * (-(8 + lenbytes + len(header) + 1) % 64) + "\n"
    fmt = "<H" if lenbytes == 2 else "<I"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(header)) + header.encode() + payload


def npz_bytes(members, deflate):
    b = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(b, "w", mode) as z:
        for name, data in members:
            z.writestr(name, data)
    return b.getvalue()


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def array_seeds():
    seed("idx", "images-u8.idx", idx_bytes([3, 2, 2], list(range(12))))
    seed("idx", "labels-u8.idx", idx_bytes([5], [0, 1, 2, 9, 255]))
    seed("idx", "i16.idx", idx_bytes([2, 3], [-1, 2, -32768, 32767, 0, 5], "i2"))
    seed("idx", "i32.idx", idx_bytes([2, 2], [-7, 70000, 0, 1], "i4"))
    seed("idx", "i8.idx", idx_bytes([4], [-128, 127, 0, 1], "i1"))
    seed("idx", "f32.idx", idx_bytes([2, 1, 2], [0.5, -1.0, 3.25, 1e-3], "f4"))
    seed("idx", "f64.idx", idx_bytes([3], [1.5, -2.0, 1e300], "f8"))
    seed("idx", "empty-rows.idx", idx_bytes([0, 4], []))
    seed("idx", "images-u8.idx.gz", gzip.compress(idx_bytes([2, 3, 3], list(range(18))), mtime=0))

    seed("npy", "f4.npy", npy_bytes("<f4", (2, 3), f32([0, 1, 2, 3.5, -4, 5e6])))
    seed("npy", "u1.npy", npy_bytes("|u1", (2, 2, 2), bytes(range(8))))
    seed("npy", "b1.npy", npy_bytes("|b1", (4,), bytes([0, 1, 1, 0])))
    seed("npy", "i8-v2.npy", npy_bytes("<i8", (2,), struct.pack("<2q", -5, 1 << 40), (2, 0)))
    seed("npy", "be-i2.npy", npy_bytes(">i2", (2, 2), struct.pack(">4h", -2, 300, 7, -32768)))
    seed("npy", "f8-v3.npy", npy_bytes("<f8", (1, 2), struct.pack("<2d", 0.25, -1e-300), (3, 0)))
    seed("npy", "u4-fortran-1d.npy", npy_bytes("<u4", (3,), struct.pack("<3I", 1, 2, 3), fortran=True))
    seed("npy", "i1-empty.npy", npy_bytes("|i1", (0, 5), b""))
    seed("npy", "f4.npy.gz", gzip.compress(npy_bytes("<f4", (3,), f32([1, 2, 3])), mtime=0))

    x = npy_bytes("<f4", (2, 2), f32([1, 2, 3, 4]))
    y = npy_bytes("|u1", (2,), bytes([0, 1]))
    seed("npz", "xy-stored.npz", npz_bytes([("x.npy", x), ("y.npy", y)], False))
    seed("npz", "xy-deflated.npz", npz_bytes([("x.npy", x), ("y.npy", y)], True))
    seed("npz", "only-x.npz", npz_bytes([("x.npy", x)], True))
    for f in glob.glob(os.path.join(ROOT, "tests/fixtures/data/*.npz")):
        seed("npz", "numpy-" + os.path.basename(f), open(f, "rb").read())
    pickle_seeds()


def npy_payload(raw):
    """The bytes after a .npy header (versions 1-3)."""
    major = raw[6]
    if major == 1:
        return raw[10 + struct.unpack("<H", raw[8:10])[0]:]
    return raw[12 + struct.unpack("<I", raw[8:12])[0]:]


def pickle_seeds():
    """The object arrays of the Keras-format sequence fixtures (imdb at
    pickle protocols 2-5, reuters): the pickle after each x member's header."""
    for f in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/data/*.npz"))):
        with zipfile.ZipFile(f) as z:
            for m in sorted(z.namelist()):
                if not m.startswith("x"):
                    continue
                body = npy_payload(z.read(m))
                if body[:1] == b"\x80":
                    base = os.path.basename(f)[:-4]
                    seed("pickle", "%s-%s.pkl" % (base, m[:-4]), body)
                    break


def csv_seeds():
    seed("csv", "header-label.csv", "a,b,label\n1,2,0\n3.5,-4,1\n1e3,0.25,2\n")
    seed("csv", "no-header.csv", "0.1,0.2,1\n0.3,0.4,0\n")
    seed("csv", "quoted-crlf.csv", '\ufeff"x, one","y ""two""",label\r\n"1",2,3\r\n\r\n4,5,6\r\n')
    seed("csv", "one-column.csv", "7\n8\n9\n")
    seed("csv", "spaces.csv", " a , b \n 1 , 2 \n\n 3 ,4\n")


# ------------------------------------------------------------- safetensors

def st_bytes(tensors, meta=None, order=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, data, off = {}, b"", 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def st_read(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def st_with_meta(data, **changes):
    header, body = st_read(data)
    header["__metadata__"].update(changes)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def safetensors_seeds():
    seed("safetensors", "f32.safetensors",
         st_bytes([("w", "F32", [2, 2], f32([1, 2, 3, 4])), ("b", "F32", [2], f32([0, 1]))],
                  {"format": "pt"}))
    seed("safetensors", "dtypes.safetensors",
         st_bytes([("a", "U8", [3], b"\x01\x02\x03"), ("c", "I64", [1], struct.pack("<q", -9)),
                   ("d", "F16", [2], b"\x00\x3c\x00\xc0"), ("e", "BOOL", [2], b"\x00\x01"),
                   ("f", "BF16", [1], b"\x80\x3f"), ("g", "F64", [1], struct.pack("<d", 2.5))]))
    seed("safetensors", "empty-and-scalar.safetensors",
         st_bytes([("empty", "F32", [0, 3], b""), ("scalar", "I32", [], struct.pack("<i", 5))],
                  {}))
    seed("safetensors", "metadata-only.safetensors", st_bytes([], {"k": "v", "x": "\u00e9"}))
    fixture = os.path.join(ROOT, "tests/fixtures/safetensors/fixture.safetensors")
    if os.path.exists(fixture):
        seed("safetensors", "fixture.safetensors", open(fixture, "rb").read())


# -------------------------------------------------------------------- JSON

def json_seeds():
    seed("json", "object.json", '{"a": 1, "b": [true, false, null], "c": {"d": "e"}}')
    seed("json", "numbers.json", "[0, -0, 1.5, -2e-3, 1E+300, 9007199254740993, NaN, Infinity, -Infinity]")
    seed("json", "strings.json", '["\\u00e9\\ud83d\\ude00", "\\"\\\\\\/\\b\\f\\n\\r\\t", "caf\u00e9", ""]')
    seed("json", "bom-nested.json", "\ufeff  [[[[{}]]], {\"\": []}, {\"k\": {\"k\": {\"k\": 1}}}]\n")
    seed("json", "duplicate-keys.json", '{"x": 1, "x": 2, "nul\\u0000key": "v"}')
    seed("json", "scalar.json", '"just a string"')
    seed("json", "lines.json", '{\n  "a": [\n    1,\n    2\n  ]\n}\n')


# ------------------------------------------------------------------- Keras

def minified(path):
    return json.dumps(json.load(open(path)), separators=(",", ":"))


def keras_seeds():
    for f in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/keras/*.json"))):
        text = minified(f)
        if len(text) <= 8192:
            seed("keras_json", os.path.basename(f), text)
    small = minified(os.path.join(ROOT, "tests/fixtures/keras/small_cnn_k3.json"))
    meta = json.dumps({"keras_version": "3.6.0", "date_saved": "2024-01-01@00:00:00"})
    for deflate, name in ((True, "small-cnn-deflated.keras"), (False, "small-cnn-stored.keras")):
        seed("keras_archive", name, npz_bytes([("metadata.json", meta), ("config.json", small)],
                                              deflate))
    # plain JSON: the harness also packs it into an archive itself
    seed("keras_archive", "small-cnn-config.json", small)
    seq = minified(os.path.join(ROOT, "tests/fixtures/keras/cnn_sequential_k2.json"))
    seed("keras_archive", "sequential-k2.keras", npz_bytes([("config.json", seq)], True))


# ------------------------------------------------------------------ config

CONFIGS = {
    "dense.yaml": """model:
  name: dense
  layers:
    - Input: {shape: [4]}
    - Dense: {units: 8, activation: relu, kernel_initializer: he_normal}
    - Dropout: {rate: 0.5}
    - Dense: {units: 3, activation: softmax}
compile:
  optimizer: {SGD: {learning_rate: 0.1, momentum: 0.9, nesterov: true}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy, {SparseTopKCategoricalAccuracy: {k: 2}}]
data:
  train: {x: x.npy, y: y.npy}
  validation: test
  test: {x: x.npy, y: y.npy}
fit: {epochs: 2, batch_size: 2, shuffle: false, seed: 3}
""",
    "cnn.yaml": """model:
  layers:
    - Input: {shape: [8, 8, 1]}
    - Conv2D: {filters: 2, kernel_size: 3, strides: 2, padding: same, activation: relu}
    - MaxPooling2D: {pool_size: 2}
    - Conv2D: {filters: 2, kernel_size: [1, 2], dilation_rate: 1, use_bias: false}
    - AveragePooling2D: {pool_size: [1, 1], padding: valid}
    - Flatten
    - Dense: {units: 2, activation: sigmoid, kernel_regularizer: {L1L2: {l1: 0.01, l2: 0.01}}}
compile:
  optimizer: {RMSprop: {learning_rate: 0.001}}
  loss: binary_crossentropy
  metrics: [accuracy, AUC]
""",
    "graph.yaml": """model:
  name: graph
  layers:
    - Input: {shape: [4], name: a}
    - Input: {shape: [4], name: b}
    - Dense: {units: 4, name: shared}
    - Dense: {units: 4, name: left, inputs: a}
    - Add: {inputs: [left, b]}
    - Multiply: {inputs: [add, b]}
    - Concatenate: {inputs: [multiply, a], axis: -1}
    - Reshape: {target_shape: [2, 4]}
    - Flatten
    - Dense: {units: 2, activation: softmax, name: out}
    - Dense: {units: 1, name: reg, inputs: concatenate}
  outputs: [out, reg]
compile:
  optimizer: adam
  loss: {out: sparse_categorical_crossentropy, reg: mse}
  loss_weights: {out: 1.0, reg: 0.5}
  metrics: {out: [accuracy]}
""",
    "keras-model.yaml": """model: model.json
compile:
  optimizer: {Adam: {learning_rate: {ExponentialDecay: {initial_learning_rate: 0.01, decay_steps: 10, decay_rate: 0.9}}}}
  loss: categorical_crossentropy
data:
  train: {x: x.npy, y: y.npy}
  one_hot: true
  rescale: 1/255
  offset: -0.5
fit:
  epochs: 3
  validation_split: 0.5
  callbacks:
    - EarlyStopping: {monitor: loss, patience: 2}
    - ReduceLROnPlateau: {monitor: loss, factor: 0.5}
    - ModelCheckpoint: {filepath: "ckpt-{epoch:02d}-{loss:.2f}.safetensors"}
    - CSVLogger: {filename: log.csv}
    - TerminateOnNaN
""",
    "csv.yaml": """model:
  layers:
    - Input: {shape: [2]}
    - Activation: tanh
    - Dense: {units: 1}
compile: {optimizer: adagrad, loss: mean_absolute_error, metrics: [mse]}
data:
  train: {csv: data.csv, label_column: label, header: true}
fit: {batch_size: 1, steps_per_epoch: 2, verbose: 0}
""",
}


def config_seeds():
    for name, text in CONFIGS.items():
        seed("config", name, text)
    for f in sorted(glob.glob(os.path.join(ROOT, "configs/*.yaml"))):
        if os.path.getsize(f) <= 8192:
            seed("config", os.path.basename(f), open(f, "rb").read())


# -------------------------------------------------------------- checkpoints

# The fixed model of fuzz_checkpoint.c, with the same data.
_SRC = open(os.path.join(HERE, "fuzz_checkpoint.c")).read()
TINY = "".join(line + "\n" for line in re.findall(
    r'"(.*)\\n"', _SRC.split("static const char config[] =")[1].split(";")[0]))
X = [0, 1, 2, 3, 1, 0, 1, 0, 3, 2, 1, 0, 0, 0, 1, 1, 2, 2, 0, 1, 1, 3, 0, 2]
Y = [0, 1, 1, 0, 1, 0]


def checkpoint_seeds(kerasc):
    d = tempfile.mkdtemp(prefix="kerasc-corpora-")
    try:
        open(os.path.join(d, "x.npy"), "wb").write(npy_bytes("<f4", (6, 4), f32(X)))
        open(os.path.join(d, "y.npy"), "wb").write(npy_bytes("<f4", (6,), f32(Y)))
        open(os.path.join(d, "tiny.yaml"), "w").write(TINY)
        run = os.path.join(d, "run")

        def train(*args):
            subprocess.run([kerasc, "train", os.path.join(d, "tiny.yaml"), "--output", run,
                            "--verbose", "0", "--threads", "1"] + list(args), check=True)

        train("--epochs", "1")
        # where it was written is no part of the seed
        fixed = {"config_path": "tiny.yaml", "config_dir": "."}
        one = st_with_meta(open(os.path.join(run, "last.safetensors"), "rb").read(), **fixed)
        seed("checkpoint", "epoch1.safetensors", one)
        train("--epochs", "2", "--resume", os.path.join(run, "last.safetensors"))
        two = st_with_meta(open(os.path.join(run, "last.safetensors"), "rb").read(), **fixed)
        seed("checkpoint", "epoch2-done.safetensors", two)
        # one batch of two samples into the second epoch
        seed("checkpoint", "mid-epoch.safetensors",
             st_with_meta(one, batch="1", epoch_count="2", epoch_loss_sum="1.5"))
        seed("safetensors", "checkpoint.safetensors", one)
        # a .npy written by kerasc itself
        pred = os.path.join(d, "pred.npy")
        subprocess.run([kerasc, "predict", os.path.join(run, "last.safetensors"), "--input",
                        os.path.join(d, "x.npy"), "--output", pred], check=True)
        seed("npy", "kerasc-predict.npy", open(pred, "rb").read())
        # the known defects
        crash("checkpoint", "format-version-2.safetensors", st_with_meta(one, format_version="2"))
        crash("checkpoint", "batch-negative.safetensors", st_with_meta(one, batch="-3"))
        crash("checkpoint", "epoch-negative.safetensors",
              st_with_meta(one, epoch="-1000000000000"))
    finally:
        shutil.rmtree(d)


def known_defects():
    # a zero dimension beside two huge ones: 0 x (2^32 - 1) x (2^32 - 1) elements
    big = 0xFFFFFFFF
    crash("idx", "zero-dim-huge-dims.idx", idx_bytes([0, big, big], []))
    crash("npy", "zero-dim-huge-dims.npy", npy_bytes("|u1", (0, 1 << 32, 1 << 32), b""))
    # a gzip IDX whose header claims 350000 images of 28 x 28 (274 MB): the
    # file is just long enough for the inflate ratio bound to allow it
    head = gzip.compress(idx_bytes([350000, 28, 28], [0] * 16), mtime=0)
    crash("idx", "gzip-huge-header.idx.gz", head + bytes(260 * 1024 - len(head)))


# ------------------------------------------------------------ dictionaries

def literals(paths):
    words = set()
    for p in paths:
        for f in glob.glob(os.path.join(ROOT, p)):
            words.update(re.findall(r'"([A-Za-z_][A-Za-z0-9_]{1,40})"', open(f).read()))
    return sorted(words)


def write_dict(name, entries):
    with open(os.path.join(HERE, name + ".dict"), "w") as f:
        f.write("# libFuzzer dictionary for fuzz_%s (written by make_corpora.py)\n" % name)
        for e in entries:
            f.write('"%s"\n' % "".join(c if 32 <= ord(c) < 127 and c not in '"\\'
                                       else "\\x%02x" % ord(c) for c in e))


JSON_TOKENS = ["{", "}", "[", "]", ":", ",", '"', "true", "false", "null", "NaN", "Infinity",
               "-Infinity", "\\u", "\\ud800", "\\udc00", "\\u0000", "\\u0085", "\\u2028",
               "\\ufeff", "\\n", "\\\"", "\\\\", "1e", "-0.", "1e400", "\xef\xbb\xbf"]


def dictionaries():
    write_dict("json", JSON_TOKENS)
    yaml = ["model:", "compile:", "data:", "fit:", "layers:", "outputs:", "inputs:", "- ", ": ",
            "{", "}", "[", "]", ", ", "\n  ", "\n    - ", "~", "null", "true", "false", "1/255",
            ".inf", "-1", "1e9", "x.npy", "y.npy", "model.json", "data.csv"]
    write_dict("config", yaml + literals(["models/*.c", "models/layers/*.c"]))
    write_dict("keras_json", JSON_TOKENS + literals(["models/keras_import.c",
                                                      "models/layers/*.c"]))
    write_dict("keras_archive", ["PK\x03\x04", "PK\x01\x02", "PK\x05\x06", "config.json",
                                 "metadata.json", "model.weights.h5"] + JSON_TOKENS)
    st = ["__metadata__", "dtype", "shape", "data_offsets", "F32", "F64", "I64", "I32", "U8", "I8",
          "I16", "U16", "U32", "U64", "F16", "BF16", "BOOL"] + JSON_TOKENS
    write_dict("safetensors", st)
    ckpt = ["format", "kerasc", "format_version", "kerasc_version", "model_name", "config",
            "config_path", "config_dir", "epoch", "step", "seed", "logs", "optimizer",
            "iterations", "learning_rate", "batch", "batch_size", "epoch_loss_sum",
            "epoch_count", "best", "none", "history", "callbacks", "state/running",
            "state/device_running", "state/device_penalty", "optimizer/", "dense/kernel",
            "dense/bias", "dense_1/kernel", "dense_1/bias", "-1", "nan", "inf", "1e308"]
    write_dict("checkpoint", st + ckpt)
    write_dict("npy", ["\x93NUMPY\x01\x00", "\x93NUMPY\x02\x00", "\x93NUMPY\x03\x00", "'descr'",
                       "'fortran_order'", "'shape'", "True", "False", "'<f4'", "'<f8'", "'|u1'",
                       "'|b1'", "'|i1'", "'<i2'", "'<i4'", "'<i8'", "'<u2'", "'<u4'", "'<u8'",
                       "'>f4'", "'|O'", "(0,", "(4294967296,", ")", "L", "\x1f\x8b\x08"])
    write_dict("idx", ["\x00\x00\x08\x01", "\x00\x00\x08\x03", "\x00\x00\x0d\x02",
                       "\x00\x00\x0e\x01", "\xff\xff\xff\xff", "\x00\x00\x00\x00",
                       "\x1f\x8b\x08"])
    write_dict("npz", ["PK\x03\x04", "PK\x01\x02", "PK\x05\x06", "PK\x06\x07", "x.npy", "y.npy",
                       "\x93NUMPY\x01\x00", "'descr'", "'shape'", "\xff\xff\xff\xff"])
    write_dict("pickle", ["\x80\x02", "\x80\x04", "\x95", "c", "\x93", "R", "b", "(", "t", "\x85",
                          "\x86", "\x87", "]", "e", "a", "l", "J", "K", "M", "\x8a", "N", "\x88",
                          "\x89", "q", "r", "h", "j", "\x94", ".", "U", "X", "C", "B", "\x8c",
                          "numpy.core.multiarray\n_reconstruct\n", "numpy\nndarray\n",
                          "numpy\ndtype\n", "_codecs\nencode\n", "O8"])
    write_dict("csv", [",", '"', '""', "\r\n", "\xef\xbb\xbf", "label", "1e38", "-1e-45", "nan",
                       "inf", "0x1p3", " "])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kerasc", default=os.path.join(ROOT, "kerasc"))
    args = ap.parse_args()
    shutil.rmtree(os.path.join(HERE, "seeds"), ignore_errors=True)
    array_seeds()
    csv_seeds()
    safetensors_seeds()
    json_seeds()
    keras_seeds()
    config_seeds()
    checkpoint_seeds(os.path.abspath(args.kerasc))
    known_defects()
    dictionaries()


if __name__ == "__main__":
    main()

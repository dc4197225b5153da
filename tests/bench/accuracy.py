"""Rounding error of every layer of a kerasc model against a float64 run.

Runs the forward pass of a checkpoint (the seed CNN by default) on real
Fashion-MNIST test images through kerasc's cpu backend (tests/bench/
layer_outputs.c, built here against build/libkerasc.a), recomputes every
layer in float64 from the same float32 weights and inputs, and prints each
layer's mean absolute error. The same is measured for TensorFlow float32 when
it is importable, and for numpy float32 (OpenBLAS sgemm) always, so kerasc's
error can be read against theirs:

  end-to-end  each implementation's own chain from the input, against the
              float64 chain (what the user sees);
  local       the layer alone: float64 applied to the implementation's own
              float32 input, against its float32 output (the kernel's own
              rounding, without what it inherits).

"z" rows are the pre-activation of layers with an activation.

Usage: python tests/bench/accuracy.py [--ckpt CKPT] [-n 1000] [--threads 2]
           [--isa portable|avx2|native] [--root DIR] [--determinism] [--json]

Without --ckpt it trains one (1 epoch, 50 steps) into /tmp/kerasc-accuracy.
Needs numpy; re-runs itself under KERAS_PYTHON or /opt/kvenv/bin/python when
the interpreter lacks it. Not part of make check."""
import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

try:
    import numpy as np
except ImportError:
    if not os.environ.get("KERASC_ACCURACY_REEXEC"):
        os.environ["KERASC_ACCURACY_REEXEC"] = "1"
        for cand in [os.environ.get("KERAS_PYTHON"), "/opt/kvenv/bin/python"]:
            if cand and os.path.exists(cand):
                os.execv(cand, [cand] + sys.argv)
    sys.exit("accuracy.py: numpy is needed (set KERAS_PYTHON to an interpreter that has it)")

DATA_DIRS = ["/usr/share/datasets/fashion-mnist", os.path.expanduser("~/.keras/datasets/fashion-mnist")]


def sh(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit("accuracy.py: %s failed:\n%s" % (" ".join(cmd), (p.stderr or p.stdout)[-3000:]))
    return p.stdout


def pkg(flag, pkgs):
    p = subprocess.run(["pkg-config", flag] + pkgs, capture_output=True, text=True)
    return p.stdout.split() if p.returncode == 0 else []


def build_harness(root):
    """layer_outputs linked against root's build/libkerasc.a, rebuilt when stale."""
    lib = os.path.join(root, "build", "libkerasc.a")
    src = os.path.join(HERE, "layer_outputs.c")
    if not os.path.exists(lib):
        sys.exit("accuracy.py: %s is missing (run make in %s)" % (lib, root))
    out = os.path.join(root, "build", "bench", "layer_outputs")
    if os.path.exists(out) and os.path.getmtime(out) > max(os.path.getmtime(lib), os.path.getmtime(src)):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    pkgs = ["openblas", "yaml-0.1", "zlib", "libpng", "cairo"]
    libs = pkg("--libs", pkgs)
    if subprocess.run(["pkg-config", "--exists", "OpenCL", "clblast"]).returncode == 0:
        libs += pkg("--libs", ["OpenCL", "clblast"])
    cmd = (["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-fopenmp", "-I" + root] + pkg("--cflags", pkgs) +
           ["-o", out, src, lib] + libs + ["-fopenmp", "-lm"])
    sh(cmd)
    return out


def read_idx(name):
    for d in DATA_DIRS:
        for path in [os.path.join(d, name), os.path.join(d, name + ".gz")]:
            if os.path.exists(path):
                raw = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
                ndim = raw[3]
                dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
                return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    sys.exit("accuracy.py: %s not found in %s" % (name, ", ".join(DATA_DIRS)))


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    types = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] not in types:
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(body[a:b], types[v["dtype"]]).reshape(v["shape"])
    return out


# ---- float64 and numpy float32 layers: (x, layer) -> pre-activation ----

def conv2d(x, k, b, out_hw, dt):
    """stride 1, dilation 1; 'same' when the output keeps the input's extent."""
    kh, kw = k.shape[:2]
    oh, ow = out_hw
    if oh != x.shape[1] - kh + 1 or ow != x.shape[2] - kw + 1:  # 'same' (Keras pads bottom/right more)
        pt, pl = (kh - 1) // 2, (kw - 1) // 2
        x = np.pad(x, ((0, 0), (pt, kh - 1 - pt), (pl, kw - 1 - pl), (0, 0)))
    x = x.astype(dt)
    cols = np.stack([x[:, i:i + oh, j:j + ow, :] for i in range(kh) for j in range(kw)], axis=3)
    cols = cols.reshape(x.shape[0] * oh * ow, -1)
    y = cols @ k.astype(dt).reshape(-1, k.shape[3])
    y = y + b.astype(dt)
    return y.reshape(x.shape[0], oh, ow, -1)


def maxpool(x, out_hw):
    ph, pw = x.shape[1] // out_hw[0], x.shape[2] // out_hw[1]
    x = x[:, :out_hw[0] * ph, :out_hw[1] * pw, :]
    return x.reshape(x.shape[0], out_hw[0], ph, out_hw[1], pw, x.shape[3]).max(axis=(2, 4))


def activate(z, act):
    if act == "relu":
        return np.maximum(z, 0)
    if act == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if act == "linear":
        return z
    sys.exit("accuracy.py: activation %s is not modelled" % act)


def np_layer(L, x, w, dt):
    """(z, y) of layer L on x computed in dtype dt (float64, or float32 through OpenBLAS)."""
    cls, shape = L["class"], L["shape"]
    if cls == "Conv2D":
        z = conv2d(x, w[L["name"] + "/kernel"], w[L["name"] + "/bias"], shape[:2], dt)
    elif cls == "Dense":
        z = x.astype(dt) @ w[L["name"] + "/kernel"].astype(dt) + w[L["name"] + "/bias"].astype(dt)
    elif cls == "MaxPooling2D":
        z = maxpool(x.astype(dt), shape[:2])
    elif cls == "Flatten":
        z = x.astype(dt).reshape(x.shape[0], -1)
    elif cls == "Dropout":
        z = x.astype(dt)
    else:
        sys.exit("accuracy.py: layer class %s is not modelled" % cls)
    return z, activate(z, L["act"]).astype(dt)


def tf_layers(layers, w):
    """Per layer, a function (x float32) -> (z, y) through TensorFlow's float32 kernels."""
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
    except Exception:
        return None, None
    fns = []
    for L in layers:
        cls, shape, name = L["class"], L["shape"], L.get("name")
        act = {"relu": tf.nn.relu, "softmax": tf.nn.softmax, "linear": tf.identity}[L["act"]]
        if cls == "Conv2D":
            k, b = tf.constant(w[name + "/kernel"]), tf.constant(w[name + "/bias"])
            pad = "SAME" if L["same"] else "VALID"
            pre = lambda x, k=k, b=b, pad=pad: tf.nn.bias_add(tf.nn.conv2d(x, k, 1, pad), b)
        elif cls == "Dense":
            k, b = tf.constant(w[name + "/kernel"]), tf.constant(w[name + "/bias"])
            pre = lambda x, k=k, b=b: tf.nn.bias_add(tf.matmul(x, k), b)
        elif cls == "MaxPooling2D":
            pre = lambda x, L=L: tf.nn.max_pool2d(x, L["pool"], L["pool"], "VALID")
        elif cls == "Flatten":
            pre = lambda x: tf.reshape(x, [x.shape[0], -1])
        else:
            pre = tf.identity
        fns.append(lambda x, pre=pre, act=act: (lambda z: (z.numpy(), act(z).numpy()))(pre(tf.constant(x))))
    return fns, tf.__version__


def read_manifest(outdir):
    """Layers in node order, each with its y file and (if any) z file."""
    layers = []
    for line in open(os.path.join(outdir, "manifest.txt")):
        f, cls, act, rank, *dims = line.split()
        name = f[3:].rsplit(".", 2)[0]
        if not layers or layers[-1]["file"][:3] != f[:3]:
            layers.append({"file": f, "name": name, "class": cls, "act": act,
                           "shape": [int(d) for d in dims[:int(rank)]], "z_file": None})
        if f.endswith(".z.f32"):
            layers[-1]["z_file"] = f
        else:
            layers[-1]["y_file"] = f
    return layers


def run_kerasc(harness, ckpt, x, threads, isa, workdir):
    inp = os.path.join(workdir, "input.f32")
    x.astype(np.float32).tofile(inp)
    out = os.path.join(workdir, "t%d" % threads)
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ)
    if isa != "native":
        env["KERASC_CPU"] = isa
    else:
        env.pop("KERASC_CPU", None)
    sh([harness, ckpt, inp, str(len(x)), out, str(threads)], env=env)
    layers = read_manifest(out)
    n = len(x)
    for L in layers:
        L["y"] = np.fromfile(os.path.join(out, L["y_file"]), np.float32).reshape([n] + L["shape"])
        if L["z_file"]:
            L["z"] = np.fromfile(os.path.join(out, L["z_file"]), np.float32).reshape([n] + L["shape"])
    return layers, out


def identical(layers, other):
    same = True
    for L, M in zip(layers, other):
        same &= L["y"].tobytes() == M["y"].tobytes()
        if L["z_file"]:
            same &= L["z"].tobytes() == M["z"].tobytes()
    return same


def mae(a, b):
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt")
    ap.add_argument("-n", type=int, default=1000, help="test images (default 1000)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--isa", default="native", choices=["native", "avx2", "portable"])
    ap.add_argument("--root", default=ROOT, help="tree whose build/libkerasc.a (and kerasc) to measure")
    ap.add_argument("--determinism", action="store_true",
                    help="also check that threads 1, 2, 3 give identical bits")
    ap.add_argument("--no-tf", action="store_true")
    ap.add_argument("--json", action="store_true", help="one JSON line with every number")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    harness = build_harness(root)
    ckpt = a.ckpt
    if not ckpt:
        d = "/tmp/kerasc-accuracy"
        ckpt = os.path.join(d, "last.safetensors")
        if not os.path.exists(ckpt):
            sh([os.path.join(root, "kerasc"), "train", os.path.join(root, "configs/fashion_mnist_cnn.yaml"),
                "--epochs", "1", "--steps-per-epoch", "50", "--output", d])
    w = read_safetensors(ckpt)
    imgs = read_idx("t10k-images-idx3-ubyte")[:a.n]
    x = (imgs.astype(np.float32) * np.float32(1 / 255)).reshape(len(imgs), 28, 28, 1)

    work = tempfile.mkdtemp(prefix="kerasc-acc-")
    try:
        layers, out = run_kerasc(harness, ckpt, x, a.threads, a.isa, work)
        same = isa_same = None
        if a.determinism:
            same = True
            for t in [1, 3]:
                same &= identical(layers, run_kerasc(harness, ckpt, x, t, a.isa, work)[0])
            if a.isa == "native":  # the AVX2 path against the one this CPU picks
                isa_same = identical(layers, run_kerasc(harness, ckpt, x, a.threads, "avx2", work)[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    in_shape = list(x.shape[1:])
    for L in layers:
        L["same"] = L["class"] == "Conv2D" and L["shape"][:2] == in_shape[:2]
        if L["class"] == "MaxPooling2D":
            L["pool"] = [in_shape[0] // L["shape"][0], in_shape[1] // L["shape"][1]]
        in_shape = L["shape"]
    tf_fns, tf_version = (None, None) if a.no_tf else tf_layers(layers, w)
    prev_x = {"kerasc": x, "f64": x.astype(np.float64), "np32": x, "tf": x}

    rows = []
    for i, L in enumerate(layers):
        z64, y64 = np_layer(L, prev_x["f64"], w, np.float64)
        zl, yl = np_layer(L, prev_x["kerasc"], w, np.float64)  # float64 on kerasc's own input
        z32, y32 = np_layer(L, prev_x["np32"], w, np.float32)
        z32l, y32l = np_layer(L, prev_x["kerasc"], w, np.float32)
        r = {"layer": L["name"], "class": L["class"],
             "y": {"kerasc": mae(L["y"], y64), "np32": mae(y32, y64)},
             "y_local": {"kerasc": mae(L["y"], yl), "np32": mae(y32l, yl)}}
        if L["z_file"]:
            r["z"] = {"kerasc": mae(L["z"], z64), "np32": mae(z32, z64)}
            r["z_local"] = {"kerasc": mae(L["z"], zl), "np32": mae(z32l, zl)}
        if tf_fns:
            zt, yt = tf_fns[i](prev_x["tf"])
            ztl, ytl = tf_fns[i](prev_x["kerasc"])
            r["y"]["tf"], r["y_local"]["tf"] = mae(yt, y64), mae(ytl, yl)
            if L["z_file"]:
                r["z"]["tf"], r["z_local"]["tf"] = mae(zt, z64), mae(ztl, zl)
            prev_x["tf"] = yt
        rows.append(r)
        prev_x = dict(prev_x, kerasc=L["y"], f64=y64, np32=y32)

    if a.json:
        print(json.dumps({"ckpt": ckpt, "n": a.n, "threads": a.threads, "isa": a.isa, "tf": tf_version,
                          "deterministic": same, "avx2_same_as_native": isa_same, "layers": rows}))
        return
    impls = ["kerasc", "np32"] + (["tf"] if tf_fns else [])
    names = {"kerasc": "kerasc", "np32": "numpy f32", "tf": "TF %s f32" % tf_version}
    print("mean |error| against float64, %d Fashion-MNIST test images, %s, kerasc cpu (%s, %d threads)"
          % (a.n, os.path.basename(ckpt), a.isa, a.threads))
    for kind, title in [("", "end-to-end"), ("_local", "local (each layer on kerasc's own input)")]:
        print("\n%s" % title)
        print("%-22s" % "layer" + "".join("%14s" % names[k] for k in impls) +
              ("   kerasc/TF" if tf_fns else "   kerasc/np"))
        for r in rows:
            for part in ["z", "y"]:
                if part + kind not in r:
                    continue
                v = r[part + kind]
                ref = v.get("tf", v["np32"])
                ratio = "%8.2f" % (v["kerasc"] / ref) if ref > 0 else "%8s" % ("-" if v["kerasc"] == 0 else "inf")
                print("%-22s" % ("%s %s" % (r["layer"], part)) + "".join("%14.3e" % v[k] for k in impls) +
                      "    " + ratio)
    if same is not None:
        print("\nthreads 1, 2, 3 bit-identical: %s" % ("yes" if same else "NO"))
    if isa_same is not None:
        print("KERASC_CPU=avx2 bit-identical to the native path: %s" % ("yes" if isa_same else "no"))


if __name__ == "__main__":
    main()

"""`make bench`: kerasc against PyTorch (and Keras when importable) on the
seed CNN and the MLP of configs/, Fashion-MNIST, same batch size, optimizer
and data, in one run. Each measurement is its own process, so peak memory is
that measurement's alone. Prints a table and the ratios the performance
targets are stated in.

Environment: KERASC (binary, default ./kerasc), TORCH_PYTHON and KERAS_PYTHON
(interpreters to try first; otherwise python3 on PATH, then /usr/bin/python3),
BENCH_STEPS (timed training steps, default 300), BENCH_SEQ_STEPS (timed
steps of the sequence models, default 50)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seq_data  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KERASC = os.environ.get("KERASC", os.path.join(ROOT, "kerasc"))
STEPS = int(os.environ.get("BENCH_STEPS", "300"))
SEQ_STEPS = int(os.environ.get("BENCH_SEQ_STEPS", "50"))
CONFIGS = {"cnn": "configs/fashion_mnist_cnn.yaml", "mlp": "configs/fashion_mnist_mlp.yaml"}


def run_json(cmd, timeout=900):
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if p.returncode != 0:
        return None, (p.stderr or p.stdout).strip().splitlines()[-1:] or ["failed"]
    for line in reversed(p.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line), None
    return None, "no result printed"


def find_python(module, env_var):
    seen = []
    for cand in [os.environ.get(env_var), shutil.which("python3"), "/usr/bin/python3"]:
        if not cand or cand in seen or not os.path.exists(cand):
            continue
        seen.append(cand)
        code = "import %s" % module
        try:
            ok = subprocess.run([cand, "-c", code], capture_output=True, timeout=120).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return cand
    return None


def kerasc(model, threads, batch, mode):
    cmd = [KERASC, "bench", CONFIGS[model], "--threads", str(threads), "--batch-size", str(batch),
           "--steps", str(STEPS), "--json"]
    cmd.append("--inference" if mode == "infer" else "--no-inference")
    return run_json(cmd)


def script(py, name, model, threads, batch, mode):
    cmd = [py, os.path.join(HERE, name), "--model", model, "--threads", str(threads),
           "--batch-size", str(batch), "--steps", str(STEPS), "--mode", mode]
    return run_json(cmd)


def sequences(torch_py, keras_py):
    """The text models of tests/bench/seq_data.py: training step time and peak
    memory of kerasc (1 and 2 threads), PyTorch and Keras; kerasc against
    the faster of the other two."""
    print("\nSequence models: random tokens, Embedding %dx%d, %d steps, batch 32, Adam, %d timed steps"
          % (seq_data.VOCAB, seq_data.WIDTH, seq_data.STEPS, SEQ_STEPS))
    folder = tempfile.mkdtemp(prefix="kerasc-bench-seq-")
    try:
        paths = seq_data.write(folder)
        head = "%-8s %-7s %3s %10s %10s %9s" % ("", "model", "thr", "ms/step", "samples/s", "peak MB")
        print(head)
        print("-" * len(head))
        for model, path in paths.items():
            res = {}
            for threads in (1, 2):
                cmd = [KERASC, "bench", path, "--threads", str(threads), "--steps", str(SEQ_STEPS),
                       "--warmup", "5", "--no-inference", "--json"]
                res[("kerasc", threads)] = run_json(cmd)
                for fw, py in (("pytorch", torch_py), ("keras", keras_py)):
                    if py:
                        res[(fw, threads)] = run_json(
                            [py, os.path.join(HERE, "seq_bench.py"), "--framework", fw, "--model", model,
                             "--threads", str(threads), "--steps", str(SEQ_STEPS)])
            for (fw, threads), (r, err) in sorted(res.items()):
                r = r or {}
                print("%-8s %-7s %3d %10s %10s %9s%s" % (
                    fw, model, threads, fmt(r.get("ms_per_step")), fmt(r.get("samples_per_s")),
                    fmt(r.get("peak_rss_mb")), ("   (%s)" % err) if err else ""))

            def best(fw, key):
                vals = [r.get(key) for (f, _), (r, _) in res.items() if f == fw and r and r.get(key)]
                return min(vals) if vals else None

            k = best("kerasc", "ms_per_step")
            others = [(best(fw, "ms_per_step"), fw) for fw in ("pytorch", "keras")]
            others = [o for o in others if o[0]]
            if k and others:
                o, fw = min(others)
                km, om = best("kerasc", "peak_rss_mb"), min(
                    best(f, "peak_rss_mb") for _, f in others if best(f, "peak_rss_mb"))
                print("%s: kerasc's best step = %.3f x the faster other (%s, %.2f vs %.2f ms); "
                      "peak memory %.2f x the smaller other's" % (model, k / o, fw, k, o, km / om))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fmt(v, unit=""):
    return "-" if v is None else ("%.2f%s" % (v, unit) if isinstance(v, float) else "%s%s" % (v, unit))


def summary_ms():
    cfg = CONFIGS["cnn"]
    best = None
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([KERASC, "summary", cfg], cwd=ROOT, capture_output=True)
        dt = 1000 * (time.perf_counter() - t)
        best = dt if best is None else min(best, dt)
    return best


def main():
    if not os.path.exists(KERASC):
        print("bench: %s not found (run make first)" % KERASC)
        return 1
    torch_py = find_python("torch", "TORCH_PYTHON")
    keras_py = find_python("keras", "KERAS_PYTHON")
    print("kerasc bench: Fashion-MNIST, Adam (lr 1e-3, eps 1e-7), %d timed steps after a warm-up" % STEPS)
    print("PyTorch: %s" % (torch_py or "not importable; skipped"))
    print("Keras:   %s" % (keras_py or "not importable; skipped (pip install keras tensorflow-cpu, "
                                       "or set KERAS_PYTHON)"))
    rows = []  # (framework, model, batch, threads, train result, infer result)
    cases = [("cnn", 32), ("cnn", 128), ("mlp", 32)]
    for model, batch in cases:
        for threads in (1, 2):
            tr, err = kerasc(model, threads, batch, "train")
            inf, err2 = kerasc(model, threads, batch, "infer") if batch == 32 else (None, None)
            rows.append(("kerasc", model, batch, threads, tr, inf, err or err2))
            for label, py, name in (("pytorch", torch_py, "torch_bench.py"),
                                    ("keras", keras_py, "keras_bench.py")):
                if not py:
                    continue
                if label == "keras" and batch != 32:
                    continue
                tr, err = script(py, name, model, threads, batch, "train")
                inf, err2 = script(py, name, model, threads, batch, "infer") if batch == 32 else (None, None)
                rows.append((label, model, batch, threads, tr, inf, err or err2))
            sys.stdout.write(".")
            sys.stdout.flush()
    print("\n")
    head = "%-8s %-4s %5s %3s %10s %10s %9s %10s %10s %9s" % (
        "", "model", "batch", "thr", "ms/step", "samples/s", "epoch s", "infer im/s", "train MB", "infer MB")
    print(head)
    print("-" * len(head))
    for fw, model, batch, threads, tr, inf, err in rows:
        tr = tr or {}
        inf = inf or {}
        print("%-8s %-4s %5d %3d %10s %10s %9s %10s %10s %9s%s" % (
            fw, model, batch, threads, fmt(tr.get("ms_per_step")), fmt(tr.get("samples_per_s")),
            fmt(tr.get("epoch_s")), fmt(inf.get("images_per_s")), fmt(tr.get("peak_rss_mb")),
            fmt(inf.get("peak_rss_mb")), ("   (%s)" % err) if err else ""))

    def pick(fw, model, batch, threads=None, key="ms_per_step", best=min, which=4):
        vals = [r[which].get(key) for r in rows if r[0] == fw and r[1] == model and r[2] == batch
                and (threads is None or r[3] == threads) and r[which] and r[which].get(key)]
        return best(vals) if vals else None

    print()
    for model, batch in cases:
        k2 = pick("kerasc", model, batch, 2)
        k1 = pick("kerasc", model, batch, 1)
        if k1 and k2:
            print("%s batch %d: kerasc 2 threads vs 1: %.2fx the speed (%.2f -> %.2f ms/step)" % (
                model, batch, k1 / k2, k1, k2))
        for fw in ("pytorch", "keras"):
            other = pick(fw, model, batch)
            if k2 and other:
                print("%s batch %d: kerasc (2 threads) time per step = %.3f x %s's best (%.2f vs %.2f ms)" % (
                    model, batch, k2 / other, fw, k2, other))
    ki = pick("kerasc", "cnn", 32, 2, key="images_per_s", best=max, which=5)
    for fw in ("pytorch", "keras"):
        oi = pick(fw, "cnn", 32, key="images_per_s", best=max, which=5)
        if ki and oi:
            print("cnn inference: kerasc %.0f images/s = %.2f x %s's best (%.0f)" % (ki, ki / oi, fw, oi))
    km = pick("kerasc", "cnn", 32, key="peak_rss_mb", best=max)
    if km:
        print("cnn training peak memory (kerasc, data included): %.1f MB" % km)
    fs = pick("kerasc", "cnn", 32, 2, key="first_step_s")
    su = pick("kerasc", "cnn", 32, 2, key="setup_s")
    if fs is not None and su is not None:
        print("cnn start: %.0f ms to read the data, plan and initialise, then %.1f ms for the first "
              "training step" % (1000 * su, 1000 * fs))
    print("kerasc summary: %.1f ms wall (best of 10)" % summary_ms())
    sequences(torch_py, keras_py)
    return 0


if __name__ == "__main__":
    sys.exit(main())

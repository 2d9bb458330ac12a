#!/usr/bin/env python3
"""mcc vs ONNX Runtime, measured in the same run on the same machine.

For every model: `mcc build recipes/merge.mcr MODEL` makes the native executable; then, for
each batch size and thread count, ONNX Runtime (intra_op_num_threads = T, sequential) and the
executable (`--threads T --bench N`) each run N timed runs after warm-up, and the medians are
compared. Also: the GEMM kernel table (`mcc bench --kernels`), the build time of light
ResNet-50, and the lenet5 executable's start-up (process start to first result).

The machine's speed drifts (a shared 2-core VM: the same measurement can differ by 2x from
one minute to the next), so each cell is measured in --rounds rounds, ORT and mcc
alternating, and each side keeps its best (lowest) median: both get the same chances.

Usage: python3 bench/bench.py [--runs 50] [--rounds 3] [--quick] [--models a,b] [--out bench/results.md]
Installs onnxruntime and numpy with pip if they are missing. Prints one markdown table.
"""
import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "..", "shared", "corpus")

TRAINED = [
    ("lenet300", "data/mnist_test_x784.npy"),
    ("lenet5", "data/mnist_test_x.npy"),
    ("vgg_bn", "data/mnist_test_x.npy"),
    ("resnet_bn", "data/mnist_test_x.npy"),
    ("mobilenet_dw", "data/mnist_test_x.npy"),
    ("inception_mini", "data/mnist_test_x.npy"),
]
LIGHT = ["resnet50", "vgg19", "squeezenet", "shufflenet", "inception_v1"]


def ensure_packages():
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "onnxruntime", "numpy"])


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ort_median(model, x, threads, runs):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x}
    for _ in range(max(5, runs // 10)):
        s.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def mcc_median(exe, npy, threads, runs):
    out = subprocess.run([exe, npy, "--threads", str(threads), "--bench", str(runs)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"median ([0-9.]+) ms", out)
    if not m:
        raise RuntimeError(f"unexpected output from {exe}: {out}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50, help="timed runs per measurement (default 50)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating ORT/mcc rounds per cell; each keeps its best median (default 3)")
    ap.add_argument("--quick", action="store_true", help="trained models only, batch 1 and 64")
    ap.add_argument("--models", help="only these models, comma-separated (e.g. lenet5,light_squeezenet)")
    ap.add_argument("--out", help="also write the report (markdown) to this file")
    args = ap.parse_args()
    wanted = set(args.models.split(",")) if args.models else None
    known = {name for name, _ in TRAINED} | {f"light_{name}" for name in LIGHT}
    if wanted and not wanted <= known:
        ap.error(f"unknown model(s) {', '.join(sorted(wanted - known))}; known: {', '.join(sorted(known))}")
    ensure_packages()
    import numpy as np
    import onnxruntime as ort

    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "mcc"], cwd=ROOT)
    mcc = os.path.join(ROOT, "target", "release", "mcc")
    # The built executables and inputs live in a scratch folder that goes away however the
    # run ends (a full run leaves ~2.4 GB there); SIGTERM unwinds like Ctrl-C.
    work = tempfile.mkdtemp(prefix="mcc-bench-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args, mcc, work, wanted, np, ort)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, mcc, work, wanted, np, ort):
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    say(f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; onnxruntime {ort.__version__}; "
        f"{args.runs} timed runs per measurement, median; {args.rounds} alternating rounds per cell, "
        f"best median of each side; {time.strftime('%Y-%m-%d %H:%M')}.")
    say()
    if not wanted:
        say("```")
        say(subprocess.run([mcc, "bench", "--kernels"], capture_output=True, text=True, check=True).stdout.rstrip())
        say("```")
        say()
    jobs = []
    for name, data in TRAINED:
        x = np.load(os.path.join(CORPUS, data)).astype(np.float32)
        for batch in (1, 64):
            jobs.append((name, os.path.join(CORPUS, f"{name}.onnx"), x[:batch], batch))
    if not args.quick:
        x = np.load(os.path.join(CORPUS, "light", "light_input_seed0.npy")).astype(np.float32)
        for name in LIGHT:
            jobs.append((f"light_{name}", os.path.join(CORPUS, "light", f"light_{name}.onnx"), x, 1))
    if wanted:
        jobs = [job for job in jobs if job[0] in wanted]
    built = {}
    build_times = {}
    say("| model | batch | threads | ORT ms | mcc ms | ratio ORT/mcc |")
    say("|---|---|---|---|---|---|")
    for name, model, x, batch in jobs:
        if name not in built:
            out = os.path.join(work, name)
            t = time.perf_counter()
            subprocess.run([mcc, "build", os.path.join(ROOT, "recipes", "merge.mcr"), model, "-o", out],
                           check=True, capture_output=True)
            build_times[name] = time.perf_counter() - t
            stem = os.path.splitext(os.path.basename(model))[0]
            built[name] = os.path.join(out, re.sub(r"[^a-z0-9]", "_", stem.lower()))
        npy = os.path.join(work, f"{name}_b{batch}.npy")
        np.save(npy, x)
        for threads in (1, 2):
            o, m = float("inf"), float("inf")
            runs = args.runs
            for _ in range(max(1, args.rounds)):
                o = min(o, ort_median(model, x, threads, runs))
                m = min(m, mcc_median(built[name], npy, threads, runs))
                # Sub-millisecond cells: more runs per measurement (30 runs of 0.1 ms are
                # over before the CPU's clock has settled).
                if max(o, m) < 2.0:
                    runs = max(runs, 10 * args.runs)
            say(f"| {name} | {batch} | {threads} | {o:.3f} | {m:.3f} | {o / m:.2f} |")
    say()
    for name in ("light_resnet50",):
        if name in build_times:
            say(f"`mcc build recipes/merge.mcr` of {name}: {build_times[name]:.1f} s (includes import, merging, "
                f"report on no data, code generation, linking).")
    if "lenet5" in built:
        one = os.path.join(work, "one.npy")
        np.save(one, np.load(os.path.join(CORPUS, "data", "mnist_test_x.npy")).astype(np.float32)[:1])
        starts = []
        for _ in range(20):
            t = time.perf_counter()
            subprocess.run([built["lenet5"], one], check=True, capture_output=True)
            starts.append((time.perf_counter() - t) * 1e3)
        say(f"lenet5 executable, process start to first result (1 sample, median of 20): "
            f"{statistics.median(starts):.1f} ms.")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

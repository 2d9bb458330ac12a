"""Sparsity → accuracy curves of `prune unstructured`, one per criterion, on the corpus.

    python3 bench/prune_curves.py [--mcc target/release/mcc] [--out bench/results-prune-curves.md]

For each model (lenet300, lenet5) and each amount, builds the model with every Conv and Gemm
pruned uniformly by that amount, four ways: magnitude, magnitude + least-squares refit, OBS,
OBS + refit (256 calibration samples), and reads the accuracy on the 1000 test samples from
the build's report.json (measured on the compiled model). Uniform amounts are harsh on small
layers (LeNet-5's conv1 has 500 weights); the recipes in recipes/ give per-layer amounts.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "corpus", "data")
MODELS = {
    "lenet300": ("mnist_calib_x784.npy", "mnist_test_x784.npy"),
    "lenet5": ("mnist_calib_x.npy", "mnist_test_x.npy"),
}
AMOUNTS = [50, 70, 80, 90, 95]
WAYS = [("magnitude", "off"), ("magnitude", "on"), ("obs", "off"), ("obs", "on")]


def accuracy(mcc, model, calib, test, amount, by, refit, tmp):
    recipe = os.path.join(tmp, "r.mcr")
    with open(recipe, "w") as f:
        f.write(f'calibrate with "{os.path.join(DATA, calib)}"\n')
        f.write(f'evaluate with "{os.path.join(DATA, test)}" '
                f'labels "{os.path.join(DATA, "mnist_test_y.npy")}"\n')
        f.write(f"prune unstructured on Conv? | Gemm {{ amount: {amount}%, by: {by}, refit: {refit} }}\n")
    out = os.path.join(tmp, "out")
    subprocess.run([mcc, "build", recipe, os.path.join(ROOT, "corpus", f"{model}.onnx"),
                    "-o", out, "--no-native"], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "report.json")) as f:
        acc = json.load(f)["model_totals"]["accuracy"]
    return acc["before"], acc["after"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mcc", default=os.path.join(ROOT, "target", "release", "mcc"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results-prune-curves.md"))
    args = ap.parse_args()
    lines = ["# Sparsity → accuracy, `prune unstructured` on every Conv and Gemm", "",
             "Made by `python3 bench/prune_curves.py`: top-1 on the 1000 test samples, measured on",
             "the compiled model; 256 calibration samples for OBS and the refit.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for model, (calib, test) in MODELS.items():
            head = "| amount | " + " | ".join(
                f"{by}{' + refit' if refit == 'on' else ''}" for by, refit in WAYS) + " |"
            rows = []
            base = None
            for amount in AMOUNTS:
                cells = []
                for by, refit in WAYS:
                    before, after = accuracy(args.mcc, model, calib, test, amount, by, refit, tmp)
                    base = before
                    cells.append(f"{after * 100:.1f}%")
                    print(f"{model} {amount}% {by} refit {refit}: {after * 100:.1f}%", file=sys.stderr)
                rows.append(f"| {amount}% | " + " | ".join(cells) + " |")
            lines += [f"## {model} (unpruned: {base * 100:.1f}%)", "", head,
                      "|---" * (len(WAYS) + 1) + "|", *rows, ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

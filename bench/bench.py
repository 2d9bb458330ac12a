#!/usr/bin/env python3
"""mcc vs ONNX Runtime (or vs another mcc, --against): both timed in the same run on the same
machine, and outputs checked.

Usage: python3 bench/bench.py [--runs 50] [--rounds 3] [--quick] [--models a,b]
                              [--recipe R.mcr] [--recipe-for MODEL=R.mcr ...]
                              [--ort original|exported|qdq|dynamic | --against OLD_MCC] [--out FILE.md]

What runs. For every model, `mcc build RECIPE MODEL` makes the native executable (RECIPE is
--recipe, recipes/merge.mcr unless told, or the --recipe-for of that model; the table names
it). The ONNX Runtime side (--ort, named in the table) runs one of:
  original  the corpus model itself (default);
  exported  the model.onnx that `mcc build` wrote for that row's recipe (the same
            compressed or merged graph the executable runs);
  qdq       ORT's own int8 model of the original: onnxruntime.quantization.quantize_static,
            QDQ format, uint8 activations / int8 per-channel weights (the x86 default pairing),
            MinMax calibration on corpus/data/mnist_calib_x.npy (_x784 for lenet300) or, for
            the light models, on 4 seeded uniform-random images; after quant_pre_process
            (the light models are also moved to opset 13, which per-channel needs).
  dynamic   ORT's own dynamic int8 model of the original: onnxruntime.quantization.
            quantize_dynamic of its MatMul and Gemm layers (int8 per-channel weights, uint8
            activations quantized at run time; QOperator format: DynamicQuantizeLinear and
            MatMulInteger), after the same pre-processing; no calibration. Checked like qdq.
Every model is built (and quantized) before anything is timed; a build that fails stops the
benchmark (exit 1).
Trained models are measured at batch 1 and 64 (the first rows of the test set), light models
at batch 1 (corpus/light/light_input_seed0.npy); each at 1 and 2 threads. The light models are
the seeded random-weight versions tests/light_random.py makes (cached in target/light-random,
shared with the tests), not the corpus's constant-weight files, so their outputs say something.

What is timed.
  ORT: one InferenceSession per cell (CPUExecutionProvider, intra_op_num_threads = T,
       inter_op_num_threads = 1, sequential, default graph optimisations), with I/O binding:
       the input is an OrtValue made once, every output is bound to a preallocated buffer, and
       the timed loop is `t = perf_counter(); sess.run_with_iobinding(binding); perf_counter()
       - t` N times after 5 warm-up calls; the median of the N. No feed conversion and no
       output allocation happen inside the loop. What remains of ORT's (and Python's)
       per-call overhead is measured by the same loop on a one-node model (Add of a 1-float
       tensor to itself) and printed above the table in µs, next to the executable's time on
       that model.
  mcc: the executable, `EXE INPUT.npy --threads T --bench N`: 5 warm-up runs, then N timed
       runs of the model into its preallocated output inside the process; it prints the
       median (this script reads it; the printed resolution is 0.1 µs).
Runs: N = --runs, or 10 x --runs when a cell is under 2 ms (decided by an untimed probe of
both sides before the first round, so every round of a cell uses the same N).

How the ratio is formed. This machine's speed drifts (a shared 2-core VM: the same cell can
differ by 2x from one minute to the next), so each cell is measured in --rounds rounds; a
round measures both sides back to back, ORT first in odd rounds and mcc first in even ones,
and gives ratio = ORT median / mcc median for that round (> 1: mcc is faster). The cell
shows the median of the per-round ratios with their min..max, and the median over rounds
of each side's per-round median, in ms. Nothing is a best-of.

What is checked (after the rounds, per cell and thread count; rel err = max|d| / max|ref|,
with NaN or Inf anywhere counted as a failure, never as a pass):
  mcc side: the timed executable is run once more on the cell's input with `-o OUT.npy`.
    If the build was exact (report.json lists no technique but merges), its output is
    compared with ORT's output of the original model on the same input; otherwise (pruned
    or otherwise compressed) with mcc's reference evaluator on the same compressed model
    (`mcc run BUILD/model.full.mcir -i X.npy -o Y.npy`, or model.onnx when the build
    wrote no model.full.mcir). Tolerance 1e-4.
  ORT side: the timed binding is run once more (its output buffer filled with NaN first).
    original: compared with the stored ORT reference outputs, corpus/ref/<model>_test_out.npy
      (light: the random-weight model's ORT output, made by tests/light_random.py), tolerance 1e-4;
    exported: compared with mcc's reference evaluator on the same model.onnx, tolerance 1e-4;
    qdq: compared with ORT's output of the original; the rel err and top-1 agreement (over
      the rows whose reference has a single largest value) are reported and not held to a
      tolerance (quantization error is the point), only NaN/Inf fails. Below the table, top-1
      agreement and accuracy over the 1000 test samples for the trained models; agreement
      below 90% fails (the quantized reference itself would be broken).
A failed check marks the cell FAIL and the script exits 1 at the end, naming the cells.

Also printed: the machine (CPU, cores, load average, onnxruntime version, date, the repo's
commit and whether tracked files have uncommitted changes), the GEMM kernel table (`mcc bench
--kernels`, full runs only), the build time of light ResNet-50, and the lenet5 executable's
start-up (process start to first result). Built executables live in a scratch folder that is
removed however the run ends. Installs numpy, onnxruntime and onnx with pip if missing.

--against OLD_MCC: mcc vs another mcc binary (say, one built from an older commit in a git
worktree) instead of vs ORT; ORT is neither timed nor needed (numpy only, plus onnx and
onnxruntime for the light models' random weights). Every model is built with the same recipe by
both binaries, each with `BINARY build RECIPE MODEL -o DIR` only (an older binary may not know
newer flags), before anything is timed. The cells, N and the rounds are as above, with the two
executables timed back to back the same way (`--bench N`, old first in odd rounds, new first in
even ones): ratio = old median / new median per round (> 1: the new build is faster), median
[min..max] over rounds. The table names both binaries: path, the commit of the git checkout
whose target/<profile>/ holds each (and whether its tracked files have uncommitted changes) and
the binary's modification time. Checks: the new executable's output as above, but an exact build
is compared with the stored ORT outputs (corpus/ref, or the light models' from
tests/light_random.py) instead of a live ORT run; and the old executable's output against the
new one's on the same input (rel err; held to 1e-4 when both builds are merge-only, reported
only otherwise, since a compression may have changed between the two; NaN/Inf always fails).
The per-call floor is not measured. The last line says whether every cell's median ratio is
within 3% (0.97..1.03); that is reported, not failed.
"""
import argparse
import json
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
CORPUS = os.path.join(ROOT, "corpus")
TOL = 1e-4

# name -> (test inputs, calibration inputs), relative to corpus/
TRAINED = {
    "lenet300": ("data/mnist_test_x784.npy", "data/mnist_calib_x784.npy"),
    "lenet5": ("data/mnist_test_x.npy", "data/mnist_calib_x.npy"),
    "vgg_bn": ("data/mnist_test_x.npy", "data/mnist_calib_x.npy"),
    "resnet_bn": ("data/mnist_test_x.npy", "data/mnist_calib_x.npy"),
    "mobilenet_dw": ("data/mnist_test_x.npy", "data/mnist_calib_x.npy"),
    "inception_mini": ("data/mnist_test_x.npy", "data/mnist_calib_x.npy"),
    "vit_mini": ("data/mnist_test_x.npy", "data/mnist_calib_x.npy"),
    "vit_mini_dynamo": ("data/mnist_test_x.npy", "data/mnist_calib_x.npy"),
    "resnet_bn_dynamo": ("data/mnist_test_x.npy", "data/mnist_calib_x.npy"),
}
LIGHT = ["resnet50", "vgg19", "squeezenet", "shufflenet", "inception_v1"]
# The least top-1 agreement with the original that ORT's QDQ model must reach on a trained
# model's 1000 test samples (int8 of these models agrees on 99%+): below it, the quantized
# reference itself is broken, and a comparison against it means nothing.
QDQ_AGREEMENT = 0.9
ORT_SIDES = {"original": "the corpus model", "exported": "the model.onnx mcc build wrote",
             "qdq": "ORT's static QDQ int8 quantization of the corpus model",
             "dynamic": "ORT's dynamic int8 quantization (quantize_dynamic) of the corpus model's MatMul/Gemm"}
# --against: the band of median ratios (old/new) that counts as "the same speed".
SAME_SPEED = (0.97, 1.03)


def use_test_venv():
    """Re-runs this script under the Python environment `scripts/test` makes (target/venv: the
    pinned numpy, onnxruntime and onnx), when it exists and this is another interpreter."""
    venv = os.path.join(ROOT, "target", "venv", "bin", "python")
    if os.path.exists(venv) and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(ROOT, "target", "venv")):
        os.execv(venv, [venv, *sys.argv])


def light_random(names):
    """The seeded random-weight versions of the light models (tests/light_random.py, the same
    files and cache the test suites use): their outputs are informative, where the corpus's
    constant-weight versions give a uniform softmax."""
    out = os.path.join(ROOT, "target", "light-random")
    subprocess.check_call([sys.executable, os.path.join(ROOT, "tests", "light_random.py"), out, *names])
    return out


def ensure_packages(mods=("numpy", "onnxruntime", "onnx")):
    missing = []
    for mod, pkg in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("onnx", "onnx")):
        if mod not in mods:
            continue
        try:
            __import__(mod)
        except ImportError:
            missing.append(pkg)
    if missing:
        try:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *missing])
        except (OSError, subprocess.CalledProcessError):
            sys.exit(f"bench.py needs {', '.join(missing)}: run scripts/test once (it makes target/venv "
                     f"with them, which this script then uses), or pip install them")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_state(where=ROOT):
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {head}" + (" + uncommitted changes to tracked files" if dirty else " (clean tree)")


def binary_state(exe):
    """An mcc binary's path, the commit of the git checkout whose target/<profile>/ holds it (if
    it is in one) and its modification time: the binary may predate that checkout's edits."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(exe)))
    try:
        toplevel = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=top, capture_output=True,
                                  text=True, check=True).stdout.strip()
        state = git_state(top) if os.path.realpath(toplevel) == os.path.realpath(top) else None
    except (OSError, subprocess.CalledProcessError):
        state = None
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(exe)))
    where = f"checkout {top}, {state}" if state else "not in a git checkout's target/"
    return f"`{exe}` ({where}; binary modified {built})"


class Fail(Exception):
    pass


def run_tool(cmd, what):
    """Run a command; on failure stop the benchmark with its stderr and what it was for."""
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise Fail(f"{what}: `{' '.join(cmd)}` exited {r.returncode}:\n{r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


# ---------------------------------------------------------------- the two sides

class OrtBound:
    """One ORT session with its input and outputs bound once; `median_ms` times the bound run."""

    def __init__(self, ort, np, model, x, threads):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self.np = np
        self.sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        inputs = self.sess.get_inputs()
        if len(inputs) != 1:
            raise Fail(f"{model}: expected one input, found {len(inputs)}")
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        # One untimed plain run tells the output shapes; the buffers are then allocated once.
        first = self.sess.run(None, {inputs[0].name: self.x})
        self.outs = [np.empty_like(o) for o in first]
        self.binding = self.sess.io_binding()
        self.x_value = ort.OrtValue.ortvalue_from_numpy(self.x)
        self.binding.bind_ortvalue_input(inputs[0].name, self.x_value)
        # OrtValues made from numpy arrays share their memory: ORT writes into self.outs.
        self.out_values = [ort.OrtValue.ortvalue_from_numpy(a) for a in self.outs]
        for meta, value in zip(self.sess.get_outputs(), self.out_values):
            self.binding.bind_ortvalue_output(meta.name, value)

    def median_ms(self, runs, warmup=5):
        run, binding, clock = self.sess.run_with_iobinding, self.binding, time.perf_counter
        for _ in range(warmup):
            run(binding)
        times = [0.0] * runs
        for i in range(runs):
            t = clock()
            run(binding)
            times[i] = clock() - t
        return statistics.median(times) * 1e3

    def output(self):
        """The first output of one more bound run; the buffer is NaN-filled first, so a run
        that writes nothing cannot pass."""
        for a in self.outs:
            a.fill(self.np.nan)
        self.sess.run_with_iobinding(self.binding)
        return self.outs[0].copy()


def alternate(rounds, first, second, what, pause=0.0):
    """Times `first` and `second` (each returns a median in ms) back to back for `rounds` rounds,
    the side that goes first swapped every round; returns (first ms, second ms, first/second
    ratio per round). A second side of 0 ms fails the run (`what` names it)."""
    a_ms, b_ms, ratios = [], [], []
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        got = [None, None]
        for side in order:
            got[side] = (first, second)[side]()
            time.sleep(pause)
        a, b = got
        if b <= 0:
            raise Fail(f"{what} printed a median of 0 ms")
        a_ms.append(a)
        b_ms.append(b)
        ratios.append(a / b)
    return a_ms, b_ms, ratios


def mcc_median(exe, npy, threads, runs):
    out = run_tool([exe, npy, "--threads", str(threads), "--bench", str(runs)], f"timing {exe}")
    m = re.search(r"median ([0-9.]+) ms", out)
    if not m:
        raise Fail(f"unexpected output from {exe}: {out}")
    return float(m.group(1))


def mcc_output(np, exe, npy, threads, path):
    if os.path.exists(path):
        os.remove(path)
    run_tool([exe, npy, "--threads", str(threads), "-o", path], f"running {exe}")
    return np.load(path)


# ---------------------------------------------------------------- checks

def compare(np, got, ref):
    """(rel err, problem or None). rel err = max|got - ref| / max|ref|; NaN/Inf or a shape
    mismatch is a problem whatever the tolerance."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return float("nan"), f"shape {list(got.shape)} vs reference {list(ref.shape)}"
    if not np.all(np.isfinite(got)):
        return float("nan"), f"{int(np.sum(~np.isfinite(got)))} NaN/Inf values in the output"
    if not np.all(np.isfinite(ref)):
        return float("nan"), "NaN/Inf in the reference"
    diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if got.size else 0.0
    scale = float(np.max(np.abs(ref.astype(np.float64)))) if ref.size else 0.0
    rel = diff / scale if scale > 0 else diff
    if not np.isfinite(rel):
        return rel, "rel err is not finite"
    return rel, None


def fmt_err(rel):
    return "0" if rel == 0 else f"{rel:.1e}"


def fmt_ms(ms):
    return f"{ms:.4f}" if ms < 1 else f"{ms:.3f}"


def top1(np, a):
    return np.asarray(a).reshape(a.shape[0], -1).argmax(axis=1)


def top1_agreement(np, got, ref):
    """'k/n': rows where got's top-1 class is ref's, over the n rows whose reference has a single
    largest value (a tie, like the light models' uniform softmax, decides nothing)."""
    ref2 = np.asarray(ref).reshape(ref.shape[0], -1)
    clear = np.sum(ref2 == ref2.max(axis=1, keepdims=True), axis=1) == 1
    if not clear.any():
        return "n/a (reference ties)"
    return f"{int(np.sum((top1(np, got) == top1(np, ref))[clear]))}/{int(clear.sum())}"


# ---------------------------------------------------------------- models

def make_trivial_model(path):
    """A one-node model, y = x + x on a 1-float tensor: what is left is per-call overhead."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "trivial",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m)
    onnx.save(m, path)


def make_qdq(np, ort, model, out, calib, work, dynamic=False):
    """ORT's static int8 QDQ quantization of `model`, calibrated on the rows of `calib`; with
    `dynamic`, its dynamic quantization of the MatMul and Gemm layers instead (no calibration)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inp = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).get_inputs()[0]
    chunk = inp.shape[0] if isinstance(inp.shape[0], int) else 32

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{inp.name: np.ascontiguousarray(calib[i:i + chunk])}
                            for i in range(0, len(calib), chunk)])

        def get_next(self):
            return next(self.it, None)

    pre = out + ".pre.onnx"
    try:
        # Symbolic shape inference needs sympy; the corpus models have fixed shapes but the batch.
        quant_pre_process(model, pre, skip_symbolic_shape=True)
    except Exception as e:  # noqa: BLE001 - fall back to the model as is
        print(f"  (quant_pre_process failed on {model}: {e}; quantizing the model as is)", flush=True)
        shutil.copyfile(model, pre)
    # Old (IR 3) models, like the light ones, list their weights as graph inputs too, and after
    # pre-processing (which folds their ConstantOfShape weights) some of those inputs feed
    # nothing: keep as graph inputs only what nodes read and no initializer provides, so the
    # calibration needs only the data input and the weights count as constants.
    import onnx

    m = onnx.load(pre)
    inits = {t.name for t in m.graph.initializer}
    used = {n for node in m.graph.node for n in node.input} | {o.name for o in m.graph.output}
    keep = [i for i in m.graph.input if i.name in used and i.name not in inits]
    changed = len(keep) != len(m.graph.input)
    if changed:
        del m.graph.input[:]
        m.graph.input.extend(keep)
        m.ir_version = max(m.ir_version, 7)
    # Per-channel DequantizeLinear (its axis attribute) needs opset 13; the light models are
    # opset 9 (11 after pre-processing). Without the upgrade, quantize per tensor.
    per_channel = True
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        try:
            from onnx import version_converter

            m = version_converter.convert_version(m, 13)
            changed = True
        except Exception as e:  # noqa: BLE001
            print(f"  (cannot upgrade {model} to opset 13: {e}; quantizing per tensor)", flush=True)
            per_channel = False
    if changed:
        onnx.save(m, pre)
    if dynamic:
        quantize_dynamic(pre, out, weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=["MatMul", "Gemm"])
        if os.path.exists(pre):
            os.remove(pre)
        return out
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                    calibrate_method=CalibrationMethod.MinMax)
    if os.path.exists(pre):
        os.remove(pre)
    return out


def parse_recipe_for(items, known, ap):
    out = {}
    for item in items or []:
        if "=" not in item:
            ap.error(f"--recipe-for wants MODEL=PATH, got {item!r}")
        name, path = item.split("=", 1)
        if name not in known:
            ap.error(f"--recipe-for: unknown model {name}; known: {', '.join(sorted(known))}")
        if not os.path.isfile(path):
            ap.error(f"--recipe-for: no recipe file {path}")
        out[name] = os.path.abspath(path)
    return out


def recipe_label(path):
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def merge_only(report):
    """True when the build ran nothing but exact merges (so outputs equal the original's up to
    float rounding): every technique in report.json is a merge."""
    techs = {t.get("technique", "?") for layer in report.get("layers", []) for t in layer.get("techniques", [])}
    techs |= {str(m.get("technique", "?")).split(" ")[0] for m in report.get("merged", [])}
    return techs <= {"merge"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50,
                    help="timed runs per measurement; x10 for cells under 2 ms (default 50)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per cell, each timing ORT and mcc back to back (default 3)")
    ap.add_argument("--quick", action="store_true", help="trained models only (batch 1 and 64)")
    ap.add_argument("--models", help="only these models, comma-separated (e.g. lenet5,light_squeezenet)")
    ap.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "merge.mcr"),
                    help="recipe mcc builds every model with (default recipes/merge.mcr)")
    ap.add_argument("--recipe-for", action="append", metavar="MODEL=PATH",
                    help="recipe for one model, instead of --recipe (repeatable)")
    ap.add_argument("--ort", choices=sorted(ORT_SIDES),
                    help="what ORT runs: the original model (default), mcc's exported model.onnx, "
                         "or ORT's own QDQ int8 quantization of the original")
    ap.add_argument("--against", metavar="OLD_MCC",
                    help="time this mcc binary's executables against the current mcc's instead of ORT "
                         "(ratio old/new); ORT is not run")
    ap.add_argument("--out", help="also write the report (markdown) to this file")
    args = ap.parse_args()
    if args.runs < 1 or args.rounds < 1:
        ap.error("--runs and --rounds must be at least 1")
    known = set(TRAINED) | {f"light_{name}" for name in LIGHT}
    wanted = set(args.models.split(",")) if args.models else None
    if wanted and not wanted <= known:
        ap.error(f"unknown model(s) {', '.join(sorted(wanted - known))}; known: {', '.join(sorted(known))}")
    if not os.path.isfile(args.recipe):
        ap.error(f"--recipe: no recipe file {args.recipe}")
    args.recipe = os.path.abspath(args.recipe)
    args.recipe_for = parse_recipe_for(args.recipe_for, known, ap)
    if args.against:
        if args.ort:
            ap.error("--against times mcc against another mcc: ORT is not run, so --ort does not apply")
        if not (os.path.isfile(args.against) and os.access(args.against, os.X_OK)):
            ap.error(f"--against: no executable file {args.against}")
        args.against = os.path.abspath(args.against)
    args.ort = args.ort or "original"
    use_test_venv()
    light = not args.quick and (not wanted or any(name.startswith("light_") for name in wanted))
    # --against needs no ORT, but the light models' random weights are made (and checked) with it.
    ensure_packages(("numpy",) if args.against and not light else ("numpy", "onnxruntime", "onnx"))
    import numpy as np
    ort = None
    if not args.against:
        import onnxruntime as ort

    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "mcc"], cwd=ROOT)
    mcc = os.path.join(ROOT, "target", "release", "mcc")
    # The built executables and inputs live in a scratch folder that goes away however the
    # run ends (a full run leaves gigabytes there); SIGTERM unwinds like Ctrl-C.
    work = tempfile.mkdtemp(prefix="mcc-bench-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        failures = run(args, mcc, work, wanted, np, ort)
    except Fail as e:
        print(f"\nFAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        sys.exit(1)


def per_call_floor(args, mcc, work, np, ort, say):
    """What each side's per-call overhead is, on a one-node model timed the same way as the table."""
    trivial = os.path.join(work, "trivial.onnx")
    make_trivial_model(trivial)
    one = np.ones(1, np.float32)
    one_npy = os.path.join(work, "trivial_x.npy")
    np.save(one_npy, one)
    floor_runs = max(1000, 10 * args.runs)
    floor = []
    try:
        run_tool([mcc, "build", os.path.join(ROOT, "recipes", "merge.mcr"), trivial, "-o",
                  os.path.join(work, "trivial")], "building the one-node model")
        with open(os.path.join(work, "trivial", "report.json")) as f:
            exe = (json.load(f).get("native") or {}).get("executable")
        if not exe:
            raise Fail("mcc build wrote no executable")
        trivial_exe = os.path.join(work, "trivial", exe)
    except Fail as e:
        print(f"  (no mcc executable for the one-node model: {e})", flush=True)
        trivial_exe = None
    for threads in (1, 2):
        bound = OrtBound(ort, np, trivial, one, threads)
        o = statistics.median(bound.median_ms(floor_runs) for _ in range(args.rounds)) * 1e3
        text = f"ORT {o:.2f} µs"
        if trivial_exe:
            m = statistics.median(mcc_median(trivial_exe, one_npy, threads, floor_runs)
                                  for _ in range(args.rounds)) * 1e3
            text += f", mcc executable {m:.1f} µs" if m > 0 else ", mcc executable < 0.05 µs"
        floor.append(f"{threads} thread{'s' if threads > 1 else ''}: {text}")
    say(f"Per-call floor (one-node model, y = x + x on 1 float, timed the same way as the table, "
        f"{floor_runs} runs, median of {args.rounds} rounds): {'; '.join(floor)}. The ORT figure is what "
        f"ORT's run and the Python timing loop add to every ORT cell below.")
    say()


def run(args, mcc, work, wanted, np, ort):
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ort_version = f"onnxruntime {ort.__version__}; " if ort else ""
    say(f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, load average {load:.2f} at start; "
        f"{ort_version}{git_state()}; {time.strftime('%Y-%m-%d %H:%M')}.")
    if args.against:
        say(f"Method (bench/bench.py docstring, --against): {args.runs} timed runs per measurement "
            f"({10 * args.runs} for cells under 2 ms), median; {args.rounds} rounds per cell, the old and the new "
            f"executable back to back (both with --bench), the first side swapped every round; ratio = old "
            f"median / new median per round (> 1: new is faster), shown as the median over rounds [min..max].")
        say(f"new mcc: {binary_state(mcc)}.")
        say(f"old mcc: {binary_state(args.against)}.")
        say()
    else:
        say(f"Method (bench/bench.py docstring): {args.runs} timed runs per measurement ({10 * args.runs} for "
            f"cells under 2 ms), median; {args.rounds} rounds per cell, ORT and mcc back to back, the first side "
            f"swapped every round; ratio = ORT median / mcc median per round, shown as the median over rounds "
            f"[min..max]. ORT runs with I/O binding into preallocated outputs; the executable with --bench. "
            f"ORT side: {args.ort} ({ORT_SIDES[args.ort]}).")
        say()
        per_call_floor(args, mcc, work, np, ort, say)
    if not wanted:
        say("```")
        say(run_tool([mcc, "bench", "--kernels"], "mcc bench --kernels").rstrip())
        say("```")
        say()

    jobs = []
    for name, (data, _) in TRAINED.items():
        x = np.load(os.path.join(CORPUS, data)).astype(np.float32)
        for batch in (1, 64):
            jobs.append((name, os.path.join(CORPUS, f"{name}.onnx"), x[:batch], batch))
    light_dir = None
    if not args.quick:
        names = [n for n in LIGHT if not wanted or f"light_{n}" in wanted]
        if names:
            light_dir = light_random(names)
        x = np.load(os.path.join(CORPUS, "light", "light_input_seed0.npy")).astype(np.float32)
        for name in names:
            jobs.append((f"light_{name}", os.path.join(light_dir, f"light_{name}_random.onnx"), x, 1))
    if wanted:
        jobs = [job for job in jobs if job[0] in wanted]

    builds = {}      # model name -> build info
    old_builds = {}  # model name -> build info of the --against binary
    qdq_models = {}  # model name -> path
    refs_orig = {}   # (name, batch) -> ORT output of the original
    refs_eval = {}   # (name, batch) -> mcc reference evaluator output of the built model
    notes = []
    failures = []

    def build(name, model, tool=mcc, side=""):
        recipe = args.recipe_for.get(name, args.recipe)
        out = os.path.join(work, side, name)
        t = time.perf_counter()
        # Only `build RECIPE MODEL -o DIR`: the --against binary may predate any newer flag.
        run_tool([tool, "build", recipe, model, "-o", out], f"{name}: {side or 'mcc'} build {recipe_label(recipe)}")
        seconds = time.perf_counter() - t
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        native = report.get("native") or {}
        if not native.get("executable"):
            raise Fail(f"{name}: {side or 'mcc'} build wrote no executable ({native.get('no_executable')})")
        info = {"dir": out, "exe": os.path.join(out, native["executable"]), "recipe": recipe_label(recipe),
                "exact": merge_only(report), "seconds": seconds, "onnx": os.path.join(out, "model.onnx")}
        acc = (report.get("model_totals") or {}).get("accuracy") or {}
        if side:
            if not info["exact"]:
                notes.append(f"{name} with {info['recipe']}, {side} mcc: not merge-only, so its output is compared "
                             f"with the new executable's without a tolerance.")
        elif not info["exact"]:
            extra = ""
            if acc.get("before") is not None and acc.get("after") is not None:
                extra = f"; accuracy {100 * acc['before']:.1f}% → {100 * acc['after']:.1f}% (mcc build report)"
            nz = (report.get("model_totals") or {}).get("nonzero_params") or {}
            notes.append(f"{name} with {info['recipe']}: not merge-only, so the executable is checked against "
                         f"mcc's reference evaluator of the same compressed model; nonzero weights "
                         f"{nz.get('before')} → {nz.get('after')}{extra}.")
        return info

    def ref_orig(name, model, x, batch):
        if (name, batch) not in refs_orig:
            s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            refs_orig[(name, batch)] = s.run(None, {s.get_inputs()[0].name: x})[0]
        return refs_orig[(name, batch)]

    def ref_eval(name, npy, batch):
        if (name, batch) not in refs_eval:
            path = os.path.join(work, f"{name}_b{batch}_eval.npy")
            # The compressed model itself when the build wrote it (stored weights, integer
            # layers: model.onnx's QDQ form requantizes in float), else model.onnx.
            full = os.path.join(os.path.dirname(builds[name]["onnx"]), "model.full.mcir")
            model = full if os.path.exists(full) else builds[name]["onnx"]
            run_tool([mcc, "run", model, "-i", npy, "-o", path, "-q"],
                     f"{name}: mcc run (reference evaluator)")
            refs_eval[(name, batch)] = np.load(path)
        return refs_eval[(name, batch)]

    def stored_ref(name, batch):
        if name.startswith("light_"):
            path = os.path.join(light_dir, f"{name}_random_out.npy")
        else:
            path = os.path.join(CORPUS, "ref", f"{name}_test_out.npy")
        return np.load(path)[:batch] if os.path.exists(path) else None

    def qdq(name, model):
        if name not in qdq_models:
            if name in TRAINED:
                calib = np.load(os.path.join(CORPUS, TRAINED[name][1])).astype(np.float32)
            else:
                shape = np.load(os.path.join(CORPUS, "light", "light_input_seed0.npy")).shape
                calib = np.concatenate([np.random.default_rng(seed).random(shape, dtype=np.float32)
                                        for seed in range(1, 5)])
            print(f"  (quantizing {name} with onnxruntime.quantization, {len(calib)} calibration samples)",
                  flush=True)
            path = make_qdq(np, ort, model, os.path.join(work, f"{name}_{args.ort}.onnx"), calib, work,
                            dynamic=args.ort == "dynamic")
            qdq_models[name] = path
            if name in TRAINED:
                tx = np.load(os.path.join(CORPUS, TRAINED[name][0])).astype(np.float32)
                ty = np.load(os.path.join(CORPUS, "data", "mnist_test_y.npy"))
                s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                q = s.run(None, {s.get_inputs()[0].name: tx})[0]
                ref = stored_ref(name, len(tx))
                if ref is not None:
                    agree = float(np.mean(top1(np, q) == top1(np, ref)))
                    rel, bad = compare(np, q, ref)
                    notes.append(f"{name} {'dynamic' if args.ort == 'dynamic' else 'QDQ'} int8 (ORT): on the {len(tx)} test samples top-1 agrees with the "
                                 f"original on {100 * agree:.1f}%, accuracy {100 * np.mean(top1(np, ref) == ty):.1f}%"
                                 f" → {100 * np.mean(top1(np, q) == ty):.1f}%, rel err {rel:.1e}"
                                 + (f" ({bad})" if bad else "") + ".")
                    if bad:
                        failures.append(f"{name}: the QDQ model's test-set output: {bad}")
                    elif agree < QDQ_AGREEMENT:
                        failures.append(f"{name}: the QDQ model agrees with the original's top-1 on only "
                                        f"{100 * agree:.1f}% of the test samples (< {100 * QDQ_AGREEMENT:.0f}%)")
        return qdq_models[name]

    def against_cell(name, batch, threads, npy):
        """--against: one cell, the old and the new executable timed back to back; its table row."""
        cell = f"{name} batch {batch} threads {threads}"
        new, old = builds[name], old_builds[name]
        # Untimed probe (also the first warm-up of both sides): picks N for every round.
        probe = max(mcc_median(old["exe"], npy, threads, 10), mcc_median(new["exe"], npy, threads, 10))
        runs = 10 * args.runs if probe < 2.0 else args.runs
        old_ms, new_ms, ratios = alternate(
            args.rounds,
            lambda: mcc_median(old["exe"], npy, threads, runs),
            lambda: mcc_median(new["exe"], npy, threads, runs),
            f"{cell}: the new executable",
        )

        # ---- checks
        problems = []
        got = mcc_output(np, new["exe"], npy, threads, os.path.join(work, f"{name}_b{batch}_t{threads}_out.npy"))
        if new["exact"]:
            ref = stored_ref(name, batch)
            if ref is None:
                rel, bad = compare(np, got, got)
                new_cell = "finite (no stored ref)"
            else:
                rel, bad = compare(np, got, ref)
                new_cell = f"{fmt_err(rel)} vs corpus ref"
        else:
            rel, bad = compare(np, got, ref_eval(name, npy, batch))
            new_cell = f"{fmt_err(rel)} vs mcc eval"
        if bad or rel > TOL:
            problems.append(f"new mcc output {bad or f'rel err {rel:.2e} > {TOL:g}'}")
            new_cell += " FAIL"
        old_got = mcc_output(np, old["exe"], npy, threads,
                             os.path.join(work, f"{name}_b{batch}_t{threads}_old_out.npy"))
        rel, bad = compare(np, old_got, got)
        held = new["exact"] and old["exact"]
        old_cell = fmt_err(rel) + ("" if held else " (not both merge-only)")
        if bad or (held and rel > TOL):
            problems.append(f"old mcc output vs new {bad or f'rel err {rel:.2e} > {TOL:g}'}")
            old_cell += " FAIL"
        for p in problems:
            failures.append(f"{cell}: {p}")
        against_ratios.append((cell, statistics.median(ratios)))
        return (f"| {name} | {batch} | {threads} | {new['recipe']} | {fmt_ms(statistics.median(old_ms))} | "
                f"{fmt_ms(statistics.median(new_ms))} | {statistics.median(ratios):.2f} "
                f"[{min(ratios):.2f}..{max(ratios):.2f}] | {new_cell} | {old_cell} |")

    # Everything is built (and quantized) before anything is timed.
    ort_models = {}
    for name, model, _, _ in jobs:
        if name not in builds:
            builds[name] = build(name, model)
            if args.against:
                old_builds[name] = build(name, model, args.against, "old")
            else:
                ort_models[name] = {"original": model, "exported": builds[name]["onnx"]}.get(args.ort) \
                    or qdq(name, model)

    against_ratios = []  # --against: (cell, median ratio old/new)
    if args.against:
        say("| model | batch | threads | recipe | old ms | new ms | ratio old/new [min..max] "
            "| new output rel err | old output vs new rel err |")
        say("|---|---|---|---|---|---|---|---|---|")
    else:
        say("| model | batch | threads | mcc recipe | ORT model | ORT ms | mcc ms | ratio ORT/mcc [min..max] "
            "| mcc output rel err | ORT output rel err |")
        say("|---|---|---|---|---|---|---|---|---|---|")
    for name, model, x, batch in jobs:
        b = builds[name]
        ort_model = ort_models.get(name)
        npy = os.path.join(work, f"{name}_b{batch}.npy")
        np.save(npy, x)
        for threads in (1, 2):
            if args.against:
                say(against_cell(name, batch, threads, npy))
                continue
            cell = f"{name} batch {batch} threads {threads}"
            bound = OrtBound(ort, np, ort_model, x, threads)
            # Untimed probe (also the first warm-up of both sides): picks N for every round.
            probe = max(bound.median_ms(max(5, args.runs // 10)), mcc_median(b["exe"], npy, threads, 10))
            runs = 10 * args.runs if probe < 2.0 else args.runs
            o_ms, m_ms, ratios = alternate(
                args.rounds,
                lambda: bound.median_ms(runs),
                lambda: mcc_median(b["exe"], npy, threads, runs),
                f"{cell}: the executable",
                # Let ORT's spinning pool threads go idle before the other side.
                pause=0.02,
            )

            # ---- checks
            problems = []
            got = mcc_output(np, b["exe"], npy, threads, os.path.join(work, f"{name}_b{batch}_t{threads}_out.npy"))
            if b["exact"]:
                rel, bad = compare(np, got, ref_orig(name, model, x, batch))
                mcc_cell = f"{fmt_err(rel)} vs ORT original"
            else:
                rel, bad = compare(np, got, ref_eval(name, npy, batch))
                mcc_cell = f"{fmt_err(rel)} vs mcc eval"
            if bad or rel > TOL:
                problems.append(f"mcc output {bad or f'rel err {rel:.2e} > {TOL:g}'}")
                mcc_cell += " FAIL"
            ort_got = bound.output()
            if args.ort == "original":
                ref = stored_ref(name, batch)
                if ref is None:
                    rel, bad = compare(np, ort_got, ort_got)
                    ort_cell = "finite (no stored ref)"
                else:
                    rel, bad = compare(np, ort_got, ref)
                    ort_cell = f"{fmt_err(rel)} vs corpus ref"
                fails = bool(bad) or rel > TOL
            elif args.ort == "exported":
                rel, bad = compare(np, ort_got, ref_eval(name, npy, batch))
                ort_cell = f"{fmt_err(rel)} vs mcc eval"
                fails = bool(bad) or rel > TOL
            else:
                ref = ref_orig(name, model, x, batch)
                rel, bad = compare(np, ort_got, ref)
                agree = top1_agreement(np, ort_got, ref) if not bad else "n/a"
                ort_cell = f"{fmt_err(rel)} vs original, top-1 {agree}"
                fails = bool(bad)
            if fails:
                problems.append(f"ORT output {bad or f'rel err {rel:.2e} > {TOL:g}'}")
                ort_cell += " FAIL"
            for p in problems:
                failures.append(f"{cell}: {p}")

            say(f"| {name} | {batch} | {threads} | {b['recipe']} | {args.ort} | {fmt_ms(statistics.median(o_ms))} | "
                f"{fmt_ms(statistics.median(m_ms))} | {statistics.median(ratios):.2f} "
                f"[{min(ratios):.2f}..{max(ratios):.2f}] | {mcc_cell} | {ort_cell} |")
    say()
    if args.against:
        say(f"Columns: old ms and new ms are the median over rounds of each side's per-round median; rel err = "
            f"max|Δ|/max|ref| of the first output on the cell's input, must be ≤ {TOL:g} (old vs new: only when "
            f"both builds are merge-only); 'mcc eval' = the new `mcc run` (reference evaluator) on the new build's "
            f"model.onnx, 'corpus ref' = the stored ORT outputs in corpus/ (light models: tests/light_random.py's).")
    else:
        say(f"Columns: ORT ms and mcc ms are the median over rounds of each side's per-round median; rel err = "
            f"max|Δ|/max|ref| of the first output on the cell's input, must be ≤ {TOL:g} except for the QDQ "
            f"model (reported only); 'ORT original' = ORT on the original model in this run, 'mcc eval' = `mcc "
            f"run` (reference evaluator) on the build's model.onnx, 'corpus ref' = the stored ORT outputs in "
            f"corpus/.")
    if any(name.startswith("light_") for name, *_ in jobs):
        notes.append("light models: the seeded random-weight versions of the corpus's light models "
                     "(tests/light_random.py, cached in target/light-random), whose outputs are informative; "
                     "their references are ONNX Runtime's outputs made by that script.")
    for note in notes:
        say(f"- {note}")
    if notes:
        say()
    sides = (("new ", builds), ("old ", old_builds)) if args.against else (("", builds),)
    for side, built in sides:
        if "light_resnet50" in built:
            b = built["light_resnet50"]
            say(f"`{side}mcc build {b['recipe']}` of light_resnet50: {b['seconds']:.1f} s (includes import, the "
                f"recipe's stages, report, code generation, linking).")
    for side, built in sides:
        if "lenet5" in built:
            first = os.path.join(work, "one.npy")
            np.save(first, np.load(os.path.join(CORPUS, "data", "mnist_test_x.npy")).astype(np.float32)[:1])
            starts = []
            for _ in range(20):
                t = time.perf_counter()
                run_tool([built["lenet5"]["exe"], first], "lenet5 start-up")
                starts.append((time.perf_counter() - t) * 1e3)
            say(f"lenet5 executable ({side + 'mcc, ' if side else ''}{built['lenet5']['recipe']}), process start "
                f"to first result (1 sample, median of 20): {statistics.median(starts):.1f} ms.")
    if failures:
        say()
        say(f"FAILED ({len(failures)}):")
        for f in failures:
            say(f"- {f}")
    if args.against:
        lo, hi = SAME_SPEED
        outside = [f"{cell} {ratio:.3f}" for cell, ratio in against_ratios if not lo <= ratio <= hi]
        say()
        if outside:
            say(f"Within 3%: NO, the median ratio old/new of {len(outside)} of {len(against_ratios)} cells is "
                f"outside {lo}..{hi}: {'; '.join(outside)}.")
        else:
            say(f"Within 3%: yes, every cell's median ratio old/new ({len(against_ratios)} cells) is in {lo}..{hi}.")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return failures


if __name__ == "__main__":
    main()

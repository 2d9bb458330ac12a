"""Seeded random-weight versions of the nine light models, with ONNX Runtime references.

Usage: light_random.py OUT_DIR [NAME ...]   (NAME as in `mcc_tests::LIGHT`; default: all nine)

The light models in `corpus/light/` compute every weight as `ConstantOfShape(0.02)`, so every
channel of a layer is equal and a permuted channel, a wrong group or a wrong concat order
cannot show in their outputs. For each model this script replaces every such weight, and
every float initializer some node reads (biases, norm statistics), by an initializer of
seeded random values chosen by the tensor's role:

* Conv and Gemm weights: He-scaled normal, std = sqrt(2 / fan_in), fan_in = C_in/group·kh·kw
  for a Conv, the reduced dimension (after any Reshape of the weight, honouring transB) for
  a Gemm; their biases: normal, std 0.05.
* BatchNormalization: scale U(0.5, 1.5), bias N(0, 0.1); mean and var calibrated: the
  per-channel statistics of the norm's input on the seeded image, slightly perturbed (see
  `calibrate`; with mean N(0, 0.1) and var U(0.5, 1.5) the norms do not normalize, and the
  logits of ResNet-50 and ShuffleNet reach 1e4-1e5).
* The per-channel Mul / Add constants (DenseNet and Inception-v2 spell part of their norms
  as Mul and Add of Unsqueeze'd vectors): U(0.5, 1.5) and N(0, 0.1).

The generator of each tensor is `numpy.random.default_rng` seeded from the SHA-256 of the
model and tensor names, so the files are the same bytes on every run. The rest of the graph
is unchanged (IR 3, every initializer also a graph input, as in the originals); the
ConstantOfShape nodes and their `*__SHAPE` initializers go. Written into OUT_DIR:

* `light_<name>_random.onnx`: the model (one file: the largest, VGG-19, is 575 MB; models
  whose protobuf would pass 2 GB would keep their weights in `light_<name>_random.onnx.data`);
* `light_<name>_random_out.npy`: ONNX Runtime's output on `corpus/light/light_input_seed0.npy`;
* `light_<name>_random_presoftmax.npy`: where the model ends in Softmax, the Softmax's input
  (from a copy of the model that also outputs it);
* `light_<name>_random.stamp`: the SHA-256 of this script, written last. A model whose stamp
  matches and whose files exist is skipped, so the tests regenerate only after this script
  changes.

Every file is written under a temporary name and renamed into place, so an interrupted or
concurrent run never leaves half a file. The logits (the pre-softmax tensor, or DenseNet's
output) must have a standard deviation within [1e-2, 1e3] and be finite: the weights are
scaled so that activations neither explode nor vanish through the depth, and this is checked.
"""

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
LIGHT = ROOT / "corpus" / "light"
# Every light model of the corpus (light_<name>.onnx).
NAMES = sorted(p.stem[len("light_"):] for p in LIGHT.glob("light_*.onnx"))
SCRIPT_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
# A protobuf may not pass 2 GiB; keep a margin for the graph itself.
MAX_INLINE_BYTES = 1_900_000_000
LOGIT_STD = (1e-2, 1e3)


def rng_for(model, tensor):
    """The generator of one tensor: seeded by the model's and the tensor's names only."""
    digest = hashlib.sha256(f"{model}\0{tensor}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def reshaped(shape, target):
    """ONNX Reshape's output shape (0 copies a dimension, -1 takes the rest)."""
    out = [shape[i] if d == 0 else int(d) for i, d in enumerate(target)]
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = int(np.prod(shape)) // known
    return out


def roles(graph, weights, consts):
    """Maps each weight name to (op type, input index, node, effective shape): the node that
    finally reads it, following Unsqueeze and Reshape of the weight itself."""
    readers = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, k))
    found = {}
    for name, shape in weights.items():
        uses, todo = [], [(name, list(shape))]
        while todo:
            value, shp = todo.pop()
            for node, k in readers.get(value, []):
                if node.op_type == "Unsqueeze" and k == 0:
                    s = list(shp)
                    for ax in sorted(attr(node, "axes", [])):
                        s.insert(ax, 1)
                    todo.append((node.output[0], s))
                elif node.op_type == "Reshape" and k == 0:
                    todo.append((node.output[0], reshaped(shp, consts[node.input[1]])))
                else:
                    uses.append((node.op_type, k, node, shp))
        if not uses:
            continue
        kinds = {(op, k) for op, k, _, _ in uses}
        if len(kinds) != 1:
            raise SystemExit(f"{name}: read in several roles: {sorted(kinds)}")
        found[name] = uses[0]
    return found


def attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def values(model, name, role, shape):
    """Random values for one weight, by role."""
    op, k, node, eff = role
    rng = rng_for(model, name)
    f32 = np.float32
    if op == "Conv" and k == 1:
        fan_in = int(np.prod(shape[1:]))  # C_in/group · kh · kw
        return rng.standard_normal(shape, dtype=f32) * f32(np.sqrt(2.0 / fan_in))
    if op == "Gemm" and k == 1:
        if len(eff) != 2:
            raise SystemExit(f"{name}: Gemm weight of shape {eff}")
        fan_in = eff[1] if attr(node, "transB", 0) else eff[0]
        return rng.standard_normal(shape, dtype=f32) * f32(np.sqrt(2.0 / fan_in))
    if op in ("Conv", "Gemm") and k == 2:
        return rng.normal(0.0, 0.05, shape).astype(f32)
    if op == "BatchNormalization" and k in (1, 4):
        return rng.uniform(0.5, 1.5, shape).astype(f32)
    if op == "BatchNormalization" and k in (2, 3):
        return rng.normal(0.0, 0.1, shape).astype(f32)
    if op == "Mul":
        return rng.uniform(0.5, 1.5, shape).astype(f32)
    if op == "Add":
        return rng.normal(0.0, 0.1, shape).astype(f32)
    raise SystemExit(f"{name}: no rule for input {k} of {op}")


def randomized(name):
    """The model with random weights, and the name of the Softmax's input (or None)."""
    model = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    # The weights: ConstantOfShape outputs (float), and float initializers.
    weights, cos_nodes, shape_inputs = {}, [], set()
    for node in g.node:
        if node.op_type == "ConstantOfShape":
            value = attr(node, "value", None)
            if value is None or value.data_type != TensorProto.FLOAT:
                continue
            weights[node.output[0]] = [int(d) for d in consts[node.input[0]]]
            cos_nodes.append(node)
            shape_inputs.add(node.input[0])
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            weights[t.name] = list(t.dims)
    found = roles(g, weights, consts)
    missing = [w for w in weights if w not in found and any(w == n.output[0] for n in cos_nodes)]
    if missing:
        raise SystemExit(f"light_{name}: generated weights nobody reads: {missing}")
    new = {w: values(name, w, found[w], weights[w]) for w in weights if w in found}
    # Every ConstantOfShape's shape initializer feeds only it.
    readers = {}
    for node in g.node:
        for i in node.input:
            readers[i] = readers.get(i, 0) + 1
    for s in shape_inputs:
        if readers[s] != 1:
            raise SystemExit(f"light_{name}: {s} has other readers")
    # Rebuild: the nodes minus the ConstantOfShapes, the initializers with the new values
    # (a generated weight takes the place of its shape initializer), the inputs to match.
    produced_by = {n.input[0]: n.output[0] for n in cos_nodes}
    out_inits = []
    for t in g.initializer:
        if t.name in produced_by:
            w = produced_by[t.name]
            out_inits.append(numpy_helper.from_array(new[w], w))
        elif t.name in new:
            out_inits.append(numpy_helper.from_array(new[t.name], t.name))
        else:
            out_inits.append(t)
    out_inputs = []
    for i in g.input:
        if i.name in produced_by:
            w = produced_by[i.name]
            out_inputs.append(helper.make_tensor_value_info(w, TensorProto.FLOAT, weights[w]))
        else:
            out_inputs.append(i)
    keep = [n for n in g.node if n.op_type != "ConstantOfShape" or n.input[0] not in produced_by]
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(out_inits)
    del g.input[:]
    g.input.extend(out_inputs)
    assert {t.name for t in g.initializer} >= set(new), "a weight was lost"
    calibrate(name, model)
    softmax = [n for n in g.node if n.op_type == "Softmax"]
    pre = None
    if softmax:
        if len(softmax) != 1 or softmax[0].output[0] != g.output[0].name:
            raise SystemExit(f"light_{name}: expected one Softmax making the output")
        pre = softmax[0].input[0]
    return model, pre


def round_sig(a, digits=4):
    """`a` rounded to `digits` significant digits: calibrated statistics come from ONNX
    Runtime, whose last bits may differ between CPUs; rounded, the model's bytes do not."""
    a = a.astype(np.float64)
    mag = np.abs(a)
    exp = np.floor(np.log10(np.where(mag > 0, mag, 1.0)))
    unit = 10.0 ** (exp - digits + 1)
    return (np.round(a / unit) * unit).astype(np.float32)


def calibrate(name, model):
    """Sets every BatchNormalization's mean and variance to (nearly) the statistics of its
    input on the seeded image, as a trained network's running statistics would be.

    With random statistics a norm does not normalize, and the residual sums of ResNet-50 and
    ShuffleNet then grow the activations by about 2x a block (logits near 1e4-1e5). One ONNX
    Runtime run of a copy in which every norm is an InstanceNormalization (for batch 1,
    exactly a norm by the input's own per-channel statistics) gives every norm's input as the
    calibrated network computes it. The statistics are then perturbed (mean by N(0, 0.1)
    standard deviations, variance by U(0.8, 1.25)), floored at 5% of the layer's mean
    variance so that near-constant channels are not amplified, and rounded."""
    g = model.graph
    norms = [n for n in g.node if n.op_type == "BatchNormalization"]
    if not norms:
        return
    stats = [n.input[3] for n in norms] + [n.input[4] for n in norms]
    if len(set(stats)) != len(stats):
        raise SystemExit(f"light_{name}: norms share statistics tensors")
    calib = onnx.ModelProto()
    calib.CopyFrom(model)
    cg = calib.graph
    for node in cg.node:
        if node.op_type == "BatchNormalization":
            eps = attr(node, "epsilon", 1e-5)
            x, scale, bias = node.input[0], node.input[1], node.input[2]
            del node.input[:]
            node.input.extend([x, scale, bias])
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("epsilon", eps))
            node.op_type = "InstanceNormalization"
    del cg.output[:]
    for n in norms:
        cg.output.append(helper.make_tensor_value_info(n.input[0], TensorProto.FLOAT, None))
    sess = session(calib.SerializeToString())
    x = np.load(LIGHT / "light_input_seed0.npy")
    seen = sess.run(None, {sess.get_inputs()[0].name: x})
    del sess, calib
    inits = {t.name: t for t in g.initializer}
    for n, v in zip(norms, seen):
        v = v.astype(np.float64)
        axes = tuple(i for i in range(v.ndim) if i != 1)
        mu, var = v.mean(axis=axes), v.var(axis=axes)
        rng = rng_for(name, n.input[3] + "#calibrated")
        mean = mu + 0.1 * np.sqrt(var) * rng.standard_normal(mu.shape)
        var = (var + 0.05 * var.mean()) * rng.uniform(0.8, 1.25, var.shape)
        for tensor, value in ((n.input[3], mean), (n.input[4], var)):
            inits[tensor].CopyFrom(numpy_helper.from_array(round_sig(value), tensor))


def write_atomic(path, write):
    """Calls write(temporary path), then renames the result to `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_npy(path, array):
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    write_atomic(path, write)


def session(source):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # One thread: the same summation order, so the same reference bytes, on every machine.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def make(name, out_dir):
    stem = f"light_{name}_random"
    model_path = out_dir / f"{stem}.onnx"
    out_path = out_dir / f"{stem}_out.npy"
    pre_path = out_dir / f"{stem}_presoftmax.npy"
    stamp = out_dir / f"{stem}.stamp"
    original = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    has_softmax = any(n.op_type == "Softmax" for n in original.graph.node)
    del original
    wanted = [model_path, out_path] + ([pre_path] if has_softmax else [])
    if stamp.exists() and stamp.read_text().strip() == SCRIPT_HASH and all(p.exists() for p in wanted):
        print(f"{stem}: up to date")
        return
    if stamp.exists():
        stamp.unlink()
    model, pre = randomized(name)
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    external = weight_bytes > MAX_INLINE_BYTES
    data_name = f"{stem}.onnx.data"
    if external:
        # The weights go to one data file next to the model; write it first, so the model
        # never points at a missing file.
        onnx.external_data_helper.convert_model_to_external_data(
            model, all_tensors_to_one_file=True, location=data_name, size_threshold=1024
        )
        tmp_dir = out_dir / f".{stem}.tmp-{os.getpid()}"
        tmp_dir.mkdir(exist_ok=True)
        try:
            onnx.save_model(model, str(tmp_dir / f"{stem}.onnx"))
            os.replace(tmp_dir / data_name, out_dir / data_name)
            os.replace(tmp_dir / f"{stem}.onnx", model_path)
        finally:
            for f in tmp_dir.iterdir():
                f.unlink()
            tmp_dir.rmdir()
        model = onnx.load(str(model_path), load_external_data=False)
    else:
        blob = model.SerializeToString()
        write_atomic(model_path, lambda tmp: tmp.write_bytes(blob))
        del blob
    x = np.load(LIGHT / "light_input_seed0.npy")
    sess = session(str(model_path))
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    del sess
    logits = out
    if pre:
        # A copy that also outputs the Softmax's input.
        model.graph.output.append(helper.make_tensor_value_info(pre, TensorProto.FLOAT, None))
        if external:
            tmp = out_dir / f".{stem}.pre.tmp-{os.getpid()}.onnx"
            try:
                onnx.save_model(model, str(tmp))
                sess = session(str(tmp))
            finally:
                tmp.unlink()
        else:
            sess = session(model.SerializeToString())
        both = sess.run(None, {sess.get_inputs()[0].name: x})
        del sess
        logits = both[1]
        if not np.array_equal(both[0], out):
            diff = float(np.max(np.abs(both[0] - out)))
            print(f"{stem}: note: the copy's output differs from the model's by {diff:.2e}")
    std = float(np.std(logits))
    lo, hi = LOGIT_STD
    print(
        f"{stem}: logits {list(logits.shape)} std {std:.4g}, range [{float(np.min(logits)):.4g}, "
        f"{float(np.max(logits)):.4g}], output top-1 {int(np.argmax(out))}"
    )
    if not (np.all(np.isfinite(out)) and np.all(np.isfinite(logits))):
        raise SystemExit(f"{stem}: ONNX Runtime's outputs are not all finite")
    if not lo <= std <= hi:
        raise SystemExit(f"{stem}: logits std {std:.4g} outside [{lo:g}, {hi:g}]: rescale the weights")
    save_npy(out_path, out)
    if pre:
        save_npy(pre_path, logits)
    write_atomic(stamp, lambda tmp: tmp.write_text(SCRIPT_HASH + "\n"))


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help") or sys.argv[1].startswith("-"):
        print(__doc__)
        raise SystemExit(0 if len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help") else 2)
    out_dir = Path(sys.argv[1])
    names = sys.argv[2:] or NAMES
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise SystemExit(f"unknown light model(s) {unknown}; known: {NAMES}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        make(name, out_dir)


if __name__ == "__main__":
    main()

"""Runs an ONNX model in ONNX Runtime: ort_run.py MODEL OUT.npy IN0.npy [IN1.npy ...].

Writes the first output to OUT.npy. Used by mcc's tests to check that models mcc writes
are valid ONNX (the ONNX checker, with shape inference, must accept them) and run in ONNX
Runtime with the same results.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort

model, out, *inputs = sys.argv[1:]
# The checker first: ONNX Runtime accepts some files the standard does not (and the other way
# round), and mcc promises valid ONNX, not just ONNX that one runtime loads.
onnx.checker.check_model(model, full_check=True)
opts = ort.SessionOptions()
opts.log_severity_level = 3
# ORT fuses DequantizeLinear (int4) → MatMul into MatMulNBits, which by default (accuracy
# level 4) rounds the activations to int8 too: 1–2% off the model the file describes (on
# vit_mini, the same top-1 accuracy). Level 0 computes in f32, as the file says.
opts.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")


def saturating_int8_kernels():
    """Whether this is an x86-64 CPU without VNNI, where ORT's fused u8 × s8 kernels add
    products in pairs into 16 bits (`vpmaddubsw`), which saturate: 255 · 127 · 2 > 32767. ORT
    documents it (its quantization guide: "reduce_range" or u8 weights on such CPUs); on one
    (2026-12-07, a 2-vCPU AMD EPYC with AVX2 only) lenet300's int8 export came out 19 output
    steps off the file's arithmetic, inception_mini's 0.4 points less accurate."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx2" in flags and "avx512_vnni" not in flags and "avx_vnni" not in flags


quantized = any(
    n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear")
    for n in onnx.load(model, load_external_data=False).graph.node
)
if quantized and saturating_int8_kernels():
    # Basic optimizations leave the DequantizeLinear → op → QuantizeLinear groups as they
    # are: ORT computes what the file says, in f32, instead of fusing them into the
    # saturating integer kernels.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    print(
        "ort_run.py: this CPU has no VNNI; ORT's fused int8 kernels saturate on it, so the "
        "QDQ model runs unfused (ORT_ENABLE_BASIC)",
        file=sys.stderr,
    )
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
feeds = {i.name: np.load(p) for i, p in zip(sess.get_inputs(), inputs)}
np.save(out, sess.run(None, feeds)[0])

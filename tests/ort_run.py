"""Runs an ONNX model in ONNX Runtime: ort_run.py MODEL OUT.npy IN0.npy [IN1.npy ...].

Writes the first output to OUT.npy. Used by mcc's tests to check that models mcc writes
load and run in ONNX Runtime with the same results.
"""
import sys

import numpy as np
import onnxruntime as ort

model, out, *inputs = sys.argv[1:]
opts = ort.SessionOptions()
opts.log_severity_level = 3
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
feeds = {i.name: np.load(p) for i, p in zip(sess.get_inputs(), inputs)}
np.save(out, sess.run(None, feeds)[0])

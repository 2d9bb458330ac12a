"""Writes the seed inputs of the npy, executable and import_external fuzz targets (numpy and
onnx from the test venv). recipe_deep's seeds are random bytes: any bytes make a recipe."""
import io
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(0)


def npy(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


arrays = {
    "f32": rng.standard_normal((2, 1, 4, 4)).astype(np.float32),
    "i64": np.arange(5, dtype=np.int64),
    "f64": rng.standard_normal((3, 2)),
    "be": rng.standard_normal((2, 3)).astype(">f4"),
    "fortran": np.asfortranarray(rng.standard_normal((2, 3, 2)).astype(np.float32)),
    "u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
    "bool": np.array([True, False]),
    "scalar": np.float32(3.0),
    "empty": np.zeros((0, 1, 4, 4), np.float32),
    "i32": np.arange(4, dtype=np.int32),
    "f16": np.ones(3, np.float16),
}
for k, a in arrays.items():
    put(f"{out}/npy/{k}.npy", npy(a))

# executable: a command line, then a.npy's bytes, NPYSPLIT, b.npy's bytes.
x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
z = rng.standard_normal((2, 10)).astype(np.float32)
lines = ["a.npy b.npy", "a.npy b.npy -o y.npy", "a.npy b.npy -o - --threads 2",
         "--bench 1 a.npy b.npy", "--help", "a.npy", "a.npy b.npy --threads 0 -o y.npy",
         "b.npy a.npy"]
for i, line in enumerate(lines):
    put(f"{out}/executable/s{i}", line.encode() + b"\n" + npy(x) + b"NPYSPLIT" + npy(z))
put(f"{out}/executable/s_bad", b"a.npy b.npy\n" + npy(x[:1]) + b"NPYSPLIT" + npy(z))
put(f"{out}/executable/s_f64",
    b"a.npy b.npy\n" + npy(x.astype(np.float64)) + b"NPYSPLIT" + npy(z))


# import_external: u32 model length, the model, then w.bin (every initializer in it).
def external(name, nodes, inits, inputs, outputs):
    g = helper.make_graph(nodes, name, inputs, outputs)
    blob = b""
    for t in inits:
        raw = numpy_helper.to_array(t).tobytes()
        e = TensorProto(name=t.name, data_type=t.data_type, dims=t.dims,
                        data_location=TensorProto.EXTERNAL)
        for k, v in (("location", "w.bin"), ("offset", str(len(blob))), ("length", str(len(raw)))):
            kv = e.external_data.add()
            kv.key, kv.value = k, v
        blob += raw
        g.initializer.append(e)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    put(f"{out}/import_external/{name}", struct.pack("<I", len(m)) + m + blob)


f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
vi = helper.make_tensor_value_info
external("gemm", [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
         [numpy_helper.from_array(f32(4, 8), "w"), numpy_helper.from_array(f32(4), "b")],
         [vi("x", TensorProto.FLOAT, ["N", 8])], [vi("y", TensorProto.FLOAT, ["N", 4])])
external("conv", [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], kernel_shape=[3, 3]),
                  helper.make_node("Relu", ["c"], ["r"]),
                  helper.make_node("Reshape", ["r", "sh"], ["y"])],
         [numpy_helper.from_array(f32(3, 1, 3, 3), "cw"), numpy_helper.from_array(f32(3), "cb"),
          numpy_helper.from_array(np.array([0, -1], np.int64), "sh")],
         [vi("x", TensorProto.FLOAT, ["N", 1, 5, 5])], [vi("y", TensorProto.FLOAT, None)])
sys.exit(0)

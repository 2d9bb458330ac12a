# Works on any model: prune half of the weights of every Conv, Gemm and MatMul layer.
# No data, so the report has no accuracy; `mcc build recipes/any.mcr MODEL` shows the plan at work.
use std.sparsify(amount: 50%)

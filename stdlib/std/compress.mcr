# std.compress — multi-stage compression pipelines from the survey.

# Deep Compression (Han et al.): prune, then cluster the surviving weights with k-means,
# then Huffman-code the cluster indices and the gaps between kept weights. `sparsity` is a
# ratio, or `auto` to choose it per layer under the recipe's budget; `by: obs` and
# `refit: on` use the calibration data to choose and repair (the post-training stand-in for
# the paper's retraining).
recipe deep_compression(sparsity = 90%, bits: bits = 5, by: word = magnitude, refit: word = off) {
  stage prune {
    prune unstructured on Conv? | Gemm? | MatMul? { amount: sparsity, by: by, refit: refit }
  }
  stage cluster {
    quantize kmeans on Conv? | Gemm? | MatMul? { bits: bits, refit: refit }
  }
  stage encode {
    encode huffman on Conv? | Gemm? | MatMul?
  }
}

# int8 deployment: the exact merges first (norms folded, activations fused, so they run
# inside the integer layers), then per-channel static quantization of weights and
# activations calibrated on the recipe's data. `calibration` picks how activation ranges are
# chosen (minmax, percentile, entropy, mse).
recipe int8(per: word = channel, calibration: word = minmax) {
  use std.merge
  stage quantize {
    quantize int8 on Conv? | Gemm? | MatMul? { mode: static, per: per, calibration: calibration }
  }
}

# Dynamic int8, for linear layers (transformers, MLPs): the exact merges first, then the
# MatMul and Gemm layers with i8 weights and their inputs quantized at run time, each row by
# its own range. Nothing is calibrated, and a sample's result does not depend on its batch.
recipe int8_dynamic(per: word = channel) {
  use std.merge
  stage quantize {
    quantize int8 on Gemm? | MatMul? { mode: dynamic, per: per }
  }
}

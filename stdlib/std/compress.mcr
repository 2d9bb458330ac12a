# std.compress — multi-stage compression pipelines from the survey.

# Deep Compression (Han et al.): prune, then cluster the surviving weights with k-means,
# then Huffman-code the cluster indices.
recipe deep_compression(sparsity: ratio = 90%, bits: bits = 5) {
  stage prune {
    prune unstructured on Conv? | Gemm? | MatMul? { amount: sparsity }
  }
  stage cluster {
    quantize kmeans on Conv? | Gemm? | MatMul? { bits: bits }
  }
  stage encode {
    encode huffman on Conv? | Gemm? | MatMul?
  }
}

# int8 deployment: per-channel static quantization calibrated on the recipe's data.
recipe int8(per: word = channel) {
  stage quantize {
    quantize int8 on Conv? | Gemm? | MatMul? { mode: static, per: per }
  }
}

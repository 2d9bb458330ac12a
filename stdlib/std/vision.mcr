# std.vision — recipes for convolutional vision models.

# Magnitude pruning of every convolution and fully connected layer.
recipe sparsify(amount: ratio = 50%) {
  stage sparsify {
    prune unstructured on Conv? | Gemm? | MatMul? { amount: amount }
  }
}

# Fold every BatchNormalization into the Conv or Gemm before it (exact). Norms that cannot
# be folded are left alone, with the reason in `mcc explain` and the report.
recipe fold_norms {
  stage fold {
    merge batchnorm on BatchNormalization?
  }
}

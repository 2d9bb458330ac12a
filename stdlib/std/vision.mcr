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

# The exact merge stage (DeepRebirth): fold norms (BatchNormalization, and Mul/Add by
# per-channel constants) and average pools into the Conv before them, then fuse activations
# into the layer that feeds them. The model's outputs do not change beyond float rounding.
recipe merge {
  stage merge {
    merge batchnorm on BatchNormalization?
    merge scale on Mul? | Add?
    merge pool on AveragePool?
    merge activations on Relu? | Clip? | LeakyRelu? | Sigmoid? | HardSigmoid? | HardSwish? | Tanh?
  }
}

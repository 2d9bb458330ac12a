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

# The exact merge stage (DeepRebirth): fold Pads, norms (BatchNormalization, and Mul/Add by
# per-channel constants), linear chains and average pools into the Conv/Gemm around them;
# merge parallel Convs that are summed (RepVGG); fuse activations into the layer that feeds
# them; merge parallel Convs of one kernel size that are concatenated; tidy up. The order
# matters: a summed branch merges before its activation fuses, a concatenated one after.
# The model's outputs do not change beyond float rounding.
recipe merge {
  stage merge {
    merge pad on Pad?
    merge batchnorm on BatchNormalization?
    merge scale on Mul? | Add?
    merge linear on Conv? | Gemm? | MatMul?
    merge pool on AveragePool?
    merge branches on Add? | Sum?
    merge activations on Relu? | Clip? | LeakyRelu? | Sigmoid? | HardSigmoid? | HardSwish? | Tanh?
    merge branches on Concat?
    merge cleanup on Identity? | Dropout? | Reshape? | Flatten?
  }
}

# vit_mini (a small vision transformer on MNIST): every linear layer with constant weights —
# the patch embedding, the attention projections, the MLPs and the head — loses 50% of its
# weights by magnitude, the kept ones refit by least squares on the 256 calibration samples.
# The attention's own products (two activations) have no weights and are left alone.

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage sparsify {
  prune unstructured on MatMul | Gemm { amount: 50%, refit: on }
}

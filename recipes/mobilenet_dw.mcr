# mobilenet_dw on MNIST: magnitude pruning of the layers that can take it, under a 1% accuracy budget.
# Depthwise convs (group > 1) hold 9 weights per filter and break when pruned; only pointwise ones are.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage sparsify {
  prune unstructured on Conv[group == 1, params >= 2000] | Gemm { amount: 30% }
}

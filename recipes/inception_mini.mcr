# inception_mini on MNIST: magnitude pruning of the layers that can take it, under a 1% accuracy budget.
# The 1x1 reductions are small; the larger convs and the classifier are pruned.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage sparsify {
  prune unstructured on Conv[params >= 2000] | Gemm { amount: 50% }
}

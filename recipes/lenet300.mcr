# lenet300 on MNIST: magnitude pruning of the layers that can take it, under a 1% accuracy budget.
# Every layer is a Gemm; half of each goes.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x784.npy"
evaluate with "../corpus/data/mnist_test_x784.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage sparsify {
  prune unstructured on Gemm { amount: 50% }
}

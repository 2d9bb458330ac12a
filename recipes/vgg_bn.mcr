# vgg_bn on MNIST: magnitude pruning of the layers that can take it, under a 1% accuracy budget.
# VGG is robust: half of every Conv and Gemm weight goes.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage sparsify {
  prune unstructured on Conv | Gemm { amount: 50% }
}

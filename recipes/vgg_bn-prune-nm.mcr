# vgg_bn on MNIST: 2:4 sparsity (two of every four consecutive weights along each filter's
# reduction) in every Conv and Gemm that can take it, repaired by a least-squares refit on the
# calibration data, layer by layer. The one-channel 3×3 stem (9 weights per filter) cannot be
# split into groups of four and is left alone (reported).
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 0.5%
}

stage sparsify {
  prune nm on Conv | Gemm { n: 2, m: 4, refit: on }
}

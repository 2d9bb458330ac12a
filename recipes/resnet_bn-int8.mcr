# resnet_bn on MNIST in int8: the exact merges, then every Conv and Gemm with i8 weights (one scale
# per output channel) and u8 activations (one scale per tensor, MinMax on the calibration
# data), run by the integer kernels. Results: README ("int8").
# Data: the corpus in the repository.

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 0.5%
}

use std.int8

# lenet300 on MNIST with dynamic int8: i8 weights (one scale per output channel) and each
# input row quantized to u8 at run time from its own range, so nothing is calibrated and a
# sample's result does not depend on the batch it runs in. The three Gemms run on integer
# kernels and stay f32 at their boundaries. Results: README ("int8"). Data: the corpus in the
# repository.

evaluate with "../corpus/data/mnist_test_x784.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 0.5%
}

stage quantize {
  quantize int8 on Gemm { mode: dynamic, per: channel }
}

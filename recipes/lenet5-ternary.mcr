# lenet5 on MNIST with ternary weights {−α₁, 0, +α₂} in every layer: TWN's threshold (0.7 of
# each output channel's mean |w|) sets the zeros, then the two values of each channel are refit
# to the layer's outputs on the 256 calibration samples (the asymmetric scales of Trained
# Ternary Quantization, fitted after training). 1,724,320 stored weight bytes → 93,066
# (18.5×), 98.0% → 98.0%; with TWN's symmetric α and no refit, 96.1%. Data: the corpus in the
# repository.

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage quantize {
  quantize ternary on Conv | Gemm { threshold: 0.7, per: channel, refit: on }
}

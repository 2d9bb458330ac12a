# lenet300 on MNIST with 4-bit integer weights (one scale per output channel, rounded to the
# nearest code): 1,066,440 stored weight bytes → 136,790 (7.8×), 97.2% → 97.1%. Weight-only:
# the layers compute in f32 on the decoded weights. `lenet300-int4-gptq.mcr` rounds with GPTQ
# instead. Data: the corpus in the repository.

calibrate with "../corpus/data/mnist_calib_x784.npy"
evaluate with "../corpus/data/mnist_test_x784.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage quantize {
  quantize int on Gemm { bits: 4, per: channel }
}

# resnet_bn on MNIST with every Conv and Gemm at 3-bit weights (one scale per output channel,
# rounded to nearest): the uniform baseline for `resnet_bn-int-mixed.mcr`, which spends the
# same bytes unevenly. 704,360 stored weight bytes → 77,040, 98.6% → 91.3%.
# (GPTQ rounding at the same width keeps 98.4%: `rounding: gptq`.) Data: the corpus in the
# repository.

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  size <= 77040 B
}

stage quantize {
  quantize int on Conv | Gemm { bits: 3 }
}

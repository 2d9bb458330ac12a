# vgg_bn on MNIST: filter pruning that really shrinks the network. Every Conv keeps the 70% of
# its filters with the largest L1 norms (with the norms after them, and the input channels of
# the layers that read them — fc1's flattened features included); each of those readers is
# then refit by least squares to reproduce its original outputs on the calibration data.
# Multiply-accumulates per sample fall from 22.1 M to 10.8 M. Without the refit, the same
# pruning leaves 12% accuracy.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage shrink {
  prune filters on Conv { keep: 70%, refit: on }
}

# vgg_bn on MNIST: each 3×3 convolution with 16 or more input channels as its Tucker-2
# decomposition (1×1 in, a smaller 3×3 core, 1×1 out) at no more than half its weights: their
# MACs fall from 21.7 M to 9.4 M per sample. The one-channel stem has nothing to factorize.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage factorize {
  factorize tucker on Conv[in_channels >= 16] { size: 50% }
}

# resnet_bn on MNIST: filter pruning of each residual block's inner channels — the outputs
# of its first conv, which only its second conv reads (a dependency group of one producer
# and one reader; the channels that meet in the residual Adds are kept). Blocks 2 to 5 keep
# half (32 → 16, 64 → 32), the two full-resolution blocks, the most sensitive, 75% (16 → 12);
# each block's second conv is refit by least squares on the 256 calibration samples.
# Multiply-accumulates per sample fall from 20.2 M to 12.1 M (−40.3%).
# `resnet_bn-prune-filters.mcr` prunes the residual groups themselves.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1.5%
}

stage shrink {
  prune filters on "/layers/layers.[2345]/conv1/Conv" { keep: 50%, refit: on }
  prune filters on "/layers/layers.[01]/conv1/Conv" { keep: 75%, refit: on }
}

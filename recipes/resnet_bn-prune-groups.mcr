# resnet_bn on MNIST: filter pruning across the residual groups, in whole 16-channel tiles
# (`align: tiles`), so every pruned tensor keeps the channel-blocked kernels (and the 3×3 layers
# their Winograd form). The 14×14 blocks (2, 3) keep half of their inner channels (32 → 16);
# the 7×7 blocks (4, 5) a quarter of theirs (64 → 16) and three quarters of their residual
# group (the two blocks' second convs and the shortcut projection, pruned as one: 64 → 48).
# The 28×28 stage (16 channels, one tile) stays whole. Readers are refit by least squares on the
# calibration data. Multiply-accumulates fall from 20.2 M to 11.9 M per sample (−41.0%).
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"
budget {
  accuracy_drop <= 1.5%
}
stage shrink {
  prune filters on "/layers/layers.[23]/conv1/Conv" { keep: 50%, refit: on, align: tiles }
  prune filters on "/layers/layers.[45]/conv1/Conv" { keep: 25%, refit: on, align: tiles }
  prune filters on "/layers/layers.[45]/conv2/Conv" { keep: 75%, refit: on, align: tiles }
}

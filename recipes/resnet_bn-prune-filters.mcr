# resnet_bn on MNIST: filter pruning across residual groups. Convs whose outputs meet in a
# residual Add keep the same channels (their dependency group is pruned as one, ranked by the
# L1 norms of all its filters); every Conv keeps 75% of its filters, and the layers reading
# them are refit by least squares on the calibration data. Kept counts are rounded to the
# kernels' 16-channel tiles in groups of 32 or more, so the 64-channel groups keep 48 and the
# 32-channel ones all 32; the 16-channel groups keep 12. Multiply-accumulates per sample fall
# from 20.2 M to 14.1 M (−30%).
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1.5%
}

stage shrink {
  prune filters on Conv { keep: 75%, refit: on }
}

# inception_mini on MNIST: filter pruning through the inception blocks' Concats. Each branch's
# last conv is its own channel group, read by every layer of the next block at its offset of
# the joined tensor (and the classifier at its features after the global pool); every Conv
# keeps the 70% of its filters with the largest L1 norms, and each reader is refit by least
# squares to reproduce its original outputs on the calibration data. `align: tiles` rounds
# kept counts to the kernels' 16-channel tiles in every group of 16 channels or more (32 → 16,
# 48 → 32, 24 → 16; a 16-channel group stays whole; 12 → 8 and 8 → 6 as asked), so both
# Concats join whole tiles (48 and 80 channels) and the model keeps the channel-blocked
# kernels. Multiply-accumulates per sample fall from 13.7 M to 5.2 M (−62%).
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1.5%
}

stage shrink {
  prune filters on Conv { keep: 70%, refit: on, align: tiles }
}

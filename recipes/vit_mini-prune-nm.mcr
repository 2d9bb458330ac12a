# vit_mini: 2:4 sparsity on every MatMul with constant weights whose reduction divides by 4
# (the patch embedding's 49 inputs do not: it is left alone, reported; the 10-way head is
# not selected), chosen by OBS with compensating updates, then refit.

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage sparsify {
  prune nm on MatMul { n: 2, m: 4, by: obs, refit: on }
}

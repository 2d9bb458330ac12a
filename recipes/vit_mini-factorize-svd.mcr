# vit_mini: the four MLP layers (64 → 128 → 64 in each of the two blocks) as truncated-SVD
# pairs at half their parameters.

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage factorize {
  factorize svd on "/fc1/MatMul" | "/fc2/MatMul" | "/fc1_1/MatMul" | "/fc2_1/MatMul" { size: 50% }
}

# LeNet-5 on MNIST: fc1 (800 → 500, 93% of the weights) as a low-rank pair holding at most a
# fifth of its weights (800 → 48 → 500, truncated SVD: 15.6%; the rank the size allows, 61,
# is rounded down to the kernels' vector width); fc2, the 10-class classifier, stays.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage factorize {
  factorize svd on "/fc1/Gemm" { size: 20% }
}

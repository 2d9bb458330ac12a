# LeNet-5 on MNIST: fc1 (800 → 500, 93% of the weights) as a low-rank pair holding a tenth of
# its weights (800 → 30 → 500, truncated SVD); fc2, the 10-class classifier, stays.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage factorize {
  factorize svd on "/fc1/Gemm" { size: 10% }
}

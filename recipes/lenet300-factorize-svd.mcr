# lenet300 on MNIST: the two hidden fully connected layers as low-rank pairs (truncated SVD),
# each at most a quarter of its weights; the 10-class classifier stays. fc1 (784 → 300)
# becomes 784 → 48 → 300 (the rank the size allows, 54, rounded down to the kernels' vector
# width), fc2 (300 → 100) 300 → 18 → 100: 22.5% of their weights, 4.4× fewer MACs.
# Plain SVD: the data-aware variant (`data: on`) fits the 256 calibration samples better but
# generalizes worse here (see the README's ablation).
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x784.npy"
evaluate with "../corpus/data/mnist_test_x784.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage factorize {
  factorize svd on "/fc1/Gemm" | "/fc2/Gemm" { size: 25% }
}

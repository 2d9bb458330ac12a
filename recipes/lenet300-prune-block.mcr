# lenet300 on MNIST: 84% of fc1's weights removed as whole blocks of 4 consecutive outputs ×
# 1 input (16% kept, under the block kernel's 16.2% crossover at fc1's 784 inputs), so the
# compiled model runs fc1 on the block-sparse kernel (see docs/recipes.md, "How pruned layers
# run"). Magnitude picks the blocks; a least-squares refit on the 256 calibration samples
# repairs the kept ones. fc2 and the 10-way classifier stay dense: at 90% (where fc2's
# 300-input blocks would pay) block pruning fc1 and fc2 loses 8.2 points, and fc2 alone at
# 90% 6.2; fc1 alone at 85% loses 1.4 (measured with mcc build, 2026-12).
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x784.npy"
evaluate with "../corpus/data/mnist_test_x784.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage sparsify {
  prune block on "/fc1/Gemm" { amount: 84%, outputs: 4, inputs: 1, refit: on }
}

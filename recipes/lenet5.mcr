# LeNet-5 (Caffe layout) on MNIST: magnitude pruning, Han et al. style.
# The fully connected fc1 holds 93% of the weights and tolerates the most pruning.

calibrate with "../examples/lenet5/mnist_calib_x.npy"
evaluate with "../examples/lenet5/mnist_test_x.npy" labels "../examples/lenet5/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage sparsify {
  prune unstructured on Conv | Gemm { amount: 50% }
  prune unstructured on "/fc1/Gemm" { amount: 80% }
}

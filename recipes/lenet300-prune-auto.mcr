# lenet300 on MNIST, per-layer amounts chosen by mcc: `amount: auto` measures each layer alone
# at every amount of the sweep (30% to 95%) on the 256 calibration samples, then spends the
# size budget where it costs least output error. Against the uniform alternative (the one
# amount for every layer that removes as many weights), measured in the same build and
# printed with it. The evaluation set only reports; it never chooses.
# Data comes from the corpus in the repository (corpus/).

calibrate with "../corpus/data/mnist_calib_x784.npy" labels "../corpus/data/mnist_calib_y.npy"
evaluate with "../corpus/data/mnist_test_x784.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  size <= 140 KB
  accuracy_drop <= 1.5%
}

stage sparsify {
  prune unstructured on Gemm { amount: auto, refit: on }
}

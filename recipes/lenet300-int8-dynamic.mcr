# lenet300 on MNIST with dynamic int8 (`std.int8_dynamic`): the exact merges (the Relus join
# the Gemms), then i8 weights (one scale per output channel) with each input row quantized to
# u8 at run time from its own range — nothing is calibrated, and a sample's result does not
# depend on the batch it runs in. The three Gemms run on integer kernels and read and write
# f32. Results: README ("int8"). Data: the corpus in the repository.

evaluate with "../corpus/data/mnist_test_x784.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 0.5%
}

use std.int8_dynamic

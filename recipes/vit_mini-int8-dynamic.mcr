# vit_mini (a small vision transformer on MNIST) with dynamic int8 (`std.int8_dynamic`): the
# exact merges, then its ten linear layers with i8 weights (one scale per output channel) and
# every token's input row quantized to u8 at run time from its own range — nothing
# calibrated, no range fixed ahead of the data. LayerNorm, Softmax, GELU and the attention
# products stay f32. Results: README ("int8"). Data: the corpus in the repository.

evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 0.5%
}

use std.int8_dynamic

# vit_mini (a small vision transformer on MNIST) in int8: every linear layer (the patch
# embedding, the attention projections, the MLP and the head) with i8 weights (one scale per
# output channel) and u8 inputs (one scale per tensor, MinMax on the 256 calibration samples);
# LayerNorm, Softmax, GELU and the two attention products stay f32. Static: the activation
# scales are fixed at build time. Results: README ("int8"). Data: the corpus in the
# repository.

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 0.5%
}

stage quantize {
  quantize int8 on MatMul | Gemm { per: channel }
}

# vit_mini (a small vision transformer on MNIST) with 4-bit weights in every linear layer
# (the patch embedding, attention projections, MLP and head), rounded by GPTQ on the 256
# calibration samples: 288,328 stored weight bytes → 50,586 (5.7×, LayerNorm and the
# class token stay f32), 96.0% → 95.8%; rounded to nearest, 95.7% with 1.6× the output
# error. Weight-only. Data: the corpus in the repository.

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
}

stage quantize {
  quantize int on MatMul | Gemm { bits: 4, per: channel, rounding: gptq }
}

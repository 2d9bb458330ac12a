# lenet300 on MNIST, Deep Compression after training (Han et al. 2016: prune → share → Huffman),
# the best ratio found within one point of accuracy: 1,066,440 stored weight bytes →
# 26,258 (41×), 97.2% → 96.6% (measured on the compiled model; see the README). Bytes count
# everything stored: centroid tables, indices, Huffman tables and sparse positions, biases.
#
# The paper retrains between stages; mcc works from the 256 calibration samples instead:
# magnitude chooses what to prune and a least-squares refit repairs the kept weights, layer
# by layer (OBS does worse here); the centroids of each 32-entry table are refit to the
# layer's outputs. `std.deep_compression` (stdlib/std/compress.mcr) is the same three stages
# at one sparsity for every layer; the 10-way classifier needs a lighter one. Data: the
# corpus in the repository.

calibrate with "../corpus/data/mnist_calib_x784.npy"
evaluate with "../corpus/data/mnist_test_x784.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
  size <= 27 KB
}

stage prune {
  prune unstructured on "/fc1/Gemm" { amount: 91%, refit: on }
  prune unstructured on "/fc2/Gemm" { amount: 85%, refit: on }
  prune unstructured on "/fc3/Gemm" { amount: 50%, refit: on }
}

stage cluster {
  quantize kmeans on Gemm { bits: 5, refit: on }
}

stage encode {
  encode huffman on Gemm
}

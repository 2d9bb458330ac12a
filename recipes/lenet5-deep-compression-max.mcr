# lenet5 on MNIST, Deep Compression after training (Han et al. 2016: prune → share → Huffman),
# the best ratio found within one point of accuracy: 1,724,320 stored weight bytes →
# 21,167 (81×), 98.0% → 97.3% (measured on the compiled model; see the README). Bytes count
# everything stored: centroid tables, indices, Huffman tables and sparse positions, biases.
#
# The paper retrains between stages; mcc works from the 256 calibration samples instead:
# OBS chooses what to prune and a least-squares refit repairs the kept weights, layer by
# layer; the centroids of each 16-entry table are refit to the layer's outputs.
# `std.deep_compression` (stdlib/std/compress.mcr) is the same three stages at one sparsity
# for every layer; lenet5's layers need different ones. Data: the corpus in the repository.

calibrate with "../corpus/data/mnist_calib_x.npy"
evaluate with "../corpus/data/mnist_test_x.npy" labels "../corpus/data/mnist_test_y.npy"

budget {
  accuracy_drop <= 1%
  size <= 22 KB
}

stage prune {
  prune unstructured on "/conv1/Conv" { amount: 50%, by: obs, refit: on }
  prune unstructured on "/conv2/Conv" { amount: 90%, by: obs, refit: on }
  prune unstructured on "/fc1/Gemm" { amount: 97%, by: obs, refit: on }
  prune unstructured on "/fc2/Gemm" { amount: 85%, by: obs, refit: on }
}

stage cluster {
  quantize kmeans on Conv | Gemm { bits: 4, refit: on }
}

stage encode {
  encode huffman on Conv | Gemm
}

//! `mcc-runtime`: what programs emitted by mcc link against: the kernels (dense GEMM with
//! packed weights, convolution, pooling, elementwise…), the program executor, and `.npy` I/O.
//! It depends on nothing in `compiler/` (and on no crate but `std` in its kernels), so it can
//! be built as a static library for ahead-of-time compiled models.
pub mod abi;
pub mod conv;
pub mod eltwise;
pub mod epilogue;
pub mod exec;
pub mod gemm;
pub mod npy;
pub mod pool;
pub mod program;
pub mod threads;

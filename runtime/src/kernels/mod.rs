//! The kernels: the functions that compute one layer, or one task's part of it, on one
//! sample's slices (the whole batch for dense layers). They know nothing of programs,
//! arenas or threads: `exec.rs` hands them slices and weights, sized as `exec::validate`
//! checked. None reads or writes outside the slices it is given: safe code indexes with
//! bounds checks, and the unsafe SIMD paths check the lengths they rely on first. Each picks
//! its code by [`gemm::Isa`] (AVX-512, AVX2+FMA, or portable) and runs code compiled for an
//! instruction set only after [`gemm::Isa::runs_here`].
//!
//! - [`gemm`]: dense GEMM with one operand packed ahead of time, its register tiles (the
//!   full AVX-512 tile's k loop in `tile64`, inline assembly), and [`gemm::Isa`];
//! - [`conv`]: NCHW convolution as GEMMs over stride-phase planes or im2col, and the
//!   window geometry ([`conv::Geometry`]) that every window kernel shares;
//! - [`conv_transpose`]: transposed convolution as per-group GEMMs and a scatter onto the
//!   output;
//! - [`window`]: depthwise convolution and max pooling with AVX-512, 16 outputs a vector;
//! - [`blocked`]: the channel-blocked layout (NCHW16c): its convolution, window, global
//!   pooling and reorder kernels, and its weight packing;
//! - [`pool`]: portable max, average and global average pooling;
//! - [`sparse`]: fully connected layers on their nonzero weights only, vectorized along
//!   the batch, and the measured density below which they beat the dense GEMM;
//! - [`block_sparse`]: fully connected layers on whole blocks of r outputs × c inputs
//!   (4×1, 8×1, 1×4…), vectorized along a block's outputs (one row) or the batch, and the
//!   measured density below which they beat the dense GEMM and the unstructured kernel;
//! - [`int8`]: u8 × i8 integer convolution and fully connected layers (AVX-512 VNNI, AVX2,
//!   portable; bit-identical), code max pooling, and the f32 ↔ u8 boundaries;
//! - [`eltwise`]: memory-bound kernels (activations, broadcast arithmetic, affine,
//!   softmax, LRN, transpose);
//! - [`epilogue`]: what a kernel applies to its result before storing it (bias, residual,
//!   activation);
//! - [`math`]: exp, the error function and GELU (f64 inside, vectorizable);
//! - [`reduce`]: reductions along an axis: layer normalization and ReduceSum/Mean/Max/Min;
//! - [`gather`]: copies through per-axis offset tables (Gather, Slice, Split, Expand,
//!   DepthToSpace, SpaceToDepth, nearest Resize);
//! - [`resample`]: weighted sums through per-axis taps (Resize: linear, cubic, antialiased,
//!   and nearest with extrapolation);
//! - [`winograd`]: 3×3 stride-1 convolution on channel blocks as Winograd F(2×2, 3×3):
//!   transformed tiles, a GEMM over channels per position, the epilogue fused;
//! - [`matmul`]: products of two computed tensors, batched with broadcasting.

pub mod block_sparse;
pub mod blocked;
pub mod conv;
pub mod conv_transpose;
pub mod eltwise;
pub mod epilogue;
pub mod gather;
pub mod gemm;
pub mod int8;
pub mod math;
pub mod matmul;
pub mod pool;
pub mod reduce;
pub mod resample;
pub mod sparse;
#[cfg(target_arch = "x86_64")]
mod tile64;
pub mod window;
pub mod winograd;

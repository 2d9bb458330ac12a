//! What a kernel applies to its result before storing it: a bias (per output row or per
//! output column) and then an activation, matching the IR's `activation` epilogue.

use crate::kernels::math;

/// A bias added to the result.
#[derive(Clone, Copy, Debug)]
pub enum Bias<'a> {
    /// None.
    None,
    /// One value per output row.
    PerRow(&'a [f32]),
    /// One value per output column.
    PerCol(&'a [f32]),
}

/// An activation (the IR's epilogues).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// Identity.
    None,
    /// max(x, 0).
    Relu,
    /// min(max(x, lo), hi).
    Clip(f32, f32),
    /// x if x ≥ 0 else α·x.
    LeakyRelu(f32),
    /// 1 / (1 + e^−x).
    Sigmoid,
    /// max(0, min(1, α·x + β)).
    HardSigmoid(f32, f32),
    /// x · max(0, min(1, x/6 + 1/2)).
    HardSwish,
    /// tanh(x).
    Tanh,
    /// erf(x) ([`crate::kernels::math`]).
    Erf,
    /// x · (1 + erf(x/√2)) / 2.
    Gelu,
    /// x · (1 + tanh(√(2/π)·(x + 0.044715·x³))) / 2.
    GeluTanh,
}

impl Act {
    /// Whether the AVX-512 epilogues compute it in vectors (no transcendental).
    pub fn is_vectorizable(self) -> bool {
        matches!(
            self,
            Act::None | Act::Relu | Act::Clip(..) | Act::LeakyRelu(_)
        )
    }

    /// The activation on 16 lanes ([`Self::is_vectorizable`] ones; others pass `v` through).
    ///
    /// # Safety
    /// Callable only where the CPU has AVX-512F (from code compiled with it, or after
    /// detecting it).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn apply_avx512(self, v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        match self {
            // `max_ps`/`min_ps` return their second operand when either is NaN: with `v`
            // second, a NaN passes through (ONNX: Relu(NaN) = Clip(NaN) = NaN).
            Act::Relu => _mm512_max_ps(_mm512_setzero_ps(), v),
            Act::Clip(lo, hi) => {
                _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), v))
            }
            Act::LeakyRelu(a) => {
                let neg = _mm512_mul_ps(v, _mm512_set1_ps(a));
                let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, _mm512_setzero_ps());
                _mm512_mask_blend_ps(ge, neg, v)
            }
            _ => v,
        }
    }

    /// Applies the activation to one value (the same formulas as the reference evaluator).
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::None => x,
            // Comparisons, not `f32::max`/`min` (which drop a NaN): NaN passes through.
            Act::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            // min(max(x, lo), hi): with lo > hi, hi (ONNX), as the vector paths give.
            Act::Clip(lo, hi) => {
                let v = if x < lo { lo } else { x };
                if v > hi { hi } else { v }
            }
            Act::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Act::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Act::Tanh => x.tanh(),
            Act::Erf => math::erf(x),
            Act::Gelu => math::gelu(x),
            Act::GeluTanh => math::gelu_tanh(x),
        }
    }
}

/// Bias, then a residual tensor, then activation.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// The bias.
    pub bias: Bias<'a>,
    /// A tensor laid out like the result (same row stride, same crop), added before the
    /// activation: a residual connection fused into the layer that precedes it.
    pub residual: Option<&'a [f32]>,
    /// The activation.
    pub act: Act,
}

impl Epilogue<'_> {
    /// No bias, no activation.
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: Bias::None,
        residual: None,
        act: Act::None,
    };

    /// Checks the bias covers an `m × n` result, and the residual the `extent` floats that
    /// result spans in its buffer.
    pub fn check(&self, m: usize, n: usize, extent: usize) -> Result<(), String> {
        if self.residual.is_some_and(|r| r.len() < extent) {
            return Err("the residual is smaller than the result".into());
        }
        match self.bias {
            Bias::PerRow(b) if b.len() < m => Err(format!("bias has {} of {m} rows", b.len())),
            Bias::PerCol(b) if b.len() < n => Err(format!("bias has {} of {n} columns", b.len())),
            _ => Ok(()),
        }
    }

    /// The result at (`row`, `col`) after the epilogue.
    #[inline(always)]
    pub fn apply(&self, x: f32, row: usize, col: usize) -> f32 {
        let b = match self.bias {
            Bias::None => 0.0,
            Bias::PerRow(b) => b[row],
            Bias::PerCol(b) => b[col],
        };
        self.act.apply(x + b)
    }

    /// Whether [`Self::apply_avx2`] handles it (activations without a transcendental).
    pub fn is_vectorizable(&self) -> bool {
        self.act.is_vectorizable()
    }

    /// The epilogue on 16 lanes: row `row`, columns `col..col + cols` (`cols` ≤ 16).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; a per-column bias must hold `col + cols` values.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn apply_avx512(
        &self,
        v: std::arch::x86_64::__m512,
        row: usize,
        col: usize,
        cols: usize,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let mask: __mmask16 = if cols >= 16 {
            0xffff
        } else {
            (1u16 << cols) - 1
        };
        let v = match self.bias {
            Bias::None => v,
            Bias::PerRow(b) => _mm512_add_ps(v, _mm512_set1_ps(b[row])),
            // SAFETY: AVX-512F (the contract). A per-column bias holds `col + cols` values
            // (the contract), so `b + col` is inside it or one past, and the mask's `cols`
            // lanes are values col .. col + cols: the masked load touches nothing else.
            Bias::PerCol(b) => _mm512_add_ps(v, unsafe {
                _mm512_maskz_loadu_ps(mask, b.as_ptr().add(col))
            }),
        };
        self.act.apply_avx512(v)
    }

    /// The epilogue on 8 lanes: row `row`, columns `col..col + 8`.
    ///
    /// # Safety
    /// The CPU must have AVX2; for a per-column bias, `col + 8` columns must exist.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2")]
    pub unsafe fn apply_avx2(
        &self,
        v: std::arch::x86_64::__m256,
        row: usize,
        col: usize,
    ) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        let v = match self.bias {
            Bias::None => v,
            Bias::PerRow(b) => _mm256_add_ps(v, _mm256_set1_ps(b[row])),
            // SAFETY: AVX2 (the contract); a per-column bias holds `col + 8` values (the
            // contract): the load's 8 floats from `col`.
            Bias::PerCol(b) => _mm256_add_ps(v, unsafe { _mm256_loadu_ps(b.as_ptr().add(col)) }),
        };
        match self.act {
            // NaN passes through (`v` second: see `apply_avx512`).
            Act::Relu => _mm256_max_ps(_mm256_setzero_ps(), v),
            Act::Clip(lo, hi) => {
                _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), v))
            }
            Act::LeakyRelu(a) => {
                let neg = _mm256_mul_ps(v, _mm256_set1_ps(a));
                let mask = _mm256_cmp_ps::<_CMP_GE_OQ>(v, _mm256_setzero_ps());
                _mm256_blendv_ps(neg, v, mask)
            }
            _ => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relu and Clip pass NaN on (ONNX) and keep -0 as -0, on every path.
    #[test]
    #[allow(unsafe_code)]
    fn nan_passes_through_relu_and_clip() {
        let xs = [f32::NAN, -0.0, -1.5, 2.0, f32::INFINITY, f32::NEG_INFINITY];
        for act in [Act::Relu, Act::Clip(-1.0, 1.0)] {
            let want: Vec<f32> = xs.iter().map(|&x| act.apply(x)).collect();
            assert!(want[0].is_nan(), "{act:?}");
            assert_eq!(want[1].to_bits(), (-0.0f32).to_bits(), "{act:?}");
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512f") {
                use std::arch::x86_64::*;
                let mut lanes = [0f32; 16];
                lanes[..xs.len()].copy_from_slice(&xs);
                let mut out = [0f32; 16];
                // SAFETY: AVX-512F was detected; both arrays hold 16 floats.
                unsafe {
                    let v = _mm512_loadu_ps(lanes.as_ptr());
                    _mm512_storeu_ps(out.as_mut_ptr(), act.apply_avx512(v));
                }
                for (a, b) in out.iter().zip(&want) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{act:?}: {a} vs {b}");
                }
            }
        }
        // Bounds out of order: the upper one wins, on every path.
        assert_eq!(Act::Clip(2.0, 1.0).apply(0.0), 1.0);
        assert_eq!(Act::Clip(2.0, 1.0).apply(5.0), 1.0);
        // Max and Min (elementwise, in `eltwise`) propagate NaN from either side.
        use crate::kernels::eltwise::BinOp;
        for op in [BinOp::Max, BinOp::Min] {
            assert!(op.apply(f32::NAN, 1.0).is_nan() && op.apply(1.0, f32::NAN).is_nan());
        }
    }
}

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
    /// Exact GELU as an exporter spelt it in elementwise operators, each rounded to f32
    /// ([`GeluChain`]): the same operations in the same order, so the same bits as the
    /// chain's steps.
    GeluChain(GeluChain),
}

/// Exact GELU, x · (1 + erf(x/√2)) / 2, the way an exporter wrote it as a chain of
/// elementwise operators: `s = x / √2` (or `x · (1/√2)`), `e = erf(s)`, `a = e + 1`, and the
/// halving in one of three places. Each operator rounds to f32, so where the halving sits
/// changes the bits (at overflow and underflow), and the fused form keeps it where it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeluChain {
    /// How the argument of erf is made.
    pub scale: GeluScale,
    /// Where the product is halved.
    pub half: GeluHalf,
}

/// How a [`GeluChain`] makes erf's argument from x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluScale {
    /// x / √2, √2 rounded to f32 ([`std::f32::consts::SQRT_2`]; PyTorch's TorchScript and
    /// dynamo exports).
    DivSqrt2,
    /// x · (1/√2), 1/√2 rounded to f32 ([`std::f32::consts::FRAC_1_SQRT_2`]).
    MulFrac1Sqrt2,
}

/// Where a [`GeluChain`] halves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluHalf {
    /// (x · a) · 0.5.
    Last,
    /// x · (0.5 · a).
    OfSum,
    /// (x · 0.5) · a.
    OfX,
}

impl GeluChain {
    /// Every form, in code order.
    pub const ALL: [GeluChain; 6] = {
        use GeluHalf::*;
        use GeluScale::*;
        [
            GeluChain {
                scale: DivSqrt2,
                half: Last,
            },
            GeluChain {
                scale: DivSqrt2,
                half: OfSum,
            },
            GeluChain {
                scale: DivSqrt2,
                half: OfX,
            },
            GeluChain {
                scale: MulFrac1Sqrt2,
                half: Last,
            },
            GeluChain {
                scale: MulFrac1Sqrt2,
                half: OfSum,
            },
            GeluChain {
                scale: MulFrac1Sqrt2,
                half: OfX,
            },
        ]
    };

    /// Its code in a program (its place in [`Self::ALL`]).
    pub fn code(self) -> u8 {
        let s = match self.scale {
            GeluScale::DivSqrt2 => 0,
            GeluScale::MulFrac1Sqrt2 => 3,
        };
        s + match self.half {
            GeluHalf::Last => 0,
            GeluHalf::OfSum => 1,
            GeluHalf::OfX => 2,
        }
    }

    /// The form with code `c`.
    pub fn from_code(c: u8) -> Option<GeluChain> {
        Self::ALL.get(usize::from(c)).copied()
    }

    /// erf's argument, in f32.
    #[inline(always)]
    pub fn arg(self, x: f32) -> f32 {
        match self.scale {
            GeluScale::DivSqrt2 => x / std::f32::consts::SQRT_2,
            GeluScale::MulFrac1Sqrt2 => x * std::f32::consts::FRAC_1_SQRT_2,
        }
    }

    /// The result from x and erf's value `e`, in f32, in the chain's order.
    #[inline(always)]
    pub fn finish(self, x: f32, e: f32) -> f32 {
        let a = e + 1.0;
        match self.half {
            GeluHalf::Last => (x * a) * 0.5,
            GeluHalf::OfSum => x * (0.5 * a),
            GeluHalf::OfX => (x * 0.5) * a,
        }
    }

    /// The chain on one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        self.finish(x, math::erf(self.arg(x)))
    }
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
            Act::GeluChain(c) => c.apply(x),
        }
    }

    /// The activation on every value of `y`, in place: those with erf through its vector
    /// form (the bits of [`Self::apply`]), the others value by value.
    #[inline(always)]
    pub fn apply_in_place(self, y: &mut [f32]) {
        match self {
            Act::None => {}
            Act::Erf => math::erf_in_place(y),
            Act::Gelu => math::gelu_in_place(y),
            Act::GeluChain(c) => math::gelu_chain_in_place(y, c),
            _ => {
                for v in y.iter_mut() {
                    *v = self.apply(*v);
                }
            }
        }
    }

    /// Whether [`Self::apply_in_place`] is worth calling on a run of values (its vector form
    /// computes erf on many lanes at once).
    pub fn has_erf(self) -> bool {
        matches!(self, Act::Erf | Act::Gelu | Act::GeluChain(_))
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
        self.act.apply(self.biased(x, row, col))
    }

    /// The result at (`row`, `col`) with the bias added, before the activation.
    #[inline(always)]
    pub fn biased(&self, x: f32, row: usize, col: usize) -> f32 {
        let b = match self.bias {
            Bias::None => 0.0,
            Bias::PerRow(b) => b[row],
            Bias::PerCol(b) => b[col],
        };
        x + b
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

//! The integer arithmetic of quantized layers, defined once: the reference evaluator
//! (`mcc-ir`), the compiler's passes and every int8 kernel call these functions (or, in SIMD
//! kernels, compute what their tests prove equal to them), so a quantized model gives the
//! same bits on every path — the accuracy the build reports is the accuracy the executable
//! delivers.
//!
//! - **Quantize** (f32 → integer, ONNX `QuantizeLinear`): `q = clamp(round_half_even(x / s) +
//!   zp, lo, hi)` with the division in f32, as ONNX Runtime computes it; NaN gives `lo`.
//! - **Dequantize** (ONNX `DequantizeLinear`): `(q − zp) · s` in f32.
//! - **Requantize** (a layer's i32 accumulator → its integer output): the real multiplier
//!   `M = s_x · s_w / s_y` (in f64 from the f32 scales) is written `M = m · 2^−shift` with
//!   `m` a 31-bit integer in `[2^30, 2^31)`; then `y = clamp(((acc · m) + 2^(shift−1)) >>
//!   shift + zp_y, lo, hi)` in i64 (rounding half up, arithmetic shift). This is the one
//!   fixed-point requantization; ONNX Runtime requantizes in float, so an exported QDQ model
//!   agrees with it within one output step.
//! - **Dynamic quantization** (a row of f32 values quantized at run time, its scale and zero
//!   point from its own range: [`dynamic_row`]) and the f32 result of its integer product
//!   ([`dequantize_acc`], then [`FloatClamp::apply`]): the same f32 operations in the same
//!   order on every path, so the same bits.

/// A requantization multiplier: `M ≈ mult · 2^−shift`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Requant {
    /// In `[2^30, 2^31)`, or 0 when `M` rounds to nothing.
    pub mult: i32,
    /// Right shift, in `1..=62`.
    pub shift: u32,
}

/// Largest real multiplier a requantization may have (`2^30`: the shift stays ≥ 1).
pub const MAX_MULTIPLIER: f64 = (1u64 << 30) as f64;

impl Requant {
    /// The fixed-point form of `real` (> 0, finite, < [`MAX_MULTIPLIER`]); `None` otherwise.
    pub fn new(real: f64) -> Option<Requant> {
        if !(real.is_finite() && real > 0.0 && real < MAX_MULTIPLIER) {
            return None;
        }
        // real = f · 2^e with f in [0.5, 1).
        let mut e = real.log2().floor() as i32 + 1;
        let mut f = real / 2f64.powi(e);
        // log2 may be off by one ulp at powers of two: renormalize.
        while f >= 1.0 {
            f /= 2.0;
            e += 1;
        }
        while f < 0.5 {
            f *= 2.0;
            e -= 1;
        }
        let mut mult = (f * (1u64 << 31) as f64).round() as i64;
        if mult == 1i64 << 31 {
            mult >>= 1;
            e += 1;
        }
        let shift = 31 - e;
        if shift > 62 {
            // Below 2^−31: every accumulator in range requantizes to 0 (or ±1 from rounding
            // at the very top), so the layer's output is its zero point.
            return Some(Requant { mult: 0, shift: 1 });
        }
        if shift < 1 {
            return None;
        }
        Some(Requant {
            mult: mult as i32,
            shift: shift as u32,
        })
    }

    /// The multiplier of a layer: `s_x · s_w / s_y`.
    pub fn of_scales(s_x: f32, s_w: f32, s_y: f32) -> Option<Requant> {
        Requant::new(f64::from(s_x) * f64::from(s_w) / f64::from(s_y))
    }

    /// `round(acc · M)`, rounding half up, before the zero point and clamping.
    #[inline(always)]
    pub fn scale(self, acc: i32) -> i64 {
        let p = i64::from(acc) * i64::from(self.mult);
        (p + (1i64 << (self.shift - 1))) >> self.shift
    }

    /// The layer's output code for accumulator `acc`.
    #[inline(always)]
    pub fn apply(self, acc: i32, zp: i32, lo: i32, hi: i32) -> i32 {
        (self.scale(acc) + i64::from(zp)).clamp(i64::from(lo), i64::from(hi)) as i32
    }
}

/// The code range of an element type: `(lo, hi)` of u8 or i8.
pub const fn range(signed: bool) -> (i32, i32) {
    if signed { (-128, 127) } else { (0, 255) }
}

/// `QuantizeLinear` of one value.
#[inline(always)]
pub fn quantize(x: f32, scale: f32, zp: i32, lo: i32, hi: i32) -> i32 {
    let r = (x / scale).round_ties_even() + zp as f32;
    // `f32::max` returns the other operand for NaN: NaN gives `lo`.
    r.max(lo as f32).min(hi as f32) as i32
}

/// `DequantizeLinear` of one value.
#[inline(always)]
pub fn dequantize(q: i32, scale: f32, zp: i32) -> f32 {
    (i64::from(q) - i64::from(zp)) as f32 * scale
}

/// The output clamp of a quantized layer with an activation epilogue, in codes: Relu clamps
/// below at the zero point, Clip at its bounds' codes.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum QAct {
    /// No activation.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)`.
    Clip {
        /// Lower bound (real).
        min: f32,
        /// Upper bound (real).
        max: f32,
    },
}

impl QAct {
    /// `(lo, hi)` codes the output is clamped to.
    pub fn bounds(self, scale: f32, zp: i32, signed: bool) -> (i32, i32) {
        let (lo, hi) = range(signed);
        match self {
            QAct::None => (lo, hi),
            QAct::Relu => (zp.clamp(lo, hi), hi),
            QAct::Clip { min, max } => {
                let a = quantize(min, scale, zp, lo, hi);
                let b = quantize(max, scale, zp, lo, hi);
                (a, b.max(a))
            }
        }
    }
}

/// The range of a row for dynamic quantization: `(min, max)` widened to hold 0, or `None`
/// when the row holds NaN or ±∞ (its outputs are then NaN: [`dynamic_row`]).
pub fn row_range(x: &[f32]) -> Option<(f32, f32)> {
    let (mut lo, mut hi) = (0f32, 0f32);
    for &v in x {
        if !v.is_finite() {
            return None;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    Some((lo, hi))
}

/// The u8 scale and zero point of a row from its range (ONNX `DynamicQuantizeLinear`'s
/// arithmetic, per row): `scale = (max − min) / 255` and `zp = round_half_even(−min / scale)`
/// in f32, `min ≤ 0 ≤ max`; a row of zeros (or of values whose scale would be at most f32's
/// smallest normal number) gets scale 1 and zero point 0 (its codes are all 0); a row without a finite range (`None`, or
/// wider than f32 holds) gets scale NaN and zero point 0, so every output it feeds is NaN.
pub fn dynamic_row(range: Option<(f32, f32)>) -> (f32, i32) {
    let Some((lo, hi)) = range else {
        return (f32::NAN, 0);
    };
    let scale = (hi - lo) / 255.0;
    if !scale.is_finite() {
        // A range too wide for f32 (`hi − lo` overflowed).
        return (f32::NAN, 0);
    }
    if scale <= f32::MIN_POSITIVE {
        // All zeros, or values so small their scale would be at most the smallest normal
        // number: zeros.
        return (1.0, 0);
    }
    let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as i32;
    (scale, zp)
}

/// The f32 output of a dynamically quantized product: the exact accumulator `acc` (input
/// zero point taken out) times `scale` (the row's scale times the weight's, one f32 product)
/// plus the bias — a multiply then an add, never fused.
#[inline(always)]
pub fn dequantize_acc(acc: i32, scale: f32, bias: f32) -> f32 {
    acc as f32 * scale + bias
}

/// A float layer's output clamp (Relu: `[0, ∞)`, Clip: `[min, max]`, none: everything) that
/// keeps NaN: `lo` below it, `hi` above it, the value otherwise.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct FloatClamp {
    /// Lower bound (−∞ for none).
    pub lo: f32,
    /// Upper bound (+∞ for none).
    pub hi: f32,
}

impl FloatClamp {
    /// The clamp of an activation.
    pub fn of(act: QAct) -> FloatClamp {
        match act {
            QAct::None => FloatClamp {
                lo: f32::NEG_INFINITY,
                hi: f32::INFINITY,
            },
            QAct::Relu => FloatClamp {
                lo: 0.0,
                hi: f32::INFINITY,
            },
            QAct::Clip { min, max } => FloatClamp { lo: min, hi: max },
        }
    }

    /// `y` clamped; NaN stays NaN.
    #[inline(always)]
    pub fn apply(self, y: f32) -> f32 {
        if y < self.lo {
            self.lo
        } else if y > self.hi {
            self.hi
        } else {
            y
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_reproduce_the_real_value() {
        for real in [1e-9, 3.7e-5, 0.001, 0.25, 0.5, 0.7, 1.0, 1.5, 3.0, 1000.0] {
            let r = Requant::new(real).unwrap();
            let back = f64::from(r.mult) / 2f64.powi(r.shift as i32);
            assert!(
                ((back - real) / real).abs() < 1e-9,
                "{real}: {r:?} → {back}"
            );
            assert!((1 << 30..=i32::MAX).contains(&r.mult), "{r:?}");
        }
        assert_eq!(Requant::new(0.0), None);
        assert_eq!(Requant::new(f64::NAN), None);
        assert_eq!(Requant::new(2e9), None);
        assert_eq!(Requant::new(1e-20), Some(Requant { mult: 0, shift: 1 }));
    }

    #[test]
    fn requantization_rounds_half_up_and_clamps() {
        let half = Requant::new(0.5).unwrap();
        assert_eq!(half.scale(3), 2); // 1.5 → 2
        assert_eq!(half.scale(-3), -1); // −1.5 → −1
        assert_eq!(half.scale(4), 2);
        assert_eq!(half.apply(1000, 10, 0, 255), 255);
        assert_eq!(half.apply(-1000, 10, 0, 255), 0);
        // Extremes cannot overflow the i64 product.
        let big = Requant::new(1000.0).unwrap();
        assert_eq!(big.apply(i32::MAX, 0, -128, 127), 127);
        assert_eq!(big.apply(i32::MIN, 0, -128, 127), -128);
    }

    #[test]
    fn quantize_rounds_half_even_saturates_and_maps_nan_low() {
        assert_eq!(quantize(2.5, 1.0, 0, 0, 255), 2);
        assert_eq!(quantize(3.5, 1.0, 0, 0, 255), 4);
        assert_eq!(quantize(-1.0, 1.0, 0, 0, 255), 0);
        assert_eq!(quantize(1e30, 1.0, 0, 0, 255), 255);
        assert_eq!(quantize(f32::NAN, 1.0, 3, 0, 255), 0);
        assert_eq!(quantize(f32::INFINITY, 0.1, 0, -128, 127), 127);
        assert_eq!(quantize(f32::NEG_INFINITY, 0.1, 0, -128, 127), -128);
        assert_eq!(dequantize(quantize(0.3, 0.1, 5, 0, 255), 0.1, 5), 3.0 * 0.1);
    }

    #[test]
    fn dynamic_rows_hold_zero_and_turn_nan_rows_into_nan() {
        let x = [-1.0f32, 0.5, 3.0];
        let (s, z) = dynamic_row(row_range(&x));
        assert_eq!(s, 4.0 / 255.0);
        assert_eq!(z, 64);
        assert_eq!(quantize(0.0, s, z, 0, 255), z);
        assert_eq!(quantize(3.0, s, z, 0, 255), 255);
        assert_eq!(dynamic_row(row_range(&[0.0, 0.0])), (1.0, 0));
        assert_eq!(dynamic_row(row_range(&[1e-40, 0.0])), (1.0, 0));
        // Only positive values: the range still starts at 0.
        assert_eq!(dynamic_row(row_range(&[2.0, 1.0])).1, 0);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let (s, z) = dynamic_row(row_range(&[1.0, bad]));
            assert!(s.is_nan() && z == 0);
            assert!(dequantize_acc(5, s * 0.1, 1.0).is_nan());
        }
        // A range wider than f32 holds.
        assert!(dynamic_row(row_range(&[-3e38, 3e38])).0.is_nan());
        let relu = FloatClamp::of(QAct::Relu);
        assert_eq!(relu.apply(-2.0), 0.0);
        assert!(relu.apply(f32::NAN).is_nan());
        assert_eq!(
            FloatClamp::of(QAct::Clip {
                min: -1.0,
                max: 6.0
            })
            .apply(7.0),
            6.0
        );
        assert_eq!(FloatClamp::of(QAct::None).apply(-1e30), -1e30);
    }

    #[test]
    fn activations_clamp_in_codes() {
        assert_eq!(QAct::Relu.bounds(0.1, 20, false), (20, 255));
        assert_eq!(
            QAct::Clip { min: 0.0, max: 6.0 }.bounds(0.05, 0, false),
            (0, 120)
        );
        assert_eq!(QAct::None.bounds(1.0, 0, true), (-128, 127));
    }
}

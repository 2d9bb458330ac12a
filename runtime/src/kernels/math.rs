//! Transcendental functions for the elementwise kernels, f64 inside and rounded once to
//! f32, branch-free (selects only), each in a scalar form and a form over [`LANES`] values
//! with the same operations in the same order — so the same bits — written lane by lane so
//! that the loops vectorize (libm's are calls, one value at a time). Sixteen lanes are four
//! AVX2 vectors of f64: enough independent work to hide each step's latency.
//!
//! **exp** (softmax): e^z = 2^k · e^r with k = round(z / ln 2) and |r| ≤ ln 2 / 2, r
//! computed with ln 2 split in two (its high part exact in k·ln 2), e^r by its Taylor
//! polynomial of degree 11 (the remainder below 10⁻¹⁴ relative), 2^k made from its bits;
//! 0 below −708 (where e^z is below f32's smallest number by far), +∞ above 709 (e^709.78 is
//! f64's largest: beyond f32's by far too).
//!
//! **erf**: for |x| < 4, erf(x) = x · g(s) with s = x², and g (erf(x)/x, an entire function
//! of s) is a Chebyshev series in u = s/8 − 1 ∈ [−1, 1), summed by Clenshaw's recurrence;
//! within 10⁻⁹ absolute before the rounding. Beyond 4, erf is ±1 to within 1.6·10⁻⁸, less
//! than half an f32 step below 1. **GELU** is made from it. NaN stays NaN throughout.
//!
//! No closures in the vector paths: a closure the compiler does not inline is compiled
//! without its caller's AVX2.

use crate::kernels::epilogue::GeluChain;

/// Values the lane forms take at once.
pub const LANES: usize = 16;

/// Values the in-place erf forms take at once: twice [`LANES`], so that more independent
/// Clenshaw recurrences are in flight (each step's latency, not the arithmetic, bounds it).
pub const ERF_LANES: usize = 32;

/// log₂ e.
const LOG2E: f64 = std::f64::consts::LOG2_E;

/// ln 2 in two parts: the high one with 21 significant bits (so k·`LN2_HI` is exact for
/// every k in range), the low one the rest (ln 2 − `LN2_HI`, from a 60-digit value of ln 2).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_0000_0000);
const LN2_LO: f64 = 4.749_325_039_031_672_6e-7;

/// 1.5 · 2⁵²: added to a value of magnitude below 2⁵¹, it rounds it to an integer held in
/// the low bits of the sum's mantissa.
const SHIFT: f64 = 6_755_399_441_055_744.0;

/// 1/n! for n = 0..=11: e^r's Taylor coefficients.
const EXP_TAYLOR: [f64; 12] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
];

/// e^z in f64 (see the module doc).
#[inline(always)]
pub fn exp64(z: f64) -> f64 {
    exp64_lanes([z])[0]
}

/// [`exp64`] on `L` lanes.
#[inline(always)]
pub fn exp64_lanes<const L: usize>(z: [f64; L]) -> [f64; L] {
    let (mut t, mut r) = ([0f64; L], [0f64; L]);
    for i in 0..L {
        let c = z[i].clamp(-708.0, 709.0);
        t[i] = c * LOG2E + SHIFT;
        let k = t[i] - SHIFT;
        r[i] = (c - k * LN2_HI) - k * LN2_LO;
    }
    let last = EXP_TAYLOR.len() - 1;
    let mut p = [EXP_TAYLOR[last]; L];
    for &a in EXP_TAYLOR[..last].iter().rev() {
        for i in 0..L {
            p[i] = p[i] * r[i] + a;
        }
    }
    let mut out = [0f64; L];
    for i in 0..L {
        // 2^k: k's bits sit in the low bits of t's, offset by SHIFT's.
        let bits = t[i]
            .to_bits()
            .wrapping_sub(SHIFT.to_bits())
            .wrapping_add(1023)
            << 52;
        let e = p[i] * f64::from_bits(bits);
        out[i] = if z[i] < -708.0 {
            0.0
        } else if z[i] > 709.0 {
            f64::INFINITY
        } else {
            e // NaN included: the clamp keeps it.
        };
    }
    out
}

/// Chebyshev coefficients of erf(x)/x in u = x²/8 − 1 over 0 ≤ x ≤ 4: a degree-18
/// least-squares fit at 4000 Chebyshev nodes of u, made for mcc with numpy's `chebfit`
/// against Python's `math.erf` (largest error of x·g on [0, 4]: 4.7·10⁻¹⁰; the unit tests
/// check it against an independent series).
const ERF_OVER_X: [f64; 19] = [
    0.485_912_956_902_863_2,
    -0.345_407_855_004_949_9,
    0.161_829_101_213_646_05,
    -0.076_482_756_105_508_92,
    0.034_669_936_800_507_57,
    -0.014_811_864_147_814_768,
    0.005_922_937_956_232_114,
    -0.002_211_840_658_810_195_7,
    0.000_771_415_427_840_135,
    -0.000_251_596_587_809_528_9,
    7.688_658_221_085_472e-5,
    -2.206_549_593_887_867e-5,
    5.961_274_041_489_97e-6,
    -1.519_775_071_275_298_1e-6,
    3.664_930_433_685_697e-7,
    -8.378_998_346_126_233e-8,
    1.820_144_888_496_306e-8,
    -3.764_477_997_844_009e-9,
    7.427_369_179_978_615e-10,
];

/// erf(x) in f64, to 1e-9 absolute (the series above; ±1 beyond |x| = 4; NaN for NaN).
#[inline(always)]
pub fn erf64(x: f64) -> f64 {
    erf64_lanes([x])[0]
}

/// [`erf64`] on `L` lanes.
#[inline(always)]
pub fn erf64_lanes<const L: usize>(x: [f64; L]) -> [f64; L] {
    let (mut t, mut u, mut u2) = ([0f64; L], [0f64; L], [0f64; L]);
    for i in 0..L {
        // Outside (or NaN) the series runs on 0, and its result is not used.
        t[i] = if x[i].abs() < 4.0 { x[i] } else { 0.0 };
        u[i] = t[i] * t[i] * 0.125 - 1.0;
        u2[i] = 2.0 * u[i];
    }
    let (mut b1, mut b2) = ([0f64; L], [0f64; L]);
    for &c in ERF_OVER_X[1..].iter().rev() {
        for i in 0..L {
            // c − b₂ is ready before the product: one multiply and one add on the chain
            // from b₁ to b₀ (their latency, not the arithmetic, bounds the loop).
            let b0 = u2[i] * b1[i] + (c - b2[i]);
            b2[i] = b1[i];
            b1[i] = b0;
        }
    }
    let mut out = [0f64; L];
    for i in 0..L {
        let g = u[i] * b1[i] - b2[i] + ERF_OVER_X[0];
        out[i] = if x[i].abs() < 4.0 {
            t[i] * g
        } else if x[i].is_nan() {
            x[i]
        } else {
            1f64.copysign(x[i])
        };
    }
    out
}

/// Runs `$body` on every [`ERF_LANES`] values of `$y` as `$c: &mut [f32; ERF_LANES]`, the
/// last few padded with zeros (computed, never stored): every value takes the vector form.
/// A macro, not a function taking a closure: the body must be compiled with its caller's
/// instruction set.
macro_rules! in_chunks {
    ($y:expr, |$c:ident| $body:block) => {{
        let y: &mut [f32] = $y;
        let whole = y.len() / ERF_LANES * ERF_LANES;
        let (body, rest) = y.split_at_mut(whole);
        for chunk in body.chunks_exact_mut(ERF_LANES) {
            let mut a = [0f32; ERF_LANES];
            a.copy_from_slice(chunk);
            let $c = &mut a;
            $body
            chunk.copy_from_slice(&a);
        }
        if !rest.is_empty() {
            let mut a = [0f32; ERF_LANES];
            a[..rest.len()].copy_from_slice(rest);
            let $c = &mut a;
            $body
            rest.copy_from_slice(&a[..rest.len()]);
        }
    }};
}

/// erf of every value of `y`, in place (the bits of [`erf`]).
#[inline(always)]
pub fn erf_in_place(y: &mut [f32]) {
    in_chunks!(y, |c| {
        let mut x = [0f64; ERF_LANES];
        for i in 0..ERF_LANES {
            x[i] = f64::from(c[i]);
        }
        let e = erf64_lanes(x);
        for i in 0..ERF_LANES {
            c[i] = e[i] as f32;
        }
    });
}

/// Exact GELU of every value of `y`, in place (the bits of [`gelu`]).
#[inline(always)]
pub fn gelu_in_place(y: &mut [f32]) {
    in_chunks!(y, |c| {
        let (mut x, mut h) = ([0f64; ERF_LANES], [0f64; ERF_LANES]);
        for i in 0..ERF_LANES {
            x[i] = f64::from(c[i]);
            h[i] = x[i] * std::f64::consts::FRAC_1_SQRT_2;
        }
        let e = erf64_lanes(h);
        for i in 0..ERF_LANES {
            c[i] = (0.5 * x[i] * (1.0 + e[i])) as f32;
        }
    });
}

/// A [`GeluChain`] on every value of `y`, in place (the bits of [`GeluChain::apply`]): the
/// f32 operations value by value, erf [`ERF_LANES`] at a time.
#[inline(always)]
pub fn gelu_chain_in_place(y: &mut [f32], chain: GeluChain) {
    in_chunks!(y, |c| {
        let mut s = [0f64; ERF_LANES];
        for i in 0..ERF_LANES {
            s[i] = f64::from(chain.arg(c[i]));
        }
        let e = erf64_lanes(s);
        for i in 0..ERF_LANES {
            c[i] = chain.finish(c[i], e[i] as f32);
        }
    });
}

/// erf(x), rounded once to f32.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf64(f64::from(x)) as f32
}

/// GELU, exact: x · (1 + erf(x/√2)) / 2 (in f64, rounded once).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let v = f64::from(x);
    (0.5 * v * (1.0 + erf64(v * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

/// GELU, the tanh approximation: x · (1 + tanh(√(2/π)·(x + 0.044715·x³))) / 2 (in f64,
/// rounded once).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    let v = f64::from(x);
    // √(2/π).
    let k = 0.797_884_560_802_865_4;
    (0.5 * v * (1.0 + (k * (v + 0.044_715 * v * v * v)).tanh())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series (|x| ≤ 3, where the largest term is below 200, so f64
    /// keeps 13 digits) or by the continued fraction of erfc (beyond): independent of the
    /// fit above.
    fn reference(x: f64) -> f64 {
        let ax = x.abs();
        if ax <= 3.0 {
            let (mut term, mut sum) = (x, x);
            for n in 1..200 {
                let n = f64::from(n);
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * std::f64::consts::FRAC_2_SQRT_PI
        } else {
            // erfc(x) = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))).
            let mut f = ax;
            for k in (1..400).rev() {
                f = ax + f64::from(k) / 2.0 / f;
            }
            let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f;
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn erf_is_within_2e_7_of_the_true_function() {
        let mut worst = 0.0f64;
        for i in -60_000..=60_000 {
            let x = f64::from(i) * 1e-4;
            let got = f64::from(erf(x as f32));
            let want = reference(f64::from(x as f32));
            worst = worst.max((got - want).abs());
        }
        assert!(worst <= 2e-7, "largest error {worst:e}");
        // The f64 form itself, before rounding, is far closer inside |x| < 4 (beyond, 1 is
        // off by up to 1.6e-8).
        let mut worst64 = 0.0f64;
        for i in -3_999..=3_999 {
            let x = f64::from(i) * 1e-3;
            worst64 = worst64.max((erf64(x) - reference(x)).abs());
        }
        assert!(worst64 <= 1e-9, "f64 error {worst64:e}");
    }

    #[test]
    fn erf_is_odd_bounded_and_exact_at_the_ends() {
        for x in [0.0f32, 1e-30, 0.3, 1.0, 2.5, 3.99, 4.0, 7.0, 1e30] {
            assert_eq!(erf(-x).to_bits(), (-erf(x)).to_bits(), "{x}");
            assert!(erf(x).abs() <= 1.0, "{x}");
        }
        assert_eq!(erf(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(erf(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert_eq!(erf(f32::MAX), 1.0);
        assert!(erf(f32::NAN).is_nan());
        assert!(gelu(f32::NAN).is_nan() && gelu_tanh(f32::NAN).is_nan());
    }

    #[test]
    fn exp_is_within_1e_14_relative() {
        let mut worst = 0.0f64;
        for i in -708_000..709_000 {
            let z = f64::from(i) * 1e-3 + 1.234_567e-4;
            let (got, want) = (exp64(z), z.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst <= 1e-14, "largest relative error {worst:e}");
        assert_eq!(exp64(0.0), 1.0);
        assert_eq!(exp64(-709.0), 0.0);
        assert_eq!(exp64(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp64(710.0), f64::INFINITY);
        assert_eq!(exp64(f64::INFINITY), f64::INFINITY);
        assert!(exp64(f64::NAN).is_nan());
        let zs = [-1000.0, -708.0, -3.5, -0.0, 0.5, 88.7, 709.0, f64::NAN];
        let lanes = exp64_lanes(zs);
        for (z, e) in zs.iter().zip(lanes) {
            assert_eq!(e.to_bits(), exp64(*z).to_bits(), "{z}");
        }
    }

    #[test]
    fn the_vector_forms_give_the_scalar_bits() {
        let mut xs: Vec<f32> = crate::testing::uniform(9, 203)
            .iter()
            .map(|v| v * 6.0)
            .collect();
        xs.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            4.0,
            -3.999_999_8,
            0.0,
            -0.0,
        ]);
        let mut e = xs.clone();
        erf_in_place(&mut e);
        let mut g = xs.clone();
        gelu_in_place(&mut g);
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(e[i].to_bits(), erf(x).to_bits(), "erf({x})");
            assert_eq!(g[i].to_bits(), gelu(x).to_bits(), "gelu({x})");
        }
    }

    /// The fused chain is the exporters' five f32 operations in their order, bit for bit
    /// (NaN for NaN: a NaN input's payload carries through either way), on every form, in
    /// the scalar and the vector form, where overflow and underflow make the halving's
    /// place matter too.
    #[test]
    fn the_gelu_chain_is_the_chain_of_f32_steps() {
        use crate::kernels::epilogue::{GeluChain, GeluHalf, GeluScale};
        let mut xs: Vec<f32> = crate::testing::uniform(11, 301)
            .iter()
            .map(|v| v * 8.0)
            .collect();
        xs.extend([
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -f32::MAX,
            3.0e38,
            f32::MIN_POSITIVE,
            -1.0e-45,
            1.0e-45,
            0.0,
            -0.0,
            -5.5,
            -12.0,
        ]);
        for (code, form) in GeluChain::ALL.iter().enumerate() {
            assert_eq!(usize::from(form.code()), code);
            assert_eq!(GeluChain::from_code(form.code()), Some(*form));
            let mut vector = xs.clone();
            gelu_chain_in_place(&mut vector, *form);
            for (&x, &v) in xs.iter().zip(&vector) {
                // The steps as the runtime runs them unfused: Binary, Unary(Erf), Binary…,
                // with the exporters' constants (√2 and 1/√2 rounded to f32) by their bits.
                let s = match form.scale {
                    GeluScale::DivSqrt2 => x / f32::from_bits(0x3fb5_04f3),
                    GeluScale::MulFrac1Sqrt2 => x * f32::from_bits(0x3f35_04f3),
                };
                let e = erf(s);
                let a = e + 1.0;
                let want = match form.half {
                    GeluHalf::Last => {
                        let m = x * a;
                        m * 0.5
                    }
                    GeluHalf::OfSum => {
                        let h = 0.5 * a;
                        x * h
                    }
                    GeluHalf::OfX => {
                        let h = x * 0.5;
                        h * a
                    }
                };
                let got = form.apply(x);
                assert_eq!(got.to_bits(), want.to_bits(), "{form:?} at {x:e}");
                assert_eq!(v.to_bits(), want.to_bits(), "{form:?} vector at {x:e}");
            }
        }
        assert_eq!(GeluChain::from_code(6), None);
        // Where the halving sits shows at overflow: (x·2)·½ overflows, (x·½)·2 does not.
        let last = GeluChain {
            scale: GeluScale::DivSqrt2,
            half: GeluHalf::Last,
        };
        let of_x = GeluChain {
            half: GeluHalf::OfX,
            ..last
        };
        assert_eq!(last.apply(3.0e38), f32::INFINITY);
        assert_eq!(of_x.apply(3.0e38), 3.0e38);
    }

    #[test]
    fn gelu_matches_its_definition() {
        for i in -800..=800 {
            let x = i as f32 / 100.0;
            let v = f64::from(x);
            let exact = 0.5 * v * (1.0 + reference(v / 2f64.sqrt()));
            assert!(
                (f64::from(gelu(x)) - exact).abs() <= 2e-7 * (1.0 + v.abs()),
                "{x}"
            );
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let approx = 0.5 * v * (1.0 + (k * (v + 0.044715 * v.powi(3))).tanh());
            assert!((f64::from(gelu_tanh(x)) - approx).abs() <= 1e-6, "{x}");
        }
        assert_eq!(gelu(f32::INFINITY), f32::INFINITY);
        assert_eq!(gelu_tanh(f32::INFINITY), f32::INFINITY);
        // −∞ · 0, as the reference evaluator's formula gives.
        assert!(gelu(f32::NEG_INFINITY).is_nan() && gelu_tanh(f32::NEG_INFINITY).is_nan());
    }
}

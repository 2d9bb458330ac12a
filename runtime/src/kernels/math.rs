//! The Gauss error function and GELU, elementwise on f32 with f64 arithmetic inside:
//! within 1e-9 absolute of the true erf before the one rounding to f32, branch-free (selects
//! only), so the loops that call them vectorize.
//!
//! For |x| < 4, erf(x) = x · g(s) with s = x², and g (erf(x)/x, an entire function of s) is
//! a Chebyshev series in u = s/8 − 1 ∈ [−1, 1), summed by Clenshaw's recurrence. Beyond 4,
//! erf is ±1 to within 1.6·10⁻⁸, less than half an f32 step below 1. NaN stays NaN.

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
    let inside = x.abs() < 4.0;
    // Outside (or NaN) the series runs on 0, and its result is not used.
    let t = if inside { x } else { 0.0 };
    let u = t * t * 0.125 - 1.0;
    let (mut b1, mut b2) = (0.0f64, 0.0f64);
    for &c in ERF_OVER_X[1..].iter().rev() {
        let b0 = 2.0 * u * b1 - b2 + c;
        b2 = b1;
        b1 = b0;
    }
    let g = u * b1 - b2 + ERF_OVER_X[0];
    if inside {
        t * g
    } else if x.is_nan() {
        x
    } else {
        1f64.copysign(x)
    }
}

/// [`erf64`] on 8 lanes: the same operations in the same order (so the same bits), written
/// lane-wise so that the loops vectorize.
#[inline(always)]
fn erf64x8(x: [f64; 8]) -> [f64; 8] {
    let mut t = [0f64; 8];
    let mut u = [0f64; 8];
    for i in 0..8 {
        t[i] = if x[i].abs() < 4.0 { x[i] } else { 0.0 };
        u[i] = t[i] * t[i] * 0.125 - 1.0;
    }
    let (mut b1, mut b2) = ([0f64; 8], [0f64; 8]);
    for &c in ERF_OVER_X[1..].iter().rev() {
        for i in 0..8 {
            let b0 = 2.0 * u[i] * b1[i] - b2[i] + c;
            b2[i] = b1[i];
            b1[i] = b0;
        }
    }
    let mut out = [0f64; 8];
    for i in 0..8 {
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

/// `f` on every value of `y`, in place: 8 at a time through `f8` (vectorized), the rest
/// one by one through `f1` (which must compute the same bits).
#[inline(always)]
fn in_place(y: &mut [f32], f8: impl Fn([f32; 8]) -> [f32; 8], f1: impl Fn(f32) -> f32) {
    let mut chunks = y.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut v = [0f32; 8];
        v.copy_from_slice(c);
        c.copy_from_slice(&f8(v));
    }
    for v in chunks.into_remainder() {
        *v = f1(*v);
    }
}

/// erf of every value of `y`, in place (the bits of [`erf`]).
#[inline(always)]
pub fn erf_in_place(y: &mut [f32]) {
    in_place(y, |v| erf64x8(v.map(f64::from)).map(|r| r as f32), erf);
}

/// Exact GELU of every value of `y`, in place (the bits of [`gelu`]).
#[inline(always)]
pub fn gelu_in_place(y: &mut [f32]) {
    in_place(
        y,
        |v| {
            let x = v.map(f64::from);
            let e = erf64x8(x.map(|x| x * std::f64::consts::FRAC_1_SQRT_2));
            let mut out = [0f32; 8];
            for i in 0..8 {
                out[i] = (0.5 * x[i] * (1.0 + e[i])) as f32;
            }
            out
        },
        gelu,
    );
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

//! Support for every numeric test of mcc: the one comparison of computed floats against
//! reference floats, and the instruction sets a kernel suite must exercise.
//!
//! The comparison fails on a NaN or an infinity where the reference has a number, or on a
//! different length, with an infinite error — it never skips an element (`f64::max` skips
//! NaN, so a fold over it lets a kernel that writes NaN everywhere pass). It lives here, in
//! the crate at the bottom of the workspace, so the runtime's own unit tests, the driver's
//! tests and the integration suites all share it.

use std::io::Write;

use crate::kernels::gemm::Isa;

/// The instruction sets kernel suite `suite` runs every case on: all that this CPU supports
/// (after `MCC_ISA`'s restriction), written to the test log on stderr (past the test
/// harness's capture, so every run shows it). When `MCC_TEST_ISAS` lists ISAs by name
/// (comma-separated; `scripts/test` sets it from the CPU's flags), an ISA listed there but not
/// exercised is an error: a broken dispatch cannot turn a suite into a scalar-only one
/// unnoticed.
pub fn suite_isas(suite: &str) -> Result<Vec<Isa>, String> {
    let best = Isa::detect();
    let isas: Vec<Isa> = [Isa::Scalar, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&isa| match isa {
            Isa::Scalar => true,
            Isa::Avx2 => best.has_avx2(),
            Isa::Avx512 => best == Isa::Avx512,
        })
        .collect();
    let names: Vec<&str> = isas.iter().map(|i| i.name()).collect();
    // One write (so the line is not interleaved with the harness's), best effort: a closed
    // stderr must not fail the suite.
    let line = format!("kernel suite `{suite}` exercises: {}\n", names.join(", "));
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Ok(required) = std::env::var("MCC_TEST_ISAS") {
        for want in required.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !names.contains(&want) {
                return Err(format!(
                    "kernel suite `{suite}` must exercise `{want}` (MCC_TEST_ISAS={required}) but runs only {}",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(isas)
}

/// `n` floats in [−1, 1) from a fixed linear congruential sequence started at `seed`: the
/// kernel suites' operands, the same on every machine.
pub fn uniform(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// How far `got` is from `want`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Diff {
    /// max |got − want| over the elements; infinite when an element of `got` is NaN or
    /// infinite where `want` is not (or the lengths differ).
    pub max_abs: f64,
    /// `max_abs` / max |want| over the finite reference elements (or `max_abs` itself when
    /// they are all zero): the error relative to the tensor's scale.
    pub max_rel: f64,
    /// Index of the element with the largest error (or of the first non-finite mismatch).
    pub worst: usize,
    /// Whether every element satisfies |got − want| ≤ atol + rtol·|want| (numpy's
    /// `allclose`); a NaN in both at the same place, or the same infinity, counts as equal.
    pub allclose: bool,
}

impl Diff {
    /// Whether the relative error is at most `rel` and every element passed `allclose`; false
    /// on any non-finite mismatch (its error is infinite, and `inf <= rel` is false).
    pub fn within(&self, rel: f64) -> bool {
        self.allclose && self.max_rel <= rel
    }
}

/// Compares `got` with `want` element by element under numpy's `allclose(rtol, atol)`.
pub fn diff<A, B>(got: &[A], want: &[B], rtol: f64, atol: f64) -> Diff
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    let mut d = Diff {
        max_abs: 0.0,
        max_rel: 0.0,
        worst: 0,
        allclose: got.len() == want.len(),
    };
    if !d.allclose {
        d.max_abs = f64::INFINITY;
        d.max_rel = f64::INFINITY;
        return d;
    }
    let mut scale: f64 = 0.0;
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let (x, y): (f64, f64) = (a.into(), b.into());
        let same_special = (x.is_nan() && y.is_nan()) || (x.is_infinite() && x == y);
        let e = if same_special {
            0.0
        } else if !x.is_finite() || !y.is_finite() {
            f64::INFINITY
        } else {
            (x - y).abs()
        };
        // Written so that a NaN error (impossible above, but cheap to guard) fails too.
        let within = same_special
            || matches!(
                e.partial_cmp(&(atol + rtol * y.abs())),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            ) && e.is_finite();
        if !within {
            d.allclose = false;
        }
        if e > d.max_abs || (e.is_infinite() && !d.max_abs.is_infinite()) {
            d.max_abs = e;
            d.worst = i;
        }
        if y.is_finite() {
            scale = scale.max(y.abs());
        }
    }
    d.max_rel = if scale > 0.0 {
        d.max_abs / scale
    } else {
        d.max_abs
    };
    d
}

/// A program of `steps` with `weights` and nothing else (no inputs, outputs or arena): for
/// tests of what is derived from the steps alone.
pub fn bare_program(
    steps: Vec<crate::program::Step>,
    weights: Vec<f32>,
) -> crate::program::Program {
    crate::program::Program {
        fixed_batch: None,
        inputs: vec![],
        outputs: vec![],
        arena: 0,
        scratch: 0,
        steps,
        weights,
        sources: vec![],
    }
}

/// A program of one step over a 128-float arena (input `x` at 64..128, output `y` at 0..64)
/// with `weights` zero weights: for tests that hand the runner a hostile step.
pub fn one_step(step: crate::program::Step, weights: usize) -> crate::program::Program {
    use crate::program::{Buf, Io, Program};
    Program {
        fixed_batch: None,
        inputs: vec![Io {
            name: "x".into(),
            dims: vec![64],
            buf: Buf { off: 64, len: 64 },
        }],
        outputs: vec![Io {
            name: "y".into(),
            dims: vec![64],
            buf: Buf { off: 0, len: 64 },
        }],
        arena: 128,
        scratch: 0,
        steps: vec![step],
        weights: vec![0.0; weights],
        sources: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_fail() {
        let want = [1.0f32, 2.0, 3.0];
        let d = diff(&[1.0f32, f32::NAN, 3.0], &want, 1e-4, 0.0);
        assert!(!d.allclose && d.max_abs.is_infinite() && d.worst == 1 && !d.within(1.0));
        let d = diff(&[f32::INFINITY, 2.0, 3.0], &want, 1e-4, 0.0);
        assert!(!d.allclose && d.max_rel.is_infinite() && d.worst == 0);
        let d = diff(&[f32::NAN; 3], &want, 1e9, 1e9);
        assert!(!d.within(f64::MAX));
        // A reference NaN must be matched by a NaN.
        let d = diff(&[1.0f32, 2.0], &[1.0f32, f32::NAN], 1e-4, 0.0);
        assert!(!d.allclose);
        let d = diff(&[1.0f32, f32::NAN], &[1.0f32, f32::NAN], 1e-4, 0.0);
        assert!(d.within(0.0));
    }

    #[test]
    fn lengths_and_values() {
        assert!(!diff(&[1.0f32], &[1.0f32, 2.0], 1.0, 1.0).allclose);
        let d = diff(&[1.0f32, 2.5], &[1.0f64, 2.0], 1e-4, 0.0);
        assert_eq!((d.max_abs, d.worst, d.allclose), (0.5, 1, false));
        assert_eq!(d.max_rel, 0.25);
        assert!(diff(&[1.0f32, 2.00001], &[1.0f32, 2.0], 1e-4, 0.0).within(1e-4));
    }
}

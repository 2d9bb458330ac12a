//! Reductions along one axis of a sample viewed as `[outer][len][inner]`: layer
//! normalization (each row's mean and variance, then the scaled, shifted normalized row),
//! instance normalization (the same per channel plane, scaled and shifted per channel)
//! and ReduceSum / ReduceMean / ReduceMax / ReduceMin.
//!
//! Sums run in f64 (in eight interleaved partial sums, so the loops vectorize) and round
//! once: they agree with the reference evaluator, which computes in f64 too, to the order
//! of the additions. Max and Min propagate NaN, as ONNX's reductions do.

/// A reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Σ.
    Sum,
    /// Σ / count.
    Mean,
    /// Largest (NaN if any is NaN).
    Max,
    /// Smallest (NaN if any is NaN).
    Min,
}

impl ReduceOp {
    /// Its code in a program.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reduction with code `c`.
    pub fn from_code(c: u8) -> Option<ReduceOp> {
        [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min]
            .get(usize::from(c))
            .copied()
    }

    /// Folds `v` into the running `m` (Max, Min): a NaN, once met, stays.
    #[inline(always)]
    fn pick(self, m: f32, v: f32) -> f32 {
        let take = match self {
            ReduceOp::Max => v > m,
            _ => v < m,
        };
        if take || v.is_nan() { v } else { m }
    }
}

/// Layer normalization of `rows` rows of `cols` values: per row, `(x − mean)/√(var + eps)`,
/// times `scale` plus `bias` per column (mean and biased variance in f64, the result rounded
/// once).
pub fn layer_norm(
    x: &[f32],
    rows: usize,
    cols: usize,
    eps: f32,
    scale: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), String> {
    let n = rows
        .checked_mul(cols)
        .ok_or("layer norm: rows × cols overflow")?;
    if x.len() < n || y.len() < n || scale.len() < cols || bias.is_some_and(|b| b.len() < cols) {
        return Err("layer norm: a buffer is shorter than the rows it holds".into());
    }
    if cols == 0 {
        return Ok(());
    }
    layer_norm_rows(
        &x[..n],
        cols,
        f64::from(eps),
        &scale[..cols],
        bias.map(|b| &b[..cols]),
        &mut y[..n],
    );
    Ok(())
}

avx2_dispatch! {
    /// [`layer_norm`] on checked slices (whole rows).
    fn layer_norm_rows(x: &[f32], cols: usize, eps: f64, scale: &[f32], bias: Option<&[f32]>, y: &mut [f32]) => layer_norm_generic
}

#[inline(always)]
fn layer_norm_generic(
    x: &[f32],
    cols: usize,
    eps: f64,
    scale: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let count = cols as f64;
    for (xs, ys) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
        let mean = sum(xs, |v| v) / count;
        let var = sum(xs, |v| (v - mean) * (v - mean)) / count;
        let r = 1.0 / (var + eps).sqrt();
        match bias {
            Some(b) => {
                for (((o, &v), &s), &t) in ys.iter_mut().zip(xs).zip(scale).zip(b) {
                    *o = ((f64::from(v) - mean) * r * f64::from(s) + f64::from(t)) as f32;
                }
            }
            None => {
                for ((o, &v), &s) in ys.iter_mut().zip(xs).zip(scale) {
                    *o = ((f64::from(v) - mean) * r * f64::from(s)) as f32;
                }
            }
        }
    }
}

/// Instance normalization of `c` planes of `hw` values: per plane, `(x − mean)/√(var + eps)`
/// times its channel's `scale` plus its `bias` (mean and biased variance in f64, the result
/// rounded once).
pub fn instance_norm(
    x: &[f32],
    c: usize,
    hw: usize,
    eps: f32,
    scale: &[f32],
    bias: &[f32],
    y: &mut [f32],
) -> Result<(), String> {
    let n = c.checked_mul(hw).ok_or("instance norm: c × hw overflow")?;
    if x.len() < n || y.len() < n || scale.len() < c || bias.len() < c {
        return Err("instance norm: a buffer is shorter than the planes it holds".into());
    }
    if hw == 0 {
        return Ok(());
    }
    instance_norm_planes(
        &x[..n],
        hw,
        f64::from(eps),
        &scale[..c],
        &bias[..c],
        &mut y[..n],
    );
    Ok(())
}

avx2_dispatch! {
    /// [`instance_norm`] on checked slices (whole planes).
    fn instance_norm_planes(x: &[f32], hw: usize, eps: f64, scale: &[f32], bias: &[f32], y: &mut [f32]) => instance_norm_generic
}

#[inline(always)]
fn instance_norm_generic(
    x: &[f32],
    hw: usize,
    eps: f64,
    scale: &[f32],
    bias: &[f32],
    y: &mut [f32],
) {
    let count = hw as f64;
    let planes = x.chunks_exact(hw).zip(y.chunks_exact_mut(hw));
    for ((xs, ys), (&s, &b)) in planes.zip(scale.iter().zip(bias)) {
        let mean = sum(xs, |v| v) / count;
        let var = sum(xs, |v| (v - mean) * (v - mean)) / count;
        let r = f64::from(s) / (var + eps).sqrt();
        let b = f64::from(b);
        for (o, &v) in ys.iter_mut().zip(xs) {
            *o = ((f64::from(v) - mean) * r + b) as f32;
        }
    }
}

/// Σ f(v) over `xs` in f64, as eight interleaved partial sums (vectorizable).
#[inline(always)]
fn sum(xs: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(f64::from(v));
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in chunks.remainder() {
        s += f(f64::from(v));
    }
    s
}

/// `y[o][i] = op over r of x[o][r][i]` for a sample viewed as `[outer][len][inner]`.
pub fn reduce(
    x: &[f32],
    outer: usize,
    len: usize,
    inner: usize,
    op: ReduceOp,
    y: &mut [f32],
) -> Result<(), String> {
    let (n_in, n_out) = outer
        .checked_mul(inner)
        .and_then(|oi| Some((oi.checked_mul(len)?, oi)))
        .ok_or("reduce: sizes overflow")?;
    if x.len() < n_in || y.len() < n_out {
        return Err("reduce: a buffer is shorter than the tensor it holds".into());
    }
    if n_out == 0 {
        return Ok(());
    }
    reduce_checked(&x[..n_in], outer, len, inner, op, &mut y[..n_out]);
    Ok(())
}

avx2_dispatch! {
    /// [`reduce`] on checked slices.
    fn reduce_checked(x: &[f32], outer: usize, len: usize, inner: usize, op: ReduceOp, y: &mut [f32]) => reduce_generic
}

/// Output columns a reduction along a strided axis accumulates at once.
const STRIP: usize = 64;

#[inline(always)]
fn reduce_generic(x: &[f32], outer: usize, len: usize, inner: usize, op: ReduceOp, y: &mut [f32]) {
    let empty = match op {
        ReduceOp::Sum => 0.0,
        ReduceOp::Mean => f32::NAN,
        ReduceOp::Max => f32::NEG_INFINITY,
        ReduceOp::Min => f32::INFINITY,
    };
    if len == 0 {
        y.fill(empty);
        return;
    }
    let mean = |s: f64| match op {
        ReduceOp::Mean => (s / len as f64) as f32,
        _ => s as f32,
    };
    for o in 0..outer {
        let block = &x[o * len * inner..(o + 1) * len * inner];
        let out = &mut y[o * inner..(o + 1) * inner];
        if inner == 1 {
            out[0] = match op {
                ReduceOp::Sum | ReduceOp::Mean => mean(sum(block, |v| v)),
                _ => block[1..].iter().fold(block[0], |m, &v| op.pick(m, v)),
            };
            continue;
        }
        // Along a strided axis: a strip of output columns at a time, each row of the strip
        // added (or compared) into it.
        for c0 in (0..inner).step_by(STRIP) {
            let w = STRIP.min(inner - c0);
            let row = |r: usize| &block[r * inner + c0..r * inner + c0 + w];
            match op {
                ReduceOp::Sum | ReduceOp::Mean => {
                    let mut acc = [0f64; STRIP];
                    for r in 0..len {
                        for (a, &v) in acc.iter_mut().zip(row(r)) {
                            *a += f64::from(v);
                        }
                    }
                    for (o, &a) in out[c0..c0 + w].iter_mut().zip(&acc) {
                        *o = mean(a);
                    }
                }
                _ => {
                    let dst = &mut out[c0..c0 + w];
                    dst.copy_from_slice(row(0));
                    for r in 1..len {
                        for (m, &v) in dst.iter_mut().zip(row(r)) {
                            *m = op.pick(*m, v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{diff, uniform};

    #[test]
    fn layer_norm_matches_the_definition_in_f64() {
        for (rows, cols) in [(1, 1), (3, 7), (17, 64), (2, 129)] {
            // An offset far from zero: a one-pass variance in f32 would lose it.
            let x: Vec<f32> = uniform(1, rows * cols).iter().map(|v| 1000.0 + v).collect();
            let (scale, bias) = (uniform(2, cols), uniform(3, cols));
            for with_bias in [false, true] {
                let mut y = vec![f32::NAN; rows * cols];
                let b = with_bias.then_some(&bias[..]);
                layer_norm(&x, rows, cols, 1e-5, &scale, b, &mut y).unwrap();
                let mut want = vec![];
                for row in x.chunks(cols) {
                    let v: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                    let mean = v.iter().sum::<f64>() / cols as f64;
                    let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / cols as f64;
                    for (i, a) in v.iter().enumerate() {
                        let t = if with_bias { f64::from(bias[i]) } else { 0.0 };
                        want.push((a - mean) / (var + 1e-5).sqrt() * f64::from(scale[i]) + t);
                    }
                }
                let d = diff(&y, &want, 1e-6, 1e-6);
                assert!(d.allclose, "{rows}×{cols}: {d:?}");
            }
        }
    }

    #[test]
    fn layer_norm_spreads_a_nan_to_its_row_only() {
        let mut x = uniform(4, 3 * 8);
        x[9] = f32::NAN;
        x[20] = f32::INFINITY;
        let mut y = vec![0.0; 24];
        layer_norm(&x, 3, 8, 1e-5, &[1.0; 8], None, &mut y).unwrap();
        assert!(y[..8].iter().all(|v| v.is_finite()));
        assert!(y[8..].iter().all(|v| v.is_nan()), "{y:?}");
        assert!(layer_norm(&x, 3, 8, 1e-5, &[1.0; 7], None, &mut y).is_err());
    }

    /// Straightforward reference: every output element by its own loop.
    fn naive(x: &[f32], outer: usize, len: usize, inner: usize, op: ReduceOp) -> Vec<f64> {
        let mut out = vec![];
        for o in 0..outer {
            for i in 0..inner {
                let vals: Vec<f64> = (0..len)
                    .map(|r| f64::from(x[(o * len + r) * inner + i]))
                    .collect();
                let nan = vals.iter().any(|v| v.is_nan());
                out.push(match op {
                    ReduceOp::Sum => vals.iter().sum(),
                    ReduceOp::Mean => vals.iter().sum::<f64>() / len as f64,
                    _ if nan => f64::NAN,
                    ReduceOp::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    ReduceOp::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
                });
            }
        }
        out
    }

    #[test]
    fn reductions_match_a_naive_loop_nan_and_infinity_included() {
        for (outer, len, inner) in [(1, 1, 1), (2, 5, 1), (3, 4, 7), (2, 3, 130), (1, 49, 16)] {
            let mut x = uniform(5, outer * len * inner);
            x[outer * len * inner / 2] = f32::NAN;
            x[0] = f32::NEG_INFINITY;
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
                let mut y = vec![0.0; outer * inner];
                reduce(&x, outer, len, inner, op, &mut y).unwrap();
                let want = naive(&x, outer, len, inner, op);
                let d = diff(&y, &want, 1e-6, 1e-6);
                assert!(
                    d.allclose,
                    "{op:?} {outer}×{len}×{inner}: {d:?}\n{y:?}\n{want:?}"
                );
            }
        }
        // A NaN before a larger value still wins (a plain `f32::max` would drop it).
        let mut y = [0.0];
        reduce(&[1.0, f32::NAN, 5.0], 1, 3, 1, ReduceOp::Max, &mut y).unwrap();
        assert!(y[0].is_nan());
        assert!(reduce(&[1.0; 5], 1, 3, 2, ReduceOp::Sum, &mut y).is_err());
    }

    #[test]
    fn reduce_codes_round_trip() {
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
            assert_eq!(ReduceOp::from_code(op.code()), Some(op));
        }
        assert_eq!(ReduceOp::from_code(4), None);
    }
}

//! Layer-wise reconstruction: choosing which weights of a linear layer to zero, and repairing
//! the ones kept, from its calibration statistics.
//!
//! A linear layer (Gemm, MatMul, one-group Conv) computes `y = W·x` for every row `x` of its
//! input matrix `X` (a Gemm's rows, a Conv's im2col patches); `W` is `rows × k`, one row per
//! output. The calibration context gives `XᵀX`; with `H = XᵀX / n + λI` (λ: 1% of the mean
//! diagonal, so unused inputs stay solvable), the output error of replacing `W` by `Ŵ` on the
//! calibration data is `Σ_r (w_r − ŵ_r)ᵀ H (w_r − ŵ_r)`, one quadratic per row.
//!
//! - [`obs`]: Optimal Brain Surgeon over the columns in order, as in OBC/SparseGPT (Frantar
//!   & Alistarh): column `c`'s weights chosen for removal are zeroed and the error they leave
//!   is spread over the columns after `c` through the Cholesky factor of `H⁻¹`; which weights
//!   go is chosen per block of 128 columns by the OBS saliency `w² / [U]_cc²`.
//!   For an N:M pattern the choice is made per row and per group of `m` consecutive columns,
//!   as each group is reached (SparseGPT's N:M variant); for blocks, whole blocks by their
//!   summed saliency, per block of columns.
//! - [`refit`]: least squares (ThiNet / He et al.'s reconstruction): for a fixed mask, each
//!   row's kept weights are set to minimize that row's output error exactly.
//!
//! **Invariant:** the masks hold exactly the pattern's count — `floor(amount · rows · k)` for
//! unstructured, `m − n` of every group for N:M, `floor(amount · blocks)` whole blocks for
//! block sparsity — (ties broken by position), every weight outside it is finite, and the same statistics give
//! the same bits (fixed evaluation order). Inputs that are not finite, or a matrix that is
//! not positive definite even after damping, are errors, never NaN weights.

use mcc_ir::{Op, Tensor};

use crate::linalg::{cholesky, cholesky_solve, inverse_spd};

/// A layer's weights as `rows × k`, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Rows {
    /// Outputs.
    pub rows: usize,
    /// Inputs per output (the width of `X`'s rows).
    pub k: usize,
    /// Row-major.
    pub data: Vec<f64>,
}

/// How the weight tensor is laid out relative to `W`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum View {
    /// The tensor is `[rows, …]`, each row's `k` values contiguous (Gemm with `transB`, Conv
    /// `[out, c, kh, kw]` in im2col order).
    Direct,
    /// The tensor is `[k, rows]` (Gemm without `transB`, MatMul).
    Transposed,
}

/// How `op`'s weight operand maps to `W`, or why it has no `X` to reconstruct against.
pub fn view(op: &Op, shape: &[usize]) -> Result<View, String> {
    match op {
        Op::Gemm(g) if g.transA != 0 => Err("a Gemm with transA has no row-wise input".into()),
        Op::Gemm(g) if shape.len() == 2 => Ok(if g.transB != 0 {
            View::Direct
        } else {
            View::Transposed
        }),
        Op::MatMul(_) if shape.len() == 2 => Ok(View::Transposed),
        Op::Conv(c) if c.group != 1 => Err(format!(
            "a Conv of {} groups (XᵀX is collected for one-group convolutions)",
            c.group
        )),
        Op::Conv(_) if shape.len() == 4 => Ok(View::Direct),
        other => Err(format!(
            "a {} with weights of rank {}",
            other.name(),
            shape.len()
        )),
    }
}

/// `W` from an f32 weight tensor.
pub fn to_rows(t: &Tensor, view: View) -> Option<Rows> {
    let a = t.as_f32()?;
    let shape = a.shape();
    let flat: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    Some(match view {
        View::Direct => {
            let rows = *shape.first()?;
            Rows {
                rows,
                k: flat.len() / rows.max(1),
                data: flat,
            }
        }
        View::Transposed => {
            let (k, rows) = (*shape.first()?, *shape.get(1)?);
            let mut data = vec![0.0; flat.len()];
            for c in 0..k {
                for r in 0..rows {
                    data[r * k + c] = flat[c * rows + r];
                }
            }
            Rows { rows, k, data }
        }
    })
}

/// The weight tensor (of `shape`) holding `w`.
pub fn from_rows(w: &Rows, view: View, shape: &[usize]) -> Result<Tensor, String> {
    let data: Vec<f32> = match view {
        View::Direct => w.data.iter().map(|&v| v as f32).collect(),
        View::Transposed => {
            let mut d = vec![0.0f32; w.data.len()];
            for r in 0..w.rows {
                for c in 0..w.k {
                    d[c * w.rows + r] = w.data[r * w.k + c] as f32;
                }
            }
            d
        }
    };
    Tensor::from_vec(shape, data).map_err(|e| e.to_string())
}

/// `H = XᵀX / n + λI` from a Gram statistic of side `k` summing `n` rows.
pub fn hessian(gram: &[f64], k: usize, n: usize) -> Result<Vec<f64>, String> {
    if gram.len() != k * k {
        return Err(format!("XᵀX has {} entries, not {k}²", gram.len()));
    }
    if let Some(v) = gram.iter().find(|v| !v.is_finite()) {
        return Err(format!("XᵀX holds {v}: the calibration inputs overflow"));
    }
    let n = n.max(1) as f64;
    let mut h: Vec<f64> = gram.iter().map(|&g| g / n).collect();
    let mean = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k.max(1) as f64;
    let damp = if mean > 0.0 { 0.01 * mean } else { 1.0 };
    for i in 0..k {
        h[i * k + i] += damp;
    }
    Ok(h)
}

/// Which weights a mask removes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pattern {
    /// `floor(amount · n)` of the layer's `n` weights, anywhere.
    Unstructured {
        /// The fraction removed.
        amount: f64,
    },
    /// `m − n` of every `m` consecutive weights of a row (`k` a multiple of `m`).
    NM {
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
    /// `floor(amount · blocks)` whole blocks of `r` rows × `c` columns (`rows` a multiple of
    /// `r`, `k` of `c`; `c` divides the OBS column block of 128).
    Block {
        /// The fraction of blocks removed.
        amount: f64,
        /// Rows (outputs) per block.
        r: usize,
        /// Columns (inputs) per block.
        c: usize,
    },
}

impl Pattern {
    /// Whether the pattern tiles a `rows × k` matrix: `Err` says why not.
    pub fn fits(self, rows: usize, k: usize) -> Result<(), String> {
        match self {
            Pattern::Unstructured { .. } => Ok(()),
            Pattern::NM { n, m } if !k.is_multiple_of(m.max(1)) => Err(format!(
                "its reduction length {k} is not a multiple of {m}, so {n}:{m} groups do not tile it"
            )),
            Pattern::Block { r, c, .. }
                if !rows.is_multiple_of(r.max(1)) || !k.is_multiple_of(c.max(1)) =>
            {
                let many =
                    |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                Err(format!(
                    "its {} × {} are not tiled by blocks of {} × {}",
                    many(rows, "output"),
                    many(k, "input"),
                    many(r, "output"),
                    many(c, "input")
                ))
            }
            _ => Ok(()),
        }
    }
}

/// How many of `n` weights `amount` removes.
fn quota(amount: f64, n: usize) -> usize {
    ((amount * n as f64).floor() as usize).min(n)
}

/// The magnitude mask (`true`: removed): the smallest |w| — for unstructured, the
/// `floor(amount · n)` smallest of the layer (the weights `prune unstructured` removes by
/// magnitude); for N:M, the `m − n` smallest of each group. Ties by position.
pub fn magnitude_mask(w: &Rows, pattern: Pattern) -> Vec<bool> {
    let mut mask = vec![false; w.data.len()];
    match pattern {
        Pattern::Unstructured { amount } => {
            // The `quota` smallest by (|w|, position), a total order: a selection, not a
            // sort, finds exactly them (a sort of vgg_bn's 1.1 M weights took ~20 ms).
            let mut order: Vec<usize> = (0..w.data.len()).collect();
            let q = quota(amount, w.data.len());
            if q > 0 && q < order.len() {
                order.select_nth_unstable_by(q, |&a, &b| {
                    w.data[a].abs().total_cmp(&w.data[b].abs()).then(a.cmp(&b))
                });
            }
            for &i in &order[..q.min(order.len())] {
                mask[i] = true;
            }
        }
        Pattern::NM { n, m } => {
            for start in (0..w.data.len()).step_by(m.max(1)) {
                let end = (start + m).min(w.data.len());
                drop_smallest(&mut mask, start..end, m.saturating_sub(n), |i| {
                    w.data[i].abs()
                });
            }
        }
        Pattern::Block { amount, r, c } => {
            // Blocks by the sum of their squares (the L2 norm's order).
            let blocks = block_ids(w.rows, w.k, r, c, 0..w.k);
            let score: Vec<f64> = blocks
                .iter()
                .map(|&(r0, c0)| block_sum(w, r0, c0, r, c, |i| w.data[i] * w.data[i]))
                .collect();
            let mut order: Vec<usize> = (0..blocks.len()).collect();
            order.sort_by(|&a, &b| score[a].total_cmp(&score[b]).then(a.cmp(&b)));
            for &b in &order[..quota(amount, blocks.len())] {
                mark_block(&mut mask, w.k, blocks[b], r, c);
            }
        }
    }
    mask
}

/// The top-left corners (row, column) of the `r × c` blocks of a `rows × k` matrix whose
/// columns lie in `cols` (a range of whole blocks), in row-major block order.
fn block_ids(
    rows: usize,
    k: usize,
    r: usize,
    c: usize,
    cols: std::ops::Range<usize>,
) -> Vec<(usize, usize)> {
    let (r, c) = (r.max(1), c.max(1));
    let mut out = vec![];
    for r0 in (0..rows).step_by(r) {
        for c0 in cols.clone().step_by(c).filter(|&c0| c0 < k) {
            out.push((r0, c0));
        }
    }
    out
}

/// The sum of `f` over the elements (flat indices) of the block at `(r0, c0)`.
fn block_sum(w: &Rows, r0: usize, c0: usize, r: usize, c: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut s = 0.0;
    for row in r0..(r0 + r).min(w.rows) {
        for col in c0..(c0 + c).min(w.k) {
            s += f(row * w.k + col);
        }
    }
    s
}

/// Marks the block at `(r0, c0)` removed.
fn mark_block(mask: &mut [bool], k: usize, (r0, c0): (usize, usize), r: usize, c: usize) {
    let rows = mask.len() / k.max(1);
    for row in r0..(r0 + r).min(rows) {
        for col in c0..(c0 + c).min(k) {
            mask[row * k + col] = true;
        }
    }
}

/// Marks in `mask` the `count` indices of `range` with the smallest `score` (ties by index).
fn drop_smallest(
    mask: &mut [bool],
    range: std::ops::Range<usize>,
    count: usize,
    score: impl Fn(usize) -> f64,
) {
    let mut idx: Vec<usize> = range.collect();
    idx.sort_by(|&a, &b| score(a).total_cmp(&score(b)).then(a.cmp(&b)));
    for &i in idx.iter().take(count) {
        mask[i] = true;
    }
}

/// Columns per block of OBS mask selection.
const BLOCK: usize = 128;

/// Prunes `w` to `pattern` by OBS with compensating updates (see the module documentation);
/// returns the mask (`true`: removed). `w` is updated in place.
pub fn obs(w: &mut Rows, h: &[f64], pattern: Pattern) -> Result<Vec<bool>, String> {
    let (rows, k) = (w.rows, w.k);
    let hinv = inverse_spd(h, k)
        .map_err(|e| format!("XᵀX is not positive definite (row {}) even damped", e.row))?;
    // H⁻¹ = L·Lᵀ; U = Lᵀ is the upper factor the column-by-column update reads.
    let mut l = hinv;
    cholesky(&mut l, k).map_err(|e| format!("H⁻¹ is not positive definite (row {})", e.row))?;
    let u = |i: usize, j: usize| l[j * k + i];
    let total = rows * k;
    let mut mask = vec![false; total];
    let mut start = 0;
    while start < k {
        // Unstructured: a block of columns, chosen over all its rows at once; N:M: one group.
        let end = match pattern {
            Pattern::Unstructured { .. } | Pattern::Block { .. } => (start + BLOCK).min(k),
            Pattern::NM { m, .. } => (start + m.max(1)).min(k),
        };
        let saliency = |i: usize, w: &Rows| {
            let d = u(i % k, i % k);
            w.data[i] * w.data[i] / (d * d)
        };
        match pattern {
            Pattern::Unstructured { amount } => {
                // This block's share of the layer's quota, so the layer's total is exact.
                let want = quota(amount, rows * end) - quota(amount, rows * start);
                let mut cand: Vec<(f64, usize)> = Vec::with_capacity(rows * (end - start));
                for r in 0..rows {
                    for c in start..end {
                        cand.push((saliency(r * k + c, w), r * k + c));
                    }
                }
                cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for &(_, i) in &cand[..want.min(cand.len())] {
                    mask[i] = true;
                }
            }
            Pattern::Block { amount, r, c } => {
                // This column block's share of the layer's blocks (BLOCK is a multiple of c,
                // so every block lies in one column block), chosen by summed saliency.
                let cb = c.max(1);
                let per_row = rows.div_ceil(r.max(1));
                let want = quota(amount, per_row * end.div_ceil(cb))
                    - quota(amount, per_row * start.div_ceil(cb));
                let blocks = block_ids(rows, k, r, c, start..end);
                let mut cand: Vec<(f64, usize)> = blocks
                    .iter()
                    .enumerate()
                    .map(|(b, &(r0, c0))| (block_sum(w, r0, c0, r, c, |i| saliency(i, w)), b))
                    .collect();
                cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for &(_, b) in &cand[..want.min(cand.len())] {
                    mark_block(&mut mask, k, blocks[b], r, c);
                }
            }
            Pattern::NM { n, m } => {
                for r in 0..rows {
                    let scores: Vec<f64> = (start..end).map(|c| saliency(r * k + c, w)).collect();
                    drop_smallest(&mut mask, r * k + start..r * k + end, m - n, |i| {
                        scores[i - r * k - start]
                    });
                }
            }
        }
        for c in start..end {
            let d = u(c, c);
            for r in 0..rows {
                let i = r * k + c;
                if !mask[i] {
                    continue;
                }
                let err = w.data[i] / d;
                w.data[i] = 0.0;
                let row = &mut w.data[r * k..(r + 1) * k];
                for (c2, x) in row.iter_mut().enumerate().skip(c + 1) {
                    *x -= err * u(c, c2);
                }
            }
        }
        start = end;
    }
    // Weights removed earlier in a row may have been moved by later updates: removed ones
    // are exactly zero (they were zeroed after their last update, as updates only move
    // columns to the right).
    check_finite(w)?;
    Ok(mask)
}

/// Sets each row's kept weights (`mask` false) to the least-squares fit of the original
/// row `w0`'s outputs: `H_SS · ŵ_S = (H · w0)_S`; removed weights are zero.
pub fn refit(w: &mut Rows, w0: &Rows, h: &[f64], mask: &[bool]) -> Result<(), String> {
    let k = w.k;
    let mut hs = Vec::new();
    let mut b = Vec::new();
    // The factor of H_SS is shared by consecutive rows with the same kept set (every row,
    // when whole input channels go).
    let mut factored: Option<Vec<usize>> = None;
    for r in 0..w.rows {
        let keep: Vec<usize> = (0..k).filter(|&c| !mask[r * k + c]).collect();
        let row0 = &w0.data[r * k..(r + 1) * k];
        let s = keep.len();
        if factored.as_ref() != Some(&keep) {
            hs.clear();
            hs.resize(s * s, 0.0);
            for (a, &i) in keep.iter().enumerate() {
                for (bb, &j) in keep.iter().enumerate() {
                    hs[a * s + bb] = h[i * k + j];
                }
            }
            cholesky(&mut hs, s).map_err(|e| {
                format!(
                    "row {r}: the kept inputs' XᵀX is not positive definite (at {})",
                    e.row
                )
            })?;
            factored = Some(keep.clone());
        }
        b.clear();
        for &i in &keep {
            b.push(
                h[i * k..(i + 1) * k]
                    .iter()
                    .zip(row0)
                    .map(|(x, y)| x * y)
                    .sum::<f64>(),
            );
        }
        cholesky_solve(&hs, s, &mut b);
        let row = &mut w.data[r * k..(r + 1) * k];
        row.iter_mut().for_each(|x| *x = 0.0);
        for (&i, &v) in keep.iter().zip(&b) {
            row[i] = v;
        }
    }
    check_finite(w)
}

fn check_finite(w: &Rows) -> Result<(), String> {
    match w
        .data
        .iter()
        .position(|v| !v.is_finite() || v.abs() > f64::from(f32::MAX))
    {
        Some(i) => Err(format!(
            "the reconstructed weight [{}, {}] is {} (not a finite f32)",
            i / w.k.max(1),
            i % w.k.max(1),
            w.data[i]
        )),
        None => Ok(()),
    }
}

/// The output error `Σ_r (w_r − v_r)ᵀ H (w_r − v_r)` of replacing `w` by `v`.
pub fn output_error(w: &Rows, v: &Rows, h: &[f64]) -> f64 {
    let k = w.k;
    let mut total = 0.0;
    let mut d = vec![0.0; k];
    for r in 0..w.rows {
        let (wr, vr) = (&w.data[r * k..(r + 1) * k], &v.data[r * k..(r + 1) * k]);
        for ((x, a), b) in d.iter_mut().zip(wr).zip(vr) {
            *x = a - b;
        }
        for i in 0..k {
            let hi = &h[i * k..(i + 1) * k];
            total += d[i] * hi.iter().zip(&d).map(|(a, b)| a * b).sum::<f64>();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    /// Correlated inputs (`x = A·z`), so which weights to drop and how to compensate matter.
    fn problem(rows: usize, k: usize, n: usize, seed: u64) -> (Rows, Vec<f64>) {
        let mut next = lcg(seed);
        let a: Vec<f64> = (0..k * k).map(|_| next()).collect();
        let mut gram = vec![0.0; k * k];
        let mut x = vec![0.0; k];
        for _ in 0..n {
            let z: Vec<f64> = (0..k).map(|_| next()).collect();
            for i in 0..k {
                x[i] = (0..k).map(|j| a[i * k + j] * z[j]).sum::<f64>() * 0.5 + z[i];
            }
            for i in 0..k {
                for j in 0..k {
                    gram[i * k + j] += x[i] * x[j];
                }
            }
        }
        let w = Rows {
            rows,
            k,
            data: (0..rows * k).map(|_| next()).collect(),
        };
        (w, hessian(&gram, k, n).unwrap())
    }

    #[test]
    fn obs_and_refit_remove_exactly_the_quota_and_beat_magnitude() {
        for (rows, k, amount) in [(3, 7, 0.5), (8, 20, 0.8), (5, 150, 0.9), (2, 1, 0.5)] {
            let (w0, h) = problem(rows, k, 4 * k + 10, (rows * k) as u64);
            let want = ((amount * (rows * k) as f64).floor()) as usize;

            let pattern = Pattern::Unstructured { amount };
            let mag = magnitude_mask(&w0, pattern);
            let mut by_mag = w0.clone();
            for (x, &m) in by_mag.data.iter_mut().zip(&mag) {
                if m {
                    *x = 0.0;
                }
            }
            let mut refitted = w0.clone();
            refit(&mut refitted, &w0, &h, &mag).unwrap();
            let mut by_obs = w0.clone();
            let mask = obs(&mut by_obs, &h, pattern).unwrap();

            for (name, m, v) in [
                ("magnitude", &mag, &by_mag),
                ("refit", &mag, &refitted),
                ("obs", &mask, &by_obs),
            ] {
                assert_eq!(m.iter().filter(|&&b| b).count(), want, "{name} {rows}x{k}");
                for (x, &gone) in v.data.iter().zip(m.iter()) {
                    assert!(x.is_finite(), "{name}: {x}");
                    if gone {
                        assert_eq!(*x, 0.0, "{name}: a removed weight is {x}");
                    }
                }
            }
            let (e_mag, e_refit, e_obs) = (
                output_error(&w0, &by_mag, &h),
                output_error(&w0, &refitted, &h),
                output_error(&w0, &by_obs, &h),
            );
            // The refit is the least-squares optimum for its mask: never worse than keeping
            // the original values of the same weights.
            assert!(
                e_refit <= e_mag * (1.0 + 1e-9),
                "{rows}x{k}: {e_refit} > {e_mag}"
            );
            if want > 0 && k > 1 {
                assert!(e_obs < e_mag, "{rows}x{k}: OBS {e_obs} ≥ magnitude {e_mag}");
            }
        }
    }

    #[test]
    fn n_m_masks_drop_m_minus_n_of_every_group() {
        // OBS is greedy: it need not win on every small layer, but it must on the whole.
        let (mut total_mag, mut total_obs) = (0.0, 0.0);
        for (rows, k, n, m) in [(3, 8, 2, 4), (4, 16, 4, 8), (2, 6, 1, 3), (5, 12, 1, 2)] {
            let (w0, h) = problem(rows, k, 3 * k, (rows + k + n) as u64);
            let pattern = Pattern::NM { n, m };
            let mag = magnitude_mask(&w0, pattern);
            let mut by_obs = w0.clone();
            let mask = obs(&mut by_obs, &h, pattern).unwrap();
            for (name, mask) in [("magnitude", &mag), ("obs", &mask)] {
                for g in mask.chunks(m) {
                    assert_eq!(g.iter().filter(|&&b| b).count(), m - n, "{name} {g:?}");
                }
            }
            for (x, &gone) in by_obs.data.iter().zip(&mask) {
                assert!(x.is_finite() && (!gone || *x == 0.0), "{x}");
            }
            let mut by_mag = w0.clone();
            for (x, &gone) in by_mag.data.iter_mut().zip(&mag) {
                if gone {
                    *x = 0.0;
                }
            }
            let (e_mag, e_obs) = (
                output_error(&w0, &by_mag, &h),
                output_error(&w0, &by_obs, &h),
            );
            total_mag += e_mag / e_mag.max(1e-300);
            total_obs += e_obs / e_mag.max(1e-300);
        }
        assert!(
            total_obs < total_mag,
            "OBS {total_obs} ≥ magnitude {total_mag} (relative)"
        );
    }

    #[test]
    fn block_masks_remove_whole_blocks_to_the_quota() {
        let (mut total_mag, mut total_obs) = (0.0, 0.0);
        // Shapes past one OBS column block (128) included, so the per-block shares must add up.
        for (rows, k, r, c, amount) in [
            (8, 12, 4, 1, 0.5),
            (6, 16, 1, 4, 0.75),
            (16, 256, 8, 1, 0.9),
            (4, 136, 2, 8, 0.6),
            (3, 5, 1, 1, 0.4),
        ] {
            let (w0, h) = problem(rows, k, 2 * k + 8, (rows * k + r) as u64);
            let pattern = Pattern::Block { amount, r, c };
            assert!(pattern.fits(rows, k).is_ok());
            let blocks = (rows / r) * (k / c);
            let want = (amount * blocks as f64).floor() as usize;
            let mag = magnitude_mask(&w0, pattern);
            let mut by_obs = w0.clone();
            let ob = obs(&mut by_obs, &h, pattern).unwrap();
            for (name, mask) in [("magnitude", &mag), ("obs", &ob)] {
                let mut gone = 0;
                for r0 in (0..rows).step_by(r) {
                    for c0 in (0..k).step_by(c) {
                        let cells: Vec<bool> = (r0..r0 + r)
                            .flat_map(|i| (c0..c0 + c).map(move |j| i * k + j))
                            .map(|i| mask[i])
                            .collect();
                        assert!(
                            cells.iter().all(|&b| b) || cells.iter().all(|&b| !b),
                            "{name} {rows}x{k} {r}x{c}: a block is split at ({r0}, {c0})"
                        );
                        gone += usize::from(cells[0]);
                    }
                }
                assert_eq!(gone, want, "{name} {rows}x{k} {r}x{c}");
            }
            for (x, &gone) in by_obs.data.iter().zip(&ob) {
                assert!(x.is_finite() && (!gone || *x == 0.0), "{x}");
            }
            let mut by_mag = w0.clone();
            for (x, &gone) in by_mag.data.iter_mut().zip(&mag) {
                if gone {
                    *x = 0.0;
                }
            }
            let e_mag = output_error(&w0, &by_mag, &h);
            total_mag += 1.0;
            total_obs += output_error(&w0, &by_obs, &h) / e_mag.max(1e-300);
        }
        assert!(
            total_obs < total_mag,
            "OBS {total_obs} ≥ magnitude {total_mag}"
        );
        assert!(
            Pattern::Block {
                amount: 0.5,
                r: 4,
                c: 1
            }
            .fits(6, 8)
            .is_err()
        );
        assert!(
            Pattern::Block {
                amount: 0.5,
                r: 1,
                c: 4
            }
            .fits(6, 10)
            .is_err()
        );
    }

    #[test]
    fn refit_keeps_an_unpruned_layer() {
        let (w0, h) = problem(4, 9, 50, 3);
        let mut w = w0.clone();
        refit(&mut w, &w0, &h, &[false; 36]).unwrap();
        for (a, b) in w.data.iter().zip(&w0.data) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn views_round_trip_and_bad_statistics_are_errors() {
        let t = Tensor::from_vec(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        for v in [View::Direct, View::Transposed] {
            let w = to_rows(&t, v).unwrap();
            assert_eq!(from_rows(&w, v, &[2, 3]).unwrap(), t);
        }
        // A [k=2, rows=3] tensor: W's first row is its first column.
        assert_eq!(
            to_rows(&t, View::Transposed).unwrap().data,
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        assert!(hessian(&[f64::NAN], 1, 1).is_err());
        assert!(hessian(&[1.0, 0.0], 1, 1).is_err());
        // All-zero inputs are damped to the identity, not singular.
        assert_eq!(hessian(&[0.0; 4], 2, 5).unwrap(), vec![1.0, 0.0, 0.0, 1.0]);
    }
}

//! Products of two computed tensors (attention's Q·Kᵀ and weights·V): a batch of `m × k`
//! by `k × n` matrices, neither packed ahead of time, each operand reached through strides
//! over the batch axes (0 where it broadcasts, as ONNX MatMul does).
//!
//! Register tiles of 4 rows × 16 columns accumulate `a[i, p] · b[p, j]` over `p` in order
//! (vectors over the columns, each row of `b` loaded once for four rows of `a`); the sizes
//! are small (heads of 16–64), so both operands stay in L1 and no packing pays.

use crate::kernels::epilogue::Act;

/// Floats of an operand the strides reach: one matrix of `matrix` floats at the farthest
/// batch index; `None` on overflow or a stride list not matching `dims`.
pub fn reach(dims: &[usize], strides: &[usize], matrix: usize) -> Option<usize> {
    if dims.len() != strides.len() {
        return None;
    }
    if dims.contains(&0) {
        return Some(0);
    }
    dims.iter().zip(strides).try_fold(matrix, |acc, (&d, &s)| {
        acc.checked_add((d - 1).checked_mul(s)?)
    })
}

/// `y[b] = act(a[b] · b[b])` for every batch index `b` of `dims` (row-major, `y` dense:
/// `m·n` floats a matrix), `a` and `b` reached through `a_strides` and `b_strides`.
pub fn batch_matmul(
    a: &[f32],
    a_strides: &[usize],
    b: &[f32],
    b_strides: &[usize],
    dims: &[usize],
    (m, k, n): (usize, usize, usize),
    act: Act,
    y: &mut [f32],
) -> Result<(), String> {
    let bad = || "batch matmul: a buffer is shorter than its matrices".to_string();
    let count = dims
        .iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d))
        .ok_or_else(bad)?;
    let (mk, kn, mn) = (
        m.checked_mul(k).ok_or_else(bad)?,
        k.checked_mul(n).ok_or_else(bad)?,
        m.checked_mul(n).ok_or_else(bad)?,
    );
    let ra = reach(dims, a_strides, mk).ok_or_else(bad)?;
    let rb = reach(dims, b_strides, kn).ok_or_else(bad)?;
    let ry = count.checked_mul(mn).ok_or_else(bad)?;
    if ra > a.len() || rb > b.len() || ry > y.len() {
        return Err(bad());
    }
    if ry == 0 {
        return Ok(());
    }
    let mut idx = vec![0usize; dims.len()];
    for out in y[..ry].chunks_exact_mut(mn) {
        let ao: usize = idx.iter().zip(a_strides).map(|(i, s)| i * s).sum();
        let bo: usize = idx.iter().zip(b_strides).map(|(i, s)| i * s).sum();
        product(&a[ao..ao + mk], &b[bo..bo + kn], k, n, act, out);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(())
}

avx2_dispatch! {
    /// One `m × k` by `k × n` product into `y` (`m·n` floats), then `act`.
    fn product(a: &[f32], b: &[f32], k: usize, n: usize, act: Act, y: &mut [f32]) => product_generic
}

/// Columns a register tile covers.
const TILE_N: usize = 16;

/// Rows a register tile covers.
const TILE_M: usize = 4;

#[inline(always)]
fn product_generic(a: &[f32], b: &[f32], k: usize, n: usize, act: Act, y: &mut [f32]) {
    if n == 0 {
        return;
    }
    let m = y.len() / n;
    let whole = m / TILE_M * TILE_M;
    for i in (0..whole).step_by(TILE_M) {
        rows::<TILE_M>(a, b, k, n, i, y);
    }
    for i in whole..m {
        rows::<1>(a, b, k, n, i, y);
    }
    for ys in y.chunks_exact_mut(n) {
        act.apply_in_place(ys);
    }
}

/// Rows `i .. i + R` of the product: `R × 16` tiles of sums held in registers while `p`
/// runs, then the columns past the last whole tile one by one. Every element is the same
/// sum, `a[i, 0]·b[0, j] + a[i, 1]·b[1, j] + …` in order from 0, whichever path takes it.
#[inline(always)]
fn rows<const R: usize>(a: &[f32], b: &[f32], k: usize, n: usize, i: usize, y: &mut [f32]) {
    let a = &a[i * k..(i + R) * k];
    let y = &mut y[i * n..(i + R) * n];
    let whole = n / TILE_N * TILE_N;
    for c0 in (0..whole).step_by(TILE_N) {
        let mut acc = [[0f32; TILE_N]; R];
        for p in 0..k {
            let bp = &b[p * n + c0..p * n + c0 + TILE_N];
            for r in 0..R {
                let av = a[r * k + p];
                for (s, &bv) in acc[r].iter_mut().zip(bp) {
                    *s += av * bv;
                }
            }
        }
        for (r, sums) in acc.iter().enumerate() {
            y[r * n + c0..r * n + c0 + TILE_N].copy_from_slice(sums);
        }
    }
    for r in 0..R {
        for j in whole..n {
            let mut s = 0f32;
            for p in 0..k {
                s += a[r * k + p] * b[p * n + j];
            }
            y[r * n + j] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{diff, uniform};

    /// Every output element as its own dot product in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        a: &[f32],
        sa: &[usize],
        b: &[f32],
        sb: &[usize],
        dims: &[usize],
        (m, k, n): (usize, usize, usize),
    ) -> Vec<f64> {
        let count: usize = dims.iter().product();
        let mut out = vec![];
        for mut f in 0..count {
            let (mut ao, mut bo) = (0, 0);
            for d in (0..dims.len()).rev() {
                ao += (f % dims[d]) * sa[d];
                bo += (f % dims[d]) * sb[d];
                f /= dims[d];
            }
            for i in 0..m {
                for j in 0..n {
                    out.push(
                        (0..k)
                            .map(|p| f64::from(a[ao + i * k + p]) * f64::from(b[bo + p * n + j]))
                            .sum(),
                    );
                }
            }
        }
        out
    }

    #[test]
    fn batched_products_with_broadcasting_match_a_naive_loop() {
        // (batch dims, a strides, b strides, (m, k, n)).
        type Case = (Vec<usize>, Vec<usize>, Vec<usize>, (usize, usize, usize));
        let cases: Vec<Case> = vec![
            (vec![], vec![], vec![], (1, 1, 1)),
            (vec![4], vec![17 * 16], vec![16 * 17], (17, 16, 17)),
            // b broadcast over the heads, a over an outer axis.
            (vec![2, 3], vec![0, 5 * 7], vec![7 * 9, 0], (5, 7, 9)),
            (vec![3], vec![2 * 33], vec![33 * 40], (2, 33, 40)),
        ];
        for (dims, sa, sb, (m, k, n)) in cases {
            let na = reach(&dims, &sa, m * k).unwrap();
            let nb = reach(&dims, &sb, k * n).unwrap();
            let (a, b) = (uniform(11, na), uniform(12, nb));
            let count: usize = dims.iter().product();
            let mut y = vec![f32::NAN; count * m * n];
            batch_matmul(&a, &sa, &b, &sb, &dims, (m, k, n), Act::None, &mut y).unwrap();
            let want = naive(&a, &sa, &b, &sb, &dims, (m, k, n));
            let d = diff(&y, &want, 1e-5, 1e-6);
            assert!(d.allclose, "{dims:?} {m}×{k}×{n}: {d:?}");
        }
    }

    #[test]
    fn activation_nan_and_short_buffers() {
        let (a, b) = ([1.0, f32::NAN, 2.0, 3.0], [1.0, -1.0, 2.0, -2.0]);
        let mut y = [0.0; 4];
        batch_matmul(&a, &[], &b, &[], &[], (2, 2, 2), Act::Relu, &mut y).unwrap();
        // Row 0 meets the NaN; row 1 is [2 + 6, −2 − 6] → relu.
        assert!(y[0].is_nan() && y[1].is_nan());
        assert_eq!(y[2..], [8.0, 0.0]);
        assert!(batch_matmul(&a, &[], &b[..3], &[], &[], (2, 2, 2), Act::None, &mut y).is_err());
        assert!(batch_matmul(&a, &[0], &b, &[0], &[2], (2, 2, 2), Act::None, &mut y).is_err());
        assert!(batch_matmul(&a, &[1], &b, &[], &[2], (2, 2, 2), Act::None, &mut y).is_err());
    }
}

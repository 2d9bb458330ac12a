//! Copies through per-axis offset tables: `y[i₀, …, iᵣ₋₁] = x[t₀[i₀] + … + tᵣ₋₁[iᵣ₋₁]]`,
//! `y` dense in row-major order. One table per output axis lists, for each index along it,
//! how far into `x` that index moves. With it one kernel is ONNX Gather (an axis's table
//! lists the picked indices times the axis's stride), Slice (any steps, either sign), Split
//! (a slice per part) and Expand (a broadcast axis's table is all zeros).
//!
//! The innermost axis is a plain copy when its table counts up by one, else a gather.

/// How far the tables reach into `x`: the largest offset they sum to, plus one (0 when the
/// output is empty); `None` when a table does not match its axis or the sum overflows.
pub fn reach(dims: &[usize], offsets: &[Vec<usize>]) -> Option<usize> {
    if dims.len() != offsets.len() || dims.iter().zip(offsets).any(|(&d, t)| t.len() != d) {
        return None;
    }
    if dims.contains(&0) {
        return Some(0);
    }
    offsets
        .iter()
        .try_fold(0usize, |acc, t| acc.checked_add(*t.iter().max()?))?
        .checked_add(1)
}

/// `y` = `x` through the offset tables `offsets` (one per axis of `dims`).
pub fn gather(
    x: &[f32],
    dims: &[usize],
    offsets: &[Vec<usize>],
    y: &mut [f32],
) -> Result<(), String> {
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("gather: sizes overflow")?;
    let reach = reach(dims, offsets).ok_or("gather: a table does not match its axis")?;
    if reach > x.len() || n > y.len() {
        return Err("gather: a buffer is shorter than the tables say".into());
    }
    if n == 0 {
        return Ok(());
    }
    let Some((last, outer)) = offsets.split_last() else {
        y[0] = x[0];
        return Ok(());
    };
    let run = last.len();
    let first = last[0];
    let contiguous = last.iter().enumerate().all(|(i, &o)| o == first + i);
    let mut idx = vec![0usize; outer.len()];
    for out in y[..n].chunks_exact_mut(run) {
        let base: usize = idx.iter().zip(outer).map(|(&i, t)| t[i]).sum();
        if contiguous {
            out.copy_from_slice(&x[base + first..base + first + run]);
        } else {
            for (o, &t) in out.iter_mut().zip(last) {
                *o = x[base + t];
            }
        }
        for d in (0..outer.len()).rev() {
            idx[d] += 1;
            if idx[d] < outer[d].len() {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::uniform;

    /// Each element by its multi-index.
    fn naive(x: &[f32], dims: &[usize], offsets: &[Vec<usize>]) -> Vec<f32> {
        let n: usize = dims.iter().product();
        (0..n)
            .map(|mut f| {
                let mut off = 0;
                for d in (0..dims.len()).rev() {
                    off += offsets[d][f % dims[d]];
                    f /= dims[d];
                }
                x[off]
            })
            .collect()
    }

    #[test]
    fn gathers_slices_and_broadcasts_match_a_naive_loop() {
        let x = uniform(7, 4 * 5 * 6);
        let cases: Vec<(Vec<usize>, Vec<Vec<usize>>)> = vec![
            // Gather of channels [3, 0, 3] of a [4,5,6] tensor.
            (
                vec![3, 5, 6],
                vec![
                    vec![90, 0, 90],
                    (0..5).map(|i| i * 6).collect(),
                    (0..6).collect(),
                ],
            ),
            // Slice with step −2 on the last axis, a contiguous middle.
            (
                vec![4, 5, 3],
                vec![
                    (0..4).map(|i| i * 30).collect(),
                    (0..5).map(|i| i * 6).collect(),
                    vec![5, 3, 1],
                ],
            ),
            // Broadcast of the middle axis (Expand), and a lone axis of size 1 (a scalar
            // index of Gather).
            (
                vec![2, 3, 1, 6],
                vec![vec![0, 30], vec![0, 0, 0], vec![12], (0..6).collect()],
            ),
        ];
        for (dims, offsets) in cases {
            let n: usize = dims.iter().product();
            let mut y = vec![f32::NAN; n + 3];
            gather(&x, &dims, &offsets, &mut y).unwrap();
            assert_eq!(y[..n], naive(&x, &dims, &offsets)[..], "{dims:?}");
            assert!(y[n..].iter().all(|v| v.is_nan()), "wrote past the output");
        }
    }

    #[test]
    fn tables_that_reach_too_far_are_errors() {
        let x = [1.0, f32::NAN, f32::INFINITY];
        let mut y = [0.0; 3];
        gather(&x, &[3], &[vec![2, 1, 0]], &mut y).unwrap();
        assert!(y[0].is_infinite() && y[1].is_nan() && y[2] == 1.0);
        assert!(gather(&x, &[3], &[vec![3, 1, 0]], &mut y).is_err());
        assert!(gather(&x, &[2], &[vec![0, 1, 2]], &mut y).is_err());
        assert!(gather(&x, &[2, 2], &[vec![0, 1], vec![0, 1]], &mut y).is_err());
        assert_eq!(reach(&[0, 2], &[vec![], vec![5, 9]]), Some(0));
        assert_eq!(reach(&[2], &[vec![usize::MAX, 0]]), None);
    }
}

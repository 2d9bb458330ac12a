//! Resampling through per-axis taps (ONNX Resize, any mode): along each output axis, every
//! index has a list of taps — how far into `x` it moves and its weight — and an output
//! element is the separable weighted sum of the elements its taps reach, in f64, rounded to
//! f32 once. An index without taps lies outside the input (`tf_crop_and_resize`): the element
//! is `fill`.
//!
//! The sum nests the axes in the order `order` gives, outermost first:
//! `Σ_{outer taps} w · (Σ_{next taps} w · (… x[offset]))`, each level summed from 0 in its
//! taps' order — the reference evaluator's arithmetic, which interpolates the innermost axis
//! first over the whole tensor, so the results are its bits. A level whose index has one
//! tap of weight 1 (an axis left as it is, or nearest) passes its value through unchanged.

/// The most axes a step may have (the sum nests one level per axis).
pub const MAX_RANK: usize = 32;

/// How far the taps reach into `x`: the largest offset they sum to, plus one (0 when the
/// output is empty); `None` when the tables do not match `dims`, `order` is not a
/// permutation of the axes, there are more than [`MAX_RANK`] axes, or the sum overflows.
pub fn reach(dims: &[usize], taps: &[Vec<Vec<(usize, f64)>>], order: &[usize]) -> Option<usize> {
    let rank = dims.len();
    if rank > MAX_RANK || taps.len() != rank || order.len() != rank {
        return None;
    }
    if dims.iter().zip(taps).any(|(&d, t)| t.len() != d) {
        return None;
    }
    let mut seen = [false; MAX_RANK];
    for &a in order {
        if a >= rank || seen[a] {
            return None;
        }
        seen[a] = true;
    }
    if dims.contains(&0) {
        return Some(0);
    }
    taps.iter()
        .try_fold(0usize, |acc, axis| {
            let far = axis.iter().flatten().map(|&(o, _)| o).max().unwrap_or(0);
            acc.checked_add(far)
        })?
        .checked_add(1)
}

/// `y` = `x` resampled through `taps` (one table per axis of `dims`, nested as `order`
/// says), `fill` where an index has no taps.
pub fn resample(
    x: &[f32],
    dims: &[usize],
    taps: &[Vec<Vec<(usize, f64)>>],
    order: &[usize],
    fill: f32,
    y: &mut [f32],
) -> Result<(), String> {
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("resample: sizes overflow")?;
    let reach = reach(dims, taps, order).ok_or("resample: tables that do not match the dims")?;
    if reach > x.len() || n > y.len() {
        return Err("resample: a buffer is shorter than the tables say".into());
    }
    if n == 0 {
        return Ok(());
    }
    let rank = dims.len();
    let mut idx = vec![0usize; rank];
    let mut levels: Vec<&[(usize, f64)]> = Vec::with_capacity(rank);
    for out in y[..n].iter_mut() {
        levels.clear();
        levels.extend(order.iter().map(|&a| taps[a][idx[a]].as_slice()));
        *out = if levels.iter().any(|t| t.is_empty()) {
            fill
        } else {
            nest(x, &levels, 0) as f32
        };
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(())
}

/// The weighted sum of the outermost level's taps over the levels inside it, from `base`
/// (every offset the levels add up to was checked against `x` by [`reach`]).
fn nest(x: &[f32], levels: &[&[(usize, f64)]], base: usize) -> f64 {
    let Some((taps, inner)) = levels.split_first() else {
        return f64::from(x[base]);
    };
    if let [(o, w)] = taps
        && *w == 1.0
    {
        return nest(x, inner, base + o);
    }
    let mut acc = 0.0;
    for &(o, w) in *taps {
        acc += w * nest(x, inner, base + o);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::uniform;

    #[test]
    fn bilinear_taps_weigh_their_neighbours() {
        // A 2×3 image, output 1×2: row 0.5 between rows 0 and 1, columns 0 and 1.5.
        let x = [1.0, 2.0, 3.0, 5.0, 7.0, 11.0];
        let taps = vec![
            vec![vec![(0, 0.5), (3, 0.5)]],
            vec![vec![(0, 1.0)], vec![(1, 0.5), (2, 0.5)]],
        ];
        let mut y = [f32::NAN; 3];
        resample(&x, &[1, 2], &taps, &[0, 1], 9.0, &mut y).unwrap();
        assert_eq!(y[0], 3.0);
        assert_eq!(
            y[1],
            0.5 * (0.5 * 2.0 + 0.5 * 3.0) + 0.5 * (0.5 * 7.0 + 0.5 * 11.0)
        );
        assert!(y[2].is_nan(), "wrote past the output");
    }

    #[test]
    fn an_index_without_taps_is_fill_and_nan_propagates() {
        let x = [f32::NAN, 1.0];
        let taps = vec![vec![vec![(0, 0.25), (1, 0.75)], vec![], vec![(1, 1.0)]]];
        let mut y = [0.0; 3];
        resample(&x, &[3], &taps, &[0], -4.0, &mut y).unwrap();
        assert!(y[0].is_nan());
        assert_eq!(y[1..], [-4.0, 1.0]);
    }

    #[test]
    fn a_pass_through_axis_copies() {
        let x = uniform(3, 12);
        let taps = vec![
            (0..3).map(|i| vec![(i * 4, 1.0)]).collect(),
            (0..4).map(|i| vec![(i, 1.0)]).collect(),
        ];
        let mut y = vec![0.0; 12];
        resample(&x, &[3, 4], &taps, &[1, 0], 0.0, &mut y).unwrap();
        assert_eq!(y, x);
    }

    #[test]
    fn tables_that_do_not_fit_are_errors() {
        let x = [1.0, 2.0];
        let mut y = [0.0; 2];
        let taps = vec![vec![vec![(2, 1.0)], vec![(0, 1.0)]]];
        assert!(resample(&x, &[2], &taps, &[0], 0.0, &mut y).is_err());
        let taps = vec![vec![vec![(1, 1.0)], vec![(0, 1.0)]]];
        assert!(resample(&x, &[2], &taps, &[1], 0.0, &mut y).is_err());
        assert!(resample(&x, &[3], &taps, &[0], 0.0, &mut y).is_err());
        assert!(resample(&x, &[2], &taps, &[0], 0.0, &mut y[..1]).is_err());
        assert_eq!(reach(&[0], &[vec![]], &[0]), Some(0));
    }
}

//! `quantize kmeans`: weight sharing (Deep Compression's second stage, Han et al. 2016). The
//! kept weights of each group — the layer, or each output channel with `per: channel` —
//! are clustered by one-dimensional k-means into `2^bits` centroids; each weight is stored
//! as the index of its centroid, the centroids once per group (`codebook<bits>`). Weights an
//! earlier step pruned stay zero and cost no index. With `refit: on`, the centroids are then
//! refit by least squares on calibration data for the fixed assignment (the post-training
//! stand-in for the paper's fine-tuning of the shared weights).
//!
//! Initialization (`init`), as compared in the paper: `linear` spaces the centroids evenly
//! between the group's smallest and largest weight (the paper's choice: it keeps the rare
//! large weights); `density` puts them at the quantiles; `kmeans_pp` is k-means++ seeding
//! from a fixed seed. Lloyd's iterations then run to convergence (at most 300); in one
//! dimension each cluster is a run of the sorted weights, so an iteration is a binary search
//! per boundary.
//!
//! Keeps: the graph's structure and every shape; only weight values change, each to one of
//! its group's `2^bits` centroids (or zero where it was zero). The same weights give the same
//! bits: no randomness but the fixed seed, sums in sorted order.
//!
//! Leaves alone (reported): layers without f32 constant weights, layers merged away; with
//! `refit: on`, layers without a row-wise input (grouped Conv, Gemm with transA).
//!
//! Stores: `codebook<bits> per tensor` or `per channel(axis)`, dense or in the smallest
//! sparse layout when earlier steps pruned.

use mcc_plan::plan::{ParamValue, Step};
use mcc_plan::registry::{
    Applies, Default, ParamType, Status, VariantSchema, no_param_check, num, p,
};

use crate::quantize::{self, Fit};

/// `quantize kmeans`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "kmeans",
    summary: "k-means weight sharing: a codebook of 2^bits centroids per layer or channel",
    params: &[
        p(
            "bits",
            ParamType::Bits(&[1, 2, 3, 4, 5, 6, 7, 8]),
            Default::Num(5.0),
            "index width: 2^bits centroids",
        ),
        p(
            "init",
            ParamType::Choice(&["linear", "density", "kmeans_pp"]),
            Default::Word("linear"),
            "where the centroids start: evenly between min and max, at the quantiles, or k-means++",
        ),
        quantize::PER,
        quantize::REFIT,
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&quantize::Tables {
        bits,
        fit: |step, v| kmeans(v, 1 << bits(step), Init::of(step)),
    }),
    check_params: no_param_check,
    sweep: None,
};

/// Where the centroids start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Evenly spaced between the smallest and the largest value.
    Linear,
    /// At the quantiles of the values.
    Density,
    /// k-means++ seeding (fixed seed).
    PlusPlus,
}

impl Init {
    fn of(step: &Step) -> Init {
        match step.param("init") {
            Some(ParamValue::Word(w)) if w == "density" => Init::Density,
            Some(ParamValue::Word(w)) if w == "kmeans_pp" => Init::PlusPlus,
            _ => Init::Linear,
        }
    }
}

fn bits(step: &Step) -> u8 {
    num(&step.params, "bits").unwrap_or(5.0).clamp(1.0, 8.0) as u8
}

/// One-dimensional k-means of `values` into `k` centroids (sorted increasing), each value
/// assigned to its nearest centroid (the lower one on a tie).
pub fn kmeans(values: &[f64], k: usize, init: Init) -> Fit {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() || k == 0 {
        return Fit {
            table: vec![0.0; k],
            codes: vec![0; values.len()],
        };
    }
    let n = sorted.len();
    let (lo, hi) = (sorted[0], sorted[n - 1]);
    let mut c: Vec<f64> = match init {
        Init::Linear if k > 1 => (0..k)
            .map(|j| lo + (hi - lo) * j as f64 / (k - 1) as f64)
            .collect(),
        Init::Linear => vec![(lo + hi) / 2.0],
        Init::Density => (0..k)
            .map(|j| sorted[((2 * j + 1) * n / (2 * k)).min(n - 1)])
            .collect(),
        Init::PlusPlus => plus_plus(&sorted, k),
    };
    c.sort_by(f64::total_cmp);
    // Prefix sums of the sorted values: a cluster's mean in O(1).
    let mut prefix = vec![0f64; n + 1];
    for (i, v) in sorted.iter().enumerate() {
        prefix[i + 1] = prefix[i] + v;
    }
    for _ in 0..300 {
        let mut next = c.clone();
        let mut start = 0;
        for j in 0..k {
            let end = if j + 1 == k {
                n
            } else {
                let mid = (c[j] + c[j + 1]) / 2.0;
                // Values at the midpoint go to the lower centroid.
                sorted.partition_point(|&v| v <= mid).max(start)
            };
            if end > start {
                next[j] = (prefix[end] - prefix[start]) / (end - start) as f64;
            }
            start = end;
        }
        next.sort_by(f64::total_cmp);
        if next == c {
            break;
        }
        c = next;
    }
    let codes = values.iter().map(|&v| nearest(&c, v)).collect();
    Fit { table: c, codes }
}

/// The index of the centroid of `c` (sorted) nearest `v`, the lower on a tie.
fn nearest(c: &[f64], v: f64) -> u32 {
    let at = c.partition_point(|&x| x < v);
    let best = match at {
        0 => 0,
        i if i == c.len() => c.len() - 1,
        i if v - c[i - 1] <= c[i] - v => i - 1,
        i => i,
    };
    best as u32
}

/// k-means++ seeding over `sorted` from a fixed seed: the first centroid uniformly, each next
/// one with probability proportional to its squared distance from the nearest chosen.
fn plus_plus(sorted: &[f64], k: usize) -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ sorted.len() as u64;
    let mut uniform = move || {
        // splitmix64.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let n = sorted.len();
    let mut chosen = vec![sorted[((uniform() * n as f64) as usize).min(n - 1)]];
    let mut d2: Vec<f64> = sorted.iter().map(|v| (v - chosen[0]).powi(2)).collect();
    while chosen.len() < k {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let target = uniform() * total;
            let mut acc = 0.0;
            let mut pick = n - 1;
            for (i, d) in d2.iter().enumerate() {
                acc += d;
                if acc > target {
                    pick = i;
                    break;
                }
            }
            sorted[pick]
        } else {
            chosen[chosen.len() - 1]
        };
        for (d, v) in d2.iter_mut().zip(sorted) {
            *d = d.min((v - next).powi(2));
        }
        chosen.push(next);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_are_found_and_each_value_takes_its_nearest_centroid() {
        let v = [1.0, 1.1, 0.9, 5.0, 5.2, -3.0, -3.1, 5.1];
        for init in [Init::Linear, Init::Density, Init::PlusPlus] {
            let f = kmeans(&v, 4, init);
            assert_eq!(f.table.len(), 4);
            assert!(f.table.windows(2).all(|w| w[0] <= w[1]), "{init:?}");
            for (x, &c) in v.iter().zip(&f.codes) {
                let d = (x - f.table[c as usize]).abs();
                assert!(
                    f.table.iter().all(|t| (x - t).abs() >= d),
                    "{init:?}: {x} → {c}"
                );
            }
        }
        // Four clusters, four centroids, linear init: each cluster's mean is a centroid.
        let four = [1.0, 1.1, 0.9, 5.0, 5.2, -3.0, -3.1, 5.1, 9.0, 9.2];
        let f = kmeans(&four, 4, Init::Linear);
        for want in [-3.05, 1.0, 5.1, 9.1] {
            assert!(
                f.table.iter().any(|t| (t - want).abs() < 1e-9),
                "{want} not in {:?}",
                f.table
            );
        }
        // Fewer values than centroids, one centroid, nothing at all.
        assert_eq!(kmeans(&[2.0], 4, Init::Density).codes, [0]);
        assert_eq!(kmeans(&v, 1, Init::Linear).table.len(), 1);
        assert!(kmeans(&[], 8, Init::PlusPlus).codes.is_empty());
    }

    #[test]
    fn more_centroids_never_cost_more_error() {
        let v: Vec<f64> = (0..500)
            .map(|i| ((i * 37) % 101) as f64 / 7.0 - 6.0)
            .collect();
        let err = |k: usize| {
            let f = kmeans(&v, k, Init::Linear);
            v.iter()
                .zip(&f.codes)
                .map(|(x, &c)| (x - f.table[c as usize]).powi(2))
                .sum::<f64>()
        };
        let e: Vec<f64> = [2, 4, 8, 16, 32].iter().map(|&k| err(k)).collect();
        assert!(e.windows(2).all(|w| w[1] <= w[0] + 1e-9), "{e:?}");
        assert!(e[4] < e[0] / 50.0, "{e:?}");
    }
}

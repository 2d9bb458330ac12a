//! Measures the sparse fully connected kernel against the dense GEMM on one thread, over
//! layer shapes, densities and row counts: the data behind `kernels::sparse::MAX_DENSITY`.
//!
//! `cargo run --release -p mcc-runtime --example sparse_crossover`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use mcc_runtime::kernels::epilogue::{Act, Bias, Epilogue};
use mcc_runtime::kernels::gemm::{Isa, PackedB, gemm_packed_b, pack_b};
use mcc_runtime::kernels::sparse::{SparseB, pack_sparse, scratch_len, sparse_dense};

fn rand(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
}

/// Median µs of `f` and of `g`, and the median of their per-round ratios: rounds of ~4 ms
/// each, the two alternating, so a change of clock speed during the run hits both alike.
fn time_pair(mut f: impl FnMut(), mut g: impl FnMut()) -> (f64, f64, f64) {
    let reps = |h: &mut dyn FnMut()| {
        let t = Instant::now();
        h();
        ((0.004 / t.elapsed().as_secs_f64().max(1e-7)) as usize).clamp(1, 100_000)
    };
    let (rf, rg) = (reps(&mut f), reps(&mut g));
    let round = |h: &mut dyn FnMut(), n: usize| {
        let t = Instant::now();
        for _ in 0..n {
            h();
        }
        t.elapsed().as_secs_f64() / n as f64 * 1e6
    };
    let mut rounds: Vec<(f64, f64)> = (0..9)
        .map(|_| (round(&mut f, rf), round(&mut g, rg)))
        .collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = median(rounds.iter().map(|(a, b)| a / b).collect());
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let tf = rounds[rounds.len() / 2].0;
    (tf, median(rounds.iter().map(|r| r.1).collect()), ratio)
}

fn main() {
    let isa = Isa::detect();
    println!("isa {}", isa.name());
    println!("| k × n | density | rows | dense µs | sparse µs | dense / sparse |");
    println!("|---|---|---|---|---|---|");
    let mut seed = 7u64;
    for (k, n) in [(784, 300), (300, 100), (800, 500), (1024, 1024), (192, 768)] {
        for density in [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4] {
            let w: Vec<f32> = (0..k * n)
                .map(|_| {
                    let v = rand(&mut seed);
                    if (v.abs() as f64) < density { v } else { 0.0 }
                })
                .collect();
            let dense = pack_b(&w, k, n, n, 1);
            let words = pack_sparse(&w, k, n, n, 1).unwrap();
            let sb = SparseB::new(k, n, &words).unwrap();
            let bias: Vec<f32> = (0..n).map(|_| rand(&mut seed)).collect();
            let ep = Epilogue {
                bias: Bias::PerCol(&bias),
                residual: None,
                act: Act::Relu,
            };
            for m in [1, 8, 64, 256] {
                let a: Vec<f32> = (0..m * k).map(|_| rand(&mut seed)).collect();
                let (mut c, mut c2) = (vec![0f32; m * n], vec![0f32; m * n]);
                let mut scratch = vec![0f32; scratch_len(k)];
                let pb = PackedB { k, n, data: &dense };
                let (td, ts, ratio) = time_pair(
                    || gemm_packed_b(isa, &a, k, m, pb, &mut c2, n, &ep, 0..m, 0..n).unwrap(),
                    || {
                        sparse_dense(isa, &a, k, m, &sb, &mut c, n, &ep, 0..n, &mut scratch)
                            .unwrap()
                    },
                );
                println!(
                    "| {k} × {n} | {:.3} | {m} | {td:.1} | {ts:.1} | {:.2} |",
                    sb.nnz() as f64 / (k * n) as f64,
                    ratio
                );
            }
        }
    }
}

//! Measures the block-sparse fully connected kernel against the dense GEMM and the
//! unstructured sparse kernel on one thread, over layer shapes, block shapes, block
//! densities and row counts: the data behind `kernels::block_sparse::pays`.
//!
//! `cargo run --release -p mcc-runtime --example block_crossover [-- quick]`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use mcc_runtime::kernels::block_sparse::{self, BlockB, block_dense, pack_blocks};
use mcc_runtime::kernels::epilogue::{Act, Bias, Epilogue};
use mcc_runtime::kernels::gemm::{Isa, PackedB, gemm_packed_b, pack_b};
use mcc_runtime::kernels::sparse::{SparseB, pack_sparse, scratch_len, sparse_dense};

fn rand(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
}

/// Median µs of each of `fs` over nine rounds of ~4 ms each, the kernels alternating within
/// a round so a change of clock speed hits them alike.
fn time_all(fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let reps: Vec<usize> = fs
        .iter_mut()
        .map(|f| {
            let t = Instant::now();
            f();
            ((0.004 / t.elapsed().as_secs_f64().max(1e-7)) as usize).clamp(1, 100_000)
        })
        .collect();
    let mut times = vec![vec![]; fs.len()];
    for _ in 0..9 {
        for (i, f) in fs.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..reps[i] {
                f();
            }
            times[i].push(t.elapsed().as_secs_f64() / reps[i] as f64 * 1e6);
        }
    }
    times
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let isa = Isa::detect();
    println!("isa {}", isa.name());
    println!(
        "| k × n | block | density | rows | dense µs | CSR µs | block µs | dense / block | CSR / block |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut seed = 7u64;
    let shapes: &[(usize, usize)] = if quick {
        &[(784, 300)]
    } else {
        &[(784, 300), (300, 100), (800, 500), (1024, 1024), (192, 768)]
    };
    for &(k, n) in shapes {
        for (r, c) in [(4, 1), (8, 1), (16, 1), (1, 4)] {
            for density in [0.05, 0.1, 0.15, 0.2, 0.3, 0.5] {
                // Each r × c block kept with probability `density`.
                let (nb, kb) = (n.div_ceil(r), k / c);
                let keep: Vec<bool> = (0..nb * kb)
                    .map(|_| f64::from(rand(&mut seed).abs()) < density)
                    .collect();
                let w: Vec<f32> = (0..k * n)
                    .map(|i| {
                        let (kk, j) = (i / n, i % n);
                        let v = rand(&mut seed);
                        if keep[(kk / c) * nb + j / r] { v } else { 0.0 }
                    })
                    .collect();
                let dense = pack_b(&w, k, n, n, 1);
                let words = pack_sparse(&w, k, n, n, 1).unwrap();
                let sb = SparseB::new(k, n, &words).unwrap();
                let bwords = pack_blocks(&w, k, n, n, 1, r, c).unwrap();
                let bb = BlockB::new(k, n, r, c, &bwords).unwrap();
                let bias: Vec<f32> = (0..n).map(|_| rand(&mut seed)).collect();
                let ep = Epilogue {
                    bias: Bias::PerCol(&bias),
                    residual: None,
                    act: Act::Relu,
                };
                let rows: &[usize] = if quick {
                    &[1, 2, 4, 8, 64]
                } else {
                    &[1, 2, 4, 7, 8, 16, 64, 256]
                };
                for &m in rows {
                    let a: Vec<f32> = (0..m * k).map(|_| rand(&mut seed)).collect();
                    let mut c1 = vec![0f32; m * n];
                    let mut c2 = vec![0f32; m * n];
                    let mut c3 = vec![0f32; m * n];
                    let mut s1 = vec![0f32; scratch_len(k)];
                    let mut s2 = vec![0f32; block_sparse::scratch_len(k)];
                    let pb = PackedB { k, n, data: &dense };
                    let t = time_all(&mut [
                        &mut || {
                            gemm_packed_b(isa, &a, k, m, pb, &mut c1, n, &ep, 0..m, 0..n).unwrap()
                        },
                        &mut || {
                            sparse_dense(isa, &a, k, m, &sb, &mut c2, n, &ep, 0..n, &mut s1)
                                .unwrap()
                        },
                        &mut || {
                            block_dense(isa, &a, k, m, &bb, &mut c3, n, &ep, 0..n, &mut s2).unwrap()
                        },
                    ]);
                    println!(
                        "| {k} × {n} | {r}×{c} | {:.3} | {m} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
                        (bb.blocks() * r * c) as f64 / (k * n) as f64,
                        t[0],
                        t[1],
                        t[2],
                        t[0] / t[2],
                        t[1] / t[2]
                    );
                }
            }
        }
    }
}

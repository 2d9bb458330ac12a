//! The packed GEMMs agree with a naive triple loop on many shapes (edges of the 6×16,
//! 6×32 and 6×64 tiles and of the K block included), with every bias kind, activation and
//! with or without a residual, on every ISA this CPU has.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

use mcc_runtime::kernels::epilogue::{Act, Bias, Epilogue};
use mcc_runtime::kernels::gemm::{PackedA, PackedB, gemm_packed_a, gemm_packed_b, pack_a, pack_b};

use mcc_runtime::testing::uniform as rand;

fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, ep: &Epilogue) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|kk| f64::from(a[i * k + kk]) * f64::from(b[kk * n + j]))
                .sum();
            let r = ep.residual.map_or(0.0, |r| f64::from(r[i * n + j]));
            c[i * n + j] = ep.apply((s + r) as f32, i, j);
        }
    }
    c
}

#[test]
fn packed_gemms_match_the_naive_loop() {
    let shapes = [
        (1, 1, 1),
        (1, 300, 10),
        (6, 16, 16),
        (7, 17, 33),
        (13, 257, 5),
        (64, 576, 49),
        (5, 520, 100),
        (9, 40, 47),
        (3, 300, 31),
        (2, 0, 3),
        (13, 257, 130),
        (12, 64, 200),
        (7, 1300, 70),
    ];
    let acts = [
        Act::None,
        Act::Relu,
        Act::Clip(0.0, 0.5),
        Act::LeakyRelu(0.1),
        Act::Sigmoid,
        Act::HardSwish,
    ];
    // Every tile implementation this CPU can run (AVX-512 machines also run the AVX2 tile).
    let isas = mcc_runtime::testing::suite_isas("packed GEMM").unwrap();
    for (si, &(m, k, n)) in shapes.iter().enumerate() {
        let a = rand(si as u64 * 2 + 1, m * k);
        let b = rand(si as u64 * 2 + 2, k * n);
        let rb = rand(99, m.max(n));
        let res = rand(7, m * n);
        for (ai, &act) in acts.iter().enumerate() {
            for (bias, residual) in [
                (Bias::None, None),
                (Bias::PerRow(&rb), None),
                (Bias::PerCol(&rb), None),
                (Bias::PerRow(&rb), Some(&res[..])),
                (Bias::None, Some(&res[..])),
            ] {
                let ep = Epilogue {
                    bias,
                    residual,
                    act,
                };
                let want = naive(&a, &b, m, k, n, &ep);
                for &isa in &isas {
                    let pa = pack_a(&a, m, k);
                    let pa = PackedA { m, k, data: &pa };
                    let mut c = vec![f32::NAN; m * n];
                    gemm_packed_a(isa, pa, &b, n, n, &mut c, n, &ep, 0..n).unwrap();
                    let pb = pack_b(&b, k, n, n, 1);
                    let pb = PackedB { k, n, data: &pb };
                    let mut c2 = vec![f32::NAN; m * n];
                    gemm_packed_b(isa, &a, k, m, pb, &mut c2, n, &ep, 0..m, 0..n).unwrap();
                    for (which, got) in [("packed A", &c), ("packed B", &c2)] {
                        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                            // Fails on NaN (an unwritten element: `c` starts as NaN).
                            assert!(
                                (x - y).abs()
                                    <= 1e-4 * (1.0 + y.abs()) * (k as f32).sqrt().max(1.0),
                                "{which} {isa:?} {m}×{k}×{n} act {ai} {bias:?} residual {}: \
                                 [{i}] {x} vs {y}",
                                residual.is_some()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn transposed_weights_pack_without_a_copy() {
    let (k, n) = (19, 21);
    let bt = rand(5, n * k); // stored [n, k]
    let b: Vec<f32> = (0..k * n).map(|i| bt[(i % n) * k + i / n]).collect();
    assert_eq!(pack_b(&bt, k, n, 1, k), pack_b(&b, k, n, n, 1));
}

//! The sparse fully connected kernel agrees with a naive loop over the dense matrix on many
//! shapes, densities and row counts (edges of its 8-, 16- and 64-row tiles and of its 8×8
//! transposes included), on every bias kind and activation, on every ISA this CPU has, and on
//! a column range; malformed stored matrices are errors, never out-of-bounds reads.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

use mcc_runtime::kernels::epilogue::{Act, Bias, Epilogue};
use mcc_runtime::kernels::sparse::{
    SparseB, pack_sparse, pays, scratch_len, sparse_dense, sparse_len,
};
use mcc_runtime::testing::{diff, suite_isas};

use mcc_runtime::testing::uniform as rand;

/// A `k × n` matrix with about `density` of its elements nonzero.
fn sparse_matrix(seed: u64, k: usize, n: usize, density: f32) -> Vec<f32> {
    let keep = rand(seed ^ 0x5eed, k * n);
    rand(seed, k * n)
        .into_iter()
        .zip(keep)
        .map(|(v, p)| if (p + 1.0) / 2.0 < density { v } else { 0.0 })
        .collect()
}

fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, ep: &Epilogue) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|kk| f64::from(a[i * k + kk]) * f64::from(b[kk * n + j]))
                .sum();
            c[i * n + j] = ep.apply(s as f32, i, j);
        }
    }
    c
}

#[test]
fn the_sparse_kernel_matches_the_naive_loop() {
    let shapes = [
        (1, 1, 1),
        (1, 300, 10),
        (2, 17, 9),
        (7, 64, 33),
        (8, 8, 8),
        (9, 40, 47),
        (16, 300, 100),
        (17, 23, 31),
        (63, 129, 17),
        (64, 784, 30),
        (65, 100, 12),
        (130, 57, 41),
        (3, 0, 5),
    ];
    let acts = [
        Act::None,
        Act::Relu,
        Act::Clip(0.0, 0.5),
        Act::LeakyRelu(0.1),
        Act::Sigmoid,
    ];
    let isas = suite_isas("sparse dense").unwrap();
    for (si, &(m, k, n)) in shapes.iter().enumerate() {
        for density in [0.0, 0.05, 0.3, 1.0] {
            let a = rand(si as u64 * 2 + 1, m * k);
            let b = sparse_matrix(si as u64 * 2 + 2, k, n, density);
            let words = pack_sparse(&b, k, n, n, 1).unwrap();
            let nnz = b.iter().filter(|v| **v != 0.0).count();
            assert_eq!(words.len(), sparse_len(n, nnz));
            let sb = SparseB::new(k, n, &words).unwrap();
            assert_eq!(sb.nnz(), nnz);
            let rb = rand(99, m.max(n));
            for (ai, &act) in acts.iter().enumerate() {
                for bias in [Bias::None, Bias::PerCol(&rb), Bias::PerRow(&rb)] {
                    let ep = Epilogue {
                        bias,
                        residual: None,
                        act,
                    };
                    let want = naive(&a, &b, m, k, n, &ep);
                    for &isa in &isas {
                        // NaN everywhere first: an element the kernel forgets fails.
                        let mut c = vec![f32::NAN; m * n];
                        let mut scratch = vec![f32::NAN; scratch_len(k)];
                        sparse_dense(isa, &a, k, m, &sb, &mut c, n, &ep, 0..n, &mut scratch)
                            .unwrap();
                        let d = diff(&c, &want, 1e-5, 1e-5 * (k as f64).sqrt().max(1.0));
                        assert!(
                            d.allclose,
                            "{isa:?} {m}×{k}×{n} density {density} act {ai} {bias:?}: {d:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_task_computes_only_its_columns() {
    let (k, n) = (50, 40);
    let b = sparse_matrix(3, k, n, 0.2);
    let words = pack_sparse(&b, k, n, n, 1).unwrap();
    let sb = SparseB::new(k, n, &words).unwrap();
    let bias = rand(4, n);
    let ep = Epilogue {
        bias: Bias::PerCol(&bias),
        residual: None,
        act: Act::Relu,
    };
    for m in [1, 3, 20] {
        let a = rand(5, m * k);
        let want = naive(&a, &b, m, k, n, &ep);
        for &isa in &suite_isas("sparse dense columns").unwrap() {
            let cols = 13..29;
            let w = cols.len();
            let mut c = vec![f32::NAN; m * w];
            let mut scratch = vec![0.0; scratch_len(k)];
            sparse_dense(
                isa,
                &a,
                k,
                m,
                &sb,
                &mut c,
                w,
                &ep,
                cols.clone(),
                &mut scratch,
            )
            .unwrap();
            for i in 0..m {
                let got = &c[i * w..(i + 1) * w];
                let exp = &want[i * n + cols.start..i * n + cols.end];
                assert!(diff(got, exp, 1e-5, 1e-5).allclose, "{isa:?} m {m} row {i}");
            }
        }
    }
}

#[test]
fn transposed_weights_pack_alike() {
    let (k, n) = (19, 21);
    let bt = sparse_matrix(5, n, k, 0.3); // stored [n, k]
    let b: Vec<f32> = (0..k * n).map(|i| bt[(i % n) * k + i / n]).collect();
    assert_eq!(
        pack_sparse(&bt, k, n, 1, k).unwrap(),
        pack_sparse(&b, k, n, n, 1).unwrap()
    );
}

#[test]
fn malformed_stored_matrices_are_errors() {
    let (k, n) = (6, 4);
    let b = sparse_matrix(8, k, n, 0.5);
    let good = pack_sparse(&b, k, n, n, 1).unwrap();
    assert!(SparseB::new(k, n, &good).is_ok());
    let nnz = good[n].to_bits() as usize;
    assert!(nnz > 1, "the test needs nonzeros");
    let bits = |v: u32| f32::from_bits(v);
    let cases: Vec<(&str, Vec<f32>)> = vec![
        ("cut short", good[..good.len() - 1].to_vec()),
        ("no offsets", good[..n].to_vec()),
        ("first offset", {
            let mut w = good.clone();
            w[0] = bits(1);
            w
        }),
        ("decreasing", {
            let mut w = good.clone();
            w[1] = bits(nnz as u32);
            w[2] = bits(0);
            w
        }),
        ("count past the end", {
            let mut w = good.clone();
            w[n] = bits(u32::MAX);
            w
        }),
        ("index out of range", {
            let mut w = good.clone();
            w[n + 1] = bits(k as u32);
            w
        }),
        ("huge index", {
            let mut w = good.clone();
            w[n + 1] = bits(u32::MAX);
            w
        }),
    ];
    for (what, words) in cases {
        assert!(SparseB::new(k, n, &words).is_err(), "{what} was accepted");
    }
}

#[test]
fn too_little_scratch_or_output_is_an_error() {
    let (m, k, n) = (4, 10, 6);
    let b = sparse_matrix(9, k, n, 0.5);
    let words = pack_sparse(&b, k, n, n, 1).unwrap();
    let sb = SparseB::new(k, n, &words).unwrap();
    let a = rand(1, m * k);
    let isa = mcc_runtime::kernels::gemm::Isa::detect();
    let ep = Epilogue::NONE;
    let mut c = vec![0.0; m * n];
    let mut small = vec![0.0; scratch_len(k) - 1];
    assert!(sparse_dense(isa, &a, k, m, &sb, &mut c, n, &ep, 0..n, &mut small).is_err());
    let mut scratch = vec![0.0; scratch_len(k)];
    let mut short = vec![0.0; m * n - 1];
    assert!(sparse_dense(isa, &a, k, m, &sb, &mut short, n, &ep, 0..n, &mut scratch).is_err());
    assert!(sparse_dense(isa, &a[1..], k, m, &sb, &mut c, n, &ep, 0..n, &mut scratch).is_err());
    assert!(sparse_dense(isa, &a, k, m, &sb, &mut c, n, &ep, 0..n + 1, &mut scratch).is_err());
}

#[test]
fn a_pruned_weight_ignores_a_non_finite_input() {
    // Documented: a weight that is not stored contributes nothing, even against ∞ or NaN.
    let (k, n) = (3, 2);
    let b = vec![1.0, 0.0, 0.0, 2.0, 0.0, 0.0]; // B[1, 0] = 0, B[2, *] = 0
    let words = pack_sparse(&b, k, n, n, 1).unwrap();
    let sb = SparseB::new(k, n, &words).unwrap();
    let isa = mcc_runtime::kernels::gemm::Isa::detect();
    for m in [1, 2] {
        let a: Vec<f32> = [1.0, 1.0, f32::NAN].repeat(m);
        let mut c = vec![0.0; m * n];
        let mut scratch = vec![0.0; scratch_len(k)];
        sparse_dense(
            isa,
            &a,
            k,
            m,
            &sb,
            &mut c,
            n,
            &Epilogue::NONE,
            0..n,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(c, [1.0, 2.0].repeat(m), "m {m}");
    }
}

#[test]
fn the_crossover_rule_prefers_the_dense_kernel_when_dense() {
    // Decided by shape and nonzero count alone: monotone in the nonzeros, never for a full
    // matrix, and stricter for short columns.
    assert!(pays(784, 300, 784 * 300 / 20));
    assert!(!pays(784, 300, 784 * 300));
    assert!(!pays(784, 300, 784 * 300 / 4));
    assert!(!pays(0, 10, 0));
    let at = |k: usize| {
        (1..=k * 10)
            .rev()
            .find(|&nnz| pays(k, 10, nnz))
            .unwrap_or(0)
    };
    assert!(at(100) * 784 < at(784) * 100);
}

#[test]
fn hostile_sizes_are_errors_not_wrapped_bounds() {
    let isa = mcc_runtime::kernels::gemm::Isa::detect();
    let words = pack_sparse(&[1.0, 0.0, 2.0, 3.0], 2, 2, 2, 1).unwrap();
    let sb = SparseB::new(2, 2, &words).unwrap();
    let a = vec![1.0f32; 64];
    let mut c = vec![0.0f32; 64];
    let mut scratch = vec![0.0f32; scratch_len(2)];
    // (m − 1)·lda wraps to 0 in unchecked arithmetic: must be "too small", not a pass.
    let huge = 1usize << 61;
    assert!(
        sparse_dense(
            isa,
            &a,
            huge,
            9,
            &sb,
            &mut c,
            2,
            &Epilogue::NONE,
            0..2,
            &mut scratch
        )
        .is_err()
    );
    assert!(
        sparse_dense(
            isa,
            &a,
            2,
            9,
            &sb,
            &mut c,
            huge,
            &Epilogue::NONE,
            0..2,
            &mut scratch
        )
        .is_err()
    );
    // A column count whose offsets would wrap, a nonzero count beyond any weights.
    assert!(SparseB::new(1, usize::MAX, &[0.0, 0.0]).is_err());
    assert_eq!(sparse_len(usize::MAX, 0), usize::MAX);
    assert_eq!(sparse_len(0, usize::MAX), usize::MAX);
    assert_eq!(scratch_len(usize::MAX), usize::MAX);
}

/// A program whose sparse step's sizes overflow (`rows · k` and `k · 64` wrap to 0 in
/// unchecked arithmetic) is refused when the runner is made.
#[test]
fn a_program_with_overflowing_sparse_sizes_is_refused() {
    use mcc_runtime::kernels::epilogue::Act;
    use mcc_runtime::program::{Buf, Step};
    let step = |rows: usize, k: usize, n: usize, nnz: usize| Step::SparseDense {
        x: Buf { off: 0, len: 0 },
        y: Buf { off: 0, len: 64 },
        rows,
        k,
        n,
        nnz,
        w: 0,
        bias: None,
        act: Act::None,
    };
    for (what, s) in [
        ("rows × k wraps", step(64, 1 << 58, 1, 0)),
        ("n + 1 wraps", step(0, 0, usize::MAX, 0)),
        ("2 · nnz wraps", step(1, 1, 1, usize::MAX / 2 + 1)),
    ] {
        let p = mcc_runtime::testing::one_step(s, 2);
        assert!(
            mcc_runtime::exec::Runner::new(&p, 1).is_err(),
            "{what}: the runner accepted it"
        );
    }
}

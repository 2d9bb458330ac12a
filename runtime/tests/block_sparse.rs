//! The block-sparse fully connected kernel agrees with a naive loop over the dense matrix on
//! shapes whose k and n are multiples of nothing in particular, at 0–100% block density, for
//! 4×1, 8×1, 16×1, 1×4, 2×2 and 3×1 blocks, on every bias kind and activation, on every ISA
//! this CPU has, below and above its batched threshold and at the edges of its 64-row tiles;
//! a block that is not stored ignores an infinite or NaN input; malformed stored matrices
//! and operands are errors, never out-of-bounds reads.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

use mcc_runtime::kernels::block_sparse::{
    BlockB, block_dense, block_len, count_blocks, pack_blocks, pays, scratch_len,
};
use mcc_runtime::kernels::epilogue::{Act, Bias, Epilogue};
use mcc_runtime::testing::uniform as rand;
use mcc_runtime::testing::{diff, suite_isas};

/// A `k × n` matrix whose `r × c` blocks (outputs × inputs) are each kept with probability
/// `density`, the rest zero.
fn block_matrix(seed: u64, k: usize, n: usize, r: usize, c: usize, density: f32) -> Vec<f32> {
    let keep = rand(seed ^ 0x5eed, k.div_ceil(c) * n.div_ceil(r));
    let v = rand(seed, k * n);
    let nb = n.div_ceil(r);
    (0..k * n)
        .map(|i| {
            let (kk, j) = (i / n, i % n);
            if (keep[(kk / c) * nb + j / r] + 1.0) / 2.0 < density {
                v[i]
            } else {
                0.0
            }
        })
        .collect()
}

/// The reference: f64 sums over the stored (nonzero) weights only.
fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, ep: &Epilogue) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .filter(|&kk| b[kk * n + j] != 0.0)
                .map(|kk| f64::from(a[i * k + kk]) * f64::from(b[kk * n + j]))
                .sum();
            c[i * n + j] = ep.apply(s as f32, i, j);
        }
    }
    c
}

const SHAPES: [(usize, usize); 5] = [(1, 16), (7, 9), (24, 37), (96, 101), (304, 83)];
const ROWS: [usize; 13] = [1, 2, 3, 4, 5, 7, 9, 10, 17, 63, 64, 65, 130];
const BLOCKS: [(usize, usize); 6] = [(4, 1), (8, 1), (16, 1), (1, 4), (2, 2), (3, 1)];

#[test]
fn the_block_kernel_matches_the_naive_loop() {
    let acts = [Act::None, Act::Relu, Act::LeakyRelu(0.1), Act::Sigmoid];
    let isas = suite_isas("block dense").unwrap();
    let mut checked = 0;
    for (bi, &(r, c)) in BLOCKS.iter().enumerate() {
        for (si, &(k0, n)) in SHAPES.iter().enumerate() {
            // k a multiple of c (the blocks tile the inputs); n anything.
            let k = k0.next_multiple_of(c);
            for density in [0.0, 0.05, 0.3, 1.0] {
                let seed = (bi * 100 + si) as u64;
                let b = block_matrix(seed, k, n, r, c, density);
                let words = pack_blocks(&b, k, n, n, 1, r, c).unwrap();
                let blocks = count_blocks(&b, k, n, n, 1, r, c).unwrap();
                assert_eq!(words.len(), block_len(n, r, c, blocks));
                let bb = BlockB::new(k, n, r, c, &words).unwrap();
                assert_eq!(bb.blocks(), blocks);
                for &m in &ROWS {
                    let a = rand(seed * 7 + m as u64, m * k);
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
                                let mut out = vec![f32::NAN; m * n];
                                let mut scratch = vec![f32::NAN; scratch_len(k)];
                                block_dense(
                                    isa,
                                    &a,
                                    k,
                                    m,
                                    &bb,
                                    &mut out,
                                    n,
                                    &ep,
                                    0..n,
                                    &mut scratch,
                                )
                                .unwrap();
                                let d = diff(&out, &want, 1e-5, 1e-5 * (k as f64).sqrt().max(1.0));
                                assert!(
                                    d.allclose,
                                    "{isa:?} {r}×{c} {m}×{k}×{n} density {density} act {ai} \
                                     {bias:?}: {d:?}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn a_task_computes_only_its_block_columns() {
    let (k, n, r, c) = (48, 42, 4, 1);
    let b = block_matrix(3, k, n, r, c, 0.3);
    let words = pack_blocks(&b, k, n, n, 1, r, c).unwrap();
    let bb = BlockB::new(k, n, r, c, &words).unwrap();
    let bias = rand(4, n);
    let ep = Epilogue {
        bias: Bias::PerCol(&bias),
        residual: None,
        act: Act::Relu,
    };
    for m in [1, 3, 20] {
        let a = rand(5, m * k);
        let want = naive(&a, &b, m, k, n, &ep);
        for &isa in &suite_isas("block dense columns").unwrap() {
            // A middle range, and one ending at n (42, not a multiple of 4).
            for cols in [12..28, 36..42] {
                let w = cols.len();
                let mut out = vec![f32::NAN; m * w];
                let mut scratch = vec![0.0; scratch_len(k)];
                block_dense(
                    isa,
                    &a,
                    k,
                    m,
                    &bb,
                    &mut out,
                    w,
                    &ep,
                    cols.clone(),
                    &mut scratch,
                )
                .unwrap();
                for i in 0..m {
                    let got = &out[i * w..(i + 1) * w];
                    let exp = &want[i * n + cols.start..i * n + cols.end];
                    assert!(
                        diff(got, exp, 1e-5, 1e-5).allclose,
                        "{isa:?} m {m} {cols:?} row {i}"
                    );
                }
            }
            // A range that cuts a block is refused.
            let mut out = vec![0.0; m * n];
            let mut scratch = vec![0.0; scratch_len(k)];
            assert!(
                block_dense(isa, &a, k, m, &bb, &mut out, n, &ep, 2..10, &mut scratch).is_err()
            );
        }
    }
}

#[test]
fn transposed_weights_pack_alike() {
    let (k, n) = (20, 21);
    for (r, c) in BLOCKS {
        let k = k / c * c;
        let b = block_matrix(5, k, n, r, c, 0.4);
        let bt: Vec<f32> = (0..k * n).map(|i| b[(i % k) * n + i / k]).collect(); // [n, k]
        assert_eq!(
            pack_blocks(&bt, k, n, 1, k, r, c).unwrap(),
            pack_blocks(&b, k, n, n, 1, r, c).unwrap(),
            "{r}×{c}"
        );
    }
}

#[test]
fn a_block_not_stored_ignores_a_non_finite_input() {
    // Input 2 feeds no stored block, input 3 only the block of outputs 0..4; inputs 2 and 3
    // are ∞ and NaN, so a kernel that multiplied a pruned block would turn outputs 4..8 NaN.
    let (k, n, r) = (4, 8, 4);
    let mut b = vec![0f32; k * n];
    for j in 0..n {
        b[j] = 1.0 + j as f32; // input 0, every output
        b[n + j] = 0.5; // input 1, every output
    }
    for j in 0..4 {
        b[3 * n + j] = 2.0;
    }
    let words = pack_blocks(&b, k, n, n, 1, r, 1).unwrap();
    let bb = BlockB::new(k, n, r, 1, &words).unwrap();
    assert_eq!(bb.blocks(), 5);
    for &isa in &suite_isas("block dense non-finite").unwrap() {
        for m in [1, 2, 5, 70] {
            let a: Vec<f32> = [1.0, 2.0, f32::INFINITY, f32::NAN].repeat(m);
            let mut out = vec![0.0; m * n];
            let mut scratch = vec![0.0; scratch_len(k)];
            block_dense(
                isa,
                &a,
                k,
                m,
                &bb,
                &mut out,
                n,
                &Epilogue::NONE,
                0..n,
                &mut scratch,
            )
            .unwrap();
            for i in 0..m {
                let row = &out[i * n..(i + 1) * n];
                assert!(
                    row[..4].iter().all(|v| v.is_nan()),
                    "{isa:?} m {m}: {row:?}"
                );
                let want: Vec<f32> = (4..8).map(|j| 1.0 + j as f32 + 1.0).collect();
                assert_eq!(row[4..], want[..], "{isa:?} m {m}");
            }
        }
    }
}

#[test]
fn malformed_stored_matrices_are_errors() {
    let (k, n, r, c) = (8, 8, 4, 2);
    let b = block_matrix(8, k, n, r, c, 0.6);
    let good = pack_blocks(&b, k, n, n, 1, r, c).unwrap();
    assert!(BlockB::new(k, n, r, c, &good).is_ok());
    let nb = n / r;
    let blocks = good[nb].to_bits() as usize;
    assert!(blocks > 1, "the test needs blocks");
    let bits = |v: u32| f32::from_bits(v);
    let with = |at: usize, v: u32| {
        let mut w = good.clone();
        w[at] = bits(v);
        w
    };
    let cases: Vec<(&str, Vec<f32>)> = vec![
        ("cut short", good[..good.len() - 1].to_vec()),
        ("no offsets", good[..nb].to_vec()),
        ("first offset", with(0, 1)),
        ("decreasing", with(1, blocks as u32 + 1)),
        ("count past the end", with(nb, u32::MAX)),
        ("input block out of range", with(nb + 1, (k / c) as u32)),
        ("huge input block", with(nb + 1, u32::MAX)),
    ];
    for (what, words) in cases {
        assert!(
            BlockB::new(k, n, r, c, &words).is_err(),
            "{what} was accepted"
        );
    }
    // Block sides outside 1..=16, and blocks that do not tile the inputs.
    assert!(BlockB::new(k, n, 0, c, &good).is_err());
    assert!(BlockB::new(k, n, r, 17, &good).is_err());
    assert!(pack_blocks(&b, k, n, n, 1, 4, 3).is_none());
    assert!(count_blocks(&b, k, n, n, 1, 17, 1).is_none());
}

#[test]
fn too_small_operands_are_errors_not_wrapped_bounds() {
    let (m, k, n, r) = (6, 10, 8, 4);
    let b = block_matrix(9, k, n, r, 1, 0.5);
    let words = pack_blocks(&b, k, n, n, 1, r, 1).unwrap();
    let bb = BlockB::new(k, n, r, 1, &words).unwrap();
    let a = rand(1, m * k);
    let isa = mcc_runtime::kernels::gemm::Isa::detect();
    let ep = Epilogue::NONE;
    let mut c = vec![0.0; m * n];
    let mut small = vec![0.0; scratch_len(k) - 1];
    assert!(block_dense(isa, &a, k, m, &bb, &mut c, n, &ep, 0..n, &mut small).is_err());
    let mut scratch = vec![0.0; scratch_len(k)];
    let mut short = vec![0.0; m * n - 1];
    assert!(block_dense(isa, &a, k, m, &bb, &mut short, n, &ep, 0..n, &mut scratch).is_err());
    assert!(block_dense(isa, &a[1..], k, m, &bb, &mut c, n, &ep, 0..n, &mut scratch).is_err());
    assert!(block_dense(isa, &a, k, m, &bb, &mut c, n, &ep, 0..n + 1, &mut scratch).is_err());
    let huge = 1usize << 61;
    assert!(block_dense(isa, &a, huge, 9, &bb, &mut c, n, &ep, 0..n, &mut scratch).is_err());
    assert!(block_dense(isa, &a, k, 9, &bb, &mut c, huge, &ep, 0..n, &mut scratch).is_err());
    assert_eq!(block_len(usize::MAX, 1, 1, 0), usize::MAX);
    assert_eq!(block_len(4, 4, 4, usize::MAX), usize::MAX);
}

#[test]
fn the_crossover_rule_prefers_the_dense_kernel_when_dense() {
    // Decided by shape, block shape and block count alone: monotone in the blocks, never
    // for a full matrix, never for sides the kernel does not take.
    let blocks = |k: usize, n: usize, r: usize, d: f64| ((k * n / r) as f64 * d) as usize;
    assert!(pays(784, 300, 4, 1, blocks(784, 300, 4, 0.1)));
    assert!(!pays(784, 300, 4, 1, blocks(784, 300, 4, 1.0)));
    assert!(!pays(784, 300, 17, 1, 1));
    assert!(!pays(0, 10, 4, 1, 0));
    let at = |r: usize| {
        (0..=784 * 300 / r)
            .rev()
            .find(|&b| pays(784, 300, r, 1, b))
            .map(|b| b * r)
    };
    assert!(at(4).is_some() && at(8).is_some());
}

/// A program whose block step's sizes overflow is refused when the runner is made.
#[test]
fn a_program_with_overflowing_block_sizes_is_refused() {
    use mcc_runtime::program::{Buf, Step};
    let step = |rows: usize, k: usize, n: usize, r: usize, blocks: usize| Step::BlockDense {
        x: Buf { off: 0, len: 0 },
        y: Buf { off: 0, len: 64 },
        rows,
        k,
        n,
        r,
        c: 1,
        blocks,
        w: 0,
        bias: None,
        act: Act::None,
    };
    for (what, s) in [
        ("rows × k wraps", step(64, 1 << 58, 1, 4, 0)),
        ("⌈n/r⌉ + 1 wraps", step(0, 0, usize::MAX, 1, 0)),
        ("r · blocks wraps", step(1, 1, 1, 4, usize::MAX / 2 + 1)),
        ("a side of 0", step(1, 1, 4, 0, 0)),
    ] {
        let p = mcc_runtime::testing::one_step(s, 2);
        assert!(
            mcc_runtime::exec::Runner::new(&p, 1).is_err(),
            "{what}: the runner accepted it"
        );
    }
}

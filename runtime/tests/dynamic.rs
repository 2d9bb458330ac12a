//! Hostile dynamic-quantization steps: a `QRows`, `QDynDense` or `QDense` whose sizes or
//! weight extents wrap, whose
//! buffers are short, whose clamp is NaN or inverted, or whose depth is 0 is refused when
//! the runner is made; a well-formed product over arbitrary bytes (any scale, any zero point
//! a row claims) runs without a panic.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcc_runtime::kernels::int8::{dynamic_stride, panels_len};
use mcc_runtime::program::{Buf, Step};

fn dense(rows: usize, k: usize, n: usize, x_len: usize, lo: f32, hi: f32) -> Step {
    Step::QDynDense {
        x: Buf {
            off: 64,
            len: x_len,
        },
        y: Buf { off: 0, len: 64 },
        rows,
        k,
        n,
        w: 0,
        q: panels_len(n, k).div_ceil(4).max(16),
        lo,
        hi,
    }
}

#[test]
fn malformed_dynamic_steps_are_refused() {
    let rows_step = |rows: usize, k: usize, y_len: usize| Step::QRows {
        x: Buf { off: 64, len: 64 },
        y: Buf { off: 0, len: y_len },
        rows,
        k,
    };
    for (what, s) in [
        ("no depth", dense(1, 0, 16, 64, 0.0, 1.0)),
        ("no outputs", dense(1, 4, 0, 64, 0.0, 1.0)),
        ("a NaN clamp", dense(1, 4, 16, 3, f32::NAN, 1.0)),
        ("an inverted clamp", dense(1, 4, 16, 3, 2.0, 1.0)),
        (
            "rows × stride wraps",
            dense(usize::MAX / 8, 4, 16, 64, 0.0, 1.0),
        ),
        ("a short input", dense(4, 4, 16, 3, 0.0, 1.0)),
        // No rows, so no buffer is short, but the weights' extents wrap: 3n and the panels.
        (
            "weight extents wrap",
            dense(0, 1 << 60, usize::MAX / 3 + 1, 0, 0.0, 1.0),
        ),
        (
            "an integer layer's weight extents wrap",
            Step::QDense {
                x: Buf { off: 64, len: 0 },
                y: Buf { off: 0, len: 0 },
                rows: 0,
                k: 1 << 60,
                n: usize::MAX / 3 + 1,
                zx: 0,
                w: 0,
                q: 16,
                zy: 0,
                lo: 0,
                hi: 255,
            },
        ),
        ("a short output", dense(1, 4, 65, 3, 0.0, 1.0)),
        ("rows × k wraps", rows_step(usize::MAX / 2, 4, 64)),
        ("codes longer than their buffer", rows_step(16, 4, 40)),
    ] {
        let p = mcc_runtime::testing::one_step(s, 256);
        if let Ok(mut r) = mcc_runtime::exec::Runner::new(&p, 1) {
            let x = vec![0.5f32; 64];
            panic!(
                "{what}: the runner accepted it (a run gives {:?})",
                r.run(&[&x]).map(|_| ())
            );
        }
    }
    // No rows of a depth whose row stride would wrap: nothing to compute, and no size
    // computed on the way wraps or panics (debug builds check every overflow).
    let p = mcc_runtime::testing::one_step(rows_step(0, usize::MAX, 64), 256);
    if let Ok(mut r) = mcc_runtime::exec::Runner::new(&p, 1) {
        r.run(&[&vec![0.5f32; 64]]).unwrap();
    }
}

#[test]
fn any_bytes_as_dynamic_rows_run_without_a_panic() {
    // Four rows of depth 4 (12 bytes each: codes, scale, zero point) read from the input, so
    // every scale and zero point a row claims is whatever the input's bits are.
    let (rows, k, n) = (4, 4, 16);
    assert_eq!(rows * dynamic_stride(k), 48);
    let step = dense(rows, k, n, 12, f32::NEG_INFINITY, f32::INFINITY);
    let p = mcc_runtime::testing::one_step(step, 256);
    let mut r = mcc_runtime::exec::Runner::new(&p, 1).unwrap();
    for bits in [
        0u32,
        0x7fc0_0000,
        0xffff_ffff,
        0x8000_0000,
        0x7f80_0000,
        0x1234_5678,
    ] {
        let x = vec![f32::from_bits(bits); 64];
        r.run(&[&x]).unwrap();
    }
}

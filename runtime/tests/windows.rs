//! Hostile window geometries: a program whose convolution sizes wrap in unchecked
//! arithmetic (input, output or padded image sizes, or tap offsets) is refused when the
//! runner is made, before any kernel computes an address from them.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcc_runtime::kernels::conv::Geometry;
use mcc_runtime::program::{Buf, Step};

fn window(c: usize, h: usize, w: usize, oh: usize, ow: usize, kh: usize) -> Geometry {
    Geometry {
        c,
        h,
        w,
        oh,
        ow,
        kh,
        kw: 1,
        sh: 1,
        sw: 1,
        dh: 1,
        dw: 1,
        pt: 0,
        pl: 0,
    }
}

#[test]
fn integer_convolutions_with_wrapping_sizes_are_refused() {
    let qconv = |g: Geometry, m: usize, groups: usize, q: usize| Step::QConv {
        x: Buf { off: 0, len: 0 },
        y: Buf { off: 0, len: 64 },
        g,
        m,
        groups,
        zx: 0,
        w: 0,
        q,
        zy: 0,
        lo: 0,
        hi: 255,
    };
    for (what, s) in [
        // h·w·c wraps to 0 and so does the padded image: a depthwise read past nothing.
        (
            "padded image wraps to 0",
            qconv(window(16, 0, 1 << 60, 1, 1, 1), 16, 16, 4),
        ),
        // oh·ow wraps to 1 (ow the inverse of 3): writes far past the output.
        (
            "oh · ow wraps to 1",
            qconv(window(16, 0, 0, 3, 0xAAAA_AAAA_AAAA_AAAB, 1), 16, 16, 4),
        ),
        // h·w wraps to 0 and a tap offset to 2^63, though the last one looks small.
        (
            "a tap offset wraps",
            qconv(window(4, 8, 1 << 61, 1, 1, 3), 16, 1, 48),
        ),
    ] {
        let p = mcc_runtime::testing::one_step(s, 128);
        match mcc_runtime::exec::Runner::new(&p, 1) {
            Ok(_) => panic!("{what}: the runner accepted it"),
            Err(e) => assert!(e.to_string().contains("window"), "{what}: refused for {e}"),
        }
    }
}

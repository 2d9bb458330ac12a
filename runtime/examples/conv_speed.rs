//! Times im2col and the GEMM of one 3×3 convolution (32→32 channels, 28×28).
#![allow(clippy::unwrap_used, clippy::print_stdout)]
use mcc_runtime::conv::{Geometry, im2col, im2col_panels};
use mcc_runtime::gemm::{Isa, PackedA, gemm_packed_a_panels, pack_a, panels_len};

fn main() {
    let isa = Isa::detect();
    let g = Geometry {
        c: 32,
        h: 28,
        w: 28,
        oh: 28,
        ow: 28,
        kh: 3,
        kw: 3,
        sh: 1,
        sw: 1,
        dh: 1,
        dw: 1,
        pt: 1,
        pl: 1,
    };
    let (m, k, p) = (32, 288, 784);
    let x: Vec<f32> = (0..32 * 784).map(|i| (i % 11) as f32 * 0.1).collect();
    let w = pack_a(
        &(0..m * k).map(|i| (i % 7) as f32 * 0.1).collect::<Vec<_>>(),
        m,
        k,
    );
    let tw = isa.tile_cols();
    let mut col = vec![0f32; panels_len(k, p, tw)];
    let mut y = vec![0f32; m * p];
    let n = 2000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        im2col_panels(&x, &g, 0, 32, tw, &mut col);
    }
    println!(
        "im2col: {:.1} us",
        t.elapsed().as_secs_f64() / n as f64 * 1e6
    );
    let mut rm = vec![0f32; k * p];
    let t = std::time::Instant::now();
    for _ in 0..n {
        im2col(&x, &g, 0, 32, &mut rm);
    }
    println!(
        "im2col row-major: {:.1} us",
        t.elapsed().as_secs_f64() / n as f64 * 1e6
    );
    let ep = mcc_runtime::epilogue::Epilogue::NONE;
    let t = std::time::Instant::now();
    for _ in 0..n {
        mcc_runtime::gemm::gemm_packed_a(
            isa,
            PackedA { m, k, data: &w },
            &rm,
            p,
            p,
            &mut y,
            p,
            &ep,
            0..p,
        )
        .unwrap();
    }
    let dt = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "gemm row-major B: {:.1} us, {:.1} GFLOP/s",
        dt * 1e6,
        2.0 * (m * k * p) as f64 / dt / 1e9
    );
    let t = std::time::Instant::now();
    for _ in 0..n {
        gemm_packed_a_panels(
            isa,
            PackedA { m, k, data: &w },
            &col,
            p,
            &mut y,
            p,
            &ep,
            0..p,
        )
        .unwrap();
    }
    let dt = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "gemm: {:.1} us, {:.1} GFLOP/s",
        dt * 1e6,
        2.0 * (m * k * p) as f64 / dt / 1e9
    );
}

//! Times the pooling and depthwise kernels on MNIST-sized planes.
#![allow(clippy::unwrap_used, clippy::print_stdout)]
use mcc_runtime::conv::{Geometry, depthwise};
use mcc_runtime::pool::max_pool;

fn main() {
    let g = Geometry {
        c: 32,
        h: 28,
        w: 28,
        oh: 14,
        ow: 14,
        kh: 2,
        kw: 2,
        sh: 2,
        sw: 2,
        dh: 1,
        dw: 1,
        pt: 0,
        pl: 0,
    };
    let x: Vec<f32> = (0..32 * 28 * 28).map(|i| (i % 13) as f32).collect();
    let mut y = vec![0f32; 32 * 14 * 14];
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        max_pool(&x, &g, &mut y);
    }
    println!("maxpool: {:.4} ms", t.elapsed().as_secs_f64());
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
    let w = vec![0.1f32; 32 * 9];
    let mut y = vec![0f32; 32 * 28 * 28];
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        depthwise(
            &x,
            &g,
            32,
            &w,
            None,
            mcc_runtime::epilogue::Act::Clip(0.0, 6.0),
            &mut y,
        );
    }
    println!("depthwise: {:.4} ms", t.elapsed().as_secs_f64());
}

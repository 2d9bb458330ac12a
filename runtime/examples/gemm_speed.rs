//! Measures the packed GEMMs (GFLOP/s, best of several runs) on the shapes CODEGEN.md uses:
//! `cargo run --release -p mcc-runtime --example gemm_speed`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use mcc_runtime::gemm::{Isa, PackedA, PackedB, gemm_packed_a, gemm_packed_b, pack_a, pack_b};

fn main() {
    let isa = Isa::detect();
    println!("isa: {}", isa.name());
    for &(m, k, n) in &[(256, 256, 256), (1024, 1024, 1024), (64, 576, 3136)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let pa = pack_a(&a, m, k);
        let pa = PackedA { m, k, data: &pa };
        let pb = pack_b(&b, k, n, n, 1);
        let pb = PackedB { k, n, data: &pb };
        let ep = mcc_runtime::epilogue::Epilogue::NONE;
        let time = |f: &mut dyn FnMut()| {
            let reps = ((2e9 / flops) as usize).max(1);
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    f();
                }
                best = best.min(t.elapsed().as_secs_f64() / reps as f64);
            }
            flops / best / 1e9
        };
        let ga = time(&mut || gemm_packed_a(isa, pa, &b, n, n, &mut c, n, &ep, 0..n).unwrap());
        let gb =
            time(&mut || gemm_packed_b(isa, &a, k, m, pb, &mut c, n, &ep, 0..m, 0..n).unwrap());
        println!("{m}×{k}×{n}: packed A {ga:.1} GFLOP/s, packed B {gb:.1} GFLOP/s");
    }
}

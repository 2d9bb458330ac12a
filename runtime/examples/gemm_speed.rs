//! Measures the packed GEMMs (GFLOP/s, best of several runs) on the shapes CODEGEN.md uses:
//! `cargo run --release -p mcc-runtime --example gemm_speed`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use mcc_runtime::gemm::{Isa, PackedA, PackedB, gemm_packed_a, gemm_packed_b, pack_a, pack_b};

fn main() {
    let isa = Isa::detect();
    println!("isa: {}", isa.name());
    for &(m, k, n) in &[(256, 256, 256), (1024, 1024, 1024), (64, 576, 3136)] {
        let align = |v: Vec<f32>| -> (Vec<f32>, usize) {
            let mut w = vec![0f32; v.len() + 16];
            let off = (16 - (w.as_ptr() as usize / 4) % 16) % 16;
            w[off..off + v.len()].copy_from_slice(&v);
            (w, off)
        };
        let (a_store, ao) = align((0..m * k).map(|i| (i % 7) as f32 * 0.1).collect());
        let (b_store, bo) = align((0..k * n).map(|i| (i % 5) as f32 * 0.1).collect());
        let a = &a_store[ao..ao + m * k];
        let b = &b_store[bo..bo + k * n];
        println!(
            "a aligned {}, b aligned {}",
            a.as_ptr() as usize % 64,
            b.as_ptr() as usize % 64
        );
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let (pa_s, pao) = align(pack_a(a, m, k));
        let pa = PackedA {
            m,
            k,
            data: &pa_s[pao..],
        };
        let (pb_s, pbo) = align(pack_b(b, k, n, n, 1));
        let pb = PackedB {
            k,
            n,
            data: &pb_s[pbo..],
        };
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
        let ga = time(&mut || gemm_packed_a(isa, pa, b, n, n, &mut c, n, &ep, 0..n).unwrap());
        let gb = time(&mut || gemm_packed_b(isa, a, k, m, pb, &mut c, n, &ep, 0..m, 0..n).unwrap());
        println!("{m}×{k}×{n}: packed A {ga:.1} GFLOP/s, packed B {gb:.1} GFLOP/s");
    }
}

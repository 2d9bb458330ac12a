//! Fuzzes a built model executable's command line and input files, in process: the code a
//! built executable runs (`mcc_runtime::abi::main_with`) over a small two-input model
//! compiled once with the JIT. Any arguments and any input bytes must end in an exit code —
//! 0, 1 with a message, or 2 for usage — never a panic, an abort or a hang.
//!
//! An input is the command line (its first line, split at whitespace) followed by the
//! bytes of `a.npy` and, after the first `NPYSPLIT`, of `b.npy`; both are written to a
//! folder of this process's own, which is the working directory. Arguments that name
//! anything outside it (a `/`) are skipped, and so are runs asked to take long
//! (`--bench` above 2, `--threads` above 4).
#![no_main]

use std::path::PathBuf;

/// x: [N,1,6,6] → Conv 2×3×3 → Relu → Flatten → Gemm 10 → + z: [N,10].
const MODEL: &str = r#"graph "exe" {
  input %x: f32[N,1,6,6]
  input %z: f32[N,10]
  const %w1: f32[2,1,3,3] = seeded(1)
  const %b1: f32[2] = seeded(2)
  const %w2: f32[10,32] = seeded(3)
  const %b2: f32[10] = seeded(4)
  node /conv/Conv = Conv(%x, %w1, %b1) {kernel_shape=[3, 3]} -> %c: f32[N,2,4,4]
  node /relu/Relu = Relu(%c) -> %r: f32[N,2,4,4]
  node /flat/Flatten = Flatten(%r) -> %f: f32[N,32]
  node /fc/Gemm = Gemm(%f, %w2, %b2) {transB=1} -> %g: f32[N,10]
  node /add/Add = Add(%g, %z) -> %y: f32[N,10]
  output %y
}"#;

struct Fixture {
    jit: mcc_codegen::jit::Jit,
    dir: PathBuf,
}

thread_local! {
    /// Made once (libFuzzer runs every input on one thread); the JIT's code is not `Sync`.
    static FIXTURE: &'static Fixture = Box::leak(Box::new(fixture()));
}

fn fixture() -> Fixture {
    {
        let mut g = mcc_ir::text::parse(MODEL).expect("the fuzz model parses");
        mcc_passes::canonicalize(&mut g).expect("the fuzz model canonicalizes");
        let prog = mcc_codegen::lower(&g).expect("the fuzz model lowers");
        let jit = mcc_codegen::jit::Jit::new(prog, 1).expect("the fuzz model compiles");
        let dir = std::env::temp_dir().join(format!("mcc-fuzz-exe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        std::env::set_current_dir(&dir).expect("the temporary folder is the working directory");
        Fixture { jit, dir }
    }
}

fn split<'a>(data: &'a [u8], at: &[u8]) -> (&'a [u8], &'a [u8]) {
    match data.windows(at.len()).position(|w| w == at) {
        Some(i) => (&data[..i], &data[i + at.len()..]),
        None => (data, &[]),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f: &Fixture = FIXTURE.with(|f| *f);
    let (line, files) = split(data, b"\n");
    let Ok(line) = std::str::from_utf8(line) else { return };
    let mut args = vec!["model".to_string()];
    args.extend(line.split_whitespace().map(str::to_string));
    if args.iter().any(|a| a.contains('/') || a.contains('\0')) {
        return;
    }
    for w in args.windows(2) {
        let n = w[1].parse::<usize>().unwrap_or(0);
        if (w[0] == "--bench" && n > 2) || (w[0] == "--threads" && n > 4) {
            return;
        }
    }
    let (a, b) = split(files, b"NPYSPLIT");
    std::fs::write(f.dir.join("a.npy"), a).expect("a.npy is written");
    std::fs::write(f.dir.join("b.npy"), b).expect("b.npy is written");
    let code = f.jit.main(&args);
    assert!(matches!(code, 0..=2), "exit code {code}");
    // Outputs it wrote under any name go, so the folder stays small.
    for e in std::fs::read_dir(&f.dir).expect("the folder lists").flatten() {
        let name = e.file_name();
        if name != "a.npy" && name != "b.npy" {
            let p = e.path();
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
});

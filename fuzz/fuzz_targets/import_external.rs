//! Fuzzes ONNX import with external data: the model's tensors may live in files beside it
//! (`location`, `offset`, `length`), as PyTorch's newer exporter writes them. Any model and
//! any data file must give a graph or an error — never a panic, a read outside the model's
//! folder, or an allocation the file cannot back — and an accepted graph must canonicalize,
//! print, parse back to the same text, and export.
//!
//! An input is a model and the bytes of its data file: the first four bytes (little-endian)
//! give the model's length, the model follows, and the rest is written as `w.bin` in a
//! folder of this process's own, which is the folder the model is imported from.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mcc-fuzz-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else { return };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (model, weights) = rest.split_at(len);
    let dir = dir();
    std::fs::write(dir.join("w.bin"), weights).expect("the data file is written");
    let Ok(imported) = mcc_onnx::import_bytes(model, &dir.join("m.onnx"), Some(dir)) else {
        return;
    };
    let mut graph = imported.graph;
    if mcc_passes::canonicalize(&mut graph).is_err() {
        return;
    }
    let text = mcc_ir::text::print(&graph);
    match mcc_ir::text::parse(&text) {
        Ok(back) => assert_eq!(mcc_ir::text::print(&back), text, "IR text does not round-trip"),
        Err(e) => panic!("printed IR does not parse: {e}\n{text}"),
    }
    let _ = mcc_onnx::export(&graph);
});

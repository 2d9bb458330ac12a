//! Fuzzes the ONNX importer and what runs on every imported model: any bytes must give a
//! graph or an error, never a panic, and an accepted graph must canonicalize, print,
//! parse back to the same text, and export.
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(model) = mcc_onnx::import_bytes(data, Path::new("fuzz.onnx"), None) else { return };
    let mut graph = model.graph;
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

//! Fuzzes the IR text reader: any text must parse to a graph or give an error, never a
//! panic; a graph that parses and verifies must print to text that parses to the same text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(graph) = mcc_ir::text::parse(src) else { return };
    if mcc_ir::verify(&graph).is_err() {
        return;
    }
    let text = mcc_ir::text::print(&graph);
    match mcc_ir::text::parse(&text) {
        Ok(back) => assert_eq!(mcc_ir::text::print(&back), text, "IR text does not round-trip"),
        Err(e) => panic!("printed IR does not parse: {e}\n{text}"),
    }
    let _ = mcc_ir::run(&graph, &[]);
});

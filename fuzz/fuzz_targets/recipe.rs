//! Fuzzes the recipe front end: any text must parse and check against a model into a plan
//! or diagnostics, never a panic, and every diagnostic must point inside its source file;
//! any text `mcc fmt` formats formats to itself again.
#![no_main]

use std::path::Path;

#[path = "small_model.rs"]
mod small_model;
use small_model::model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(out) = mcc_recipe::format(src) {
        assert_eq!(
            mcc_recipe::format(&out).ok().as_deref(),
            Some(out.as_str()),
            "formatting is not idempotent"
        );
    }
    let checked = mcc_plan::plan::check(
        src,
        "fuzz.mcr",
        Path::new("."),
        model(),
        "m.onnx",
        &mcc_passes::registry(),
    );
    for d in &checked.diags {
        let len = checked.files[d.file].text.len() as u32;
        assert!(
            d.span.start <= d.span.end && d.span.end <= len,
            "diagnostic span out of its file: {d:?}"
        );
    }
});

//! Fuzzes `.npy` reading, both ways mcc reads it: any bytes must give an array or an error,
//! never a panic or an allocation beyond the file's size. The runtime's in-memory parser and
//! its header-first file reader must agree, an accepted array must write and read back
//! unchanged, and mcc's driver (`tensor_io`: any `.npy` as a tensor, labels as integers, a
//! model input checked against its type) must accept or refuse it without panicking.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use mcc_ir::{DType, Dim, TensorType};
use mcc_runtime::npy::NpyArray;

/// A file in a folder of this process's own, rewritten on every run.
fn file() -> &'static PathBuf {
    static F: OnceLock<PathBuf> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mcc-fuzz-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        dir.join("x.npy")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let parsed = NpyArray::parse(data);
    let path = file();
    std::fs::write(path, data).expect("the temporary file is written");
    let read = NpyArray::read(path);
    match (&parsed, &read) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the parser and the file reader disagree"),
        // The file reader reads the header's data and ignores bytes after it; the parser
        // wants exactly the data. Anything else is a disagreement.
        (Err(_), Ok(_)) | (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("the parser accepts what the file reader refuses: {e}"),
    }
    if let Ok(a) = &parsed {
        let back = NpyArray::parse(&a.to_bytes()).expect("a written array reads back");
        assert_eq!(&back, a, "write → read changed the array");
    }
    if let Ok(t) = mcc::tensor_io::read_npy(path) {
        assert_eq!(read.as_ref().map(|a| a.shape.clone()).ok(), Some(t.shape().to_vec()));
        let _ = t.to_i64_vec();
    }
    let ty = TensorType {
        dtype: DType::F32,
        shape: Some(vec![Dim::Sym("N".into()), Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(4)]),
    };
    let _ = mcc::tensor_io::read_input(path, "x", &ty);
});

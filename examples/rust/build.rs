//! Compiles examples/lenet5/lenet5.onnx with mcc into an object file and links it into this
//! program. MCC names the mcc binary (default: the workspace's release build).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mcc = std::env::var("MCC")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/release/mcc"));
    let model = root.join("examples/lenet5/lenet5.onnx");
    let recipe = root.join("recipes/merge.mcr");
    println!("cargo:rerun-if-changed={}", model.display());
    println!("cargo:rerun-if-changed={}", recipe.display());
    println!("cargo:rerun-if-env-changed=MCC");
    let dir = out.join("model");
    let status = Command::new(&mcc)
        .arg("build")
        .arg(&recipe)
        .arg(&model)
        .arg("-o")
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (build mcc first: cargo build --release): {e}",
                mcc.display()
            )
        });
    assert!(status.success(), "mcc build failed");
    // The model object as a static library; the mcc-runtime crate provides what it calls.
    let lib = out.join("liblenet5_model.a");
    let _ = std::fs::remove_file(&lib);
    let ar = Command::new("ar")
        .arg("crs")
        .arg(&lib)
        .arg(dir.join("lenet5.o"))
        .status()
        .expect("cannot run ar");
    assert!(ar.success(), "ar failed");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=lenet5_model");
}

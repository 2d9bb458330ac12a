//! Compiles examples/lenet5/lenet5.onnx with mcc into an object file and links it into this
//! program. MCC names the mcc binary (default: the workspace's release build).
//!
//! cargo reruns this script only when a file it names with `cargo:rerun-if-changed` changes.
//! Those are the files mcc's depfile lists (`--depfile`: every file the build read — the
//! recipe, the model, any data the recipe names), so an unchanged project rebuilds nothing
//! and a changed input, whichever it is, rebuilds the model.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mcc = std::env::var("MCC")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/release/mcc"));
    println!("cargo:rerun-if-env-changed=MCC");
    let model = root.join("examples/lenet5/lenet5.onnx");
    let recipe = root.join("recipes/merge.mcr");
    let dir = out.join("model");
    let depfile = out.join("lenet5.d");
    // `--emit obj`: the object file (the header and runtime library come with it; the
    // mcc-runtime crate provides what the object calls, so the library goes unused).
    let status = Command::new(&mcc)
        .arg("build")
        .arg(&recipe)
        .arg(&model)
        .args(["--emit", "obj", "--quiet", "-o"])
        .arg(&dir)
        .arg("--depfile")
        .arg(&depfile)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (build mcc first: cargo build --release): {e}",
                mcc.display()
            )
        });
    assert!(status.success(), "mcc build failed");
    for input in depfile_inputs(&depfile) {
        println!("cargo:rerun-if-changed={}", input.display());
    }
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

/// The prerequisites of the Make rule mcc wrote (`targets: inputs`, one path a line ending
/// in ` \`; in a path, `\ ` is a space, `\#` a `#` and `$$` a `$`).
fn depfile_inputs(path: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read mcc's depfile {}: {e}", path.display()));
    // The rule's colon is the first followed by whitespace (a target's spaces are escaped,
    // and a Windows drive's colon is followed by a backslash).
    let colon = text
        .char_indices()
        .find(|&(i, c)| c == ':' && text[i + 1..].starts_with(char::is_whitespace))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("{}: not a Make rule", path.display()));
    let mut inputs = Vec::new();
    let mut word = String::new();
    let mut chars = text[colon + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|&n| n == ' ' || n == '#') => {
                word.push(chars.next().unwrap())
            }
            '$' if chars.peek() == Some(&'$') => word.push(chars.next().unwrap()),
            // A line continuation (`\` before the newline) separates words like a space.
            '\\' if chars.peek() == Some(&'\n') => {}
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    inputs.push(PathBuf::from(std::mem::take(&mut word)));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        inputs.push(PathBuf::from(word));
    }
    assert!(!inputs.is_empty(), "{}: names no inputs", path.display());
    inputs
}

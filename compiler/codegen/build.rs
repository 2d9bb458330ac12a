//! Builds the runtime (`runtime/src`, std only) as a static library with the same `rustc`
//! cargo uses, so `mcc` can embed it and link ahead-of-time compiled models against it with
//! the system's `cc`. Also records the native libraries that static library needs.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let src = manifest.join("../../runtime/src");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed={}", src.display());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let lib = out.join("libmcc_runtime.a");
    let output = Command::new(&rustc)
        .args([
            "--crate-type",
            "staticlib",
            "--crate-name",
            "mcc_runtime",
            "--edition",
            "2024",
            "-C",
            "opt-level=3",
            "-C",
            "debuginfo=0",
            "-C",
            "codegen-units=4",
            "--cap-lints",
            "allow",
            "--print",
            "native-static-libs",
            "-o",
        ])
        .arg(&lib)
        .arg(src.join("lib.rs"))
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            println!("cargo:warning=could not run {rustc}: {e}");
            std::process::exit(1);
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        println!("cargo:warning=building the runtime static library failed:\n{stderr}");
        std::process::exit(1);
    }
    strip_debug(&lib);
    let libs = stderr
        .lines()
        .find_map(|l| l.split("native-static-libs:").nth(1))
        .unwrap_or("-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc")
        .trim()
        .to_string();
    if let Err(e) = std::fs::write(out.join("native_libs.txt"), libs) {
        println!("cargo:warning=cannot write native_libs.txt: {e}");
        std::process::exit(1);
    }
}

/// Drops the debug sections the standard library's objects carry (the runtime is built with
/// none), with binutils' `objcopy` (or `$OBJCOPY`) when it is there: the embedded library
/// shrinks from about 23 MB to 15 MB, so every native build writes and links less. Without
/// `objcopy` the library stays as rustc wrote it, which links the same.
fn strip_debug(lib: &std::path::Path) {
    let objcopy = std::env::var("OBJCOPY").unwrap_or_else(|_| "objcopy".into());
    let stripped = lib.with_extension("stripped.a");
    let ok = Command::new(&objcopy)
        .arg("--strip-debug")
        .arg(lib)
        .arg(&stripped)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        let _ = std::fs::rename(&stripped, lib);
    } else {
        let _ = std::fs::remove_file(&stripped);
    }
}

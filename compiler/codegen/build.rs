//! Builds the runtime (`runtime/src`, std only) as a static library with the same `rustc`
//! cargo uses, so `mcc` can embed it and link ahead-of-time compiled models against it with
//! the system's `cc`, stripped of what a C link never reads and prelinked into one object.
//! Also records the native libraries that static library needs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let src = manifest.join("../../runtime/src");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed={}", src.display());
    for var in ["OBJCOPY", "NM", "LD", "AR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
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
    strip(&lib);
    prelink(&lib);
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

/// Drops what linking a C program never reads, with binutils' `objcopy` (or `$OBJCOPY`)
/// when it is there: the debug sections the standard library's objects carry (the runtime is
/// built with none) and the LLVM bitcode they embed for link-time optimisation (`.llvmbc`,
/// `.llvmcmd`: 9 of the library's 18 MB). Every native build writes the library and links
/// it, so every build writes and reads less. Without `objcopy` the library stays as rustc
/// wrote it, which links the same.
fn strip(lib: &Path) {
    let stripped = lib.with_extension("stripped.a");
    let ok = binutil(
        "OBJCOPY",
        "objcopy",
        &[
            os("--strip-debug"),
            os("--remove-section=.llvmbc"),
            os("--remove-section=.llvmcmd"),
            lib.as_os_str(),
            stripped.as_os_str(),
        ],
    )
    .is_some();
    replace(lib, &stripped, ok);
}

/// Links the library's members into one relocatable object holding only what the runtime's
/// C entry points (`mcc_rt_*`) reach, and makes that object the library (on Linux, with
/// binutils' `nm`, `ld`, `objcopy` and `ar` when they are there; `$NM`, `$LD`, `$OBJCOPY`,
/// `$AR` name others). Functions stay in sections of their own, so a program still links
/// only what it calls. Only the entry points stay global symbols. Measured on the 2-vCPU
/// EPYC VM (GNU ld 2.40): the library goes from 8.5 MB and 323 members to 5.5 MB and one,
/// and linking vgg_bn's executable from ~80 to ~60 ms. Anything missing or failing leaves
/// the library as it was (with a warning).
fn prelink(lib: &Path) {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let listing = |file: &Path| {
        binutil(
            "NM",
            "nm",
            &[os("-g"), os("--defined-only"), file.as_os_str()],
        )
    };
    let roots = listing(lib).map(|l| entry_points(&l)).unwrap_or_default();
    if roots.is_empty() {
        println!("cargo:warning=the runtime library is not prelinked (`nm` found no entry points)");
        return;
    }
    let object = lib.with_extension("o");
    let mut ld: Vec<&OsStr> = vec![os("-r"), os("--gc-sections")];
    for r in &roots {
        ld.extend([os("-u"), os(r)]);
    }
    ld.extend([lib.as_os_str(), os("-o"), object.as_os_str()]);
    let archive = lib.with_extension("prelinked.a");
    let _ = std::fs::remove_file(&archive);
    let ok = binutil("LD", "ld", &ld).is_some()
        // Only the entry points stay global: the standard library inside stays private to
        // it, so a program that also links another Rust library gets no clashing definitions.
        && binutil(
            "OBJCOPY",
            "objcopy",
            &[os("--wildcard"), os("--keep-global-symbol=mcc_rt_*"), object.as_os_str()],
        )
        .is_some()
        // Every entry point the library had, the object still defines.
        && listing(&object).is_some_and(|l| entry_points(&l) == roots)
        // `D`: no timestamps or owners, so the library is the same bytes every build.
        && binutil("AR", "ar", &[os("rcsD"), archive.as_os_str(), object.as_os_str()]).is_some();
    let _ = std::fs::remove_file(&object);
    if !ok {
        println!("cargo:warning=the runtime library is not prelinked (ld, objcopy or ar failed)");
    }
    replace(lib, &archive, ok);
}

/// An argument.
fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Runs binutils' `default` (or the program `$var` names) with `args`: its standard output,
/// when it ran and succeeded.
fn binutil(var: &str, default: &str, args: &[&OsStr]) -> Option<Vec<u8>> {
    let program = std::env::var(var).unwrap_or_else(|_| default.into());
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| o.stdout)
}

/// The `mcc_rt_*` symbols `nm -g --defined-only` lists as defined (code or data), sorted.
fn entry_points(listing: &[u8]) -> Vec<String> {
    let mut roots: Vec<String> = String::from_utf8_lossy(listing)
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [_, kind, name] if name.starts_with("mcc_rt_") && kind != "U" => Some(name.into()),
            _ => None,
        })
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

/// Puts `new` in place of `lib` when `ok`, else removes it.
fn replace(lib: &Path, new: &Path, ok: bool) {
    if ok {
        let _ = std::fs::rename(new, lib);
    } else {
        let _ = std::fs::remove_file(new);
    }
}

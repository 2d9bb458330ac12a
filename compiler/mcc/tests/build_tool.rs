//! `mcc build` as a build system's action: the same recipe, model and data give
//! byte-identical outputs whatever the output folder and thread count (only `timings.json`
//! differs); `--depfile` names every file the build read — external weight files and data
//! sets included — as a Make rule, written only when the build succeeds; and a build in a
//! sandbox that holds nothing but those files (read-only), the output folder and the system's
//! linker gives the same bytes — what remote execution (Bazel, Buck2) needs.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

mod common;
use common::{corpus, fails, succeeds};

use mcc_onnx::pb;
use prost::Message;

fn recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes")
}

/// The regular files of `dir`, by name, with their bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn builds_are_byte_identical_across_output_paths_and_threads() {
    let tmp = tempfile::tempdir().unwrap();
    // Pruning, k-means sharing and Huffman coding (calibrated, with an executable), and
    // static int8 (calibrated ranges, integer kernels).
    for (recipe, model) in [
        ("lenet5-deep-compression.mcr", "lenet5.onnx"),
        ("resnet_bn-int8.mcr", "resnet_bn.onnx"),
    ] {
        let r = recipes().join(recipe);
        let m = corpus(model);
        let a = tmp.path().join(format!("a-{recipe}"));
        let b = tmp.path().join(format!("b-{recipe}/deeper/out"));
        for (dir, threads) in [(&a, "1"), (&b, "2")] {
            succeeds(
                tmp.path(),
                &[
                    "build",
                    r.to_str().unwrap(),
                    m.to_str().unwrap(),
                    "-o",
                    dir.to_str().unwrap(),
                    "--threads",
                    threads,
                ],
            );
        }
        let (fa, fb) = (files(&a), files(&b));
        let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&fa), names(&fb), "{recipe}: different outputs");
        assert!(
            names(&fa).iter().any(|n| n.ends_with(".o")),
            "{recipe}: no object file: {:?}",
            names(&fa)
        );
        for ((name, x), (_, y)) in fa.iter().zip(&fb) {
            if name == "timings.json" {
                continue;
            }
            assert!(x == y, "{recipe}: {name} differs between the two builds");
        }
    }
}

/// The paths of a Make rule's targets and prerequisites (one path a line, `\ ` escapes).
fn parse_rule(text: &str) -> (Vec<String>, Vec<String>) {
    let joined = text.replace("\\\n", " ");
    let (t, p) = joined.split_once(": ").expect("a rule");
    let split = |s: &str| -> Vec<String> {
        let mut out = vec![];
        let mut cur = String::new();
        let mut chars = s.trim().chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    cur.push(' ');
                    chars.next();
                }
                ' ' | '\n' => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    };
    (split(t), split(p))
}

/// In `dir`: a copy of lenet5 whose first large weight lives in an external data file, in a
/// folder with a space, and a recipe calibrating and evaluating on the corpus's data:
/// (recipe, model, external file, the data files).
fn external_model(dir: &Path) -> (PathBuf, PathBuf, PathBuf, [PathBuf; 3]) {
    let models = dir.join("my models");
    std::fs::create_dir(&models).unwrap();
    let mut proto =
        pb::ModelProto::decode(&*std::fs::read(corpus("lenet5.onnx")).unwrap()).unwrap();
    let init = proto
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.raw_data.as_ref().is_some_and(|r| r.len() > 64))
        .expect("an initializer with raw data");
    let raw = init.raw_data.take().unwrap();
    std::fs::write(models.join("weights.bin"), &raw).unwrap();
    init.data_location = Some(1);
    init.external_data = vec![pb::StringStringEntryProto {
        key: Some("location".into()),
        value: Some("weights.bin".into()),
    }];
    let model = models.join("lenet5 ext.onnx");
    std::fs::write(&model, proto.encode_to_vec()).unwrap();
    // A recipe with calibration data and evaluation data with labels (named without `..`,
    // which a sandbox holding only the files could not resolve).
    let data = std::fs::canonicalize(corpus("data")).unwrap();
    let recipe = dir.join("r.mcr");
    std::fs::write(
        &recipe,
        format!(
            "calibrate with {:?}\nevaluate with {:?} labels {:?}\nuse std.int8\n",
            data.join("mnist_calib_x.npy").display().to_string(),
            data.join("mnist_test_x.npy").display().to_string(),
            data.join("mnist_test_y.npy").display().to_string(),
        ),
    )
    .unwrap();
    let files = ["mnist_calib_x.npy", "mnist_test_x.npy", "mnist_test_y.npy"].map(|f| data.join(f));
    (recipe, model, models.join("weights.bin"), files)
}

#[test]
fn the_depfile_names_every_input_and_every_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, model, weights, data) = external_model(tmp.path());
    let out = tmp.path().join("out");
    let dep = tmp.path().join("build.d");
    succeeds(
        tmp.path(),
        &[
            "build",
            "r.mcr",
            model.to_str().unwrap(),
            "-o",
            "out",
            "--depfile",
            dep.to_str().unwrap(),
        ],
    );
    let (targets, inputs) = parse_rule(&std::fs::read_to_string(&dep).unwrap());
    let mut want: Vec<String> = files(&out)
        .into_iter()
        .map(|(n, _)| format!("out/{n}"))
        .collect();
    want.sort();
    assert_eq!(targets, want);
    assert_eq!(
        inputs,
        [
            vec!["r.mcr".to_string()],
            [&model, &weights]
                .into_iter()
                .chain(&data)
                .map(|p| p.display().to_string())
                .collect(),
        ]
        .concat()
    );
    // A failed build leaves the depfile as it was.
    let before = std::fs::read(&dep).unwrap();
    std::fs::write(
        tmp.path().join("bad.mcr"),
        "prune unstructured on Conv { amount: 150% }\n",
    )
    .unwrap();
    fails(
        tmp.path(),
        &[
            "build",
            "bad.mcr",
            model.to_str().unwrap(),
            "-o",
            "out",
            "--depfile",
            dep.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&dep).unwrap(), before);
}

/// `bwrap`, or why the sandboxed test cannot run (then it says NOT RUN, and fails where
/// `MCC_REQUIRE_SANDBOX` is set: CI).
fn bwrap() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("bwrap"))
            .find(|p| p.is_file())
    });
    // A bwrap that cannot make a sandbox here (no user namespaces) counts as missing.
    let works = found.as_ref().is_some_and(|b| {
        std::process::Command::new(b)
            .args(["--ro-bind", "/", "/", "--dev", "/dev", "true"])
            .status()
            .is_ok_and(|s| s.success())
    });
    if works {
        return found;
    }
    let why = "NOT RUN: the hermetic-build test needs bubblewrap (`bwrap`, Debian package bubblewrap) able to make a sandbox";
    assert!(
        std::env::var_os("MCC_REQUIRE_SANDBOX").is_none(),
        "{why}: MCC_REQUIRE_SANDBOX is set"
    );
    // Past the harness's capture, so every run's log (and scripts/test's summary) shows it.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{why}");
    None
}

#[test]
fn a_sandbox_holding_only_the_depfiles_inputs_builds_the_same_bytes() {
    let Some(bwrap) = bwrap() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (recipe, model, _, _) = external_model(tmp.path());
    // Outside the sandbox: the build and its depfile.
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dep = out.join("a.d");
    let args = |dir: &Path| -> Vec<String> {
        [
            "build",
            recipe.to_str().unwrap(),
            model.to_str().unwrap(),
            "-o",
            dir.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let mut first = args(&out.join("a"));
    first.extend(["--depfile".into(), dep.to_str().unwrap().into()]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    succeeds(tmp.path(), &first);
    let (_, inputs) = parse_rule(&std::fs::read_to_string(&dep).unwrap());
    // Inside: the system (/usr: the linker `cc` runs), mcc itself, the depfile's inputs
    // read-only, the output folder writable; no network, an empty /tmp.
    let mcc = std::fs::canonicalize(env!("CARGO_BIN_EXE_mcc")).unwrap();
    let mut cmd = std::process::Command::new(bwrap);
    cmd.args([
        "--die-with-parent",
        "--unshare-all",
        "--ro-bind",
        "/usr",
        "/usr",
    ]);
    for (link, to) in [
        ("/bin", "usr/bin"),
        ("/lib", "usr/lib"),
        ("/lib64", "usr/lib64"),
        ("/sbin", "usr/sbin"),
    ] {
        match std::fs::read_link(link) {
            Ok(_) => cmd.args(["--symlink", to, link]),
            Err(_) => cmd.args(["--ro-bind-try", link, link]),
        };
    }
    cmd.args(["--ro-bind-try", "/etc/alternatives", "/etc/alternatives"]);
    cmd.args(["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]);
    cmd.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
    let bind = |cmd: &mut std::process::Command, how: &str, p: &Path| {
        cmd.arg(how).arg(p).arg(p);
    };
    bind(&mut cmd, "--ro-bind", &mcc);
    for i in &inputs {
        bind(&mut cmd, "--ro-bind", &std::fs::canonicalize(i).unwrap());
    }
    let out_real = std::fs::canonicalize(&out).unwrap();
    bind(&mut cmd, "--bind", &out_real);
    cmd.arg("--chdir")
        .arg(&out_real)
        .arg("--setenv")
        .arg("NO_COLOR")
        .arg("1");
    cmd.arg(&mcc).args(args(&out_real.join("b")));
    let res = cmd.output().unwrap();
    assert!(
        res.status.success(),
        "the sandboxed build failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let (fa, fb) = (files(&out.join("a")), files(&out.join("b")));
    assert_eq!(fa.len(), fb.len());
    assert!(fa.iter().any(|(n, _)| n.ends_with(".o")), "no object file");
    for ((name, x), (other, y)) in fa.iter().zip(&fb) {
        assert_eq!(name, other);
        if name != "timings.json" {
            assert!(x == y, "{name} differs inside the sandbox");
        }
    }
}

#[test]
fn the_summary_is_json_with_json_diagnostics_and_nothing_when_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let (recipe, model) = (recipes().join("lenet5.mcr"), corpus("lenet5.onnx"));
    let build = |dir: &str, extra: &[&str]| {
        let mut a = vec![
            "build",
            recipe.to_str().unwrap(),
            model.to_str().unwrap(),
            "-o",
            dir,
        ];
        a.extend(extra);
        succeeds(tmp.path(), &a)
    };
    let out = build("j", &["--message-format", "json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "build");
    let listed: Vec<String> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let on_disk: Vec<String> = files(&tmp.path().join("j"))
        .into_iter()
        .map(|(n, _)| format!("j/{n}"))
        .collect();
    assert_eq!(listed, on_disk);
    assert_eq!(v["executable"], "j/lenet5");
    let acc = v["accuracy"]["after"].as_f64().unwrap();
    assert!((0.9..=1.0).contains(&acc), "accuracy {acc}");
    assert!(
        v["stored_bytes"]["after"].as_u64().unwrap()
            < v["stored_bytes"]["before"].as_u64().unwrap()
    );
    // Every diagnostic line on stderr is JSON, the last a result.
    let err = String::from_utf8(out.stderr).unwrap();
    for line in err.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    let quiet = build("q", &["--quiet"]);
    assert!(
        quiet.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stdout)
    );
    assert!(tmp.path().join("q/report.json").is_file());
}

#[test]
fn emit_writes_exactly_the_outputs_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (recipe, model) = (recipes().join("lenet5.mcr"), corpus("lenet5.onnx"));
    let names = |emit: &str| -> Vec<String> {
        let out = succeeds(
            tmp.path(),
            &[
                "build",
                recipe.to_str().unwrap(),
                model.to_str().unwrap(),
                "-o",
                "o",
                "--emit",
                emit,
            ],
        );
        assert!(out.status.success());
        // What was asked for was written: nothing to warn of (`--emit obj` once warned
        // "no executable").
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("warning"), "--emit {emit}: {err}");
        files(&tmp.path().join("o"))
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    assert_eq!(
        names("obj,report"),
        [
            "lenet5.h",
            "lenet5.o",
            "libmcc_runtime.a",
            "report.html",
            "report.json",
            "timings.json"
        ]
    );
    assert_eq!(names("html"), ["report.html"]);
    // A file of the user's stays; the older build's outputs go.
    std::fs::write(tmp.path().join("o/notes.txt"), "mine").unwrap();
    assert_eq!(names("exe"), ["lenet5", "notes.txt"]);
    let run = std::process::Command::new(tmp.path().join("o/lenet5"))
        .arg(corpus("data/mnist_test_x.npy"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        names("onnx,ir"),
        ["model.full.mcir", "model.mcir", "model.onnx", "notes.txt"]
    );
}

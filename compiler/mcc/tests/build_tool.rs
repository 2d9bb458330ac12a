//! `mcc build` as a build system's action: the same recipe, model and data give
//! byte-identical outputs whatever the output folder and thread count (only `timings.json`
//! differs), and `--depfile` names every file the build read — external weight files and
//! data sets included — as a Make rule, written only when the build succeeds.

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

#[test]
fn the_depfile_names_every_input_and_every_output() {
    let tmp = tempfile::tempdir().unwrap();
    // A model whose first weight lives in an external data file, in a folder with a space.
    let models = tmp.path().join("my models");
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
    // A recipe with calibration data and evaluation data with labels.
    let data = corpus("data");
    let recipe = tmp.path().join("r.mcr");
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
        vec![
            "r.mcr".to_string(),
            model.display().to_string(),
            models.join("weights.bin").display().to_string(),
            data.join("mnist_calib_x.npy").display().to_string(),
            data.join("mnist_test_x.npy").display().to_string(),
            data.join("mnist_test_y.npy").display().to_string(),
        ]
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

//! The light models with seeded random weights, and their ONNX Runtime references: made by
//! `tests/light_random.py` on first use into a cache under cargo's target directory.
//!
//! The corpus's light models compute every weight as `ConstantOfShape(0.02)`, so a permuted
//! channel, a wrong group or a wrong concat order leaves their outputs unchanged; their
//! random versions make such mistakes show. The script skips models it made already with
//! the same version of itself, so after the first run a test pays only for reading them.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::{LIGHT, python, workspace};

/// One light model with random weights, and ONNX Runtime's outputs for it on
/// `corpus/light/light_input_seed0.npy`.
#[derive(Clone, Debug)]
pub struct RandomLight {
    /// `light_<name>_random.onnx`.
    pub model: PathBuf,
    /// The model's output.
    pub output: PathBuf,
    /// The input of the model's final Softmax; `None` for a model without one (DenseNet).
    pub presoftmax: Option<PathBuf>,
}

/// The cache folder: `light-random` in the cargo target directory the running test binary
/// was built in (the nearest folder above it holding cargo's `CACHEDIR.TAG`), else in the
/// workspace's `target/`.
pub fn cache_dir() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|d| d.join("CACHEDIR.TAG").is_file())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| workspace().join("target"));
    target.join("light-random")
}

/// The random version of the light model `name` (a name of [`LIGHT`]) and its references,
/// made on the first call for that model in this process (later calls, also from other
/// threads, wait for it and reuse it). Panics with the script's output if it fails.
pub fn model(name: &str) -> RandomLight {
    static MADE: [OnceLock<RandomLight>; LIGHT.len()] = [const { OnceLock::new() }; LIGHT.len()];
    let i = LIGHT
        .iter()
        .position(|m| *m == name)
        .unwrap_or_else(|| panic!("`{name}` is not a light model (one of {LIGHT:?})"));
    MADE[i].get_or_init(|| generate(name)).clone()
}

fn generate(name: &str) -> RandomLight {
    let dir = cache_dir();
    let script = workspace().join("tests/light_random.py");
    let t0 = std::time::Instant::now();
    let res = python()
        .arg(&script)
        .arg(&dir)
        .arg(name)
        .output()
        .unwrap_or_else(|e| panic!("cannot start Python for {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{} {} {name} failed (it needs numpy, onnx and onnxruntime: `pip install numpy onnx onnxruntime`, or set MCC_PYTHON):\n{stdout}{}",
        script.display(),
        dir.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    print!("{stdout}");
    println!(
        "light_{name}_random: ready in {} ({:.1} s)",
        dir.display(),
        t0.elapsed().as_secs_f64()
    );
    let file = |suffix: &str| dir.join(format!("light_{name}_random{suffix}"));
    let r = RandomLight {
        model: file(".onnx"),
        output: file("_out.npy"),
        presoftmax: Some(file("_presoftmax.npy")).filter(|p| p.is_file()),
    };
    for p in [&r.model, &r.output] {
        assert!(
            p.is_file(),
            "{} did not make {}",
            script.display(),
            p.display()
        );
    }
    r
}

//! `mcc bench --report DIR`: the latency of a build, measured on this machine and added to
//! the folder `mcc build -o DIR` wrote. The original model (the file `report.json` names,
//! checked against its SHA-256) and the compressed one (`DIR/model.full.mcir`) are each
//! compiled as the executable is (the JIT), at the input size the build compiled, and timed
//! with [`crate::measure::latency_ms`]; the result goes to `DIR/timings.json` (`latency`), and
//! `DIR/report.html` is rendered again from `report.json` with it.
//!
//! **Invariant:** `report.json` and every output but those two stay as they are: a latency
//! is a timing, which varies from run to run, so it goes where timings go. The page is
//! rendered from what `mcc build` rendered it from (`report.json` and the native files'
//! sizes), so without its latency section it is the build's page, byte for byte (tested). On
//! any error, nothing in the folder changes.

use std::path::{Path, PathBuf};

use mcc_ir::Graph;

use crate::Error;
use crate::report::{Latency, Report, Timings};

/// How to time.
#[derive(Clone, Debug)]
pub struct Options {
    /// The original model, when it is not where `report.json` says (its SHA-256 must still
    /// be the report's).
    pub model: Option<PathBuf>,
    /// Samples per run (a model with a fixed batch runs its own).
    pub batch: usize,
    /// Kernel threads (0: every core).
    pub threads: usize,
    /// Timed runs, after 5 warm-up runs.
    pub runs: usize,
}

/// What was timed and written.
#[derive(Clone, Debug)]
pub struct Benched {
    /// The measurement, as written to `timings.json`.
    pub latency: Latency,
    /// Why the original was not timed, when it was not (it has no native code).
    pub before_note: Option<String>,
    /// The original model, as read.
    pub original: PathBuf,
    /// The compressed model, as read.
    pub compressed: PathBuf,
    /// The input sizes both were compiled for: each input's shape without the batch.
    pub input_sizes: Vec<Vec<usize>>,
    /// The files rewritten.
    pub wrote: Vec<PathBuf>,
}

/// Times the original and the compressed model of the build in `dir` and writes the result
/// into `dir`'s `timings.json` and `report.html`.
pub fn report(dir: &Path, opts: &Options) -> Result<Benched, Error> {
    let report_path = dir.join("report.json");
    let timings_path = dir.join("timings.json");
    let html_path = dir.join("report.html");
    let report = Report::read(&report_path)?;
    let (mut timings, old_timings) = Timings::read(&timings_path)?;
    let original = original_model(&report, opts.model.as_deref())?;
    let (compressed, mut after) = compressed_model(dir)?;
    let mut before = crate::load(&original)?.graph;
    if let Some(sizes) = sizes(&report, &report_path, &after)? {
        for g in [&mut before, &mut after] {
            if crate::measure::free_sizes(g) {
                mcc_passes::specialize(g, &sizes)?;
            }
        }
    }
    let after = crate::native::program(&after)?;
    let (before, before_note) = match crate::native::program(&before) {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let batch = after.fixed_batch.unwrap_or(opts.batch.max(1));
    let threads = crate::measure::threads(opts.threads);
    let runs = opts.runs.max(1);
    for p in before.iter().chain([&after]) {
        crate::native::check_memory(p, batch)?;
    }
    let before_ms = before
        .as_ref()
        .map(|p| crate::measure::latency_ms(p, None, threads, runs, batch))
        .transpose()?;
    let after_ms = crate::measure::latency_ms(&after, None, threads, runs, batch)?;
    let latency = Latency {
        cpu: crate::measure::cpu_name(),
        threads,
        runs,
        batch,
        before_ms,
        after_ms,
    };

    // Everything is computed; now the two files, the second undoing the first if it fails.
    timings.latency = Some(latency.clone());
    let timings_json = crate::recipe::to_json(&timings)? + "\n";
    let files = crate::html::Files::in_folder(dir, &report);
    let html = crate::html::render_measured(&report, &files, &latency);
    crate::write_atomic(&timings_path, timings_json.as_bytes())?;
    if let Err(e) = crate::write_atomic(&html_path, html.as_bytes()) {
        let _ = crate::write_atomic(&timings_path, old_timings.as_bytes());
        return Err(e);
    }
    Ok(Benched {
        latency,
        before_note,
        original,
        compressed,
        input_sizes: after.inputs.iter().map(|io| io.dims.clone()).collect(),
        wrote: vec![timings_path, html_path],
    })
}

/// The model the build read: `given`, else the file `report.json` names (as given to
/// `mcc build`, so relative to the folder it ran in); either way with the report's SHA-256.
fn original_model(report: &Report, given: Option<&Path>) -> Result<PathBuf, Error> {
    let want = &report.inputs.model;
    let path = given.map_or_else(|| PathBuf::from(&want.file), Path::to_path_buf);
    let name = "mcc bench --report DIR MODEL";
    if !path.is_file() {
        return Err(Error::InputChanged {
            path,
            message: "is not there: it is the model the build read, as report.json names it \
                      (the path given to `mcc build`, from the folder it ran in)"
                .into(),
            help: format!("run from that folder, or name the model: {name}"),
        });
    }
    let found = crate::build::sha256_file(&path)?.sha256;
    if found != want.sha256 {
        return Err(Error::InputChanged {
            path,
            message: format!(
                "is not the model this build read: its SHA-256 is {found}, report.json has {}",
                want.sha256
            ),
            help: format!(
                "rebuild with `mcc build` to time this model, or name the file the build read: {name}"
            ),
        });
    }
    Ok(path)
}

/// The compressed model in `dir`, read: `model.full.mcir`, the model exactly as the build
/// compiled it (`model.onnx`, standard ONNX, can differ: an activation fused into a layer is
/// an operator of its own there, and timing that would not time the build).
fn compressed_model(dir: &Path) -> Result<(PathBuf, Graph), Error> {
    let full = dir.join("model.full.mcir");
    if !full.is_file() {
        return Err(Error::NotABuild {
            path: full,
            message: "does not exist: the compressed model to time (a build whose --emit \
                      list leaves out `ir` does not write it)"
                .into(),
            help: "rebuild without --emit, or with `--emit ir,report`".into(),
        });
    }
    let g = crate::load(&full)?.graph;
    Ok((full, g))
}

/// The input shapes (batch first) to compile `graph` for: none when its sizes are fixed;
/// else the first size the build compiled (`native.input_sizes`), else, without native
/// code, the shape of the data it measured on, chosen as the build chose it.
fn sizes(report: &Report, path: &Path, graph: &Graph) -> Result<Option<Vec<Vec<usize>>>, Error> {
    if !crate::measure::free_sizes(graph) {
        return Ok(None);
    }
    if let Some(first) = report.native.as_ref().and_then(|n| n.input_sizes.first()) {
        let batched = first
            .iter()
            .map(|dims| std::iter::once(1).chain(dims.iter().copied()).collect())
            .collect();
        return Ok(Some(batched));
    }
    let shape = |f: Option<&crate::report::FileRef>| {
        f.map(|f| crate::tensor_io::read_header(Path::new(&f.file)).map(|(_, s)| s))
            .transpose()
    };
    let evaluation = shape(report.inputs.evaluation.as_ref())?;
    let calibration = shape(report.inputs.calibration.as_ref())?;
    match crate::measure::sized_like(evaluation.as_ref(), calibration.as_ref(), Vec::as_slice) {
        Some(s) if graph.inputs().len() == 1 => Ok(Some(vec![s.clone()])),
        _ => Err(Error::NotABuild {
            path: path.to_path_buf(),
            message: "names no input size to compile the model at: its sizes are free, and the \
                      build compiled no native code and measured on no data of one size"
                .into(),
            help: "rebuild with native code (without --no-native), or with --input-shape".into(),
        }),
    }
}

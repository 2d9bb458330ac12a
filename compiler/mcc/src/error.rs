//! The driver's error type: every stage's diagnostic, plus the driver's own (files, inputs).

use std::path::{Path, PathBuf};

/// Anything `mcc` can fail with. Each variant renders as one miette diagnostic.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// Importing an ONNX model failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Import(#[from] mcc_onnx::ImportError),
    /// Exporting an ONNX model failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Export(#[from] mcc_onnx::ExportError),
    /// A pass failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Pass(#[from] mcc_passes::PassError),
    /// Evaluation failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Eval(#[from] mcc_ir::EvalError),
    /// The model cannot be compiled to native code.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lower(#[from] mcc_codegen::LowerError),
    /// The object file or executable could not be made.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Aot(#[from] mcc_codegen::aot::AotError),
    /// Running compiled code failed.
    #[error("the compiled model failed: {0}")]
    #[diagnostic(code(mcc::native::run))]
    Native(String),
    /// Running a batch would take more memory than the machine has (where it is known: the
    /// system would kill the process rather than fail the allocation), or than can be
    /// addressed.
    #[error("batch {batch} needs {needed} of memory, more than {available}")]
    #[diagnostic(code(mcc::native::memory), help("run fewer samples at a time"))]
    Memory {
        /// The batch asked for.
        batch: usize,
        /// What it needs (arena, inputs and outputs).
        needed: String,
        /// What there is.
        available: String,
    },
    /// IR text did not parse.
    #[error("cannot parse IR text: {message}")]
    #[diagnostic(code(mcc::ir::parse))]
    IrText {
        /// The text, for the snippet (long lines clipped around the span).
        #[source_code]
        src: Box<crate::snippet::Snippet>,
        /// What is wrong.
        message: String,
        /// Where.
        #[label("here")]
        span: miette::SourceSpan,
    },
    /// A recipe is not valid syntax (`mcc fmt`; the other commands report it among the
    /// recipe's diagnostics).
    #[error("{message}")]
    #[diagnostic(code(mcc::recipe::syntax))]
    RecipeSyntax {
        /// The text, for the snippet.
        #[source_code]
        src: Box<crate::snippet::Snippet>,
        /// What is wrong.
        message: String,
        /// Where.
        #[label("here")]
        span: miette::SourceSpan,
    },
    /// IR text parsed but is malformed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Verify(#[from] mcc_ir::VerifyErrors),
    /// A file could not be read or written.
    #[error("cannot access `{}`: {cause}", path.display())]
    #[diagnostic(code(mcc::io))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// An `.npy` file could not be read.
    #[error("`{}`: {message}", path.display())]
    #[diagnostic(code(mcc::input::npy))]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An input array does not fit the model.
    #[error("`{}` does not fit input `{input}`: the model expects {expected}, the file holds {got}", path.display())]
    #[diagnostic(code(mcc::input::mismatch), help("{help}"))]
    InputMismatch {
        /// The file.
        path: PathBuf,
        /// The model input.
        input: String,
        /// Its type.
        expected: String,
        /// What the file holds.
        got: String,
        /// What to do.
        help: String,
    },
    /// Data or weights hold NaN or infinity where a measurement needs numbers.
    #[error("{what} holds {value} at {at}; mcc measures with it, so it must hold numbers")]
    #[diagnostic(code(mcc::build::non_finite), help("{help}"))]
    NonFinite {
        /// The file or weight.
        what: String,
        /// `NaN`, `inf` or `-inf`.
        value: String,
        /// Where: sample and element, or element.
        at: String,
        /// What to do.
        help: String,
    },
    /// A budget of the recipe is not met.
    #[error("the compressed model misses its budget:\n{}{}{}", budget_lines(.violations), costliest_lines(.costliest), regain_lines(.regains))]
    #[diagnostic(
        code(mcc::build::budget),
        help("nothing was written; relax the budget or compress less")
    )]
    Budget {
        /// The recipe, as given on the command line.
        recipe: PathBuf,
        /// Every constraint that failed: its text, its line in the recipe, what was measured.
        violations: Vec<crate::build::Violation>,
        /// The changed layers whose outputs moved most from the original's (relative L2 on
        /// the calibration data), largest first, at most three.
        costliest: Vec<(String, f64)>,
        /// For a missed accuracy or output-error budget: what restoring each of the layers
        /// that cost most would regain, and which to restore together, measured.
        regains: Option<Box<crate::attribution::Regains>>,
    },
    /// The compiled IR differs from the committed snapshot.
    #[error("the compiled IR differs from the snapshot `{}`:\n{diff}", path.display())]
    #[diagnostic(
        code(mcc::build::snapshot),
        help(
            "review the diff; if the change is intended, run the same command with --bless to update the snapshot"
        )
    )]
    Snapshot {
        /// The snapshot file.
        path: PathBuf,
        /// The unified diff, snapshot → compiled.
        diff: String,
    },
    /// The recipe has errors (each already reported as a diagnostic of its own).
    #[error("the recipe has {errors} error(s); nothing was built")]
    #[diagnostic(code(mcc::recipe::rejected))]
    Rejected {
        /// How many.
        errors: usize,
    },
    /// A folder given as a build's output (`mcc bench --report DIR`) does not hold what the
    /// command needs from it: a `report.json` this mcc reads, `timings.json`, the compressed
    /// model.
    #[error("`{}` {message}", path.display())]
    #[diagnostic(code(mcc::bench::not_a_build), help("{help}"))]
    NotABuild {
        /// The file that is missing or unreadable.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
        /// What to do.
        help: String,
    },
    /// A file a build's report names is gone or is not the one the build read (its SHA-256
    /// differs from the report's).
    #[error("`{}` {message}", path.display())]
    #[diagnostic(code(mcc::bench::input_changed), help("{help}"))]
    InputChanged {
        /// The file.
        path: PathBuf,
        /// What changed.
        message: String,
        /// What to do.
        help: String,
    },
    /// The command line asks for something inconsistent.
    #[error("{0}")]
    #[diagnostic(code(mcc::usage))]
    Usage(String),
}

fn costliest_lines(costliest: &[(String, f64)]) -> String {
    if costliest.is_empty() {
        return String::new();
    }
    let layers: Vec<String> = costliest
        .iter()
        .map(|(n, e)| format!("`{n}` {e:.3}"))
        .collect();
    format!(
        "\nlayers whose outputs moved most (relative L2 against the original, calibration data): {}",
        layers.join(", ")
    )
}

fn regain_lines(regains: &Option<Box<crate::attribution::Regains>>) -> String {
    let Some(r) = regains else {
        return String::new();
    };
    let m = r.metric;
    let what = match m {
        crate::sensitivity::Metric::Accuracy => "top-1 accuracy",
        crate::sensitivity::Metric::OutputError => "relative L2 error of the outputs",
    };
    if r.layers.is_empty() {
        return format!(
            "\nrestoring any one compressed layer (the recipe applied to all the others; \
             {what}, now {}) regains nothing measurable",
            m.show(r.compressed)
        );
    }
    let mut out = format!(
        "\nrestoring one layer (the recipe applied to all the others, each built and measured; \
         {what}, now {}):",
        m.show(r.compressed)
    );
    for (layer, v, bytes) in &r.layers {
        out.push_str(&format!(
            "\n  `{layer}` → {} ({}), {bytes} stored weight bytes",
            m.show(*v),
            m.change(r.compressed, *v)
        ));
    }
    if let Some(t) = &r.together {
        let names: Vec<String> = t.layers.iter().map(|l| format!("`{l}`")).collect();
        out.push_str(&format!(
            "\n{} {}: {} ({}), {} stored weight bytes",
            if t.enough {
                "restoring these together meets it:"
            } else {
                "not even restoring these together meets it:"
            },
            names.join(", "),
            m.show(t.metric),
            m.change(r.compressed, t.metric),
            t.bytes
        ));
    }
    out
}

fn budget_lines(violations: &[crate::build::Violation]) -> String {
    let lines: Vec<String> = violations
        .iter()
        .map(|(c, l, m)| format!("line {l}: `{c}` — measured {m}"))
        .collect();
    lines.join("\n")
}

impl Error {
    /// The file the error is about, as the user named it, when there is one.
    pub fn file(&self) -> Option<&Path> {
        use mcc_onnx::{ExportError as X, ImportError as I};
        match self {
            Error::Io { path, .. }
            | Error::Npy { path, .. }
            | Error::InputMismatch { path, .. }
            | Error::Snapshot { path, .. }
            | Error::NotABuild { path, .. }
            | Error::InputChanged { path, .. }
            | Error::Import(I::Io { path, .. } | I::Decode { path, .. } | I::Graph { path, .. })
            | Error::Import(I::ExternalData { file: path, .. })
            | Error::Export(X::Io { path, .. }) => Some(path),
            Error::Budget { recipe, .. } => Some(recipe),
            _ => None,
        }
    }
}

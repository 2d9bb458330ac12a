//! The `mcc` command line: `inspect`, `run`, `ir`, `convert`.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcc::{Error, tensor_io};
use mcc_ir::{Dim, Tensor};

/// mcc, the model-compression compiler.
///
/// mcc compresses a trained ONNX model the way a recipe (`.mcr`) says — pruning,
/// quantization, weight sharing, low-rank factorization, exact layer merges — measures what
/// each change cost on compiled code, and emits a native executable, an object file with a C
/// header, the compressed model and a report. Start with `mcc build RECIPE MODEL` (`mcc build
/// --help`); recipes for the corpus are in recipes/. Models are `.onnx` files, or IR text
/// (`.mcir`, as printed by `mcc ir --weights`).
#[derive(Parser, Debug)]
#[command(
    name = "mcc",
    version,
    about,
    long_about,
    propagate_version = true,
    arg_required_else_help = true,
    after_long_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `mcc --help`'s closing section, for build systems and scripts (docs/build-systems.md).
const EXIT_STATUS: &str = "Exit status:
  0    success
  1    an error, reported as a diagnostic (bad input, a recipe error, a missed budget);
       also `fmt --check` finding an unformatted file and `diff --exit-code` a difference.
       A failed build writes nothing and leaves the previous outputs as they were.
  2    a command line that does not parse (unknown flag, missing argument)
  130  interrupted (Ctrl-C, SIGTERM): half-written outputs are removed";

/// How diagnostics are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum MessageFormat {
    /// Rendered for people, with the recipe text and labels.
    Human,
    /// JSON Lines on standard error, nothing else: one object per diagnostic (type, severity,
    /// code, message, file, line, column, help, …), then a result line (docs/json-diagnostics.md).
    Json,
}

/// Build outputs to write (`--emit`): naming any but `ir-diffs` writes only those named.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Emit {
    /// The executable.
    Exe,
    /// The object file, its C header and the runtime library.
    Obj,
    /// model.onnx.
    Onnx,
    /// model.mcir (and model.full.mcir when written).
    Ir,
    /// report.json, timings.json and report.html.
    Report,
    /// report.html alone (the report for people: docs/report.md).
    Html,
    /// One unified IR diff per step that changed the model (in addition to the others).
    IrDiffs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lay recipes out canonically, keeping every comment: the same tokens on the same lines,
    /// indented two spaces per open bracket, spaced one way, at most one blank line in a row.
    ///
    /// Changes whitespace only (checked: the tokens and comments stay as they were), and a
    /// formatted recipe stays as it is. Rewrites each file in place when it changes; `-`
    /// reads standard input and writes the result to standard output. With --check, changes
    /// nothing, names each file that is not formatted and exits 1 if any is: for CI.
    ///
    /// Example: mcc fmt --check recipes/*.mcr
    Fmt {
        /// The recipes (.mcr), or `-` for standard input.
        #[arg(required = true, value_name = "RECIPE")]
        files: Vec<PathBuf>,
        /// Change nothing; list the files that are not formatted and exit 1 if there are any.
        #[arg(long)]
        check: bool,
    },
    /// Show what differs between two models, as a unified diff of their IR text.
    ///
    /// Both are read and canonicalized first (ONNX or .mcir), so the diff shows only real
    /// changes: rewritten or removed nodes, constants whose data changed (fingerprints).
    /// Exit status 0 even when they differ, unless --exit-code is given (then 1).
    ///
    /// Example: mcc diff examples/lenet5/lenet5.onnx out/lenet5/model.onnx
    Diff {
        /// The model before.
        a: PathBuf,
        /// The model after.
        b: PathBuf,
        /// Exit with status 1 when the models differ (like `git diff --exit-code`).
        #[arg(long)]
        exit_code: bool,
    },
    /// Check a recipe against a model, before any data beyond array shapes is read.
    ///
    /// Reports every problem of the recipe in one run: unknown layers, techniques and
    /// parameters (with "did you mean"), selectors that match nothing, wrong units or
    /// ranges, data files that do not fit the model, and warnings for rules that change
    /// nothing or are overridden. Exit status 1 if there is an error.
    ///
    /// Example: mcc check recipes/lenet5.mcr examples/lenet5/lenet5.onnx
    Check {
        /// The recipe (.mcr).
        recipe: PathBuf,
        /// The model (.onnx or .mcir).
        model: PathBuf,
        /// `human` or `json` diagnostics.
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
    },
    /// Print, for every layer, the techniques and parameters it gets and the recipe line(s)
    /// that set them.
    ///
    /// Example: mcc explain recipes/lenet5.mcr examples/lenet5/lenet5.onnx
    Explain {
        /// The recipe (.mcr).
        recipe: PathBuf,
        /// The model (.onnx or .mcir).
        model: PathBuf,
        /// `human` or `json` diagnostics.
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
    },
    /// Measure how much each layer a rule selects can take: the model's metric with only that
    /// layer compressed, at the rule's setting and over a sweep (pruning: 30, 50, 70, 80, 90,
    /// 95%), on compiled code.
    ///
    /// The metric is top-1 accuracy on the recipe's labelled evaluation data; without labels,
    /// the relative L2 error of the outputs against the original's on its calibration data.
    /// Exact steps (merges) run as written; every other sweepable rule is switched off while
    /// one layer is measured. Prints a table; --json writes the numbers.
    ///
    /// Example: mcc sensitivity recipes/lenet5.mcr examples/lenet5/lenet5.onnx --json sens.json
    Sensitivity {
        /// The recipe (.mcr).
        recipe: PathBuf,
        /// The model (.onnx or .mcir).
        model: PathBuf,
        /// Also write the results here as JSON.
        #[arg(long, value_name = "FILE.json")]
        json: Option<PathBuf>,
        /// Use only the first N samples of the data (faster, noisier).
        #[arg(long, value_name = "N")]
        samples: Option<usize>,
        /// Threads to run on (default: every core; at most 1024).
        #[arg(long, value_name = "N", value_parser = threads_arg)]
        threads: Option<usize>,
        /// `human` or `json` diagnostics.
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
    },
    /// Compress a model with a recipe: check, run the stages in order, measure, write outputs.
    ///
    /// Writes DIR/model.mcir (the IR to review: weights by fingerprint and stored form),
    /// DIR/model.full.mcir (the compressed model in mcc's own form, weights stored compressed;
    /// any mcc command reads it; written when some weight is stored compressed), DIR/model.onnx (the compressed model, weights dense),
    /// DIR/report.json (per layer: techniques, parameters/MACs/bytes before and after, output
    /// error against the original on the calibration data; whole model: accuracy before and
    /// after, output fidelity, sizes, hashes of every input; see docs/report.md) and
    /// DIR/timings.json (how long each phase took, on how many threads) and DIR/report.html
    /// (the report for people, one self-contained page: summary, budget verdicts, per-class
    /// accuracy, a per-layer table sortable by any column, charts). Accuracy and errors
    /// are measured on the compiled model, the kernels the executable runs. Everything is
    /// written atomically: a failed build leaves no output. A violated budget fails the build
    /// (exit 1) and says by how much.
    ///
    /// Native code (unless --no-native): DIR/NAME, a standalone executable
    /// (`./NAME INPUT.npy [-o OUTPUT.npy] [--bench N] [--threads T]`), and DIR/NAME.o +
    /// DIR/NAME.h + DIR/libmcc_runtime.a to link the model into a C or Rust program
    /// (NAME_new / NAME_run / NAME_free; see the header). The executable is linked with the
    /// system's `cc` (or $CC); without one, the object and header are still written and the
    /// report says why there is no executable.
    ///
    /// Example: mcc build recipes/lenet5.mcr examples/lenet5/lenet5.onnx -o out/lenet5
    Build {
        /// The recipe (.mcr).
        recipe: PathBuf,
        /// The model (.onnx or .mcir).
        model: PathBuf,
        /// Output folder (default: mcc-out/<model name>).
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Which outputs to write (repeat, or separate with commas): `exe`, `obj` (object,
        /// header and runtime library), `onnx`, `ir`, `report` (report.json, timings.json and
        /// report.html), `html` (report.html alone); default all of them. `ir-diffs` adds DIR/ir-diffs/NN-<stage>-<technique>.diff, the
        /// IR diff of every step that changed something. Native code is compiled only for
        /// `exe` or `obj`.
        #[arg(long, value_enum, value_name = "WHAT", value_delimiter = ',')]
        emit: Vec<Emit>,
        /// Compare the compiled IR with this committed IR text and fail with the diff when it
        /// changed: how a team reviews, in its own CI, what a recipe change does to its model.
        #[arg(long, value_name = "FILE.mcir")]
        snapshot: Option<PathBuf>,
        /// With --snapshot: accept the compiled IR and (re)write the snapshot file.
        #[arg(long, requires = "snapshot")]
        bless: bool,
        /// Skip native code: no object file, header or executable.
        #[arg(long)]
        no_native: bool,
        /// Compile native code for inputs of this shape, e.g. `1x3x48x192` (several inputs:
        /// `1x3x48x192,1x10`, in the model's order; the first axis, the batch, stays free).
        /// Repeat it to compile several sizes into one executable and object: the
        /// executable runs the size its inputs fit and names the compiled sizes for any
        /// other; the C interface loads one with NAME_new_size. Without it, a model whose
        /// sizes are free (a text recognizer's width) is compiled for its calibration (else
        /// evaluation) data's shape.
        #[arg(long = "input-shape", value_name = "DIMS", value_parser = shapes_arg)]
        input_shape: Vec<Shapes>,
        /// Threads the measurements run on (default: every core; at most 1024). The report
        /// is the same for any count.
        #[arg(long, value_name = "N", value_parser = threads_arg)]
        threads: Option<usize>,
        /// `human` or `json` diagnostics.
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
        /// Also write FILE, a Make rule: every file the build wrote depends on every file it
        /// read (the recipe, the model and its external data files, the data sets, the
        /// --snapshot it compared against), as `cc -MD` writes. For Make (`-include`), Ninja
        /// (`depfile =`) and CMake (`add_custom_command(... DEPFILE)`): see
        /// docs/build-systems.md. Written only when the build succeeds.
        #[arg(long, value_name = "FILE")]
        depfile: Option<PathBuf>,
        /// Print nothing on success (diagnostics still go to standard error). With
        /// `--message-format json`, the summary is one JSON object on standard output
        /// instead (docs/json-diagnostics.md), which --quiet also leaves out.
        #[arg(short, long)]
        quiet: bool,
        /// Measure what each compressed layer costs: the model with only that layer
        /// compressed, and with only that layer restored, each built and evaluated like the
        /// build itself (two builds a layer), then the fewest layers whose restoring regains
        /// half the loss. Written to report.json (`attribution`) and report.html, and
        /// summarized here.
        #[arg(long)]
        attribution: bool,
    },
    /// Show every node: operator, input/output types, parameters and MACs.
    ///
    /// One row per node in the IR's order, then totals. MACs count Conv, Gemm and MatMul
    /// (and their integer forms) per sample (a symbolic batch counts as 1).
    ///
    /// Example: mcc inspect examples/lenet5/lenet5.onnx
    Inspect {
        /// The model (.onnx or .mcir).
        model: PathBuf,
    },
    /// Evaluate a model on inputs from .npy files with the reference evaluator.
    ///
    /// Prints the top-1 class per sample for classifier outputs ([N, classes]) and, with
    /// --labels, the accuracy. Inputs are checked against the model's input types first.
    ///
    /// Example: mcc run examples/lenet5/lenet5.onnx --input examples/lenet5/mnist_test_x.npy
    ///          --labels examples/lenet5/mnist_test_y.npy
    Run {
        /// The model (.onnx or .mcir).
        model: PathBuf,
        /// An input array, once per model input, in the model's input order.
        #[arg(short, long = "input", value_name = "X.npy", required = true)]
        inputs: Vec<PathBuf>,
        /// Write the first output here as .npy.
        #[arg(short, long, value_name = "Y.npy")]
        output: Option<PathBuf>,
        /// Integer class labels (.npy, one per sample) to report accuracy against.
        #[arg(short, long, value_name = "LABELS.npy")]
        labels: Option<PathBuf>,
        /// Samples evaluated at a time when the batch dimension is symbolic.
        #[arg(long, default_value_t = 100, value_name = "N")]
        batch_size: usize,
        /// Print only the summary, not one line per sample.
        #[arg(short, long)]
        quiet: bool,
        /// Compile the model to native code in memory (Cranelift JIT, the runtime's kernels)
        /// and run that instead of the reference evaluator; all inputs at once.
        #[arg(long)]
        jit: bool,
        /// With --jit: kernel threads (default: all cores; at most 1024).
        #[arg(long, value_name = "T", requires = "jit", value_parser = threads_arg)]
        threads: Option<usize>,
    },
    /// Time the natively compiled model (JIT, the same code as the executable `mcc build`
    /// makes) on random inputs; with --report, a build's original and compressed models,
    /// added to its folder; with --kernels, the dense GEMM kernel.
    ///
    /// Prints compile time, then the median and minimum of --runs timed runs after warm-up.
    /// For a side-by-side comparison with ONNX Runtime, see bench/bench.py.
    ///
    /// With --report DIR (a folder `mcc build -o DIR` wrote): times the original model (the
    /// file report.json names, or MODEL; its SHA-256 must be the report's) and the
    /// compressed one (DIR/model.full.mcir; without one, DIR/model.onnx when it is the very
    /// model the build compiled), each compiled as the executable is, at the input
    /// size the build compiled, with the same --batch, --threads and --runs; prints both
    /// medians and the speed-up; writes them to DIR/timings.json (`latency`: CPU, threads,
    /// runs, batch, before_ms, after_ms) and renders DIR/report.html again with the latency
    /// in its summary. report.json and every other file stay as they are: a time varies from
    /// run to run, so it lives in timings.json (docs/report.md). On an error nothing changes.
    ///
    /// Example: mcc bench examples/lenet5/lenet5.onnx --batch 64 --threads 1
    ///
    /// Example: mcc bench --report out/lenet5 --threads 1   (out/lenet5 from `mcc build … -o
    /// out/lenet5`)
    Bench {
        /// The model (.onnx or .mcir); not needed with --kernels. With --report: the original
        /// model, when it is no longer where report.json says.
        #[arg(required_unless_present_any = ["kernels", "report"])]
        model: Option<PathBuf>,
        /// Time the original and the compressed model of the build in DIR and add the
        /// latency to DIR/timings.json and DIR/report.html.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["kernels", "profile", "input_shape"])]
        report: Option<PathBuf>,
        /// Samples per run (a model with a fixed batch runs its own).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Kernel threads (default: all cores; at most 1024).
        #[arg(long, value_name = "T", value_parser = threads_arg)]
        threads: Option<usize>,
        /// Timed runs (after 5 warm-up runs).
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Measure the GEMM kernel (GFLOP/s on 256³, 1024³ and a conv-shaped 64×576×3136).
        #[arg(long)]
        kernels: bool,
        /// Time every step of the schedule (median over the runs) and print a table. Steps
        /// run one at a time over the whole batch here; a full run takes runs of steps a
        /// sample at a time when the batch has a sample per thread, so its total can be
        /// lower than the table's.
        #[arg(long)]
        profile: bool,
        /// The input's shape, e.g. `1x3x48x192` (several inputs: `1x3x48x192,1x10`, in the
        /// model's order): compiled code needs every size but the batch, so a model with
        /// free sizes (height and width of a text recognizer) is compiled for these. The
        /// first axis (the batch) stays free: --batch sets it.
        #[arg(long = "input-shape", value_name = "DIMS", value_parser = shapes_arg)]
        input_shape: Option<Shapes>,
    },
    /// Print the model's IR text (after canonicalization unless --raw).
    ///
    /// Large constants appear by fingerprint (#…) unless --weights is given, in which case
    /// the text holds every weight and can be run or converted by mcc on its own.
    ///
    /// Example: mcc ir examples/lenet5/lenet5.onnx
    Ir {
        /// The model (.onnx or .mcir).
        model: PathBuf,
        /// Include all weights (as hex), so the text is a complete model.
        #[arg(long)]
        weights: bool,
        /// Print the graph as imported, before canonicalization.
        #[arg(long)]
        raw: bool,
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Convert between ONNX and IR text (by the output's extension: .onnx or .mcir).
    ///
    /// Example: mcc convert model.onnx -o model.mcir
    Convert {
        /// The model (.onnx or .mcir).
        model: PathBuf,
        /// Where to write (.onnx or .mcir).
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
    },
}

/// `println!` for results: when whoever reads stdout has gone (`mcc ir m.onnx | head`), mcc
/// stops quietly instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            mcc_runtime::abi::stdout_failed(&e);
        }
    }};
}

/// `eprintln!` for diagnostics: when standard error has gone (`mcc … 2>&1 | head -c 10`),
/// there is no one to tell, so mcc goes on to its exit code instead of panicking.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// `print!` for results, like [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($t)*) {
            mcc_runtime::abi::stdout_failed(&e);
        }
    }};
}

/// One `--input-shape` value: a shape per model input, batch first.
#[derive(Clone, Debug, PartialEq)]
struct Shapes(Vec<Vec<usize>>);

/// `--input-shape`: `1x3x48x192`, an input's shape; `1x3x48x192,1x10` for a model of two
/// inputs (in the model's order).
fn shapes_arg(s: &str) -> Result<Shapes, String> {
    s.split(',')
        .map(|shape| {
            let dims: Vec<usize> = shape
                .split('x')
                .map(|d| {
                    d.trim()
                        .parse::<usize>()
                        .map_err(|e| format!("`{d}` is not a size: {e}"))
                })
                .collect::<Result<_, _>>()?;
            if dims.contains(&0) {
                return Err("sizes are positive, e.g. 1x3x48x192".to_string());
            }
            Ok(dims)
        })
        .collect::<Result<_, _>>()
        .map(Shapes)
}

/// `--threads`: a count the runtime runs (0: every core).
fn threads_arg(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    let max = mcc_runtime::threads::MAX_THREADS;
    if n > max {
        return Err(format!("at most {max} threads can run a model"));
    }
    Ok(n)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // From here on an interrupt removes whatever is half written and exits with 130.
    mcc::cleanup::install();
    // Diagnostics: graphical, colored only on a terminal (and without NO_COLOR), fixed
    // width so that what build systems and tests capture is stable.
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .terminal_links(false)
                .unicode(true)
                .color(color)
                .force_graphical(true)
                .width(100)
                .build(),
        )
    }));
    let mut msgs = Messages::new(&cli.command);
    if msgs.format == MessageFormat::Json {
        // Nothing but JSON on stderr: no progress bars, and an interrupt says so in JSON.
        mcc::progress::hide();
        mcc::cleanup::set_json(true);
    }
    let result = dispatch(cli.command, &mut msgs);
    msgs.finish(result)
}

/// A command line clap rejects: clap's own message, or with `--message-format json`
/// anywhere on it, that message as a JSON diagnostic and result. Help and version print as
/// usual.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = {
        let args: Vec<String> = std::env::args().collect();
        args.iter().any(|a| a == "--message-format=json")
            || args
                .windows(2)
                .any(|w| w[0] == "--message-format" && w[1] == "json")
    };
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !json || informational {
        e.exit()
    }
    let text = e.render().to_string();
    let message = text
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string();
    let mut v = mcc::diagnostics::note_json("error", "mcc::usage", &message);
    v["detail"] = serde_json::json!(text.trim_end());
    errln!("{v}");
    errln!("{}", mcc::diagnostics::result_json(false, 1, 0));
    ExitCode::from(2)
}

/// Where diagnostics go, in the format asked for, and how many there were.
struct Messages {
    format: MessageFormat,
    /// The model the command reads (import errors name it).
    model: Option<PathBuf>,
    errors: usize,
    warnings: usize,
}

impl Messages {
    fn new(cmd: &Command) -> Messages {
        let (format, model) = match cmd {
            Command::Check {
                message_format,
                model,
                ..
            }
            | Command::Explain {
                message_format,
                model,
                ..
            }
            | Command::Sensitivity {
                message_format,
                model,
                ..
            }
            | Command::Build {
                message_format,
                model,
                ..
            } => (*message_format, Some(model.clone())),
            _ => (MessageFormat::Human, None),
        };
        Messages {
            format,
            model,
            errors: 0,
            warnings: 0,
        }
    }

    /// Every diagnostic of a checked recipe.
    fn checked(&mut self, session: &mcc::recipe::Session) {
        for d in &session.checked.diags {
            match d.severity {
                mcc_plan::plan::Severity::Error => self.errors += 1,
                mcc_plan::plan::Severity::Warning => self.warnings += 1,
            }
        }
        match self.format {
            MessageFormat::Json => eprint!("{}", mcc::diagnostics::json_lines(session)),
            MessageFormat::Human => {
                // Through one buffer: a diagnostic renders in many small writes, and stderr
                // is unbuffered (16,000 warnings took seconds of system calls).
                use std::io::Write;
                let mut err = std::io::BufWriter::new(std::io::stderr().lock());
                for d in mcc::diagnostics::rendered(&session.checked) {
                    let _ = writeln!(err, "{:?}", miette::Report::new(d));
                }
                let _ = err.flush();
            }
        }
    }

    /// A note or warning of the driver's own: `severity: message` for people.
    fn note(&mut self, severity: &str, code: &str, message: &str) {
        if severity == "warning" {
            self.warnings += 1;
        }
        match self.format {
            MessageFormat::Json => {
                errln!("{}", mcc::diagnostics::note_json(severity, code, message))
            }
            MessageFormat::Human => errln!("{severity}: {message}"),
        }
    }

    /// Reports how the command ended and gives its exit status.
    fn finish(mut self, result: Result<(), Error>) -> ExitCode {
        let ok = result.is_ok();
        match (self.format, result) {
            (MessageFormat::Human, Ok(())) => {}
            (MessageFormat::Human, Err(e)) => errln!("{:?}", miette::Report::new(e)),
            (MessageFormat::Json, result) => {
                match result {
                    // Its diagnostics were printed and counted already.
                    Ok(()) | Err(Error::Rejected { .. }) => {}
                    Err(e) => {
                        for v in mcc::diagnostics::error_json(&e, self.model.as_deref()) {
                            self.errors += 1;
                            errln!("{v}");
                        }
                    }
                }
                errln!(
                    "{}",
                    mcc::diagnostics::result_json(ok, self.errors, self.warnings)
                );
            }
        }
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// Checks a recipe against a model and reports its diagnostics; fails if any is an error.
fn checked(
    recipe: &Path,
    model: &Path,
    msgs: &mut Messages,
) -> Result<mcc::recipe::Session, Error> {
    let session = mcc::recipe::check(recipe, model)?;
    msgs.checked(&session);
    let errors = session
        .checked
        .diags
        .iter()
        .filter(|d| d.severity == mcc_plan::plan::Severity::Error)
        .count();
    if errors > 0 {
        return Err(Error::Rejected { errors });
    }
    Ok(session)
}

fn dispatch(cmd: Command, msgs: &mut Messages) -> Result<(), Error> {
    match cmd {
        Command::Check {
            recipe,
            model,
            message_format: _,
        } => {
            let s = checked(&recipe, &model, msgs)?;
            let steps: usize = s.checked.plan.stages.iter().map(|st| st.steps.len()).sum();
            let layers: std::collections::BTreeSet<&String> = s
                .checked
                .plan
                .stages
                .iter()
                .flat_map(|st| st.steps.iter().flat_map(|x| x.nodes.iter()))
                .collect();
            outln!(
                "{}: ok ({} step(s) on {} layer(s) of {})",
                recipe.display(),
                steps,
                layers.len(),
                model.display()
            );
            Ok(())
        }
        Command::Explain {
            recipe,
            model,
            message_format: _,
        } => {
            let s = checked(&recipe, &model, msgs)?;
            out!("{}", mcc::recipe::explain(&s));
            Ok(())
        }
        Command::Sensitivity {
            recipe,
            model,
            json,
            samples,
            threads,
            message_format: _,
        } => {
            let s = checked(&recipe, &model, msgs)?;
            let r = mcc::sensitivity::run(&s, threads.unwrap_or(0), samples)?;
            if let Some(path) = json {
                let text =
                    serde_json::to_string_pretty(&r).map_err(|e| Error::Usage(e.to_string()))?;
                mcc::write_atomic(&path, (text + "\n").as_bytes())?;
            }
            out!("{}", mcc::sensitivity::table(&r));
            Ok(())
        }
        Command::Fmt { files, check } => fmt(&files, check),
        Command::Diff { a, b, exit_code } => {
            let (ga, gb) = (mcc::load(&a)?.graph, mcc::load(&b)?.graph);
            let (ta, tb) = (mcc_ir::text::print(&ga), mcc_ir::text::print(&gb));
            let diff = mcc_ir::text::diff::unified(
                &ta,
                &tb,
                &a.display().to_string(),
                &b.display().to_string(),
            );
            out!("{diff}");
            if exit_code && !diff.is_empty() {
                return Err(Error::Usage("the models differ".into()));
            }
            Ok(())
        }
        Command::Build {
            recipe,
            model,
            output,
            message_format,
            emit,
            snapshot,
            bless,
            no_native,
            input_shape,
            threads,
            depfile,
            quiet,
            attribution,
        } => {
            let s = checked(&recipe, &model, msgs)?;
            let sizes = input_sizes(&s.model.graph, &input_shape)?;
            let chosen = emit.iter().any(|e| *e != Emit::IrDiffs);
            let want = |e: Emit| !chosen || emit.contains(&e);
            let emitted = mcc::recipe::Emitted {
                ir: want(Emit::Ir),
                onnx: want(Emit::Onnx),
                report: want(Emit::Report),
                html: want(Emit::Html) || want(Emit::Report),
                exe: want(Emit::Exe),
                obj: want(Emit::Obj),
                ir_diffs: emit.contains(&Emit::IrDiffs),
            };
            let no_native = no_native || !(emitted.exe || emitted.obj);
            let dir = output.unwrap_or_else(|| {
                PathBuf::from("mcc-out").join(model.file_stem().unwrap_or_default())
            });
            let name = model
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().to_string());
            let file = model.display().to_string();
            // Native code is compiled, written and linked on a thread of its own as soon as
            // the compressed model is compiled, while the build measures it.
            let (ready, on_ready) = std::sync::mpsc::channel::<mcc::build::Ready>();
            let native_job = (!no_native).then(|| {
                let (name, file, sizes, dir) =
                    (name.clone(), file.clone(), sizes.clone(), dir.clone());
                let (exe, obj) = (emitted.exe, emitted.obj);
                std::thread::spawn(move || {
                    let ready = on_ready.recv().ok()?;
                    Some(native_outputs(&ready, &sizes, &name, &file).and_then(|n| {
                        let staged = mcc::native::stage(&n, &dir, exe, obj)?;
                        Ok((n, staged))
                    }))
                })
            });
            let opts = mcc::build::Options {
                ir_diffs: emit.contains(&Emit::IrDiffs),
                threads: threads.unwrap_or(0),
                attribution,
                ready: (!no_native).then_some(ready),
            };
            let result = mcc::build::build(&s, &opts);
            // No model will come after the build: a thread still waiting stops.
            drop(opts);
            let finish_native = || -> Result<_, Error> {
                let Some(job) = native_job else {
                    return Ok(None);
                };
                let bar = (!job.is_finished())
                    .then(|| mcc::progress::spinner("compiling to native code"));
                let done = job
                    .join()
                    .map_err(|_| Error::Native("the native code thread panicked".into()))?;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                done.transpose()
            };
            // Joined on every path (a failed build's staged files go with it).
            let native_done = finish_native();
            let result = result?;
            if !result.violations.is_empty() {
                // What `auto` chose explains a missed budget: say it before failing.
                let lines = mcc::report::allocation_summary(&result.report);
                if !lines.is_empty() {
                    msgs.note(
                        "note",
                        "mcc::build::allocation",
                        &format!("what `auto` chose:\n{}", lines.join("\n")),
                    );
                }
                return Err(Error::Budget {
                    recipe,
                    violations: result.violations,
                    costliest: mcc::report::costliest_layers(&result.report, 3),
                    regains: result.regains.map(Box::new),
                });
            }
            if let Some(snap) = &snapshot {
                mcc::recipe::check_snapshot(snap, &result.graph, bless)?;
            }
            let (native, staged) = match native_done? {
                Some((n, staged)) => (Some(n), Some(staged)),
                None => (None, None),
            };
            // The native code's name (a C identifier made of the model's stem), also when
            // none is built: an older build's may be in the folder.
            let c_name = mcc_codegen::aot::c_name(&name);
            let written = mcc::recipe::write_selected(
                &dir,
                &result,
                &emitted,
                native.as_ref().map(|n| (n, staged)),
                &c_name,
            )?;
            // Every file the build wrote (not files a user keeps in the folder).
            let native_name = Some(c_name.as_str());
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|cause| mcc::Error::Io {
                    path: dir.clone(),
                    cause,
                })?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| {
                    mcc::recipe::is_build_output(&e.file_name().to_string_lossy(), native_name)
                })
                .map(|e| dir.join(e.file_name()))
                .collect();
            files.sort();
            if let Some(path) = &depfile {
                let mut inputs = s.inputs();
                inputs.extend(snapshot.iter().filter(|_| !bless).cloned());
                mcc::write_atomic(path, mcc::recipe::depfile(&files, &inputs).as_bytes())?;
            }
            if attribution && result.report.attribution.is_none() {
                msgs.note(
                    "warning",
                    "mcc::build::no_attribution",
                    "--attribution measured nothing: the recipe names no data (`evaluate with` \
                     or `calibrate with`) to measure on",
                );
            }
            if let Some(note) = &result.report.measurement.engine_note {
                msgs.note(
                    "note",
                    "mcc::build::reference_evaluator",
                    &format!("measured with the reference evaluator: {note}"),
                );
            }
            // Only an executable asked for and not linked is worth a warning: with `--emit obj`
            // there is none to miss (write_selected then leaves no reason).
            if let Some(why) = written.as_ref().and_then(|w| w.no_executable.as_deref()) {
                msgs.note("warning", "mcc::build::no_executable", why);
            }
            if quiet {
                return Ok(());
            }
            if message_format == MessageFormat::Json {
                let t = &result.report.model_totals;
                let pair = |b: u64, a: u64| serde_json::json!({"before": b, "after": a});
                let summary = serde_json::json!({
                    "type": "build",
                    "model": model.display().to_string(),
                    "recipe": recipe.display().to_string(),
                    "output": dir.display().to_string(),
                    "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                    "params": pair(t.params.before, t.params.after),
                    "nonzero_params": pair(t.nonzero_params.before, t.nonzero_params.after),
                    "stored_bytes": pair(t.bytes.before, t.bytes.after),
                    "accuracy": t.accuracy.map(|a| serde_json::json!({"before": a.before, "after": a.after})),
                    "executable": written
                        .as_ref()
                        .and_then(|w| w.executable.as_ref())
                        .map(|e| dir.join(e).display().to_string()),
                });
                outln!("{summary}");
                return Ok(());
            }
            outln!("built {} with {}", model.display(), recipe.display());
            for line in mcc::report::summary(&result.report) {
                outln!("{line}");
            }
            if chosen {
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                outln!("  wrote {}", names.join(", "));
                return Ok(());
            }
            outln!(
                "  wrote {0}/model.mcir,{1} {0}/model.onnx, {0}/report.json, {0}/report.html, {0}/timings.json",
                dir.display(),
                if dir.join("model.full.mcir").exists() {
                    format!(" {}/model.full.mcir,", dir.display())
                } else {
                    String::new()
                }
            );
            if let (Some(n), Some(w)) = (&native, &written) {
                if n.programs.len() > 1 {
                    let sizes: Vec<String> = n
                        .programs
                        .iter()
                        .map(|p| {
                            p.inputs
                                .iter()
                                .map(|io| {
                                    let d: Vec<String> =
                                        io.dims.iter().map(usize::to_string).collect();
                                    format!("N×{}", d.join("×"))
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .collect();
                    outln!(
                        "  native: {} input sizes ({}); the first: {} steps, arena {} per sample; compiled in {:.0} ms",
                        n.programs.len(),
                        sizes.join("; "),
                        n.programs[0].steps.len(),
                        bytes(n.programs[0].arena as u64 * 4),
                        n.compile_time.as_secs_f64() * 1e3
                    );
                } else {
                    outln!(
                        "  native: {} steps, arena {} per sample, compiled in {:.0} ms",
                        n.programs[0].steps.len(),
                        bytes(n.programs[0].arena as u64 * 4),
                        n.compile_time.as_secs_f64() * 1e3
                    );
                }
                if let Some(e) = &w.executable {
                    outln!(
                        "  wrote {0}/{e} (executable), {0}/{1}.o, {0}/{1}.h, {0}/libmcc_runtime.a",
                        dir.display(),
                        n.name
                    );
                }
            }
            Ok(())
        }
        Command::Inspect { model } => inspect(&model),
        Command::Run {
            model,
            inputs,
            output,
            labels,
            batch_size,
            quiet,
            jit,
            threads,
        } => run(
            &model,
            &inputs,
            output.as_deref(),
            labels.as_deref(),
            batch_size,
            quiet,
            jit.then_some(threads.unwrap_or(0)),
        ),
        Command::Bench {
            model,
            report: Some(dir),
            batch,
            threads,
            runs,
            ..
        } => bench_report(
            &dir,
            &mcc::bench::Options {
                model,
                batch,
                threads: threads.unwrap_or(0),
                runs,
            },
        ),
        Command::Bench {
            model,
            report: None,
            batch,
            threads,
            runs,
            kernels,
            profile,
            input_shape,
        } => match model {
            Some(model) if !kernels => bench(
                &model,
                batch,
                threads.unwrap_or(0),
                runs,
                profile,
                input_shape.as_ref().map_or(&[][..], |s| &s.0[..]),
            ),
            _ => {
                bench_kernels();
                Ok(())
            }
        },
        Command::Ir {
            model,
            weights,
            raw,
            output,
        } => {
            let graph = if raw {
                mcc::read_raw(&model)?
            } else {
                mcc::load(&model)?.graph
            };
            let text = mcc_ir::text::print_with(&graph, mcc_ir::text::PrintOptions { weights });
            match output {
                Some(p) => mcc::write_atomic(&p, text.as_bytes()),
                None => {
                    out!("{text}");
                    Ok(())
                }
            }
        }
        Command::Convert { model, output } => {
            let m = mcc::load(&model)?;
            mcc::write_model(&m.graph, &output)
        }
    }
}

/// The native outputs of a compiled model: for the sizes asked for; else the data's (when they
/// differ between the calibration and evaluation sets, both); else the measured program's.
fn native_outputs(
    ready: &mcc::build::Ready,
    sizes: &[Vec<Vec<usize>>],
    name: &str,
    file: &str,
) -> Result<mcc::native::NativeBuild, Error> {
    Ok(match &ready.program {
        Some(p) if sizes.is_empty() && ready.data_sizes.len() <= 1 => {
            mcc::native::compile_programs(vec![p.clone()], name, file)?
        }
        _ if sizes.is_empty() => mcc::native::compile(&ready.graph, &ready.data_sizes, name, file)?,
        _ => mcc::native::compile(&ready.graph, sizes, name, file)?,
    })
}

/// `--input-shape` values checked against `graph` before anything is built: one shape per
/// model input, each one the model can take; the same size (the batch aside) given twice is
/// compiled once. Errors name the flag and the value.
fn input_sizes(graph: &mcc_ir::Graph, given: &[Shapes]) -> Result<Vec<Vec<Vec<usize>>>, Error> {
    let mut out: Vec<Vec<Vec<usize>>> = vec![];
    for Shapes(shapes) in given {
        let text = shapes
            .iter()
            .map(|d| d.iter().map(usize::to_string).collect::<Vec<_>>().join("x"))
            .collect::<Vec<_>>()
            .join(",");
        let inputs = graph.inputs();
        if shapes.len() != inputs.len() {
            let names: Vec<String> = inputs
                .iter()
                .map(|&v| format!("`{}`", graph.value(v).name))
                .collect();
            return Err(Error::Usage(format!(
                "--input-shape {text}: {} shape(s) for a model of {} input(s) ({}); give one \
                 per input, separated by commas",
                shapes.len(),
                inputs.len(),
                names.join(", ")
            )));
        }
        let mut g = graph.clone();
        mcc_passes::specialize(&mut g, shapes)
            .map_err(|e| Error::Usage(format!("--input-shape {text}: {e}")))?;
        let same =
            |a: &Vec<Vec<usize>>| a.iter().zip(shapes).all(|(x, y)| x.get(1..) == y.get(1..));
        if !out.iter().any(same) {
            out.push(shapes.clone());
        }
    }
    Ok(out)
}

/// `mcc bench MODEL`: JIT-compiles and times the model on seeded random inputs.
fn bench(
    path: &Path,
    batch: usize,
    threads: usize,
    runs: usize,
    profile: bool,
    input_shape: &[Vec<usize>],
) -> Result<(), Error> {
    let mut m = mcc::load(path)?;
    if !input_shape.is_empty() {
        mcc_passes::specialize(&mut m.graph, input_shape)?;
    }
    let t0 = std::time::Instant::now();
    let prog = mcc::native::program(&m.graph)?;
    let batch = prog.fixed_batch.unwrap_or(batch.max(1));
    mcc::native::check_memory(&prog, batch)?;
    let inputs = mcc::measure::run_inputs(&prog, batch, None, |i| {
        mcc_ir::text::parse::pseudo_random_iter(7 + i as u64, -1.0, 1.0).map(|x| x as f32)
    })?;
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    if profile {
        return profile_steps(&prog, &refs, threads, runs);
    }
    let mut j = mcc_codegen::jit::Jit::new(prog, threads).map_err(Error::Native)?;
    let compile = t0.elapsed();
    let times = mcc::measure::timed_runs(runs, || j.run(&refs).map(drop).map_err(Error::Native))?;
    outln!(
        "{}: batch {batch}, {} thread(s), kernels {}: compiled in {:.1} ms; {} runs: median {:.4} ms, min {:.4} ms",
        path.display(),
        j.threads(),
        mcc_runtime::kernels::gemm::Isa::detect().name(),
        compile.as_secs_f64() * 1e3,
        times.len(),
        times[times.len() / 2],
        times[0]
    );
    Ok(())
}

/// `mcc bench --report DIR`: times the build's two models, adds the latency to DIR, and
/// prints a short table.
fn bench_report(dir: &Path, opts: &mcc::bench::Options) -> Result<(), Error> {
    let b = mcc::bench::report(dir, opts)?;
    let l = &b.latency;
    let before = l.before_ms.map_or("-".to_string(), |ms| format!("{ms:.4}"));
    let speedup = l
        .before_ms
        .filter(|_| l.after_ms > 0.0)
        .map_or("-".to_string(), |ms| format!("{:.2}×", ms / l.after_ms));
    outln!(
        "{:>10}  {:>10}  {:>8}  {:>7}  {:>5}  cpu",
        "before ms",
        "after ms",
        "speed-up",
        "threads",
        "batch"
    );
    outln!(
        "{before:>10}  {:>10.4}  {speedup:>8}  {:>7}  {:>5}  {}",
        l.after_ms,
        l.threads,
        l.batch,
        l.cpu
    );
    let sizes: Vec<String> = b
        .input_sizes
        .iter()
        .map(|dims| {
            let d: Vec<String> = dims.iter().map(usize::to_string).collect();
            d.join("×")
        })
        .collect();
    outln!(
        "  median of {} runs, input size {}; before: {}, after: {}",
        l.runs,
        sizes.join(", "),
        b.original.display(),
        b.compressed.display()
    );
    if let Some(why) = &b.before_note {
        outln!("  the original was not timed: it has no native code ({why})");
    }
    let wrote: Vec<String> = b.wrote.iter().map(|p| p.display().to_string()).collect();
    outln!("  wrote {}", wrote.join(", "));
    Ok(())
}

/// `mcc bench --profile`: the median time of every step.
fn profile_steps(
    prog: &mcc_runtime::program::Program,
    inputs: &[&[f32]],
    threads: usize,
    runs: usize,
) -> Result<(), Error> {
    let threads = mcc::measure::threads(threads);
    let mut r = mcc_runtime::exec::Runner::new(prog, threads).map_err(Error::Native)?;
    let mut times = vec![vec![]; prog.steps.len()];
    for run in 0..runs.max(1) + 3 {
        r.set_inputs(inputs).map_err(Error::Native)?;
        for (i, t) in times.iter_mut().enumerate() {
            let t0 = std::time::Instant::now();
            r.step(i).map_err(Error::Native)?;
            if run >= 3 {
                t.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let mut total = 0.0;
    outln!(
        "{:>4}  {:<14} {:>10}  {:>8}",
        "step",
        "kernel",
        "median ms",
        "MFLOP"
    );
    for (i, (s, t)) in prog.steps.iter().zip(&mut times).enumerate() {
        t.sort_by(f64::total_cmp);
        let med = t[t.len() / 2];
        total += med;
        let name = s.name();
        let inline = if mcc_codegen::clif::is_inline(s) {
            " (inline when compiled)"
        } else {
            ""
        };
        outln!(
            "{i:>4}  {name:<14} {med:>10.4}  {:>8.2}{inline}",
            s.flops() as f64 / 1e6
        );
    }
    outln!("total {total:.4} ms (interpreted; the compiled schedule runs the same kernels)");
    Ok(())
}

/// `mcc bench --kernels`: the dense GEMM kernel's throughput, single thread.
fn bench_kernels() {
    use mcc_runtime::kernels::gemm::{self, Isa, PackedA, PackedB};
    let isa = Isa::detect();
    outln!(
        "dense f32 GEMM, 1 thread, kernels {} (GFLOP/s, best of 5):",
        isa.name()
    );
    outln!(
        "{:<16} {:>14} {:>14}",
        "M×K×N",
        "weights as A",
        "weights as B"
    );
    for &(m, k, n) in &[(256, 256, 256), (1024, 1024, 1024), (64, 576, 3136)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let pa = gemm::pack_a(&a, m, k);
        let pb = gemm::pack_b(&b, k, n, n, 1);
        let ep = mcc_runtime::kernels::epilogue::Epilogue::NONE;
        let mut time = |f: &mut dyn FnMut(&mut [f32])| {
            let reps = ((2e9 / flops) as usize).max(1);
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    f(&mut c);
                }
                best = best.min(t.elapsed().as_secs_f64() / reps as f64);
            }
            flops / best / 1e9
        };
        let ga = time(&mut |c| {
            let _ =
                gemm::gemm_packed_a(isa, PackedA { m, k, data: &pa }, &b, n, n, c, n, &ep, 0..n);
        });
        let gb = time(&mut |c| {
            let _ = gemm::gemm_packed_b(
                isa,
                &a,
                k,
                m,
                PackedB { k, n, data: &pb },
                c,
                n,
                &ep,
                0..m,
                0..n,
            );
        });
        outln!("{:<16} {ga:>14.1} {gb:>14.1}", format!("{m}×{k}×{n}"));
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// `mcc fmt`: each recipe formatted in place (or checked, with `check`).
fn fmt(files: &[PathBuf], check: bool) -> Result<(), Error> {
    let mut unformatted = vec![];
    for path in files {
        let stdin = path.as_os_str() == "-";
        let src = if stdin {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|cause| {
                Error::Io {
                    path: path.clone(),
                    cause,
                }
            })?;
            s
        } else {
            std::fs::read_to_string(path).map_err(|cause| Error::Io {
                path: path.clone(),
                cause,
            })?
        };
        let out = mcc_recipe::format(&src).map_err(|e| {
            let (start, len) = (e.span.offset(), e.span.len());
            let lines = mcc_plan::plan::LineIndex::new(&src);
            let name = if stdin {
                "<stdin>".to_string()
            } else {
                path.display().to_string()
            };
            let snip = mcc::snippet::Snippet::excerpt(&name, &src, &lines, start, start + len);
            Error::RecipeSyntax {
                span: snip.span(start, len),
                src: Box::new(snip),
                message: e.message,
            }
        })?;
        if check {
            if out != src {
                outln!(
                    "not formatted: {}",
                    if stdin {
                        "<stdin>".into()
                    } else {
                        path.display().to_string()
                    }
                );
                unformatted.push(path);
            }
        } else if stdin {
            out!("{out}");
        } else if out != src {
            mcc::write_atomic(path, out.as_bytes())?;
        }
    }
    if !unformatted.is_empty() {
        return Err(Error::Usage(format!(
            "{} of {} recipe(s) not formatted: run `mcc fmt` on {}",
            unformatted.len(),
            files.len(),
            if unformatted.len() == 1 { "it" } else { "them" }
        )));
    }
    Ok(())
}

fn inspect(path: &Path) -> Result<(), Error> {
    let m = mcc::load(path)?;
    let t = mcc::inspect::table(&m.graph);
    let name_w = t
        .rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    let op_w = t.rows.iter().map(|r| r.op.len()).max().unwrap_or(2).max(2);
    let in_w = t
        .rows
        .iter()
        .map(|r| r.inputs.join(" ").len())
        .max()
        .unwrap_or(6)
        .clamp(6, 40);
    outln!(
        "{:<name_w$}  {:<op_w$}  {:<in_w$}  {:<24}  {:>10}  {:>10}",
        "node",
        "op",
        "inputs",
        "outputs",
        "params",
        "MACs"
    );
    for r in &t.rows {
        outln!(
            "{:<name_w$}  {:<op_w$}  {:<in_w$}  {:<24}  {:>10}  {:>10}",
            r.name,
            r.op,
            r.inputs.join(" "),
            r.outputs.join(" "),
            if r.params == 0 {
                "-".into()
            } else {
                r.params.to_string()
            },
            if r.macs == 0 {
                "-".into()
            } else {
                human(r.macs)
            }
        );
    }
    outln!();
    let ins: Vec<String> = m
        .graph
        .inputs()
        .iter()
        .map(|&v| format!("{}: {}", m.graph.value(v).name, m.graph.value(v).ty))
        .collect();
    let outs: Vec<String> = m
        .graph
        .outputs()
        .iter()
        .map(|&v| format!("{}: {}", m.graph.value(v).name, m.graph.value(v).ty))
        .collect();
    outln!("inputs:  {}", ins.join(", "));
    outln!("outputs: {}", outs.join(", "));
    outln!(
        "total: {} nodes, {} parameters, {} MACs per sample ({})",
        t.rows.len(),
        t.params,
        t.macs,
        human(t.macs)
    );
    Ok(())
}

fn run(
    path: &Path,
    inputs: &[PathBuf],
    output: Option<&Path>,
    labels: Option<&Path>,
    batch_size: usize,
    quiet: bool,
    jit: Option<usize>,
) -> Result<(), Error> {
    let m = mcc::load(path)?;
    let g = &m.graph;
    if inputs.len() != g.inputs().len() {
        let names: Vec<String> = g
            .inputs()
            .iter()
            .map(|&v| format!("{}: {}", g.value(v).name, g.value(v).ty))
            .collect();
        return Err(Error::Usage(format!(
            "the model takes {} input(s) ({}), {} --input given",
            names.len(),
            names.join(", "),
            inputs.len()
        )));
    }
    let mut tensors = vec![];
    for (&v, p) in g.inputs().iter().zip(inputs) {
        tensors.push(tensor_io::read_input(p, &g.value(v).name, &g.value(v).ty)?);
    }
    let labels = labels
        .map(tensor_io::read_npy)
        .transpose()?
        .map(|t| t.to_i64_vec());
    // Evaluate in chunks along a symbolic batch dimension, with a progress bar.
    let batched = g.inputs().iter().all(|&v| {
        matches!(
            g.value(v).ty.shape.as_ref().and_then(|s| s.first()),
            Some(Dim::Sym(_))
        )
    });
    let n = tensors
        .first()
        .and_then(|t| t.shape().first().copied())
        .unwrap_or(1);
    let outputs: Vec<Tensor> = if let Some(threads) = jit {
        // Compiled for the arrays' sizes (the batch stays free).
        let mut sized = g.clone();
        let shapes: Vec<Vec<usize>> = tensors.iter().map(|t| t.shape().to_vec()).collect();
        mcc_passes::specialize(&mut sized, &shapes)?;
        let prog = mcc::native::program(&sized)?;
        let dims: Vec<Vec<usize>> = prog.outputs.iter().map(|o| o.dims.clone()).collect();
        mcc::native::check_memory(&prog, n)?;
        let mut j = mcc_codegen::jit::Jit::new(prog, threads).map_err(Error::Native)?;
        let data: Vec<Vec<f32>> = tensors
            .iter()
            .map(|t| {
                let a = t
                    .as_f32()
                    .ok_or_else(|| Error::Native("compiled models take float32 inputs".into()))?;
                let mut x = Vec::new();
                x.try_reserve_exact(a.len()).map_err(|_| {
                    Error::Native(mcc_runtime::aligned::out_of_memory(
                        a.len().saturating_mul(4),
                        "the inputs",
                    ))
                })?;
                x.extend(a.iter().copied());
                Ok(x)
            })
            .collect::<Result<_, Error>>()?;
        let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let outs = j.run(&refs).map_err(Error::Native)?;
        outs.into_iter()
            .zip(dims)
            .map(|(o, d)| {
                let mut shape = vec![n];
                shape.extend(d);
                Tensor::from_vec(&shape, o).map_err(|e| Error::Native(e.to_string()))
            })
            .collect::<Result<_, _>>()?
    } else if batched && n > batch_size && tensors.iter().all(|t| t.shape().first() == Some(&n)) {
        let chunks: Vec<Vec<Tensor>> = tensors
            .iter()
            .map(|t| tensor_io::split_batch(t, batch_size))
            .collect();
        let bar = indicatif::ProgressBar::new(n as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} samples ({eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message("evaluating");
        let mut per_out: Vec<Vec<Tensor>> = vec![vec![]; g.outputs().len()];
        for i in 0..chunks[0].len() {
            let args: Vec<Tensor> = chunks.iter().map(|c| c[i].clone()).collect();
            let k = args[0].shape()[0] as u64;
            for (j, o) in mcc_ir::run(g, &args)?.into_iter().enumerate() {
                per_out[j].push(o);
            }
            bar.inc(k);
        }
        bar.finish_and_clear();
        per_out
            .iter()
            .map(|parts| tensor_io::concat_batch(parts))
            .collect::<Result<_, _>>()?
    } else {
        mcc_ir::run(g, &tensors)?
    };
    let first = &outputs[0];
    if let Some(p) = output {
        tensor_io::write_npy(p, first)?;
    }
    let out_name = &g.value(g.outputs()[0]).name;
    let classifier = first.shape().len() == 2 && first.shape()[1] > 1 && first.dtype().is_float();
    if !classifier {
        outln!("output `{out_name}`: {}{:?}", first.dtype(), first.shape());
        if labels.is_some() {
            return Err(Error::Usage(
                "--labels needs a classifier output of shape [N, classes]".into(),
            ));
        }
        return Ok(());
    }
    let (rows, cols) = (first.shape()[0], first.shape()[1]);
    let vals = first.to_f64_vec();
    if let Some(l) = &labels
        && l.len() != rows
    {
        return Err(Error::Usage(format!(
            "{} labels for {rows} samples",
            l.len()
        )));
    }
    let mut correct = 0;
    if !quiet {
        outln!(
            "{:>7}  {:>5}  {:>12}{}",
            "sample",
            "top-1",
            "score",
            if labels.is_some() { "  label" } else { "" }
        );
    }
    for r in 0..rows {
        let row = &vals[r * cols..(r + 1) * cols];
        let (best, score) =
            row.iter().enumerate().fold(
                (0, f64::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            );
        let label = labels.as_ref().map(|l| l[r]);
        if label == Some(best as i64) {
            correct += 1;
        }
        if !quiet {
            let mark = match label {
                Some(l) => format!("  {l:>5}{}", if l == best as i64 { "" } else { "  ✗" }),
                None => String::new(),
            };
            outln!("{r:>7}  {best:>5}  {score:>12.5}{mark}");
        }
    }
    outln!(
        "{rows} samples, output `{out_name}` {}{:?}",
        first.dtype(),
        first.shape()
    );
    if labels.is_some() {
        outln!(
            "accuracy: {correct}/{rows} = {:.1}%",
            100.0 * correct as f64 / rows as f64
        );
    }
    Ok(())
}

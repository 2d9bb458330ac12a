//! `mcc`, the model-compression compiler: the driver. `main.rs` is its command line.
//!
//! The stages, in the order the driver calls them:
//!
//! ```text
//! model.onnx ──onnx::import──▶ Graph ──passes::canonicalize──▶ Graph ──▶ inspect / run / ir / convert
//! model.mcir ──ir::text::parse──┘
//! ```
//!
//! Only this crate reads and writes files or prints; the libraries return errors.

pub mod allocate;
pub mod attribution;
pub mod bench;
pub mod build;
pub mod calibration;
pub mod cleanup;
pub mod diagnostics;
pub mod error;
pub mod html;
pub mod inspect;
pub mod measure;
pub mod native;
pub mod progress;
pub mod recipe;
pub mod report;
pub mod sensitivity;
pub mod snippet;
pub mod tensor_io;

use std::path::{Path, PathBuf};

use mcc_ir::Graph;
use mcc_passes::StepRecord;

pub use error::Error;

/// A loaded, canonicalized model.
#[derive(Debug, Clone)]
pub struct Model {
    /// The graph after canonicalization.
    pub graph: Graph,
    /// Where it came from.
    pub path: PathBuf,
    /// The files it was read from: its own, then any external data files.
    pub files: Vec<PathBuf>,
    /// What canonicalization did.
    pub steps: Vec<StepRecord>,
}

/// Whether a path names IR text rather than an ONNX file.
pub fn is_ir_text(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("mcir"))
}

/// Reads a model without canonicalizing it: ONNX (`.onnx`, or anything not `.mcir`) or IR text (`.mcir`).
pub fn read_raw(path: &Path) -> Result<Graph, Error> {
    Ok(read_with_files(path)?.0)
}

/// [`read_raw`], with the files read: the model's own, then its external data files.
fn read_with_files(path: &Path) -> Result<(Graph, Vec<PathBuf>), Error> {
    if is_ir_text(path) {
        let src = std::fs::read_to_string(path).map_err(|cause| Error::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        let g = mcc_ir::text::parse(&src).map_err(|e| {
            let (start, len) = (e.span.offset(), e.span.len());
            let lines = mcc_plan::plan::LineIndex::new(&src);
            let name = path.display().to_string();
            let src = snippet::Snippet::excerpt(&name, &src, &lines, start, start + len);
            Error::IrText {
                span: src.span(start, len),
                src: Box::new(src),
                message: e.message,
            }
        })?;
        mcc_ir::verify(&g)?;
        Ok((g, vec![path.to_path_buf()]))
    } else {
        let imported = mcc_onnx::import(path)?;
        let mut files = vec![path.to_path_buf()];
        files.extend(imported.external);
        Ok((imported.graph, files))
    }
}

/// Reads and canonicalizes a model.
pub fn load(path: &Path) -> Result<Model, Error> {
    let (mut graph, files) = read_with_files(path)?;
    let steps = mcc_passes::canonicalize(&mut graph)?;
    Ok(Model {
        graph,
        path: path.to_path_buf(),
        files,
        steps,
    })
}

/// Writes a graph as ONNX or, for a `.mcir` path, as IR text with full weights. Atomic.
pub fn write_model(graph: &Graph, path: &Path) -> Result<(), Error> {
    if is_ir_text(path) {
        let text = mcc_ir::text::print_with(graph, mcc_ir::text::PrintOptions { weights: true });
        write_atomic(path, text.as_bytes())
    } else {
        write_atomic(path, &mcc_onnx::export(graph)?)
    }
}

/// Writes a file so that readers see the old bytes or the new ones, never a mix: a regular
/// file (or a new name) via a temporary sibling and a rename; through a symbolic link, the
/// file it points to is replaced the same way and the link stays; `-` is standard output;
/// devices and FIFOs (`/dev/stdout`, a pipe) are written directly, since they cannot be
/// replaced. A failure or an interrupt leaves the old file as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use mcc_runtime::output::{Target, target, write_unreplaced};
    let io = |cause: std::io::Error| match cause.kind() {
        // A folder, or a link loop: the path given is wrong.
        std::io::ErrorKind::InvalidInput => Error::Usage(cause.to_string()),
        _ => Error::Io {
            path: path.to_path_buf(),
            cause,
        },
    };
    let path = match target(path).map_err(io)? {
        Target::Replace(p) => p,
        other => return write_unreplaced(&other, bytes).map_err(io),
    };
    // The temporary file is registered, so an interrupt removes it.
    let tmp = cleanup::Pending::new(cleanup::partial_name(&path));
    std::fs::write(tmp.path(), bytes)
        .and_then(|()| std::fs::rename(tmp.path(), &path))
        .map_err(io)?;
    tmp.keep();
    Ok(())
}

//! Native code for a built model: the exact merges, lowering to the runtime's schedule, the
//! object file (Cranelift), the C header, and the executable (linked with the system `cc`).

use std::path::{Path, PathBuf};

use mcc_codegen::aot;
use mcc_ir::Graph;
use mcc_runtime::program::Program;

use crate::Error;

/// A model compiled to native code, ready to be written out.
pub struct NativeBuild {
    /// The C identifier of the model (file names and symbols).
    pub name: String,
    /// The schedule and packed weights of each compiled size (at least one; several when
    /// the model was compiled for several input sizes).
    pub programs: Vec<Program>,
    /// The object file for embedding (no `main`).
    pub object: Vec<u8>,
    /// The object file for the executable (with `main`).
    pub exe_object: Vec<u8>,
    /// The C header.
    pub header: String,
    /// How the objects hold each size's weights.
    pub weights: Vec<aot::WeightData>,
    /// Wall time of merging, lowering and code generation.
    pub compile_time: std::time::Duration,
}

/// Merges (exactly) and lowers `graph`: the program the back ends compile.
pub fn program(graph: &Graph) -> Result<Program, Error> {
    let mut g = graph.clone();
    mcc_passes::merge_everything(&mut g)?;
    Ok(mcc_codegen::lower(&g)?)
}

/// Checks that running `prog` on `batch` samples at once fits in memory: its arena, inputs
/// and outputs, against the machine's physical memory where it is known (Linux). Past it an
/// allocation may still succeed, and the system then kills the process instead.
pub fn check_memory(prog: &Program, batch: usize) -> Result<(), Error> {
    let floats: usize = prog.arena
        + prog.inputs.iter().map(|io| io.buf.len).sum::<usize>()
        + prog.outputs.iter().map(|io| io.buf.len).sum::<usize>();
    let needed = floats.checked_mul(4).and_then(|b| b.checked_mul(batch));
    let total = physical_memory();
    let too_much = |needed: String, available: String| Error::Memory {
        batch,
        needed,
        available,
    };
    match (needed, total) {
        (None, _) => Err(too_much(
            format!("{floats} × 4 × {batch} bytes"),
            "the address space".into(),
        )),
        (Some(n), Some(t)) if n > t => Err(too_much(
            human_bytes(n),
            format!("this machine's {}", human_bytes(t)),
        )),
        _ => Ok(()),
    }
}

/// The machine's physical memory in bytes, where the system says (`/proc/meminfo`).
fn physical_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// Bytes for people: `1.5 GB`.
fn human_bytes(b: usize) -> String {
    let mut v = b as f64;
    for unit in ["bytes", "KB", "MB", "GB", "TB"] {
        if v < 1000.0 || unit == "TB" {
            return if unit == "bytes" {
                format!("{b} bytes")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1000.0;
    }
    format!("{b} bytes")
}

/// Compiles `graph` (named `name`, from `model_file`) to objects and a header: for the
/// sizes its inputs declare, or, when `sizes` lists some (each one shape per input, batch
/// first), once for each, specialized ([`mcc_passes::specialize`]).
pub fn compile(
    graph: &Graph,
    sizes: &[Vec<Vec<usize>>],
    name: &str,
    model_file: &str,
) -> Result<NativeBuild, Error> {
    let t0 = std::time::Instant::now();
    let programs = if sizes.is_empty() {
        vec![program(graph)?]
    } else {
        sizes
            .iter()
            .map(|s| {
                let mut g = graph.clone();
                mcc_passes::specialize(&mut g, s)?;
                program(&g)
            })
            .collect::<Result<Vec<_>, Error>>()?
    };
    let mut n = compile_programs(programs, name, model_file)?;
    n.compile_time = t0.elapsed();
    Ok(n)
}

/// Compiles lowered programs (from [`program`]; one per compiled size, at least one) to
/// objects and a header.
pub fn compile_programs(
    programs: Vec<Program>,
    name: &str,
    model_file: &str,
) -> Result<NativeBuild, Error> {
    let t0 = std::time::Instant::now();
    if programs
        .windows(2)
        .any(|w| w[0].fixed_batch != w[1].fixed_batch)
    {
        return Err(Error::Native(
            "the compiled sizes disagree on the batch: a model fixes its batch for every size or \
             for none"
                .into(),
        ));
    }
    let name = aot::c_name(name);
    let weights = aot::weight_data(&programs)?;
    let object = aot::object(&programs, &weights, &name, false)?;
    let exe_object = aot::object(&programs, &weights, &name, true)?;
    let header = aot::header(&programs, &weights, &name, model_file);
    Ok(NativeBuild {
        name,
        programs,
        object,
        exe_object,
        header,
        weights,
        compile_time: t0.elapsed(),
    })
}

/// What writing the native outputs produced.
pub struct Written {
    /// The executable's file name, if one was linked.
    pub executable: Option<String>,
    /// Why there is no executable.
    pub no_executable: Option<String>,
}

/// Writes into `dir` what is asked for: with `obj`, `<name>.o`, `<name>.h` and
/// `libmcc_runtime.a`; with `exe`, the executable `<name>` (linked from its own object and the
/// runtime library, which stays only with `obj`). A missing system linker is not an error:
/// the reason comes back in [`Written::no_executable`].
pub fn write(dir: &Path, n: &NativeBuild, exe: bool, obj: bool) -> Result<Written, Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| Error::Io { path, cause }
    };
    let mut written = Written {
        executable: None,
        no_executable: None,
    };
    if obj {
        let o = dir.join(format!("{}.o", n.name));
        std::fs::write(&o, &n.object).map_err(io(&o))?;
        let h = dir.join(format!("{}.h", n.name));
        std::fs::write(&h, &n.header).map_err(io(&h))?;
    }
    if !(obj || exe) {
        return Ok(written);
    }
    let lib = aot::write_runtime(dir)?;
    if !exe {
        return Ok(written);
    }
    let main_obj = dir.join(format!(".{}.main.o", n.name));
    std::fs::write(&main_obj, &n.exe_object).map_err(io(&main_obj))?;
    let linked = aot::link_executable(&main_obj, &lib, &dir.join(&n.name));
    let _ = std::fs::remove_file(&main_obj);
    if !obj {
        std::fs::remove_file(&lib).map_err(io(&lib))?;
    }
    match linked {
        Ok(()) => written.executable = Some(n.name.clone()),
        Err(aot::AotError::NoLinker(cc)) => {
            written.no_executable = Some(if obj {
                format!(
                    "no C linker (`{cc}`) found: wrote {0}.o and {0}.h (link them with \
                     libmcc_runtime.a), but no executable; install gcc or set CC",
                    n.name
                )
            } else {
                format!(
                    "no C linker (`{cc}`) found: no executable; install gcc or set CC (`--emit \
                     obj` writes {0}.o, {0}.h and libmcc_runtime.a to link elsewhere)",
                    n.name
                )
            })
        }
        Err(e) => return Err(e.into()),
    }
    Ok(written)
}

/// Native outputs written (and the executable linked) ahead of the rest, in a folder of their
/// own beside the output folder, while the build still measures: `mcc build` compiles and
/// links on a thread of its own as soon as the compressed model is compiled, and
/// [`Staged::move_into`] moves the files into the output being written. Dropped, the folder
/// goes (a failed build leaves nothing); a killed build's is removed by the next build into
/// the same place (`cleanup::remove_stale`).
pub struct Staged {
    // Field order is drop order: the staging folder, then the folders made for it.
    folder: crate::cleanup::Pending,
    // Held for its `Drop`.
    _made: MadeFolders,
    written: Written,
}

/// [`write`] into a staging folder for the output folder `output`: `.NAME.native-PID` beside
/// it (so moving the files in is a rename), its parent made if need be.
pub fn stage(n: &NativeBuild, output: &Path, exe: bool, obj: bool) -> Result<Staged, Error> {
    let name = output
        .file_name()
        .map_or("mcc-out".into(), |f| f.to_string_lossy().to_string());
    let parent = crate::cleanup::parent_of(output);
    // Folders made for it go again with it when they stay empty (a failed build).
    let mut made = MadeFolders(vec![]);
    let mut missing = vec![];
    let mut p = parent;
    while !p.as_os_str().is_empty() && !p.exists() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(up) => p = up,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        std::fs::create_dir(&dir).map_err(|cause| Error::Io {
            path: dir.clone(),
            cause,
        })?;
        made.0.push(dir);
    }
    let folder =
        crate::cleanup::Pending::new(parent.join(format!(".{name}.native-{}", std::process::id())));
    std::fs::create_dir_all(folder.path()).map_err(|cause| Error::Io {
        path: folder.path().to_path_buf(),
        cause,
    })?;
    let written = write(folder.path(), n, exe, obj)?;
    Ok(Staged {
        folder,
        _made: made,
        written,
    })
}

/// Folders [`stage`] made on the way to its staging folder, outermost first: removed when
/// dropped if they are empty (after the staging folder itself, which is dropped first).
struct MadeFolders(Vec<PathBuf>);

impl Drop for MadeFolders {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            // Not empty (the output moved in): it stays.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Staged {
    /// Moves every staged file into `dir` (a rename; a copy across file systems) and says
    /// what was written.
    pub fn move_into(self, dir: &Path) -> Result<Written, Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| Error::Io { path, cause }
        };
        let entries = std::fs::read_dir(self.folder.path()).map_err(io(self.folder.path()))?;
        for e in entries {
            let e = e.map_err(io(self.folder.path()))?;
            let to = dir.join(e.file_name());
            if std::fs::rename(e.path(), &to).is_err() {
                std::fs::copy(e.path(), &to).map_err(io(&to))?;
            }
        }
        Ok(self.written)
    }
}

//! Native code for a built model: the exact merges, lowering to the runtime's schedule, the
//! object file (Cranelift), the C header, and the executable (linked with the system `cc`).

use std::path::Path;

use mcc_codegen::aot;
use mcc_ir::Graph;
use mcc_runtime::program::Program;

use crate::Error;

/// A model compiled to native code, ready to be written out.
pub struct NativeBuild {
    /// The C identifier of the model (file names and symbols).
    pub name: String,
    /// The schedule and packed weights.
    pub program: Program,
    /// The object file for embedding (no `main`).
    pub object: Vec<u8>,
    /// The object file for the executable (with `main`).
    pub exe_object: Vec<u8>,
    /// The C header.
    pub header: String,
    /// Wall time of merging, lowering and code generation.
    pub compile_time: std::time::Duration,
}

/// Merges (exactly) and lowers `graph`: the program the back ends compile.
pub fn program(graph: &Graph) -> Result<Program, Error> {
    let mut g = graph.clone();
    mcc_passes::merge_everything(&mut g)?;
    Ok(mcc_codegen::lower(&g)?)
}

/// Compiles `graph` (named `name`, from `model_file`) to objects and a header.
pub fn compile(graph: &Graph, name: &str, model_file: &str) -> Result<NativeBuild, Error> {
    let t0 = std::time::Instant::now();
    let mut n = compile_program(program(graph)?, name, model_file)?;
    n.compile_time = t0.elapsed();
    Ok(n)
}

/// Compiles a lowered program (from [`program`]) to objects and a header.
pub fn compile_program(
    program: Program,
    name: &str,
    model_file: &str,
) -> Result<NativeBuild, Error> {
    let t0 = std::time::Instant::now();
    let name = aot::c_name(name);
    let object = aot::object(&program, &name, false)?;
    let exe_object = aot::object(&program, &name, true)?;
    let header = aot::header(&program, &name, model_file);
    Ok(NativeBuild {
        name,
        program,
        object,
        exe_object,
        header,
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

/// Writes `<name>.o`, `<name>.h`, `libmcc_runtime.a` and the executable `<name>` into `dir`.
/// A missing system linker is not an error: the object and header are still written, and
/// the reason comes back in [`Written::no_executable`].
pub fn write(dir: &Path, n: &NativeBuild) -> Result<Written, Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| Error::Io { path, cause }
    };
    let obj = dir.join(format!("{}.o", n.name));
    std::fs::write(&obj, &n.object).map_err(io(&obj))?;
    let h = dir.join(format!("{}.h", n.name));
    std::fs::write(&h, &n.header).map_err(io(&h))?;
    let lib = aot::write_runtime(dir)?;
    let main_obj = dir.join(format!(".{}.main.o", n.name));
    std::fs::write(&main_obj, &n.exe_object).map_err(io(&main_obj))?;
    let exe = dir.join(&n.name);
    let linked = aot::link_executable(&main_obj, &lib, &exe);
    let _ = std::fs::remove_file(&main_obj);
    match linked {
        Ok(()) => Ok(Written {
            executable: Some(n.name.clone()),
            no_executable: None,
        }),
        Err(aot::AotError::NoLinker(cc)) => Ok(Written {
            executable: None,
            no_executable: Some(format!(
                "no C linker (`{cc}`) found: wrote {0}.o and {0}.h (link them with libmcc_runtime.a), \
                 but no executable; install gcc or set CC",
                n.name
            )),
        }),
        Err(e) => Err(e.into()),
    }
}

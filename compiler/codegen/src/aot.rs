//! Ahead of time: the schedule as an ELF object (cranelift-object) with the weights and the
//! encoded schedule in `.rodata`, a C header describing its ABI, and — with the system's
//! `cc` — a standalone executable linked against the runtime static library that mcc
//! carries inside itself.
//!
//! The object defines, for a model named `NAME`:
//! - `NAME_new(threads) -> NAME_model*` (null on failure), `NAME_free(model)`,
//! - `NAME_run(model, inputs, outputs, batch) -> int` (0 on success),
//! - for a model compiled for several input sizes, `NAME_new_size(size, threads)`,
//! - with `main`: the executable's entry point (`mcc_rt_main_sizes`), which runs the size
//!   its inputs fit.

use cranelift_codegen::ir::{AbiParam, Function, InstBuilder, Signature, UserFuncName, types};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, Linkage, Module, default_libcall_names};
use cranelift_object::{ObjectBuilder, ObjectModule};
use mcc_runtime::program::Program;

/// The runtime static library (built from `runtime/src` with this mcc's rustc).
pub const RUNTIME_LIB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libmcc_runtime.a"));

/// The native libraries the runtime static library needs on the link line.
pub const NATIVE_LIBS: &str = include_str!(concat!(env!("OUT_DIR"), "/native_libs.txt"));

/// Linker options that let Linux map the executable's weights with 2 MiB pages: segments
/// aligned to 2 MiB in the file and in memory, so the page cache's large folios of the
/// `.rodata` can be mapped whole. Measured on light VGG-19 (575 MB of weights): with 4 KiB
/// mappings its dense layers ran 1.6× slower in alternate runs (median 290–304 ms); linked
/// with this, 262–270 ms.
#[cfg(target_os = "linux")]
pub const HUGE_PAGE_SEGMENTS: &[&str] = &["-Wl,-z,max-page-size=0x200000"];
/// (Elsewhere: no such option.)
#[cfg(not(target_os = "linux"))]
pub const HUGE_PAGE_SEGMENTS: &[&str] = &[];

/// Linker options for a lean executable: drop the code nothing calls and the standard
/// library's debug information (the runtime itself is built without any). Measured on
/// resnet_bn (2-vCPU EPYC, GNU ld 2.40): the link takes 0.06 s instead of 0.11 s and the
/// executable is 6.4 MB instead of 10.6 MB.
#[cfg(target_os = "linux")]
pub const LEAN_LINK: &[&str] = &["-Wl,--gc-sections", "-Wl,--strip-debug"];
/// (Elsewhere: the platform linker's defaults.)
#[cfg(not(target_os = "linux"))]
pub const LEAN_LINK: &[&str] = &[];

/// Why an ahead-of-time build failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AotError {
    /// Cranelift could not emit the object.
    #[error("code generation failed: {0}")]
    #[diagnostic(code(mcc::codegen::object))]
    Codegen(String),
    /// No system linker.
    #[error("no C compiler/linker (`{0}`) was found to link the executable")]
    #[diagnostic(
        code(mcc::codegen::no_linker),
        help(
            "install one (Debian: `apt-get install gcc`) or set CC; the object file and header \
             were still written and can be linked by hand"
        )
    )]
    NoLinker(String),
    /// The linker failed.
    #[error("linking failed:\n{0}")]
    #[diagnostic(code(mcc::codegen::link))]
    Link(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    #[diagnostic(code(mcc::codegen::io))]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// A C identifier made from a model name (`lenet5`, `light_vgg19`…).
pub fn c_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "model_");
    }
    s
}

fn data<M: Module>(m: &mut M, name: &str, bytes: Vec<u8>, align: u64) -> Result<DataId, AotError> {
    let err = |e: cranelift_module::ModuleError| AotError::Codegen(format!("{e:?}"));
    let id = m
        .declare_data(name, Linkage::Local, false, false)
        .map_err(err)?;
    let mut d = DataDescription::new();
    d.define(bytes.into_boxed_slice());
    d.set_align(align);
    m.define_data(id, &d).map_err(err)?;
    Ok(id)
}

/// How an object holds one compiled size's weights.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightData {
    /// Dense floats, mapped straight from `.rodata`.
    Dense,
    /// Stored form (`mcc_runtime::stored`: the program's storage, encoded), at least a tenth
    /// smaller than the weights' own floats (`stored::storage_floats`: a pruned, shared or
    /// low-bit model): the model expands it when it loads.
    Stored(Vec<u32>),
    /// The same as an earlier size's (index): the usual case, since packing does not depend
    /// on the image size.
    SameAs(usize),
}

impl WeightData {
    /// Whether the weights are in stored form.
    pub fn is_stored(&self) -> bool {
        matches!(self, WeightData::Stored(_))
    }
}

/// How the object of `progs` (one program per compiled size) holds each size's weights.
/// Computed once per build: encoding a large model's weights takes milliseconds.
pub fn weight_data(progs: &[Program]) -> Result<Vec<WeightData>, AotError> {
    let mut out: Vec<WeightData> = Vec::with_capacity(progs.len());
    for (k, prog) in progs.iter().enumerate() {
        // The first equal size holds the data itself (an equal size sharing an earlier one's
        // would have found that one first).
        if let Some(j) = (0..k).find(|&j| same_weights(&progs[j], prog)) {
            out.push(WeightData::SameAs(j));
            continue;
        }
        let storage = mcc_runtime::stored::storage(prog).map_err(AotError::Codegen)?;
        let lanes = mcc_runtime::stored::lanes(&prog.steps);
        let s = mcc_runtime::stored::encode_lanes(&storage, &lanes);
        let own = mcc_runtime::stored::storage_floats(prog).map_err(AotError::Codegen)?;
        out.push(if s.len() * 10 < own * 9 {
            WeightData::Stored(s)
        } else {
            WeightData::Dense
        });
    }
    Ok(out)
}

/// Bytes of weight data the object of `progs` holds (sizes that share weights counted once).
pub fn weight_data_bytes(progs: &[Program], data: &[WeightData]) -> usize {
    progs
        .iter()
        .zip(data)
        .map(|(p, d)| match d {
            WeightData::Dense => p.weights.len() * 4,
            WeightData::Stored(s) => s.len() * 4,
            WeightData::SameAs(_) => 0,
        })
        .sum()
}

/// Whether two sizes' weights are the same bits and are stored alike (the same regions
/// derived when loading), so that they can share one copy.
fn same_weights(a: &Program, b: &Program) -> bool {
    let (x, y) = (&a.weights, &b.weights);
    x.len() == y.len()
        && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        && a.sources
            .iter()
            .map(|s| s.at)
            .eq(b.sources.iter().map(|s| s.at))
}

/// One compiled size's symbols in an object being made.
struct SizeSymbols {
    schedule: DataId,
    nwords: usize,
    weights: DataId,
    /// Stored words, 0 for dense weights.
    nstored: usize,
    nweights: usize,
    run: cranelift_module::FuncId,
}

/// The object file for `progs` (one program per compiled size of the model, at least one)
/// named `name` (a C identifier); with `main`, an executable's.
///
/// With one size, `NAME_run` is that size's compiled code. With several, each size's code is
/// local to the object, `NAME_new_size(size, threads)` loads size `size` (`NAME_new`:
/// size 0), and `NAME_run` calls the code of the size its model was loaded with (the
/// runtime keeps which schedule a model came from), refusing a model of another object.
/// The executable's `main` passes every size to the runtime, which runs the one its
/// inputs fit.
///
/// `weights` is [`weight_data`]`(progs)`.
pub fn object(
    progs: &[Program],
    weights: &[WeightData],
    name: &str,
    with_main: bool,
) -> Result<Vec<u8>, AotError> {
    let err = |e: cranelift_module::ModuleError| AotError::Codegen(format!("{e:?}"));
    if progs.is_empty() {
        return Err(AotError::Codegen("no program to compile".into()));
    }
    if weights.len() != progs.len() {
        return Err(AotError::Codegen(
            "the weight data is not the programs'".into(),
        ));
    }
    let isa = crate::clif::host_isa(true).map_err(AotError::Codegen)?;
    let builder = ObjectBuilder::new(isa, name, default_libcall_names()).map_err(err)?;
    let mut m = ObjectModule::new(builder);
    let ptr = m.target_config().pointer_type();
    let cc = m.target_config().default_call_conv;
    let several = progs.len() > 1;
    let mut sizes = vec![];
    for (k, prog) in progs.iter().enumerate() {
        let sfx = if several {
            format!("_s{k}")
        } else {
            String::new()
        };
        let words = prog.encode_schedule();
        let schedule = data(
            &mut m,
            &format!("{name}{sfx}_schedule"),
            words.iter().flat_map(|w| w.to_le_bytes()).collect(),
            8,
        )?;
        // Weights as `weight_data` chose: stored, dense, or an earlier size's copy.
        let symbol = format!("{name}{sfx}_weights");
        let (weights_id, nstored) = match &weights[k] {
            WeightData::SameAs(j) => sizes
                .get(*j)
                .map(|s: &SizeSymbols| (s.weights, s.nstored))
                .ok_or_else(|| AotError::Codegen("a size's weights went missing".into()))?,
            WeightData::Stored(words) => {
                let bytes = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                (data(&mut m, &symbol, bytes, 64)?, words.len())
            }
            WeightData::Dense => {
                let bytes = prog.weights.iter().flat_map(|w| w.to_le_bytes()).collect();
                (data(&mut m, &symbol, bytes, 64)?, 0)
            }
        };
        let linkage = if several {
            Linkage::Local
        } else {
            Linkage::Export
        };
        let run = crate::clif::define_run(&mut m, prog, &format!("{name}{sfx}_run"), linkage)
            .map_err(AotError::Codegen)?;
        sizes.push(SizeSymbols {
            schedule,
            nwords: words.len(),
            weights: weights_id,
            nstored,
            nweights: prog.weights.len(),
            run,
        });
    }

    let sig = |params: &[types::Type], ret: Option<types::Type>| {
        let mut s = Signature::new(cc);
        s.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        s.returns.extend(ret.map(AbiParam::new));
        s
    };
    let import = |m: &mut ObjectModule, f: &str, params: &[types::Type], ret| {
        m.declare_function(f, Linkage::Import, &sig(params, ret))
            .map_err(err)
    };
    let rt_new = import(
        &mut m,
        "mcc_rt_new",
        &[ptr, ptr, ptr, ptr, types::I32],
        Some(ptr),
    )?;
    let rt_new_stored = import(
        &mut m,
        "mcc_rt_new_stored",
        &[ptr, ptr, ptr, ptr, ptr, types::I32],
        Some(ptr),
    )?;
    let rt_free = import(&mut m, "mcc_rt_free", &[ptr], None)?;
    let rt_origin = import(&mut m, "mcc_rt_origin", &[ptr], Some(ptr))?;
    let rt_foreign = import(&mut m, "mcc_rt_foreign", &[ptr], Some(types::I32))?;
    let rt_main = import(
        &mut m,
        "mcc_rt_main_sizes",
        &[types::I32, ptr, ptr, ptr],
        Some(types::I32),
    )?;

    // A function whose body gets (builder, module, parameters) → emits its blocks.
    let define = |m: &mut ObjectModule,
                  fname: &str,
                  s: Signature,
                  body: &dyn Fn(
        &mut FunctionBuilder,
        &mut ObjectModule,
        &[cranelift_codegen::ir::Value],
    )|
     -> Result<(), AotError> {
        let id = m
            .declare_function(fname, Linkage::Export, &s)
            .map_err(err)?;
        let mut func = Function::with_name_signature(UserFuncName::user(1, id.as_u32()), s);
        let mut fctx = FunctionBuilderContext::new();
        {
            let mut b = FunctionBuilder::new(&mut func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let params = b.block_params(entry).to_vec();
            body(&mut b, m, &params);
            b.seal_all_blocks();
            b.finalize(m.target_config());
        }
        let mut ctx = m.make_context();
        ctx.func = func;
        m.define_function(id, &mut ctx).map_err(err)
    };
    // Loading size k on `threads`: mcc_rt_new(schedule, nwords, weights, nweights, threads)
    // or mcc_rt_new_stored(schedule, nwords, stored, nstored, nweights, threads).
    let load = |b: &mut FunctionBuilder,
                m: &mut ObjectModule,
                s: &SizeSymbols,
                threads: cranelift_codegen::ir::Value| {
        let sd = m.declare_data_in_func(s.schedule, b.func);
        let wd = m.declare_data_in_func(s.weights, b.func);
        let sp = b.ins().symbol_value(ptr, sd);
        let wp = b.ins().symbol_value(ptr, wd);
        let nw = b.ins().iconst(ptr, s.nwords as i64);
        let nf = b.ins().iconst(ptr, s.nweights as i64);
        let call = if s.nstored > 0 {
            let f = m.declare_func_in_func(rt_new_stored, b.func);
            let ns = b.ins().iconst(ptr, s.nstored as i64);
            b.ins().call(f, &[sp, nw, wp, ns, nf, threads])
        } else {
            let f = m.declare_func_in_func(rt_new, b.func);
            b.ins().call(f, &[sp, nw, wp, nf, threads])
        };
        b.inst_results(call)[0]
    };
    // NAME_new(threads): size 0.
    define(
        &mut m,
        &format!("{name}_new"),
        sig(&[types::I32], Some(ptr)),
        &|b, m, p| {
            let r = load(b, m, &sizes[0], p[0]);
            b.ins().return_(&[r]);
        },
    )?;
    if several {
        // NAME_new_size(size, threads): size `size`, null past the last.
        define(
            &mut m,
            &format!("{name}_new_size"),
            sig(&[types::I32, types::I32], Some(ptr)),
            &|b, m, p| {
                for (k, s) in sizes.iter().enumerate() {
                    let this = b.create_block();
                    let next = b.create_block();
                    let hit = b.ins().icmp_imm_s(
                        cranelift_codegen::ir::condcodes::IntCC::Equal,
                        p[0],
                        k as i64,
                    );
                    b.ins().brif(hit, this, &[], next, &[]);
                    b.switch_to_block(this);
                    let r = load(b, m, s, p[1]);
                    b.ins().return_(&[r]);
                    b.switch_to_block(next);
                }
                let null = b.ins().iconst(ptr, 0);
                b.ins().return_(&[null]);
            },
        )?;
        // NAME_run: the code of the size the model was loaded with.
        define(
            &mut m,
            &format!("{name}_run"),
            crate::clif::run_signature(ptr, cc),
            &|b, m, p| {
                let f = m.declare_func_in_func(rt_origin, b.func);
                let call = b.ins().call(f, &[p[0]]);
                let origin = b.inst_results(call)[0];
                for s in &sizes {
                    let this = b.create_block();
                    let next = b.create_block();
                    let sd = m.declare_data_in_func(s.schedule, b.func);
                    let sp = b.ins().symbol_value(ptr, sd);
                    let hit =
                        b.ins()
                            .icmp(cranelift_codegen::ir::condcodes::IntCC::Equal, origin, sp);
                    b.ins().brif(hit, this, &[], next, &[]);
                    b.switch_to_block(this);
                    let f = m.declare_func_in_func(s.run, b.func);
                    let call = b.ins().call(f, p);
                    let r = b.inst_results(call)[0];
                    b.ins().return_(&[r]);
                    b.switch_to_block(next);
                }
                let f = m.declare_func_in_func(rt_foreign, b.func);
                let call = b.ins().call(f, &[p[0]]);
                let r = b.inst_results(call)[0];
                b.ins().return_(&[r]);
            },
        )?;
    }
    define(
        &mut m,
        &format!("{name}_free"),
        sig(&[ptr], None),
        &|b, m, p| {
            let f = m.declare_func_in_func(rt_free, b.func);
            b.ins().call(f, &[p[0]]);
            b.ins().return_(&[]);
        },
    )?;
    if with_main {
        // main(argc, argv) = mcc_rt_main_sizes(argc, argv, table, sizes), the table (one
        // `mcc_runtime::abi::CSized` a size: six pointer-sized words) on the stack.
        define(
            &mut m,
            "main",
            sig(&[types::I32, ptr], Some(types::I32)),
            &|b, m, p| {
                let word = ptr.bytes();
                let entry = 6 * word;
                let slot = b.create_sized_stack_slot(cranelift_codegen::ir::StackSlotData::new(
                    cranelift_codegen::ir::StackSlotKind::ExplicitSlot,
                    entry * sizes.len() as u32,
                    3,
                ));
                for (k, s) in sizes.iter().enumerate() {
                    let sd = m.declare_data_in_func(s.schedule, b.func);
                    let wd = m.declare_data_in_func(s.weights, b.func);
                    let rf = m.declare_func_in_func(s.run, b.func);
                    let fields = [
                        b.ins().symbol_value(ptr, sd),
                        b.ins().iconst(ptr, s.nwords as i64),
                        b.ins().symbol_value(ptr, wd),
                        b.ins().iconst(ptr, s.nstored as i64),
                        b.ins().iconst(ptr, s.nweights as i64),
                        b.ins().func_addr(ptr, rf),
                    ];
                    for (i, v) in fields.into_iter().enumerate() {
                        let at = (k as u32 * entry + i as u32 * word) as i32;
                        b.ins().stack_store(ptr, v, slot, at);
                    }
                }
                let table = b.ins().stack_addr(ptr, slot, 0);
                let count = b.ins().iconst(ptr, sizes.len() as i64);
                let f = m.declare_func_in_func(rt_main, b.func);
                let call = b.ins().call(f, &[p[0], p[1], table, count]);
                let rc = b.inst_results(call)[0];
                b.ins().return_(&[rc]);
            },
        )?;
    }
    m.finish()
        .emit()
        .map_err(|e| AotError::Codegen(e.to_string()))
}

/// The C header for the object of `progs` (one program per compiled size, at least one)
/// named `name`.
pub fn header(progs: &[Program], weights: &[WeightData], name: &str, model_file: &str) -> String {
    let Some(prog) = progs.first() else {
        return String::new();
    };
    let up = name.to_ascii_uppercase();
    let dims = |d: &[usize]| {
        d.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut h = format!(
        "/* {name}.h: the C interface of {model_file}, compiled by mcc {ver}.\n\
         *\n\
         * Link {name}.o with libmcc_runtime.a and the libraries in MCC_LIBS below, e.g.\n\
         *   cc main.c {name}.o libmcc_runtime.a {libs} -o main\n\
         {huge}*\n\
         * Tensors are float32, row-major (C order), batch first. Inputs and outputs are\n\
         * arrays of pointers, one per model input/output in the order below; output\n\
         * buffers are allocated by the caller. A model object is not thread-safe: use one\n\
         * per calling thread (each runs its kernels on the threads it was created with).\n\
         */\n\
         #ifndef {up}_H\n#define {up}_H\n\n#include <stddef.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n",
        ver = env!("CARGO_PKG_VERSION"),
        libs = NATIVE_LIBS.trim(),
        huge = if HUGE_PAGE_SEGMENTS.is_empty() {
            String::new()
        } else {
            format!(
                "* With large weights, add {} (as mcc does for its executables):\n\
                 * 2 MiB-aligned segments let the weights map with 2 MiB pages.\n",
                HUGE_PAGE_SEGMENTS.join(" ")
            )
        },
    );
    h.push_str(&format!(
        "#define {up}_INPUTS {}\n#define {up}_OUTPUTS {}\n",
        prog.inputs.len(),
        prog.outputs.len()
    ));
    match prog.fixed_batch {
        Some(b) => h.push_str(&format!(
            "/* This model runs batch {b} only. */\n#define {up}_FIXED_BATCH {b}\n"
        )),
        None => h.push_str(&format!(
            "/* Any batch size runs. */\n#define {up}_FIXED_BATCH 0\n"
        )),
    }
    if progs.len() > 1 {
        h.push_str(&format!(
            "/* Compiled for {} input sizes: load size k with {name}_new_size(k, threads);\n \
             * {name}_run runs a model at the size it was loaded with. The macros of size k\n \
             * start with {up}_S<k>_. */\n#define {up}_SIZES {}\n",
            progs.len(),
            progs.len()
        ));
    }
    for (k, prog) in progs.iter().enumerate() {
        let up = if progs.len() > 1 {
            h.push_str(&format!("\n/* size {k} */\n"));
            format!("{up}_S{k}")
        } else {
            up.clone()
        };
        h.push_str(&format!(
            "/* Arena bytes per sample (the model allocates batch x this on first use). */\n#define {up}_ARENA_BYTES_PER_SAMPLE {}\n",
            prog.arena * 4
        ));
        for (i, io) in prog.inputs.iter().enumerate() {
            h.push_str(&format!(
                "/* input {i} `{}`: [batch, {}] */\n#define {up}_INPUT{i}_FLOATS_PER_SAMPLE {}\n",
                io.name,
                dims(&io.dims),
                io.buf.len
            ));
        }
        for (i, io) in prog.outputs.iter().enumerate() {
            h.push_str(&format!(
                "/* output {i} `{}`: [batch, {}] */\n#define {up}_OUTPUT{i}_FLOATS_PER_SAMPLE {}\n",
                io.name,
                dims(&io.dims),
                io.buf.len
            ));
        }
    }
    let load = if weights.iter().any(WeightData::is_stored) {
        "its weights are stored compressed in the object's read-only data and expanded\n \
         * into memory the model owns"
    } else {
        "weights stay in the object's read-only data"
    };
    h.push_str(&format!(
        "#define {up}_LIBS \"{libs}\"\n\n\
         typedef struct {name}_model {name}_model;\n\n\
         /* Loads the model ({load}). threads: kernel\n\
          * threads, 0 for all cores. Returns NULL on failure.{size0} */\n\
         {name}_model *{name}_new(int threads);\n\n{new_size}\
         /* Runs `batch` samples. Returns 0 on success, non-zero on error (wrong batch for a\n\
          * fixed-batch model, out of memory). */\n\
         int {name}_run({name}_model *model, const float *const *inputs, float *const *outputs, size_t batch);\n\n\
         /* Frees the model (NULL is ignored). */\n\
         void {name}_free({name}_model *model);\n\n\
         #ifdef __cplusplus\n}}\n#endif\n\n#endif\n",
        libs = NATIVE_LIBS.trim(),
        size0 = if progs.len() > 1 { " Size 0." } else { "" },
        new_size = if progs.len() > 1 {
            format!(
                "/* Loads size `size` (0 to {up}_SIZES - 1) as {name}_new does; NULL for another\n \
                 * size or on failure. */\n{name}_model *{name}_new_size(int size, int threads);\n\n"
            )
        } else {
            String::new()
        },
    ));
    h
}

/// Writes the runtime static library into `dir` and returns its path.
pub fn write_runtime(dir: &std::path::Path) -> Result<std::path::PathBuf, AotError> {
    let path = dir.join("libmcc_runtime.a");
    std::fs::write(&path, RUNTIME_LIB).map_err(|source| AotError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}

/// The C compiler to link with: `$CC`, else `cc`.
pub fn linker() -> String {
    std::env::var("CC")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cc".into())
}

/// Links `object` (made with `main`) and the runtime library `lib` (written by
/// [`write_runtime`]) into the executable `out`, with the system linker.
pub fn link_executable(
    object: &std::path::Path,
    lib: &std::path::Path,
    out: &std::path::Path,
) -> Result<(), AotError> {
    let cc = linker();
    let mut cmd = std::process::Command::new(&cc);
    cmd.arg(object).arg(lib);
    cmd.args(NATIVE_LIBS.split_whitespace());
    cmd.args(HUGE_PAGE_SEGMENTS);
    cmd.args(LEAN_LINK);
    cmd.arg("-o").arg(out);
    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AotError::NoLinker(cc)),
        Err(e) => {
            return Err(AotError::Io {
                path: cc,
                source: e,
            });
        }
    };
    if !output.status.success() {
        return Err(AotError::Link(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    Ok(())
}

//! The C ABI that compiled models call, and the `main` of standalone model executables.
//!
//! A compiled model is a function `run(model, inputs, outputs, batch) -> i32` made by mcc
//! with Cranelift. It asks the runtime for the arena ([`mcc_rt_arena`]), computes the
//! memory-bound steps inline, and calls [`mcc_rt_steps`] for each run of kernel steps. `model` is
//! the runtime state made by [`mcc_rt_new`] from the program's schedule and weights, which
//! an ahead-of-time build keeps in `.rodata`.
//!
//! Every function here checks its pointers for null and returns an error code (non-zero)
//! or a null pointer rather than panicking; the message is kept for [`mcc_rt_error`].

use std::ffi::{CStr, c_char};

use crate::aligned::{AlignedVec, out_of_memory, try_vec};
use crate::exec::Runner;
use crate::npy::{NpyArray, NpyType};
use crate::program::Program;
use crate::threads::MAX_THREADS;

/// The compiled schedule's entry point (see the module documentation).
///
/// # Safety
/// To call it: the model is live (from [`mcc_rt_new`] or [`Model::new`] with this schedule's
/// program); `inputs` points to one pointer per model input, each to `batch` × its dims
/// floats, and `outputs` to one per output, each to as many writable floats that alias
/// nothing else; `batch` is one the model runs (else it returns non-zero).
pub type RunFn = unsafe extern "C" fn(*mut Model, *const *const f32, *const *mut f32, usize) -> i32;

/// A loaded model: its program and a runner over it.
pub struct Model {
    /// Borrows `*program` (and `owned`, when set); dropped first, by hand.
    runner: std::mem::ManuallyDrop<Runner<'static>>,
    program: *mut Program,
    /// Weights the model decoded from their stored form and owns; dropped (as a field)
    /// after `Drop::drop` has dropped the runner.
    owned: Option<AlignedVec>,
    error: std::ffi::CString,
    /// The address of the schedule words the model was made from ([`mcc_rt_new`]), 0 when
    /// made in Rust: how an object's `NAME_run` that holds several compiled sizes finds the
    /// code of this model's size (and refuses a model of another object).
    origin: usize,
}

impl Model {
    /// Loads `prog` with `weights` (which must outlive the model) on `threads` threads
    /// (0: all available cores).
    ///
    /// # Safety
    /// `weights` must stay valid and unchanged for the model's whole life.
    #[allow(unsafe_code)]
    pub unsafe fn new(
        prog: Program,
        weights: &[f32],
        threads: usize,
    ) -> Result<Box<Model>, String> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
        } else {
            threads
        };
        let program = Box::into_raw(Box::new(prog));
        // SAFETY: `program` comes from `Box::into_raw` just above, so it is valid, and it
        // is freed only in `Drop` (or below, on error), after the runner; `weights` stays
        // valid and unchanged for the model's life (the contract). The `'static` references
        // go only into the runner, which never leaves the model: it is private, `runner()`
        // lends it shared, and `Drop` drops it first.
        let (p, w): (&'static Program, &'static [f32]) = unsafe {
            (
                &*program,
                std::slice::from_raw_parts(weights.as_ptr(), weights.len()),
            )
        };
        match Runner::with_weights(p, w, threads) {
            Ok(runner) => Ok(Box::new(Model {
                runner: std::mem::ManuallyDrop::new(runner),
                program,
                owned: None,
                error: std::ffi::CString::default(),
                origin: 0,
            })),
            Err(e) => {
                // SAFETY: `program` came from `Box::into_raw` above and is freed once, here;
                // the runner that borrowed it was never made (`with_weights` failed and kept
                // nothing).
                drop(unsafe { Box::from_raw(program) });
                Err(e)
            }
        }
    }

    /// Loads `prog` with weights in stored form (`crate::stored`), which it expands once into
    /// memory it owns.
    #[allow(unsafe_code)]
    pub fn from_stored(
        prog: Program,
        stored: &[u32],
        threads: usize,
    ) -> Result<Box<Model>, String> {
        let n = crate::stored::decoded_len(stored).ok_or("stored weights: no length word")?;
        // A length beyond what the words can hold is corrupt: refuse it before allocating.
        if n > crate::stored::max_decoded_len(stored) {
            return Err(format!(
                "stored weights: {n} floats cannot come from {} words",
                stored.len()
            ));
        }
        let mut owned = AlignedVec::try_zeroed(n, "the decoded weights")?;
        crate::stored::decode_into(stored, &mut owned)?;
        crate::stored::derive(&prog.steps, &mut owned)?;
        // SAFETY: the slice is `owned`'s heap buffer, which moving the `AlignedVec` into the
        // model does not move; the model keeps it unchanged (nothing else reaches the field)
        // and drops it only after the runner (`Drop` drops the runner by hand, fields
        // afterwards). If `Model::new` fails, nothing borrowed it past the call.
        let w: &[f32] = unsafe { std::slice::from_raw_parts(owned.as_ptr(), owned.len()) };
        // SAFETY: `w` stays valid and unchanged for the model's life (above).
        let mut model = unsafe { Model::new(prog, w, threads) }?;
        model.owned = Some(owned);
        Ok(model)
    }

    /// The runner. (Shared only: its `'static` borrow of the program is a fiction that
    /// must not leave the model, as moving the runner out of a `&mut` would let it.)
    pub fn runner(&self) -> &Runner<'_> {
        &self.runner
    }

    fn fail(&mut self, e: String) -> i32 {
        self.error = std::ffi::CString::new(e.replace('\0', " ")).unwrap_or_default();
        1
    }
}

impl Drop for Model {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the runner is dropped once, here (the model is being dropped), before the
        // program it borrows; the program came from `Box::into_raw` in `Model::new` and is
        // freed only here.
        unsafe {
            std::mem::ManuallyDrop::drop(&mut self.runner);
            drop(Box::from_raw(self.program));
        }
    }
}

/// The schedule words and the weights behind raw pointers; None if a pointer is null.
///
/// # Safety
/// Non-null pointers must be aligned and valid for reads of their lengths, unchanged, for
/// `'a`.
#[allow(unsafe_code)]
unsafe fn model_parts<'a>(
    schedule: *const u64,
    nwords: usize,
    weights: *const f32,
    nweights: usize,
) -> Option<(&'a [u64], &'a [f32])> {
    if schedule.is_null() || (weights.is_null() && nweights > 0) {
        return None;
    }
    // SAFETY: `schedule` is non-null, and so is `weights` when it is read (checked above);
    // both are aligned and valid for their lengths for `'a` (the contract).
    unsafe {
        Some((
            std::slice::from_raw_parts(schedule, nwords),
            if nweights == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(weights, nweights)
            },
        ))
    }
}

/// Loads a model from its encoded schedule (`nwords` words) and weights (`nweights`
/// floats, which must outlive the model) on `threads` threads (0: all cores). Null on error.
///
/// # Safety
/// The pointers must be aligned and valid for the given lengths; the weights must stay
/// valid and unchanged until the model is freed.
#[allow(unsafe_code)]
// SAFETY (of `no_mangle`): the `mcc_rt_` names are this runtime's own; nothing else a model
// links defines them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_new(
    schedule: *const u64,
    nwords: usize,
    weights: *const f32,
    nweights: usize,
    threads: u32,
) -> *mut Model {
    // SAFETY: this function's contract is `model_parts`' (for as long as the model lives).
    let Some((words, w)) = (unsafe { model_parts(schedule, nwords, weights, nweights) }) else {
        return std::ptr::null_mut();
    };
    let Ok(prog) = Program::decode_schedule_for(words, nweights) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the weights stay valid and unchanged until the model is freed (the contract).
    match unsafe { Model::new(prog, w, threads as usize) } {
        Ok(mut m) => {
            m.origin = schedule as usize;
            Box::into_raw(m)
        }
        Err(_) => std::ptr::null_mut(),
    }
}

/// Like [`mcc_rt_new`], with the weights in stored form (`crate::stored`: `nstored` words
/// that expand to `nweights` floats), expanded once into memory the model owns. Null on
/// error (including corrupt stored weights).
///
/// # Safety
/// The pointers must be aligned and valid for the given lengths during the call.
#[allow(unsafe_code)]
// SAFETY (of `no_mangle`): as for `mcc_rt_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_new_stored(
    schedule: *const u64,
    nwords: usize,
    stored: *const u32,
    nstored: usize,
    nweights: usize,
    threads: u32,
) -> *mut Model {
    // SAFETY: the caller's contract: aligned and valid for the lengths during this call
    // (nothing borrowed outlives it: the model decodes the weights into its own memory).
    let Some((words, st)) = (unsafe { stored_parts(schedule, nwords, stored, nstored) }) else {
        return std::ptr::null_mut();
    };
    let Ok(prog) = Program::decode_schedule_for(words, nweights) else {
        return std::ptr::null_mut();
    };
    if crate::stored::decoded_len(st) != Some(nweights) {
        return std::ptr::null_mut();
    }
    match Model::from_stored(prog, st, threads as usize) {
        Ok(mut m) => {
            m.origin = schedule as usize;
            Box::into_raw(m)
        }
        Err(_) => std::ptr::null_mut(),
    }
}

/// The address of the schedule `m` was made from (by [`mcc_rt_new`] or
/// [`mcc_rt_new_stored`]); null for a null model or one made otherwise.
///
/// # Safety
/// `m` must be null or a live model, not being changed by another call.
#[allow(unsafe_code)]
// SAFETY (of `no_mangle`): as for `mcc_rt_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_origin(m: *const Model) -> *const u64 {
    // SAFETY: `m` is null (then `None`) or a live model that nothing changes during this
    // call (the contract), so a shared reference to it is sound.
    match unsafe { m.as_ref() } {
        Some(m) => m.origin as *const u64,
        None => std::ptr::null(),
    }
}

/// Records, for a model that an object's `NAME_run` cannot run (made by another object, or
/// null), why; returns the error code (non-zero) `NAME_run` returns.
///
/// # Safety
/// `m` must be null or a live model, not in use by another call.
#[allow(unsafe_code)]
// SAFETY (of `no_mangle`): as for `mcc_rt_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_foreign(m: *mut Model) -> i32 {
    // SAFETY: `m` is null (then `None`) or a live model that nothing else uses during this
    // call (the contract), so a unique reference to it is sound.
    match unsafe { m.as_mut() } {
        Some(m) => {
            m.fail("this model was not loaded by this object (its `_new` or `_new_size`)".into())
        }
        None => 1,
    }
}

/// The schedule words and the stored weight words behind raw pointers; None if a pointer is
/// null.
///
/// # Safety
/// Non-null pointers must be aligned and valid for reads of their lengths, unchanged, for
/// `'a`.
#[allow(unsafe_code)]
unsafe fn stored_parts<'a>(
    schedule: *const u64,
    nwords: usize,
    stored: *const u32,
    nstored: usize,
) -> Option<(&'a [u64], &'a [u32])> {
    if schedule.is_null() || stored.is_null() {
        return None;
    }
    // SAFETY: both non-null (checked above), aligned and valid for their lengths for `'a`
    // (the contract).
    unsafe {
        Some((
            std::slice::from_raw_parts(schedule, nwords),
            std::slice::from_raw_parts(stored, nstored),
        ))
    }
}

/// Frees a model made by [`mcc_rt_new`] (null is ignored).
///
/// # Safety
/// `m` must come from [`mcc_rt_new`] and not be used afterwards.
#[allow(unsafe_code)]
// SAFETY (of `no_mangle`): as for `mcc_rt_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_free(m: *mut Model) {
    if !m.is_null() {
        // SAFETY: a non-null `m` was made by `Box::into_raw` in `mcc_rt_new` and is freed
        // once (the contract: not used afterwards).
        drop(unsafe { Box::from_raw(m) });
    }
}

/// Sizes the arena for `batch` samples and returns it; null on error (wrong batch). The
/// pointer stays valid until the next call with another batch, or until the model is
/// freed; the runtime touches the arena only inside [`mcc_rt_steps`].
///
/// # Safety
/// `m` must be null or a live model, not in use by another call.
#[allow(unsafe_code)]
// SAFETY (of `no_mangle`): as for `mcc_rt_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_arena(m: *mut Model, batch: usize) -> *mut f32 {
    // SAFETY: `m` is null (then `None`) or a live model that nothing else uses during this
    // call (the contract), so a unique reference to it is sound.
    let Some(m) = (unsafe { m.as_mut() }) else {
        return std::ptr::null_mut();
    };
    match m.runner.arena_for(batch) {
        Ok(a) => a.as_mut_ptr(),
        Err(e) => {
            m.fail(e);
            std::ptr::null_mut()
        }
    }
}

/// Runs steps `first..end` of the schedule on the arena (sized by [`mcc_rt_arena`]; see
/// [`Runner::steps`]); 0 on success.
///
/// # Safety
/// `m` must be null or a live model, not in use by another call; nothing may touch its
/// arena during the call.
#[allow(unsafe_code)]
// SAFETY (of `no_mangle`): as for `mcc_rt_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_steps(m: *mut Model, first: u32, end: u32) -> i32 {
    // SAFETY: `m` is null (then an error) or a live model that nothing else uses during
    // this call (the contract), so a unique reference to it is sound.
    let Some(m) = (unsafe { m.as_mut() }) else {
        return 1;
    };
    match m.runner.steps(first as usize..end as usize) {
        Ok(()) => 0,
        Err(e) => m.fail(e),
    }
}

/// The last error of `m` as a C string (empty if none).
///
/// # Safety
/// `m` must be null or a live model, not being changed by another call; the string lives
/// until the next call on it.
#[allow(unsafe_code)]
// SAFETY (of `no_mangle`): as for `mcc_rt_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_error(m: *const Model) -> *const c_char {
    // SAFETY: `m` is null (then `None`) or a live model that nothing changes during this
    // call (the contract), so a shared reference to it is sound.
    match unsafe { m.as_ref() } {
        Some(m) => m.error.as_ptr(),
        None => c"no model".as_ptr(),
    }
}

/// `n` floats from `src` to `dst` (the buffers do not overlap).
///
/// # Safety
/// Both pointers must be aligned and valid for `n` floats (`dst` for writes), and the two
/// ranges must not overlap.
#[allow(unsafe_code)]
// SAFETY (of `no_mangle`): as for `mcc_rt_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_copy(dst: *mut f32, src: *const f32, n: usize) {
    if n > 0 && !dst.is_null() && !src.is_null() {
        // SAFETY: both non-null (checked), aligned, valid for `n` floats and disjoint (the
        // contract).
        unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
    }
}

const USAGE: &str = "usage: MODEL INPUT.npy... [-o OUTPUT.npy] [--bench N] [--threads T]

Runs this compiled model (made by `mcc build`) on float32 .npy inputs, one per model input,
each shaped [batch, ...]. Without -o, prints the output's shape and, for a classifier, the
top-1 class of each sample. --bench N runs the model N times after 5 warm-up runs and prints
the median and minimum time per run. --threads T uses T threads (default: all cores; at
most 1024).";

/// Ends the process after a failed write to stdout: silently (status 0) when the reader
/// closed the pipe (`./model x.npy | head -c 20`), else with the error and status 1. For
/// programs' `main`s (the executable's here, `mcc`'s), never for library code.
pub fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// `println!` for the executable's results that stops quietly when stdout is closed.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            stdout_failed(&e);
        }
    }};
}

/// One compiled size of a model in an executable: its schedule, its weights and its code.
pub struct Sized<'a> {
    /// The encoded schedule.
    pub words: &'a [u64],
    /// Its weights.
    pub weights: Weights<'a>,
    /// Its compiled code.
    pub run: RunFn,
}

/// A compiled size's weights as an executable holds them.
pub enum Weights<'a> {
    /// Dense floats, used in place.
    Dense(&'a [f32]),
    /// Stored form (`crate::stored`), `len` floats once expanded.
    Stored {
        /// The stored words.
        words: &'a [u32],
        /// Floats they expand to.
        len: usize,
    },
}

impl Weights<'_> {
    /// Floats the weights are.
    fn len(&self) -> usize {
        match self {
            Weights::Dense(w) => w.len(),
            Weights::Stored { len, .. } => *len,
        }
    }
}

/// One compiled size as an executable's `main` passes it to [`mcc_rt_main_sizes`] (C
/// layout: the compiled `main` writes an array of these on its stack).
#[repr(C)]
pub struct CSized {
    /// The encoded schedule: `nwords` words.
    pub schedule: *const u64,
    /// Words of the schedule.
    pub nwords: usize,
    /// The weights: `nweights` floats when `nstored` is 0, else `nstored` words of stored
    /// form that expand to `nweights` floats.
    pub weights: *const u8,
    /// Stored words, or 0 for dense weights.
    pub nstored: usize,
    /// Floats of weights.
    pub nweights: usize,
    /// The compiled code of this schedule.
    pub run: Option<RunFn>,
}

/// `dims` as `3×48×192` (`batch×…` with the batch first).
fn dims_text(dims: &[usize]) -> String {
    std::iter::once("batch".to_string())
        .chain(dims.iter().map(usize::to_string))
        .collect::<Vec<_>>()
        .join("×")
}

/// [`main_sizes`]' work, with errors as values.
///
/// # Safety
/// As for [`main_sizes`].
#[allow(clippy::print_stdout, unsafe_code)]
unsafe fn main_inner(args: &[String], sizes: &[Sized<'_>]) -> Result<(), String> {
    let mut inputs = vec![];
    let (mut out, mut bench, mut threads) = (None, 0usize, 0usize);
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "-o" | "--output" => out = Some(it.next().ok_or("-o needs a file")?.clone()),
            "--bench" => {
                bench = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--bench needs a count")?;
            }
            "--threads" => {
                threads = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--threads needs a number")?;
                if threads > MAX_THREADS {
                    return Err(format!(
                        "--threads {threads}: at most {MAX_THREADS} threads can run a model"
                    ));
                }
            }
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`\n\n{USAGE}")),
            s => inputs.push(s.to_string()),
        }
    }
    let progs: Vec<Program> = sizes
        .iter()
        .map(|s| Program::decode_schedule_for(s.words, s.weights.len()))
        .collect::<Result<_, _>>()?;
    let first = progs.first().ok_or("the executable carries no model")?;
    if progs.iter().any(|p| p.inputs.len() != first.inputs.len()) {
        return Err("the executable's compiled sizes disagree on the inputs".into());
    }
    if inputs.len() != first.inputs.len() {
        return Err(format!(
            "the model takes {} input(s) ({}), {} given\n\n{USAGE}",
            first.inputs.len(),
            first
                .inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            inputs.len()
        ));
    }
    // Every input read (float32, with its shape) before a size is chosen by them.
    let mut data = vec![];
    let mut shapes = vec![];
    let mut batch = None;
    for path in &inputs {
        let a = NpyArray::read(std::path::Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
        if a.dtype != NpyType::F32 {
            return Err(format!(
                "{path}: the model takes float32, this is {}",
                a.dtype.name()
            ));
        }
        let b = a.shape.first().copied().unwrap_or(1);
        if batch.is_some_and(|x| x != b) {
            return Err(format!("{path}: batch {b} differs from the other inputs'"));
        }
        batch = Some(b);
        let mut floats = Vec::new();
        floats
            .try_reserve_exact(a.data.len() / 4)
            .map_err(|_| out_of_memory(a.data.len(), &format!("the input {path}")))?;
        floats.extend(
            a.data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        data.push(floats);
        shapes.push(a.shape);
    }
    let fits = |p: &Program| {
        shapes
            .iter()
            .zip(&p.inputs)
            .all(|(s, io)| fits_one(s, &io.dims))
    };
    let Some(k) = progs.iter().position(fits) else {
        let path_and_shape = |i: usize| format!("{}: shape {:?}", inputs[i], shapes[i]);
        if let [p] = &progs[..] {
            let i = (0..shapes.len()).find(|&i| !fits_one(&shapes[i], &p.inputs[i].dims));
            let i = i.unwrap_or(0);
            return Err(format!(
                "{} does not fit input `{}` [{}]",
                path_and_shape(i),
                p.inputs[i].name,
                dims_text(&p.inputs[i].dims).replace('×', ", ")
            ));
        }
        let compiled: Vec<String> = progs
            .iter()
            .map(|p| {
                p.inputs
                    .iter()
                    .map(|io| format!("`{}` {}", io.name, dims_text(&io.dims)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        return Err(format!(
            "{}: the inputs' shapes ({}) are none of the sizes this executable was compiled \
             for:\n  {}\n(build with another --input-shape to add a size)",
            inputs.join(", "),
            shapes
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            compiled.join("\n  ")
        ));
    };
    let prog = progs.into_iter().nth(k).ok_or("no such size")?;
    let size = &sizes[k];
    let batch = batch.unwrap_or(1);
    if let Some(b) = prog.fixed_batch
        && b != batch
    {
        return Err(format!(
            "this model was compiled for batch {b}; the input has batch {batch}"
        ));
    }
    // Stored weights expand here, once, into memory that outlives the model below.
    let expanded;
    let weights: &[f32] = match &size.weights {
        Weights::Dense(w) => w,
        Weights::Stored { words, len } => {
            if crate::stored::decoded_len(words) != Some(*len) {
                return Err("the executable's stored weights are corrupt".into());
            }
            let mut w = AlignedVec::try_zeroed(*len, "the decoded weights")?;
            crate::stored::decode_into(words, &mut w)?;
            crate::stored::derive(&prog.steps, &mut w)?;
            expanded = w;
            &expanded
        }
    };
    let run = size.run;
    let outs_dims: Vec<Vec<usize>> = prog.outputs.iter().map(|o| o.dims.clone()).collect();
    // SAFETY: `weights` (the caller's, or `expanded`, declared before `model`) stays valid
    // and unchanged until this call returns; `model` is dropped before that.
    let mut model = unsafe { Model::new(prog, weights, threads) }?;
    let mut outputs: Vec<Vec<f32>> = outs_dims
        .iter()
        // NaN until the model writes them: an element it never writes cannot pass for a 0.
        .map(|d| {
            let n = d.iter().try_fold(batch, |a, &x| a.checked_mul(x));
            try_vec(n.unwrap_or(usize::MAX), f32::NAN, "the outputs")
        })
        .collect::<Result<_, _>>()?;
    let in_ptrs: Vec<*const f32> = data.iter().map(|d| d.as_ptr()).collect();
    let once = |model: &mut Model, outputs: &mut Vec<Vec<f32>>| -> Result<(), String> {
        let out_ptrs: Vec<*mut f32> = outputs.iter_mut().map(|d| d.as_mut_ptr()).collect();
        #[allow(unsafe_code)]
        // SAFETY: `RunFn`'s contract: `run` is this size's schedule's (the contract) and
        // `model` is live, made from its program; `in_ptrs` has a pointer per model input
        // (their count was checked), each to batch × dims floats (each file's shape was
        // checked against its input by `fits`); `out_ptrs` has one per output, each to
        // batch × dims floats of its own vector.
        let rc = unsafe { run(model, in_ptrs.as_ptr(), out_ptrs.as_ptr(), batch) };
        if rc != 0 {
            return Err(format!(
                "the model failed: {}",
                model.error.to_string_lossy()
            ));
        }
        Ok(())
    };
    once(&mut model, &mut outputs)?;
    if bench > 0 {
        for _ in 0..5 {
            once(&mut model, &mut outputs)?;
        }
        let mut times = Vec::with_capacity(bench);
        for _ in 0..bench {
            let t = std::time::Instant::now();
            once(&mut model, &mut outputs)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        say!(
            "batch {batch}, {} thread(s), {bench} runs: median {:.4} ms, min {:.4} ms",
            model.runner().threads(),
            times[times.len() / 2],
            times[0]
        );
    }
    let (first, dims) = (&outputs[0], &outs_dims[0]);
    match out {
        Some(path) => {
            let mut shape = vec![batch];
            shape.extend(dims);
            let mut data = Vec::new();
            data.try_reserve_exact(first.len().saturating_mul(4))
                .map_err(|_| out_of_memory(first.len().saturating_mul(4), "the output file"))?;
            data.extend(first.iter().flat_map(|v| v.to_le_bytes()));
            let a = NpyArray {
                dtype: NpyType::F32,
                shape,
                data,
            };
            a.write(std::path::Path::new(&path))
                .map_err(|e| format!("{path}: {e}"))?;
        }
        None if bench == 0 => {
            say!(
                "output [{batch}, {}]",
                dims.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let classes: usize = dims.iter().product();
            if classes > 1 && dims.iter().filter(|&&d| d > 1).count() == 1 {
                let top: Vec<String> = first
                    .chunks(classes)
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .map_or(0, |(i, _)| i)
                            .to_string()
                    })
                    .collect();
                say!("top-1: {}", top.join(" "));
            }
        }
        None => {}
    }
    Ok(())
}

/// True when an array of `shape` (batch first) fits an input of `dims` (without the batch).
fn fits_one(shape: &[usize], dims: &[usize]) -> bool {
    shape.len() == dims.len() + 1 && shape[1..] == *dims
}

/// The `main` of a standalone model executable: parses `argv`, reads the inputs, picks the
/// compiled size they fit among the `count` in `sizes` (from the executable's `.rodata`),
/// runs it, writes or prints the outputs. Returns the process exit code (0 ok, 1 error,
/// 2 usage).
///
/// # Safety
/// `argv` must be null or hold `argc` pointers, each null or to a C string; `sizes` must be
/// null or point to `count` entries whose schedule and weights pointers are aligned and
/// valid for their lengths, unchanged, for the whole process, and whose `run` is the
/// compiled code of that entry's schedule.
#[allow(unsafe_code, clippy::print_stdout)]
// SAFETY (of `no_mangle`): as for `mcc_rt_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcc_rt_main_sizes(
    argc: i32,
    argv: *const *const c_char,
    sizes: *const CSized,
    count: usize,
) -> i32 {
    // SAFETY: `argv`'s contract is `c_args`'.
    let args = unsafe { c_args(argc, argv) };
    let table: &[CSized] = if sizes.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: non-null, and `count` entries (the contract), read-only for the process.
        unsafe { std::slice::from_raw_parts(sizes, count) }
    };
    let mut parsed = vec![];
    for e in table {
        let Some(run) = e.run else {
            eprintln!("error: the executable's model has no code");
            return 1;
        };
        let part = if e.nstored == 0 {
            // SAFETY: dense weights: `nweights` aligned floats (the contract).
            unsafe { model_parts(e.schedule, e.nwords, e.weights.cast(), e.nweights) }
                .map(|(words, w)| (words, Weights::Dense(w)))
        } else {
            // SAFETY: stored weights: `nstored` aligned words (the contract).
            unsafe { stored_parts(e.schedule, e.nwords, e.weights.cast(), e.nstored) }.map(
                |(words, st)| {
                    (
                        words,
                        Weights::Stored {
                            words: st,
                            len: e.nweights,
                        },
                    )
                },
            )
        };
        let Some((words, weights)) = part else {
            eprintln!("error: the executable carries no model");
            return 1;
        };
        parsed.push(Sized {
            words,
            weights,
            run,
        });
    }
    if parsed.is_empty() {
        eprintln!("error: the executable carries no model");
        return 1;
    }
    // SAFETY: every entry's code is its schedule's and its data lives, unchanged, for the
    // whole process (this function's contract).
    unsafe { main_sizes(&args, &parsed) }
}

/// The arguments of a C `main`.
///
/// # Safety
/// `argv` must be null or hold `argc` pointers, each null or to a C string.
#[allow(unsafe_code)]
unsafe fn c_args(argc: i32, argv: *const *const c_char) -> Vec<String> {
    let argc = if argv.is_null() {
        0
    } else {
        argc.max(0) as usize
    };
    (0..argc)
        .filter_map(|i| {
            // SAFETY: `argv` is non-null (else argc is 0) and holds `argc` pointers (the
            // contract); i < argc.
            let p = unsafe { *argv.add(i) };
            // SAFETY: `p` is non-null, so a C string (the contract), read before returning.
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        })
        .collect()
}

/// What a model executable's `main` does, given its arguments (`args[0]` the program's
/// name) and its one compiled size: [`main_sizes`] of one dense size. The JIT's tests and
/// the `executable` fuzz target call it to run exactly the executable's code in process.
///
/// # Safety
/// `run` must be the compiled code of the schedule `words`, and `weights` must stay valid
/// and unchanged until this call returns.
#[allow(unsafe_code)]
pub unsafe fn main_with(args: &[String], words: &[u64], weights: &[f32], run: RunFn) -> i32 {
    let size = Sized {
        words,
        weights: Weights::Dense(weights),
        run,
    };
    // SAFETY: this function's contract is `main_sizes`' for its one size.
    unsafe { main_sizes(args, &[size]) }
}

/// What a model executable's `main` does, given its arguments: parses them, reads the
/// inputs, runs the first of `sizes` whose input sizes they fit (or names every compiled
/// size), writes or prints the outputs, and returns the exit code (0 ok, 1 error, 2 usage).
///
/// # Safety
/// Each size's `run` must be the compiled code of its schedule, and its weights must stay
/// valid and unchanged until this call returns.
#[allow(clippy::print_stdout, unsafe_code)]
pub unsafe fn main_sizes(args: &[String], sizes: &[Sized<'_>]) -> i32 {
    if args.len() < 2 {
        eprintln!("{USAGE}");
        return 2;
    }
    // SAFETY: this function's contract is `main_inner`'s.
    match unsafe { main_inner(args, sizes) } {
        Ok(()) => 0,
        Err(e) if e == USAGE => {
            say!("{USAGE}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

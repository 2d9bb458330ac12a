//! Just-in-time: the schedule compiled into this process with cranelift-jit, calling the
//! runtime kernels linked into mcc itself. Used by `mcc run --jit` and `mcc bench`.

use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, default_libcall_names};
use mcc_runtime::abi::{self, Model, RunFn};
use mcc_runtime::program::Program;

/// A model compiled into this process.
pub struct Jit {
    // Drop order: the model (which reads the weights) first, then the code, then the weights.
    model: Box<Model>,
    run: RunFn,
    _module: JITModule,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    fixed_batch: Option<usize>,
    /// The encoded schedule, for [`Jit::main`].
    words: Vec<u64>,
    /// On cache lines (a copy; the program's own are dropped).
    _weights: mcc_runtime::aligned::AlignedVec,
    /// Time to generate and compile the code.
    pub compile_time: std::time::Duration,
}

impl Jit {
    /// Compiles `prog` and loads it on `threads` threads (0: all cores).
    #[allow(unsafe_code)]
    pub fn new(mut prog: Program, threads: usize) -> Result<Jit, String> {
        let t0 = std::time::Instant::now();
        let isa = crate::clif::host_isa(false)?;
        let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
        jb.symbol("mcc_rt_arena", abi::mcc_rt_arena as *const u8);
        jb.symbol("mcc_rt_steps", abi::mcc_rt_steps as *const u8);
        jb.symbol("mcc_rt_copy", abi::mcc_rt_copy as *const u8);
        let mut module = JITModule::new(jb);
        let id = crate::clif::define_run(&mut module, &prog, "mcc_model_run", Linkage::Export)
            .map_err(|e| format!("code generation failed: {e}"))?;
        module
            .finalize_definitions()
            .map_err(|e| format!("code generation failed: {e:?}"))?;
        let code = module.get_finalized_function(id);
        // SAFETY: `code` is the function `define_run` made, with `RunFn`'s signature.
        let run: RunFn = unsafe { std::mem::transmute::<*const u8, RunFn>(code) };
        let compile_time = t0.elapsed();
        let words = prog.encode_schedule();
        let weights =
            mcc_runtime::aligned::AlignedVec::from_slice(&std::mem::take(&mut prog.weights));
        let (inputs, outputs, fixed_batch) = (
            prog.inputs.iter().map(|i| i.buf.len).collect(),
            prog.outputs.iter().map(|o| o.buf.len).collect(),
            prog.fixed_batch,
        );
        // SAFETY: `weights` is kept in `self` and dropped after the model.
        let model = unsafe { Model::new(prog, &weights, threads) }?;
        Ok(Jit {
            model,
            run,
            _module: module,
            inputs,
            outputs,
            fixed_batch,
            words,
            _weights: weights,
            compile_time,
        })
    }

    /// Threads in use.
    pub fn threads(&mut self) -> usize {
        self.model.runner().threads()
    }

    /// Does what the model's executable does with the command line `args` (`args[0]` the
    /// program's name) — reads its `.npy` inputs, runs, writes or prints — in this process,
    /// on this compiled code, and returns the executable's exit code.
    #[allow(unsafe_code)]
    pub fn main(&self, args: &[String]) -> i32 {
        // SAFETY: `run` was compiled from the program whose schedule `words` encodes, and
        // `_weights` (its weights) lives, unchanged, as long as `self`.
        unsafe { abi::main_with(args, &self.words, &self._weights, self.run) }
    }

    /// Runs the compiled model on `inputs` (batch × per-sample floats each; the batch is
    /// read off the first) and returns the outputs.
    #[allow(unsafe_code)]
    pub fn run(&mut self, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>, String> {
        if inputs.len() != self.inputs.len() {
            return Err(format!(
                "the model takes {} inputs, {} given",
                self.inputs.len(),
                inputs.len()
            ));
        }
        let lens: Vec<usize> = inputs.iter().map(|x| x.len()).collect();
        let batch = self.model.runner().program().batch_of(&lens)?;
        if let Some(b) = self.fixed_batch
            && b != batch
        {
            return Err(format!("this model runs batch {b} only, not {batch}"));
        }
        for (x, &per) in inputs.iter().zip(&self.inputs) {
            if x.len() != per * batch {
                return Err(format!(
                    "an input has {} floats; batch {batch} needs {}",
                    x.len(),
                    per * batch
                ));
            }
        }
        // NaN until the model writes them: an element it never writes cannot pass for a 0.
        let mut outs: Vec<Vec<f32>> = self
            .outputs
            .iter()
            .map(|&n| {
                let floats = n.saturating_mul(batch);
                mcc_runtime::aligned::try_vec(floats, f32::NAN, "the outputs")
            })
            .collect::<Result<_, _>>()?;
        let ins: Vec<*const f32> = inputs.iter().map(|x| x.as_ptr()).collect();
        let ptrs: Vec<*mut f32> = outs.iter_mut().map(|o| o.as_mut_ptr()).collect();
        // SAFETY: the inputs and outputs hold batch × per-sample floats, checked above.
        let rc = unsafe { (self.run)(&mut *self.model, ins.as_ptr(), ptrs.as_ptr(), batch) };
        if rc != 0 {
            // SAFETY: the model is live.
            let msg = unsafe { std::ffi::CStr::from_ptr(abi::mcc_rt_error(&*self.model)) };
            return Err(format!(
                "the compiled model failed: {}",
                msg.to_string_lossy()
            ));
        }
        Ok(outs)
    }
}

//! The schedule as machine code: one Cranelift function per model,
//! `run(model, inputs, outputs, batch) -> i32`, specialised to the program. Arena offsets are
//! baked in (scaled by the run-time batch), memory-bound steps (activations, same-shape
//! elementwise arithmetic, copies) are compiled inline as 128-bit SIMD loops, and the kernel
//! steps (convolutions, GEMMs, pools…) are calls into the runtime's packed-weight kernels.
//!
//! Following CODEGEN.md: `opt_level = none` (mcc has scheduled the code already) and
//! top-tested loops.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, Function, InstBuilder, MemFlagsData, Signature, UserFuncName, Value, types,
};
use cranelift_codegen::isa::{CallConv, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncId, Linkage, Module, ModuleError};

/// A module error as text (it is large, and only ever reported).
fn me(e: ModuleError) -> String {
    format!("{e:?}")
}
use mcc_runtime::kernels::eltwise::BinOp;
use mcc_runtime::kernels::epilogue::Act;
use mcc_runtime::program::{Buf, Program, Src, Step};

/// The host ISA, for JIT and for objects that run on this machine's kind of CPU: x86-64
/// baseline plus what this CPU has (the kernels dispatch at run time anyway).
pub fn host_isa(pic: bool) -> Result<std::sync::Arc<dyn TargetIsa>, String> {
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "none"),
        ("is_pic", if pic { "true" } else { "false" }),
    ] {
        flags.set(k, v).map_err(|e| e.to_string())?;
    }
    let isa = cranelift_native::builder().map_err(|e| e.to_string())?;
    isa.finish(settings::Flags::new(flags))
        .map_err(|e| e.to_string())
}

/// The runtime functions the schedule calls.
struct Rt {
    arena: FuncId,
    step: FuncId,
    copy: FuncId,
}

fn declare_rt<M: Module>(m: &mut M) -> Result<Rt, String> {
    let ptr = m.target_config().pointer_type();
    let cc = m.target_config().default_call_conv;
    let sig = |params: &[types::Type], ret: Option<types::Type>| {
        let mut s = Signature::new(cc);
        s.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        s.returns.extend(ret.map(AbiParam::new));
        s
    };
    Ok(Rt {
        arena: m
            .declare_function(
                "mcc_rt_arena",
                Linkage::Import,
                &sig(&[ptr, ptr], Some(ptr)),
            )
            .map_err(me)?,
        step: m
            .declare_function(
                "mcc_rt_steps",
                Linkage::Import,
                &sig(&[ptr, types::I32, types::I32], Some(types::I32)),
            )
            .map_err(me)?,
        copy: m
            .declare_function("mcc_rt_copy", Linkage::Import, &sig(&[ptr, ptr, ptr], None))
            .map_err(me)?,
    })
}

/// The signature of `run`.
pub fn run_signature(ptr: types::Type, cc: CallConv) -> Signature {
    let mut s = Signature::new(cc);
    for _ in 0..4 {
        s.params.push(AbiParam::new(ptr));
    }
    s.returns.push(AbiParam::new(types::I32));
    s
}

/// How a step is compiled inline, if it is.
enum Inline {
    /// y = act(x).
    Unary { x: Buf, y: Buf, act: Act },
    /// y = act(a op b), all contiguous and the same shape.
    Binary {
        a: Buf,
        b: Buf,
        y: Buf,
        op: BinOp,
        act: Act,
    },
}

fn contiguous(strides: &[usize], dims: &[usize]) -> bool {
    let mut expect = 1;
    for (d, &s) in dims.iter().zip(strides).rev() {
        if *d != 1 && s != expect {
            return false;
        }
        expect *= d;
    }
    true
}

fn inline_of(s: &Step) -> Option<Inline> {
    let simple = |a: &Act| matches!(a, Act::None | Act::Relu | Act::Clip(..));
    match s {
        Step::Unary { x, y, act } if simple(act) => Some(Inline::Unary {
            x: *x,
            y: *y,
            act: *act,
        }),
        Step::Copy { x, y } => Some(Inline::Unary {
            x: *x,
            y: *y,
            act: Act::None,
        }),
        Step::Binary {
            a: Src::Arena(a),
            a_strides,
            b: Src::Arena(b),
            b_strides,
            dims,
            op,
            act,
            y,
        } if simple(act)
            && !matches!(op, BinOp::Div)
            && contiguous(a_strides, dims)
            && contiguous(b_strides, dims)
            && a.len == y.len
            && b.len == y.len =>
        {
            Some(Inline::Binary {
                a: *a,
                b: *b,
                y: *y,
                op: *op,
                act: *act,
            })
        }
        _ => None,
    }
}

/// Whether step `s` is compiled inline (for reports).
pub fn is_inline(s: &Step) -> bool {
    inline_of(s).is_some()
}

struct Emitter<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    ptr: types::Type,
    arena: Value,
    batch: Value,
}

impl Emitter<'_, '_> {
    /// The address of buffer `buf` for the current batch.
    fn addr(&mut self, buf: &Buf) -> Value {
        let off = self.b.ins().imul_imm_s(self.batch, (buf.off * 4) as i64);
        self.b.ins().iadd(self.arena, off)
    }

    /// `max(v, c)` as the kernels compute it — `c` where `v < c`, else `v`, so a NaN `v`
    /// passes through (ONNX) — by compare and select, on a lane or a vector.
    fn max_c(&mut self, v: Value, c: f32, wide: bool) -> Value {
        self.select_c(v, c, FloatCC::LessThan, wide)
    }

    /// `min(v, c)` likewise: `c` where `v > c`, else `v`.
    fn min_c(&mut self, v: Value, c: f32, wide: bool) -> Value {
        self.select_c(v, c, FloatCC::GreaterThan, wide)
    }

    /// `c` where `v cc c` holds (never for a NaN `v`), else `v`.
    fn select_c(&mut self, v: Value, c: f32, cc: FloatCC, wide: bool) -> Value {
        let k = self.b.ins().f32const(c);
        if wide {
            let k = self.b.ins().splat(types::F32X4, k);
            let hit = self.b.ins().fcmp(cc, v, k);
            let hit = self.b.ins().bitcast(
                types::F32X4,
                MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little),
                hit,
            );
            self.b.ins().bitselect(hit, k, v)
        } else {
            let hit = self.b.ins().fcmp(cc, v, k);
            self.b.ins().select(hit, k, v)
        }
    }

    fn act(&mut self, v: Value, act: Act, wide: bool) -> Value {
        match act {
            Act::Relu => self.max_c(v, 0.0, wide),
            Act::Clip(lo, hi) => {
                let v = self.max_c(v, lo, wide);
                self.min_c(v, hi, wide)
            }
            _ => v,
        }
    }

    fn op(&mut self, op: BinOp, a: Value, b: Value) -> Value {
        match op {
            BinOp::Add => self.b.ins().fadd(a, b),
            BinOp::Sub => self.b.ins().fsub(a, b),
            BinOp::Mul => self.b.ins().fmul(a, b),
            BinOp::Div => self.b.ins().fdiv(a, b),
            BinOp::Max => self.b.ins().fmax(a, b),
            BinOp::Min => self.b.ins().fmin(a, b),
        }
    }

    /// A top-tested loop over `n` floats (the batch times `per`): 4 at a time, then the rest.
    fn elementwise(
        &mut self,
        per: usize,
        srcs: &[Value],
        dst: Value,
        f: &dyn Fn(&mut Self, &[Value], bool) -> Value,
    ) {
        let ptr = self.ptr;
        let n = self.b.ins().imul_imm_s(self.batch, per as i64);
        let bytes = self.b.ins().imul_imm_s(n, 4);
        let vec_bytes = self.b.ins().band_imm_s(bytes, !15i64);
        let flags = MemFlagsData::new().with_notrap();
        for (step, width) in [(16i64, true), (4, false)] {
            let header = self.b.create_block();
            let body = self.b.create_block();
            let exit = self.b.create_block();
            self.b.append_block_param(header, ptr);
            let start = if width {
                self.b.ins().iconst(ptr, 0)
            } else {
                vec_bytes
            };
            self.b.ins().jump(header, &[start.into()]);
            self.b.switch_to_block(header);
            let i = self.b.block_params(header)[0];
            let limit = if width { vec_bytes } else { bytes };
            let more = self.b.ins().icmp(IntCC::UnsignedLessThan, i, limit);
            self.b.ins().brif(more, body, &[], exit, &[]);
            self.b.switch_to_block(body);
            let ty = if width { types::F32X4 } else { types::F32 };
            let vals: Vec<Value> = srcs
                .iter()
                .map(|&s| {
                    let a = self.b.ins().iadd(s, i);
                    self.b.ins().load(ty, flags, a, 0)
                })
                .collect();
            let r = f(self, &vals, width);
            let a = self.b.ins().iadd(dst, i);
            self.b.ins().store(flags, r, a, 0);
            let next = self.b.ins().iadd_imm_s(i, step);
            self.b.ins().jump(header, &[next.into()]);
            self.b.switch_to_block(exit);
            self.b.seal_block(body);
            self.b.seal_block(header);
            self.b.seal_block(exit);
        }
    }
}

/// Defines `name` = the program's `run` function in module `m`.
pub fn define_run<M: Module>(
    m: &mut M,
    prog: &Program,
    name: &str,
    linkage: Linkage,
) -> Result<FuncId, String> {
    let ptr = m.target_config().pointer_type();
    let cc = m.target_config().default_call_conv;
    let rt = declare_rt(m)?;
    let sig = run_signature(ptr, cc);
    let id = m.declare_function(name, linkage, &sig).map_err(me)?;
    let mut func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let (f_arena, f_step, f_copy) = (
            m.declare_func_in_func(rt.arena, b.func),
            m.declare_func_in_func(rt.step, b.func),
            m.declare_func_in_func(rt.copy, b.func),
        );
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let params = b.block_params(entry).to_vec();
        let (model, inputs, outputs, batch) = (params[0], params[1], params[2], params[3]);
        // fail(code): return code.
        let fail = b.create_block();
        b.append_block_param(fail, types::I32);
        let call = b.ins().call(f_arena, &[model, batch]);
        let arena = b.inst_results(call)[0];
        let null = b.ins().icmp_imm_s(IntCC::Equal, arena, 0);
        let ok = b.create_block();
        let one = b.ins().iconst(types::I32, 1);
        b.ins().brif(null, fail, &[one.into()], ok, &[]);
        b.switch_to_block(ok);
        b.seal_block(ok);
        let mut e = Emitter {
            b: &mut b,
            ptr,
            arena,
            batch,
        };
        let flags = MemFlagsData::new().with_notrap();
        for (i, io) in prog.inputs.iter().enumerate() {
            let src = e.b.ins().load(ptr, flags, inputs, (i * 8) as i32);
            let dst = e.addr(&io.buf);
            let n = e.b.ins().imul_imm_s(batch, io.buf.len as i64);
            e.b.ins().call(f_copy, &[dst, src, n]);
        }
        // Kernel steps are called in runs (the runtime may take a run a sample at a time).
        let mut i = 0;
        while i < prog.steps.len() {
            let s = &prog.steps[i];
            match inline_of(s) {
                Some(Inline::Unary { x, y, act }) => {
                    let (px, py) = (e.addr(&x), e.addr(&y));
                    e.elementwise(x.len, &[px], py, &|e, v, wide| e.act(v[0], act, wide));
                }
                Some(Inline::Binary {
                    a,
                    b: bb,
                    y,
                    op,
                    act,
                }) => {
                    let (pa, pb, py) = (e.addr(&a), e.addr(&bb), e.addr(&y));
                    e.elementwise(y.len, &[pa, pb], py, &|e, v, wide| {
                        let r = e.op(op, v[0], v[1]);
                        e.act(r, act, wide)
                    });
                }
                None => {
                    let n = prog.steps[i..]
                        .iter()
                        .take_while(|s| inline_of(s).is_none())
                        .count();
                    let first = e.b.ins().iconst(types::I32, i as i64);
                    let end = e.b.ins().iconst(types::I32, (i + n) as i64);
                    let call = e.b.ins().call(f_step, &[model, first, end]);
                    let rc = e.b.inst_results(call)[0];
                    let next = e.b.create_block();
                    e.b.ins().brif(rc, fail, &[rc.into()], next, &[]);
                    e.b.switch_to_block(next);
                    e.b.seal_block(next);
                    i += n;
                    continue;
                }
            }
            i += 1;
        }
        for (i, io) in prog.outputs.iter().enumerate() {
            let dst = e.b.ins().load(ptr, flags, outputs, (i * 8) as i32);
            let src = e.addr(&io.buf);
            let n = e.b.ins().imul_imm_s(batch, io.buf.len as i64);
            e.b.ins().call(f_copy, &[dst, src, n]);
        }
        let zero = b.ins().iconst(types::I32, 0);
        b.ins().return_(&[zero]);
        b.switch_to_block(fail);
        b.seal_block(fail);
        let code = b.block_params(fail)[0];
        b.ins().return_(&[code]);
        b.finalize(m.target_config());
    }
    let mut ctx = m.make_context();
    ctx.func = func;
    m.define_function(id, &mut ctx).map_err(me)?;
    Ok(id)
}

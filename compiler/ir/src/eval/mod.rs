//! The reference evaluator: slow, obviously correct, and the ground truth every pass and
//! every compiled kernel is checked against.
//!
//! Each operator is written directly from its ONNX definition over ndarray, favouring the
//! plainest loop that is right over the fastest one (convolution goes through an explicit
//! im2col matrix and ndarray's matrix product, which keeps the corpus tests fast without
//! hiding the arithmetic). Batch sizes come from the inputs at run time. Every failure is
//! an [`EvalError`] naming the node; nothing here panics on bad input.

pub(crate) mod array;
/// Shape helpers shared with inference.
pub(crate) mod array_shapes {
    pub use super::array::{
        block_shape, reshape_target, shape_range, slice_indices, squeeze_shape, transpose_perm,
        unsqueeze_shape,
    };
}
mod math;
mod nn;
mod quant;
pub(crate) mod resize;
pub mod scalar;

pub use resize::{AxisMap, ResizePlan, resize_plan};

use std::collections::HashMap;

use crate::graph::{ConstData, ValueDef};
use crate::{DType, Graph, Op, Tensor};

/// Why one operator could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// A valid use of the operator that mcc does not implement (yet).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The operands or attributes are invalid for this operator.
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand for building an [`OpError::Invalid`].
pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T, OpError> {
    Err(OpError::Invalid(msg.into()))
}

/// Shorthand for building an [`OpError::Unsupported`].
pub(crate) fn unsupported<T>(msg: impl Into<String>) -> Result<T, OpError> {
    Err(OpError::Unsupported(msg.into()))
}

/// Why a graph could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum EvalError {
    /// Wrong number of inputs.
    #[error("the model takes {expected} input(s), {got} given")]
    #[diagnostic(code(mcc::eval::input_count))]
    InputCount {
        /// Inputs the graph declares.
        expected: usize,
        /// Inputs given.
        got: usize,
    },
    /// An input does not fit the declared type.
    #[error("input `{name}` must be {expected}, got {got}: {why}")]
    #[diagnostic(code(mcc::eval::input_type))]
    InputType {
        /// Input name.
        name: String,
        /// Declared type.
        expected: String,
        /// Given type.
        got: String,
        /// Which axis (or the element type) does not fit.
        why: String,
    },
    /// A constant's data was elided in the text IR.
    #[error("constant `{0}` has no data (the IR text named it by fingerprint only)")]
    #[diagnostic(
        code(mcc::eval::elided_const),
        help("evaluate the model file itself, or print the IR with `--weights`")
    )]
    Elided(String),
    /// An operator failed.
    #[error("node `{node}` ({op}): {source}")]
    #[diagnostic(code(mcc::eval::op))]
    Op {
        /// Node name.
        node: String,
        /// Operator.
        op: &'static str,
        /// What went wrong.
        source: OpError,
    },
    /// The graph itself is malformed.
    #[error("malformed graph: {0}")]
    #[diagnostic(code(mcc::eval::graph))]
    Graph(String),
}

/// Evaluates one operator on concrete operands. `n_outputs` is how many outputs the node
/// defines (some ops have optional outputs).
pub fn eval_op(
    op: &Op,
    inputs: &[Option<&Tensor>],
    n_outputs: usize,
) -> Result<Vec<Tensor>, OpError> {
    if let Some(r) = quant::eval(op, inputs) {
        return Ok(vec![r?]);
    }
    let out = match op {
        Op::QuantizeLinear(_)
        | Op::DequantizeLinear(_)
        | Op::QLinearConv(_)
        | Op::QLinearMatMul(_)
        | Op::DynamicQuantMatMul(_) => {
            return unsupported("a quantization operator outside `quant`");
        }
        Op::Conv(a) => vec![nn::conv(a, inputs)?],
        Op::ConvTranspose(a) => vec![nn::conv_transpose(a, inputs)?],
        Op::InstanceNormalization(a) => vec![nn::instance_norm(a, inputs)?],
        Op::Gemm(a) => vec![nn::gemm(a, inputs)?],
        Op::MatMul(_) => vec![nn::matmul(req(inputs, 0)?, req(inputs, 1)?)?],
        Op::BatchNormalization(a) => vec![nn::batch_norm(a, inputs)?],
        Op::MaxPool(a) => {
            let x = req(inputs, 0)?;
            match x.dtype() {
                // Codes pool as their values: exact through f32, and max commutes with the
                // (monotone) dequantization.
                d @ (DType::U8 | DType::I8) => {
                    let mut out = nn::max_pool(a, &array::cast(x, DType::F32), n_outputs)?;
                    out[0] = array::cast(&out[0], d);
                    out
                }
                _ => nn::max_pool(a, x, n_outputs)?,
            }
        }
        Op::AveragePool(a) => vec![nn::average_pool(a, req(inputs, 0)?)?],
        Op::GlobalAveragePool(_) => vec![nn::global_pool(req(inputs, 0)?, false)?],
        Op::GlobalMaxPool(_) => vec![nn::global_pool(req(inputs, 0)?, true)?],
        Op::Lrn(a) => vec![nn::lrn(a, req(inputs, 0)?)?],
        Op::Softmax(a) => vec![nn::softmax(
            req(inputs, 0)?,
            a.axis,
            a.legacy_2d != 0,
            false,
        )?],
        Op::LogSoftmax(a) => vec![nn::softmax(
            req(inputs, 0)?,
            a.axis,
            a.legacy_2d != 0,
            true,
        )?],
        Op::Dropout(_) => array::dropout(inputs, n_outputs)?,
        Op::LayerNormalization(a) => nn::layer_norm(a, inputs, n_outputs)?,
        Op::Split(a) => array::split(a, inputs, n_outputs)?,
        Op::Relu(_) => vec![math::unary_float(
            req(inputs, 0)?,
            // ONNX: max(x, 0), with NaN passing through (and -0 staying -0).
            |x| if x < 0.0 { 0.0 } else { x },
            Some(|x: i128| x.max(0)),
        )?],
        Op::LeakyRelu(a) => {
            let al = f64::from(a.alpha);
            vec![math::unary_float(
                req(inputs, 0)?,
                move |x| if x < 0.0 { al * x } else { x },
                None::<fn(i128) -> i128>,
            )?]
        }
        Op::PRelu(_) => vec![math::prelu(req(inputs, 0)?, req(inputs, 1)?)?],
        Op::Sigmoid(_) => vec![math::unary_f(req(inputs, 0)?, |x| {
            1.0 / (1.0 + (-x).exp())
        })?],
        Op::HardSigmoid(a) => {
            let (al, be) = (f64::from(a.alpha), f64::from(a.beta));
            vec![math::unary_f(req(inputs, 0)?, move |x| {
                (al * x + be).clamp(0.0, 1.0)
            })?]
        }
        Op::HardSwish(_) => vec![math::unary_f(req(inputs, 0)?, |x| {
            x * (x / 6.0 + 0.5).clamp(0.0, 1.0)
        })?],
        Op::Tanh(_) => vec![math::unary_f(req(inputs, 0)?, f64::tanh)?],
        Op::Elu(a) => {
            let al = f64::from(a.alpha);
            vec![math::unary_f(req(inputs, 0)?, move |x| {
                if x < 0.0 { al * (x.exp() - 1.0) } else { x }
            })?]
        }
        Op::Selu(a) => {
            let (al, ga) = (f64::from(a.alpha), f64::from(a.gamma));
            vec![math::unary_f(req(inputs, 0)?, move |x| {
                if x <= 0.0 {
                    ga * (al * x.exp() - al)
                } else {
                    ga * x
                }
            })?]
        }
        Op::Softplus(_) => vec![math::unary_f(req(inputs, 0)?, |x| {
            if x > 30.0 { x } else { x.exp().ln_1p() }
        })?],
        Op::Gelu(a) => vec![math::gelu(req(inputs, 0)?, &a.approximate)?],
        Op::Clip(_) => vec![math::clip(inputs)?],
        Op::Abs(_) => vec![math::unary_float(
            req(inputs, 0)?,
            f64::abs,
            Some(|x: i128| x.abs()),
        )?],
        Op::Neg(_) => vec![math::unary_float(
            req(inputs, 0)?,
            |x| -x,
            Some(|x: i128| -x),
        )?],
        Op::Round(_) => vec![math::unary_float(
            req(inputs, 0)?,
            f64::round_ties_even,
            Some(|x: i128| x),
        )?],
        Op::Exp(_) => vec![math::unary_f(req(inputs, 0)?, f64::exp)?],
        Op::Log(_) => vec![math::unary_f(req(inputs, 0)?, f64::ln)?],
        Op::Sqrt(_) => vec![math::unary_f(req(inputs, 0)?, f64::sqrt)?],
        Op::Erf(_) => vec![math::unary_f(req(inputs, 0)?, math::erf)?],
        Op::Add(_) => vec![math::binary(
            req(inputs, 0)?,
            req(inputs, 1)?,
            math::Bin::Add,
        )?],
        Op::Sub(_) => vec![math::binary(
            req(inputs, 0)?,
            req(inputs, 1)?,
            math::Bin::Sub,
        )?],
        Op::Mul(_) => vec![math::binary(
            req(inputs, 0)?,
            req(inputs, 1)?,
            math::Bin::Mul,
        )?],
        Op::Div(_) => vec![math::binary(
            req(inputs, 0)?,
            req(inputs, 1)?,
            math::Bin::Div,
        )?],
        Op::Pow(_) => vec![math::pow(req(inputs, 0)?, req(inputs, 1)?)?],
        Op::Sum(_) => vec![math::variadic(inputs, math::Bin::Add, false)?],
        Op::Max(_) => vec![math::variadic(inputs, math::Bin::Max, false)?],
        Op::Min(_) => vec![math::variadic(inputs, math::Bin::Min, false)?],
        Op::Mean(_) => vec![math::variadic(inputs, math::Bin::Add, true)?],
        Op::Equal(_) => vec![math::equal(req(inputs, 0)?, req(inputs, 1)?)?],
        Op::Where(_) => vec![math::where_(
            req(inputs, 0)?,
            req(inputs, 1)?,
            req(inputs, 2)?,
        )?],
        Op::ReduceMax(a) => vec![math::reduce(
            inputs,
            a.keepdims != 0,
            a.noop_with_empty_axes != 0,
            math::Reduce::Max,
        )?],
        Op::ReduceMin(a) => vec![math::reduce(
            inputs,
            a.keepdims != 0,
            a.noop_with_empty_axes != 0,
            math::Reduce::Min,
        )?],
        Op::ReduceSum(a) => vec![math::reduce(
            inputs,
            a.keepdims != 0,
            a.noop_with_empty_axes != 0,
            math::Reduce::Sum,
        )?],
        Op::ReduceMean(a) => vec![math::reduce(
            inputs,
            a.keepdims != 0,
            a.noop_with_empty_axes != 0,
            math::Reduce::Mean,
        )?],
        Op::Identity(_) => vec![req(inputs, 0)?.clone()],
        Op::Reshape(a) => vec![array::reshape(
            req(inputs, 0)?,
            req(inputs, 1)?,
            a.allowzero != 0,
        )?],
        Op::Flatten(a) => vec![array::flatten(req(inputs, 0)?, a.axis)?],
        Op::Transpose(a) => vec![array::transpose(req(inputs, 0)?, &a.perm)?],
        Op::Unsqueeze(_) => vec![array::unsqueeze(req(inputs, 0)?, req(inputs, 1)?)?],
        Op::Squeeze(_) => vec![array::squeeze(req(inputs, 0)?, opt(inputs, 1))?],
        Op::Concat(a) => vec![array::concat(inputs, a.axis)?],
        Op::Shape(a) => vec![array::shape(req(inputs, 0)?, a.start, a.end)?],
        Op::Gather(a) => vec![array::gather(req(inputs, 0)?, req(inputs, 1)?, a.axis)?],
        Op::Slice(_) => vec![array::slice(inputs)?],
        Op::ConstantOfShape(a) => {
            vec![array::constant_of_shape(req(inputs, 0)?, a.value.as_ref())?]
        }
        Op::Cast(a) => vec![array::cast(req(inputs, 0)?, a.to)],
        Op::Expand(_) => vec![array::expand(req(inputs, 0)?, req(inputs, 1)?)?],
        Op::Tile(_) => vec![array::tile(req(inputs, 0)?, req(inputs, 1)?)?],
        Op::Pad(a) => vec![array::pad(inputs, &a.mode)?],
        Op::Resize(a) => vec![resize::resize(a, inputs)?],
        Op::DepthToSpace(a) => vec![array::depth_space(
            req(inputs, 0)?,
            a.blocksize,
            a.mode,
            true,
        )?],
        Op::SpaceToDepth(a) => vec![array::depth_space(
            req(inputs, 0)?,
            a.blocksize,
            a.mode,
            false,
        )?],
        Op::Range(_) => vec![array::range(
            req(inputs, 0)?,
            req(inputs, 1)?,
            req(inputs, 2)?,
        )?],
    };
    if out.len() < n_outputs {
        return unsupported(format!(
            "{} produces {} output(s), the node asks for {n_outputs}",
            op.name(),
            out.len()
        ));
    }
    let mut out = out;
    if let Some(epilogue) = op.epilogue().map_err(OpError::Invalid)? {
        let (act, consts) = epilogue.op();
        let mut args: Vec<Option<&Tensor>> = vec![Some(&out[0])];
        args.extend(consts.iter().map(Some));
        out[0] = eval_op(&act, &args, 1)?.remove(0);
    }
    Ok(out)
}

/// Checks that a tensor of `shape` may be created (see [`crate::tensor::MAX_ELEMENTS`]).
pub(crate) fn check_numel(shape: &[usize]) -> Result<usize, OpError> {
    crate::tensor::checked_numel(shape).ok_or_else(|| {
        OpError::Invalid(format!(
            "the result would have shape {shape:?}, more than 2^28 elements"
        ))
    })
}

/// A required operand.
pub(crate) fn req<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor, OpError> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| OpError::Invalid(format!("operand {i} is required")))
}

/// An optional operand.
pub(crate) fn opt<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}

/// Runs the whole graph on `inputs` (in graph-input order) and returns its outputs.
///
/// Input types are checked against the declared ones first (symbolic dims bind to the
/// given sizes). Intermediate values are dropped after their last use.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, EvalError> {
    run_observed(graph, inputs, &mut |_, _| {})
}

/// Like [`run`], and calls `observe` with every node output as soon as it is computed (for
/// per-layer comparisons without keeping every activation alive).
pub fn run_observed(
    graph: &Graph,
    inputs: &[Tensor],
    observe: &mut dyn FnMut(crate::ValueId, &Tensor),
) -> Result<Vec<Tensor>, EvalError> {
    if inputs.len() != graph.inputs().len() {
        return Err(EvalError::InputCount {
            expected: graph.inputs().len(),
            got: inputs.len(),
        });
    }
    let mut binds = Vec::new();
    for (&v, t) in graph.inputs().iter().zip(inputs) {
        let val = graph.value(v);
        let why = if val.ty.dtype == t.dtype() {
            val.ty.misfit(t.shape(), &mut binds)
        } else {
            Some(format!("its elements are {}", t.dtype()))
        };
        if let Some(why) = why {
            return Err(EvalError::InputType {
                name: val.name.clone(),
                expected: val.ty.to_string(),
                got: t.ty().to_string(),
                why,
            });
        }
    }
    let order = graph
        .topo_order()
        .map_err(|e| EvalError::Graph(e.to_string()))?;
    // Remaining uses of each node-defined value, so memory is released early.
    let mut uses: HashMap<crate::ValueId, usize> = HashMap::new();
    for &n in &order {
        if let Some(node) = graph.node(n) {
            for v in node.inputs.iter().flatten() {
                *uses.entry(*v).or_default() += 1;
            }
        }
    }
    let mut env: HashMap<crate::ValueId, Tensor> = HashMap::new();
    for (&v, t) in graph.inputs().iter().zip(inputs) {
        env.insert(v, t.clone());
    }
    for &n in &order {
        let node = graph
            .node(n)
            .ok_or_else(|| EvalError::Graph(format!("{n} vanished")))?;
        let mut args: Vec<Option<&Tensor>> = Vec::with_capacity(node.inputs.len());
        for v in &node.inputs {
            args.push(match v {
                None => None,
                Some(v) => Some(lookup(graph, &env, *v)?),
            });
        }
        let outs =
            eval_op(&node.op, &args, node.outputs.len()).map_err(|source| EvalError::Op {
                node: node.name.clone(),
                op: node.op.name(),
                source,
            })?;
        for v in node.inputs.iter().flatten() {
            if let Some(u) = uses.get_mut(v) {
                *u -= 1;
                if *u == 0 && !graph.outputs().contains(v) && !graph.inputs().contains(v) {
                    env.remove(v);
                }
            }
        }
        for (&v, t) in node.outputs.iter().zip(outs) {
            observe(v, &t);
            env.insert(v, t);
        }
    }
    graph
        .outputs()
        .iter()
        .map(|&v| lookup(graph, &env, v).cloned())
        .collect()
}

fn lookup<'a>(
    graph: &'a Graph,
    env: &'a HashMap<crate::ValueId, Tensor>,
    v: crate::ValueId,
) -> Result<&'a Tensor, EvalError> {
    match &graph.value(v).def {
        ValueDef::Const(ConstData::Dense(t)) => Ok(t),
        ValueDef::Const(ConstData::Stored(s)) => Ok(s.decoded()),
        ValueDef::Const(ConstData::Elided { .. }) => {
            Err(EvalError::Elided(graph.value(v).name.clone()))
        }
        _ => env.get(&v).ok_or_else(|| {
            EvalError::Graph(format!(
                "value `{}` is used before it is defined",
                graph.value(v).name
            ))
        }),
    }
}

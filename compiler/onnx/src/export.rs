//! `mcc-ir` → ONNX at one fixed opset ([`EXPORT_OPSET`]), whose operator forms are the ones
//! the IR uses, so export is a direct mapping. Constants become initializers (`raw_data`).

use std::path::Path;

use mcc_ir::{AttrValue, ConstData, DType, Dim, Graph, Op, TensorType, ValueDef};
use prost::Message;

use crate::ExportError;
use crate::pb;
use crate::tensor::{dtype_code, to_proto};

/// How the exporter writes a stored constant.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StoredForm {
    /// Decoded, as a dense f32 initializer.
    Dense,
    /// As its integer codes, scales and zero points through a `DequantizeLinear` node: int8
    /// and int4 values in a dense layout, per tensor, per channel, or in groups along the last
    /// axis that divide it (ONNX's blocked quantization).
    DequantizeLinear,
}

/// How [`export`] writes `s`: `DequantizeLinear` where ONNX can say its encoding, else
/// dense.
pub fn stored_form(s: &mcc_ir::Stored) -> StoredForm {
    use mcc_ir::stored::{Granularity, Layout, Values};
    let e = s.encoding();
    let ok = match e.values {
        Values::Int { bits: 4 | 8, per } => {
            e.layout == Layout::Dense
                && match per {
                    Granularity::Tensor => true,
                    Granularity::Channel(a) => (a as usize) < s.shape().len(),
                    Granularity::Group(g) => s
                        .shape()
                        .last()
                        .is_some_and(|&d| d > 0 && d % g as usize == 0),
                }
        }
        _ => false,
    };
    if ok {
        StoredForm::DequantizeLinear
    } else {
        StoredForm::Dense
    }
}

/// The initializers and `DequantizeLinear` node that compute constant `name` from its codes.
fn dequantize(
    name: &str,
    s: &mcc_ir::Stored,
    fresh: &mut dyn FnMut(String) -> String,
) -> Option<(Vec<pb::TensorProto>, pb::NodeProto)> {
    use mcc_ir::stored::{Granularity, Values};
    let Values::Int { bits, per } = s.encoding().values else {
        return None;
    };
    let parts = s.parts().ok()?;
    let shape = s.shape();
    let rank = shape.len();
    let (scale_shape, axis, block): (Vec<usize>, Option<i64>, Option<i64>) = match per {
        Granularity::Tensor => (vec![], None, None),
        Granularity::Channel(a) => (vec![shape[a as usize]], Some(i64::from(a)), None),
        Granularity::Group(g) => {
            let mut d = shape.to_vec();
            let last = d.last_mut()?;
            *last /= g as usize;
            (d, Some(rank as i64 - 1), Some(i64::from(g)))
        }
    };
    let dims = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<_>>();
    let ty = if bits == 8 {
        pb::tensor_proto::DataType::Int8
    } else {
        pb::tensor_proto::DataType::Int4
    };
    // int8: one byte per code; int4: two codes per byte, the first in the low nibble.
    let pack = |codes: &mut dyn Iterator<Item = i32>| -> Vec<u8> {
        if bits == 8 {
            codes.map(|q| q as i8 as u8).collect()
        } else {
            let v: Vec<u8> = codes.map(|q| (q as u8) & 0x0f).collect();
            v.chunks(2)
                .map(|c| c[0] | c.get(1).map_or(0, |h| h << 4))
                .collect()
        }
    };
    let tensor =
        |n: String, d: &[usize], t: pb::tensor_proto::DataType, raw: Vec<u8>| pb::TensorProto {
            name: Some(n),
            dims: dims(d),
            data_type: Some(t as i32),
            raw_data: Some(raw),
            ..Default::default()
        };
    let (q, sc, zp) = (
        fresh(format!("{name}.quantized")),
        fresh(format!("{name}.scale")),
        fresh(format!("{name}.zero_point")),
    );
    let inits = vec![
        tensor(q.clone(), shape, ty, pack(&mut parts.codes.iter().copied())),
        tensor(
            sc.clone(),
            &scale_shape,
            pb::tensor_proto::DataType::Float,
            parts.scales.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        tensor(
            zp.clone(),
            &scale_shape,
            ty,
            pack(&mut parts.zero_points.iter().map(|&z| i32::from(z))),
        ),
    ];
    let mut attribute = vec![];
    for (key, v) in [("axis", axis), ("block_size", block)] {
        if let Some(v) = v {
            attribute.push(pb::AttributeProto {
                name: Some(key.into()),
                i: Some(v),
                r#type: Some(pb::attribute_proto::AttributeType::Int as i32),
                ..Default::default()
            });
        }
    }
    let node = pb::NodeProto {
        name: Some(fresh(format!("{name}.dequantize"))),
        op_type: Some("DequantizeLinear".into()),
        domain: Some(String::new()),
        input: vec![q, sc, zp],
        output: vec![name.to_string()],
        attribute,
        ..Default::default()
    };
    Some((inits, node))
}

/// The `ai.onnx` opset mcc writes.
pub const EXPORT_OPSET: i64 = 21;
/// The ONNX IR version matching [`EXPORT_OPSET`].
const IR_VERSION: i64 = 10;

fn value_info(name: &str, ty: &TensorType) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value as DV};
    let shape = ty.shape.as_ref().map(|dims| pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: match d {
                    Dim::Fixed(n) => Some(DV::DimValue(*n as i64)),
                    Dim::Sym(s) => Some(DV::DimParam(s.clone())),
                    Dim::Unknown => None,
                },
                denotation: None,
            })
            .collect(),
    });
    pb::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(dtype_code(ty.dtype)),
                shape,
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn attribute(op: &Op, key: &str, v: &AttrValue) -> Result<pb::AttributeProto, String> {
    use pb::attribute_proto::AttributeType as T;
    let mut a = pb::AttributeProto {
        name: Some(key.to_string()),
        ..Default::default()
    };
    let ty = match (op, key, v) {
        (Op::Cast(_), "to", AttrValue::Str(s)) => {
            let d = DType::from_name(s).ok_or_else(|| format!("unknown element type `{s}`"))?;
            a.i = Some(i64::from(dtype_code(d)));
            T::Int
        }
        (Op::SpaceToDepth(_), "mode", _) => {
            return Err(format!(
                "SpaceToDepth's `mode` is opset 28's; at opset {EXPORT_OPSET} the only order is DCR"
            ));
        }
        (Op::Softmax(_) | Op::LogSoftmax(_), "legacy_2d", _) => {
            return Err("it still has opset < 13 softmax semantics (`legacy_2d`) that canonicalization could not remove".into());
        }
        (_, _, AttrValue::Int(i)) => {
            a.i = Some(*i);
            T::Int
        }
        (_, _, AttrValue::Float(f)) => {
            a.f = Some(*f);
            T::Float
        }
        (_, _, AttrValue::Ints(v)) => {
            a.ints = v.clone();
            T::Ints
        }
        (_, _, AttrValue::Floats(v)) => {
            a.floats = v.clone();
            T::Floats
        }
        (_, _, AttrValue::Str(s)) => {
            a.s = Some(s.as_bytes().to_vec());
            T::String
        }
        (_, _, AttrValue::Tensor(t)) => {
            a.t = Some(to_proto("", t));
            T::Tensor
        }
    };
    a.r#type = Some(ty as i32);
    Ok(a)
}

/// Serializes a graph as an ONNX model.
pub fn export(graph: &Graph) -> Result<Vec<u8>, ExportError> {
    let order = graph
        .topo_order()
        .map_err(|e| ExportError::Graph(e.to_string()))?;
    let mut g = pb::GraphProto {
        name: Some(graph.name.clone()),
        ..Default::default()
    };
    for &v in graph.inputs() {
        let val = graph.value(v);
        g.input.push(value_info(&val.name, &val.ty));
    }
    // Names the unfused epilogues may take without clashing with the graph's own.
    let mut taken: std::collections::HashSet<String> = graph
        .value_ids()
        .map(|v| graph.value(v).name.clone())
        .collect();
    taken.extend(
        graph
            .node_ids()
            .into_iter()
            .filter_map(|n| graph.node(n).map(|x| x.name.clone())),
    );
    let mut fresh = |base: String| {
        let name = (0..)
            .map(|i| {
                if i == 0 {
                    base.clone()
                } else {
                    format!("{base}.{i}")
                }
            })
            .find(|c| !taken.contains(c))
            .unwrap_or(base);
        taken.insert(name.clone());
        name
    };
    for v in graph.consts_in_use_order(&order) {
        let val = graph.value(v);
        match &val.def {
            ValueDef::Const(ConstData::Dense(t)) => g.initializer.push(to_proto(&val.name, t)),
            ValueDef::Const(ConstData::Stored(s)) => {
                let dq = (stored_form(s) == StoredForm::DequantizeLinear)
                    .then(|| dequantize(&val.name, s, &mut fresh))
                    .flatten();
                match dq {
                    Some((inits, node)) => {
                        g.initializer.extend(inits);
                        g.node.push(node);
                    }
                    // Encodings ONNX cannot say are written decoded.
                    None => g.initializer.push(to_proto(&val.name, s.decoded())),
                }
            }
            _ => return Err(ExportError::Elided(val.name.clone())),
        }
    }
    for n in order {
        let Some(node) = graph.node(n) else { continue };
        let err = |message: String| ExportError::Node {
            node: node.name.clone(),
            op: node.op.name().into(),
            message,
        };
        // Integer layers are written as ONNX Runtime's QDQ pattern.
        if matches!(node.op, Op::QLinearConv(_) | Op::QLinearMatMul(_)) {
            let (inits, nodes) = qdq(graph, node, &mut fresh).map_err(err)?;
            g.initializer.extend(inits);
            g.node.extend(nodes);
            continue;
        }
        // So is a dynamically quantized product, as standard operators.
        if matches!(node.op, Op::DynamicQuantMatMul(_)) {
            let (inits, nodes) = dynamic_matmul(graph, node, &mut fresh).map_err(err)?;
            g.initializer.extend(inits);
            g.node.extend(nodes);
            continue;
        }
        // An activation epilogue (an mcc extension) is written back as its own node.
        let mut op = node.op.clone();
        let epilogue = op.epilogue().map_err(err)?;
        op.set_epilogue(None);
        let attribute = attributes(&op).map_err(err)?;
        let mut outputs: Vec<String> = node
            .outputs
            .iter()
            .map(|&o| graph.value(o).name.clone())
            .collect();
        let final_output = outputs.first().cloned().unwrap_or_default();
        if epilogue.is_some() {
            outputs[0] = fresh(format!("{final_output}.pre_activation"));
        }
        g.node.push(pb::NodeProto {
            name: Some(node.name.clone()),
            op_type: Some(op.name().to_string()),
            domain: Some(String::new()),
            input: node
                .inputs
                .iter()
                .map(|i| i.map(|v| graph.value(v).name.clone()).unwrap_or_default())
                .collect(),
            output: outputs.clone(),
            attribute,
            ..Default::default()
        });
        if let Some(epilogue) = epilogue {
            let (act, consts) = epilogue.op();
            let mut inputs = vec![outputs[0].clone()];
            for (i, t) in consts.iter().enumerate() {
                let cname = fresh(format!(
                    "{}.activation.{}",
                    node.name,
                    ["min", "max"].get(i).copied().unwrap_or("arg")
                ));
                g.initializer.push(to_proto(&cname, t));
                inputs.push(cname);
            }
            let attribute = attributes(&act).map_err(err)?;
            g.node.push(pb::NodeProto {
                name: Some(fresh(format!("{}.activation", node.name))),
                op_type: Some(act.name().to_string()),
                domain: Some(String::new()),
                input: inputs,
                output: vec![final_output],
                attribute,
                ..Default::default()
            });
        }
    }
    for &v in graph.outputs() {
        let val = graph.value(v);
        g.output.push(value_info(&val.name, &val.ty));
    }
    let model = pb::ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(EXPORT_OPSET),
        }],
        producer_name: Some("mcc".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(g),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// Writes a graph as an ONNX file, atomically (a failed write leaves no partial file).
pub fn export_file(graph: &Graph, path: &Path) -> Result<(), ExportError> {
    let bytes = export(graph)?;
    let io = |cause| ExportError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let tmp = path.with_extension("onnx.partial");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// A QLinearConv or QLinearMatMul as the QDQ pattern ONNX Runtime fuses back into an
/// integer layer: `DequantizeLinear` of the input, weights and i32 bias (at scale
/// `x_scale · w_scale`), the float layer (`Conv`; `Gemm` for a 2-D product, else `MatMul` and
/// `Add`), its activation, and `QuantizeLinear` to the output. ONNX Runtime requantizes in
/// float, so its results agree with mcc's fixed-point ones within one output step.
fn qdq(
    graph: &Graph,
    node: &mcc_ir::Node,
    fresh: &mut dyn FnMut(String) -> String,
) -> Result<(Vec<pb::TensorProto>, Vec<pb::NodeProto>), String> {
    use mcc_runtime::quant::QAct;
    let name = |i: usize| -> Option<String> {
        node.inputs
            .get(i)
            .copied()
            .flatten()
            .map(|v| graph.value(v).name.clone())
    };
    let need = |i: usize| name(i).ok_or_else(|| format!("operand {i} is missing"));
    let mk = |op: &Op,
              inputs: Vec<String>,
              output: String,
              label: &str,
              fresh: &mut dyn FnMut(String) -> String|
     -> Result<pb::NodeProto, String> {
        part(op, inputs, output, fresh(format!("{}.{label}", node.name)))
    };
    let (layer, w_axis, act) = match &node.op {
        Op::QLinearConv(c) => (
            Op::Conv(mcc_ir::op::Conv {
                auto_pad: c.auto_pad,
                dilations: c.dilations.clone(),
                group: c.group,
                kernel_shape: c.kernel_shape.clone(),
                pads: c.pads.clone(),
                strides: c.strides.clone(),
                ..Default::default()
            }),
            0,
            node.op.q_activation()?,
        ),
        Op::QLinearMatMul(_) => (Op::MatMul(Default::default()), 1, node.op.q_activation()?),
        _ => return Err("not an integer layer".into()),
    };
    let out = graph.value(node.outputs[0]).name.clone();
    let mut inits = vec![];
    let mut nodes = vec![];
    let dq = |axis: i64| {
        Op::DequantizeLinear(mcc_ir::op::DequantizeLinear {
            axis,
            block_size: 0,
        })
    };
    let xf = fresh(format!("{out}.input"));
    nodes.push(mk(
        &dq(1),
        vec![need(0)?, need(1)?, need(2)?],
        xf.clone(),
        "dequantize_input",
        fresh,
    )?);
    let wf = fresh(format!("{}.weights", node.name));
    nodes.push(mk(
        &dq(w_axis),
        vec![need(3)?, need(4)?, need(5)?],
        wf.clone(),
        "dequantize_weights",
        fresh,
    )?);
    let bias = match name(8) {
        None => None,
        Some(b) => {
            let data = |i: usize| {
                node.inputs
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|v| graph.const_data(v))
                    .and_then(|t| t.as_f32())
                    .map(|a| a.iter().copied().collect::<Vec<f32>>())
                    .ok_or_else(|| format!("operand {i} must be a constant f32 scale"))
            };
            let (sx, sw) = (data(1)?, data(4)?);
            let sx = sx.first().copied().unwrap_or(1.0);
            let bscale: Vec<f32> = sw.iter().map(|s| sx * s).collect();
            let sname = fresh(format!("{}.bias_scale", node.name));
            let scale_t =
                mcc_ir::Tensor::from_vec(&[bscale.len()], bscale).map_err(|e| e.to_string())?;
            let scale_t = if sw.len() == 1 {
                mcc_ir::Tensor::scalar(sx * sw[0])
            } else {
                scale_t
            };
            inits.push(to_proto(&sname, &scale_t));
            let bf = fresh(format!("{}.bias", node.name));
            nodes.push(mk(
                &dq(0),
                vec![b, sname],
                bf.clone(),
                "dequantize_bias",
                fresh,
            )?);
            Some(bf)
        }
    };
    let rank = graph
        .value(node.inputs[0].ok_or("operand 0 is missing")?)
        .ty
        .rank();
    let pre = fresh(format!("{out}.float"));
    let mut cur = match (&layer, bias) {
        (Op::Conv(_), b) => {
            let mut ins = vec![xf, wf];
            ins.extend(b);
            nodes.push(mk(&layer, ins, pre.clone(), "float", fresh)?);
            pre
        }
        (_, Some(b)) if rank == Some(2) => {
            nodes.push(mk(
                &Op::Gemm(Default::default()),
                vec![xf, wf, b],
                pre.clone(),
                "float",
                fresh,
            )?);
            pre
        }
        (_, b) => {
            nodes.push(mk(&layer, vec![xf, wf], pre.clone(), "float", fresh)?);
            match b {
                None => pre,
                Some(b) => {
                    let sum = fresh(format!("{out}.biased"));
                    nodes.push(mk(
                        &Op::Add(Default::default()),
                        vec![pre, b],
                        sum.clone(),
                        "bias",
                        fresh,
                    )?);
                    sum
                }
            }
        }
    };
    match act {
        QAct::None => {}
        QAct::Relu => {
            let a = fresh(format!("{out}.activated"));
            nodes.push(mk(
                &Op::Relu(Default::default()),
                vec![cur],
                a.clone(),
                "activation",
                fresh,
            )?);
            cur = a;
        }
        QAct::Clip { min, max } => {
            let (lo, hi) = (
                fresh(format!("{}.clip_min", node.name)),
                fresh(format!("{}.clip_max", node.name)),
            );
            inits.push(to_proto(&lo, &mcc_ir::Tensor::scalar(min)));
            inits.push(to_proto(&hi, &mcc_ir::Tensor::scalar(max)));
            let a = fresh(format!("{out}.activated"));
            nodes.push(mk(
                &Op::Clip(Default::default()),
                vec![cur, lo, hi],
                a.clone(),
                "activation",
                fresh,
            )?);
            cur = a;
        }
    }
    let q = Op::QuantizeLinear(mcc_ir::op::QuantizeLinear::default());
    nodes.push(mk(
        &q,
        vec![cur, need(6)?, need(7)?],
        out,
        "quantize_output",
        fresh,
    )?);
    Ok((inits, nodes))
}

/// One node of a pattern an mcc op is written as.
fn part(
    op: &Op,
    input: Vec<String>,
    output: String,
    name: String,
) -> Result<pb::NodeProto, String> {
    Ok(pb::NodeProto {
        name: Some(name),
        op_type: Some(op.name().to_string()),
        domain: Some(String::new()),
        input,
        output: vec![output],
        attribute: attributes(op)?,
        ..Default::default()
    })
}

/// A `DynamicQuantMatMul` in standard ONNX operators that compute the same values: each row's
/// range (`ReduceMin`/`ReduceMax` over the last axis, widened to hold 0), its scale (1 where
/// it is at most f32's smallest normal number) and zero point, the codes (`Round`, `Clip`),
/// the product of the centred codes with the i8 weights (`Cast` to f32, `MatMul`: exact while
/// its partial sums stay below 2^24), then `· (s_row · w_scale) + bias` and the clamp — the
/// evaluator's f32 operations in its order.
fn dynamic_matmul(
    graph: &Graph,
    node: &mcc_ir::Node,
    fresh: &mut dyn FnMut(String) -> String,
) -> Result<(Vec<pb::TensorProto>, Vec<pb::NodeProto>), String> {
    use mcc_ir::Tensor;
    use mcc_ir::op;
    use mcc_runtime::quant::QAct;
    let operand = |i: usize| -> Option<String> {
        node.inputs
            .get(i)
            .copied()
            .flatten()
            .map(|v| graph.value(v).name.clone())
    };
    let need = |i: usize| operand(i).ok_or_else(|| format!("operand {i} is missing"));
    let out = graph.value(node.outputs[0]).name.clone();
    let (mut inits, mut nodes) = (vec![], vec![]);
    let mut konst = |label: &str, t: Tensor, fresh: &mut dyn FnMut(String) -> String| {
        let n = fresh(format!("{}.{label}", node.name));
        inits.push(to_proto(&n, &t));
        n
    };
    let axes = konst(
        "axes",
        Tensor::from_vec(&[1], vec![-1i64]).map_err(|e| e.to_string())?,
        fresh,
    );
    let zero = konst("zero", Tensor::scalar(0f32), fresh);
    let one = konst("one", Tensor::scalar(1f32), fresh);
    let top = konst("top", Tensor::scalar(255f32), fresh);
    let tiny = konst("smallest_normal", Tensor::scalar(f32::MIN_POSITIVE), fresh);
    let mut step =
        |o: Op, ins: Vec<String>, label: &str, fresh: &mut dyn FnMut(String) -> String| {
            let v = fresh(format!("{out}.{label}"));
            let name = fresh(format!("{}.{label}", node.name));
            part(&o, ins, v.clone(), name).map(|p| {
                nodes.push(p);
                v
            })
        };
    let a = need(0)?;
    let keep = |keepdims| op::ReduceMin {
        keepdims,
        noop_with_empty_axes: 0,
    };
    let lo = step(
        Op::ReduceMin(keep(1)),
        vec![a.clone(), axes.clone()],
        "row_min",
        fresh,
    )?;
    let hi = step(
        Op::ReduceMax(op::ReduceMax {
            keepdims: 1,
            noop_with_empty_axes: 0,
        }),
        vec![a.clone(), axes],
        "row_max",
        fresh,
    )?;
    let lo = step(
        Op::Min(Default::default()),
        vec![lo, zero.clone()],
        "range_lo",
        fresh,
    )?;
    let hi = step(
        Op::Max(Default::default()),
        vec![hi, zero],
        "range_hi",
        fresh,
    )?;
    let width = step(
        Op::Sub(Default::default()),
        vec![hi, lo.clone()],
        "range",
        fresh,
    )?;
    let s0 = step(
        Op::Div(Default::default()),
        vec![width, top.clone()],
        "scale_raw",
        fresh,
    )?;
    // s0 ≤ smallest normal ⇔ max(s0, smallest normal) = smallest normal.
    let floor = step(
        Op::Max(Default::default()),
        vec![s0.clone(), tiny.clone()],
        "scale_floor",
        fresh,
    )?;
    let small = step(
        Op::Equal(Default::default()),
        vec![floor, tiny],
        "scale_tiny",
        fresh,
    )?;
    let s = step(
        Op::Where(Default::default()),
        vec![small, one, s0],
        "scale",
        fresh,
    )?;
    let neg = step(Op::Neg(Default::default()), vec![lo], "neg_lo", fresh)?;
    let z = step(
        Op::Div(Default::default()),
        vec![neg, s.clone()],
        "zp_raw",
        fresh,
    )?;
    let z = step(Op::Round(Default::default()), vec![z], "zp_round", fresh)?;
    let bot = konst("bottom", Tensor::scalar(0f32), fresh);
    let z = step(
        Op::Clip(Default::default()),
        vec![z, bot.clone(), top.clone()],
        "zero_point",
        fresh,
    )?;
    let q = step(
        Op::Div(Default::default()),
        vec![a, s.clone()],
        "scaled",
        fresh,
    )?;
    let q = step(Op::Round(Default::default()), vec![q], "rounded", fresh)?;
    let q = step(
        Op::Add(Default::default()),
        vec![q, z.clone()],
        "shifted",
        fresh,
    )?;
    let q = step(
        Op::Clip(Default::default()),
        vec![q, bot, top],
        "codes",
        fresh,
    )?;
    let c = step(Op::Sub(Default::default()), vec![q, z], "centred", fresh)?;
    let cast = Op::Cast(op::Cast {
        to: mcc_ir::DType::F32,
        saturate: 1,
    });
    let w = step(cast, vec![need(1)?], "weights", fresh)?;
    let acc = step(
        Op::MatMul(Default::default()),
        vec![c, w],
        "accumulator",
        fresh,
    )?;
    let sc = step(
        Op::Mul(Default::default()),
        vec![s, need(2)?],
        "out_scale",
        fresh,
    )?;
    let mut y = step(Op::Mul(Default::default()), vec![acc, sc], "product", fresh)?;
    if let Some(b) = operand(3) {
        y = step(Op::Add(Default::default()), vec![y, b], "biased", fresh)?;
    }
    // The last node writes the op's own output.
    let (last, ins) = match node.op.q_activation()? {
        QAct::None => (Op::Identity(Default::default()), vec![y]),
        QAct::Relu => (Op::Relu(Default::default()), vec![y]),
        QAct::Clip { min, max } => {
            let (l, h) = (
                konst("clip_min", Tensor::scalar(min), fresh),
                konst("clip_max", Tensor::scalar(max), fresh),
            );
            (Op::Clip(Default::default()), vec![y, l, h])
        }
    };
    let name = fresh(format!("{}.output", node.name));
    nodes.push(part(&last, ins, out, name)?);
    Ok((inits, nodes))
}

/// An op's attributes as ONNX writes them: those that differ from their defaults, and the
/// ones ONNX requires ([`required_attrs`]).
fn attributes(op: &Op) -> Result<Vec<pb::AttributeProto>, String> {
    let mut attrs = op.attrs();
    for (k, v) in required_attrs(op) {
        if !attrs.iter().any(|(name, _)| *name == k) {
            attrs.push((k, v));
        }
    }
    attrs.iter().map(|(k, v)| attribute(op, k, v)).collect()
}

/// The attributes ONNX requires (it gives them no default), written even when they equal
/// mcc's default, which the op's attribute list leaves out: `Concat`'s `axis`, `Cast`'s `to`,
/// `LRN`'s `size`, the pools' `kernel_shape`, `DepthToSpace`'s and `SpaceToDepth`'s
/// `blocksize`; and the modes of `Resize` and `DepthToSpace`, whose defaults changed between
/// opsets, so a reader never has to know which ones the file's opset has.
fn required_attrs(op: &Op) -> Vec<(&'static str, AttrValue)> {
    use mcc_ir::attr::AttrType;
    match op {
        Op::Resize(r) => [
            ("mode", r.mode.to_attr()),
            (
                "coordinate_transformation_mode",
                r.coordinate_transformation_mode.to_attr(),
            ),
            ("nearest_mode", r.nearest_mode.to_attr()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect(),
        Op::Concat(c) => vec![("axis", AttrValue::Int(c.axis))],
        Op::Cast(c) => c.to.to_attr().map(|v| ("to", v)).into_iter().collect(),
        Op::Lrn(l) => vec![("size", AttrValue::Int(l.size))],
        Op::DepthToSpace(d) => vec![
            ("blocksize", AttrValue::Int(d.blocksize)),
            ("mode", AttrValue::Str(d.mode.name().into())),
        ],
        Op::SpaceToDepth(d) => vec![("blocksize", AttrValue::Int(d.blocksize))],
        Op::MaxPool(p) => vec![("kernel_shape", AttrValue::Ints(p.kernel_shape.clone()))],
        Op::AveragePool(p) => vec![("kernel_shape", AttrValue::Ints(p.kernel_shape.clone()))],
        _ => vec![],
    }
}

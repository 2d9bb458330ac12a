//! ONNX → `mcc-ir`: decode, translate each node to newest-opset semantics, type, verify.
//!
//! Opset upgrades done here (the IR only knows the newest form):
//! `Unsqueeze`/`Squeeze` (< 13), `ReduceSum` (< 13) and `ReduceMax/Min/Mean` (< 18): the
//! `axes` attribute becomes an operand; `Clip` (< 11): `min`/`max` attributes become
//! operands; `Softmax`/`LogSoftmax` (< 13): axis defaults to 1 and `legacy_2d` keeps the
//! 2-D coercion; `Reshape` (< 5), `Pad` (< 11), `Slice` (< 10): attributes become operands;
//! `Dropout` (< 12): `ratio` becomes an operand; `Resize` (< 11) and `Upsample` (7–9) become
//! `Resize` with asymmetric coordinates and nearest rounding down; training-only attributes
//! are checked and dropped. Graph inputs that are also initializers (IR < 4 exporters)
//! become constants, and `Constant` nodes become constants.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mcc_ir::{AttrError, AttrValue, DType, Dim, Graph, Op, Tensor, TensorType, ValueId};
use prost::Message;

use crate::ImportError;
use crate::pb;
use crate::tensor::{dtype_of, from_proto};

/// An imported model.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The graph, verified and typed.
    pub graph: Graph,
    /// The file's `ai.onnx` opset.
    pub opset: i64,
    /// The file's IR version.
    pub ir_version: i64,
    /// The producer named in the file.
    pub producer: String,
    /// The external data files its tensors name (resolved against the model's folder,
    /// sorted, each once): with the model file, everything the import read.
    pub external: Vec<std::path::PathBuf>,
}

/// The external data files the tensors of `g` (initializers and attribute tensors, in
/// subgraphs too) name, resolved against `base`.
fn external_files(
    g: &pb::GraphProto,
    base: &Path,
    out: &mut std::collections::BTreeSet<std::path::PathBuf>,
) {
    let mut tensor = |t: &pb::TensorProto| {
        if t.data_location == Some(1) {
            for kv in &t.external_data {
                if kv.key.as_deref() == Some("location") {
                    out.insert(base.join(kv.value.as_deref().unwrap_or_default()));
                }
            }
        }
    };
    g.initializer.iter().for_each(&mut tensor);
    let mut subgraphs = vec![];
    for a in g.node.iter().flat_map(|n| &n.attribute) {
        a.t.iter().chain(&a.tensors).for_each(&mut tensor);
        subgraphs.extend(a.g.iter().chain(&a.graphs));
    }
    for sub in subgraphs {
        external_files(sub, base, out);
    }
}

/// Imports an ONNX model file; external data is read relative to its folder.
pub fn import(path: &Path) -> Result<Imported, ImportError> {
    let bytes = std::fs::read(path).map_err(|cause| ImportError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    import_bytes(&bytes, path, path.parent())
}

/// Imports a model from bytes; `path` names it in messages, `base` is where external data
/// files are looked up (`None`: external data is an error).
pub fn import_bytes(
    bytes: &[u8],
    path: &Path,
    base: Option<&Path>,
) -> Result<Imported, ImportError> {
    let model = pb::ModelProto::decode(bytes).map_err(|e| ImportError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let graph_err = |message: String| ImportError::Graph {
        path: path.to_path_buf(),
        message,
    };
    let Some(g) = model.graph.as_ref() else {
        return Err(graph_err(if bytes.is_empty() {
            "the file is empty".into()
        } else {
            "the model has no graph".into()
        }));
    };
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(1);
    let mut b = Builder {
        graph: Graph::new(g.name.clone().unwrap_or_else(|| "main".into())),
        env: HashMap::new(),
        path: path.to_path_buf(),
    };

    // Every initializer's declared size first, so a model declaring more than the limit is
    // refused before anything is read or allocated.
    let mut declared = 0u128;
    for t in &g.initializer {
        declared += crate::tensor::declared_bytes(t, t.name.as_deref().unwrap_or_default())?;
        if declared > crate::tensor::MAX_WEIGHT_BYTES {
            return Err(graph_err(format!(
                "the initializers declare more than {} bytes (4 GiB), mcc's limit for one model",
                crate::tensor::MAX_WEIGHT_BYTES
            )));
        }
    }
    let mut inits: Vec<(String, Tensor)> = Vec::with_capacity(g.initializer.len());
    for t in &g.initializer {
        let name = t.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(graph_err("an initializer has no name".into()));
        }
        inits.push((name, from_proto(t, base)?));
    }
    if !g.sparse_initializer.is_empty() {
        return Err(graph_err(
            "sparse initializers are not supported yet".into(),
        ));
    }
    let mut init_index: HashMap<String, usize> = HashMap::new();
    for (i, (n, _)) in inits.iter().enumerate() {
        if init_index.insert(n.clone(), i).is_some() {
            return Err(graph_err(format!("two initializers are named `{n}`")));
        }
    }
    // Graph inputs; old exporters also list every initializer here.
    let mut taken = vec![false; inits.len()];
    for vi in &g.input {
        let name = vi.name.clone().unwrap_or_default();
        if let Some(&i) = init_index.get(&name) {
            taken[i] = true;
            let id = b.graph.add_const(name.clone(), inits[i].1.clone());
            b.define(&name, id)?;
            continue;
        }
        let ty = value_type(vi).map_err(|m| graph_err(format!("input `{name}`: {m}")))?;
        let id = b.graph.add_input(name.clone(), ty);
        b.define(&name, id)?;
    }
    for (i, (name, t)) in inits.into_iter().enumerate() {
        if !taken[i] {
            let id = b.graph.add_const(name.clone(), t);
            b.define(&name, id)?;
        }
    }

    // Nodes: create them (and their outputs) first, then connect operands by name, so a
    // file whose nodes are not in topological order still imports.
    let mut node_names: HashMap<String, ()> = HashMap::new();
    let mut pending: Vec<(mcc_ir::NodeId, Vec<Option<Operand>>, String, String)> = vec![];
    for (idx, n) in g.node.iter().enumerate() {
        let op_type = n.op_type.clone().unwrap_or_default();
        let mut name = n
            .name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{op_type}_{idx}"));
        if node_names.contains_key(&name) {
            name = (1..)
                .map(|k| format!("{name}.{k}"))
                .find(|c| !node_names.contains_key(c))
                .unwrap_or(name);
        }
        node_names.insert(name.clone(), ());
        let domain = n.domain.clone().unwrap_or_default();
        let node_err = |message: String| ImportError::Node {
            node: name.clone(),
            op: op_type.clone(),
            message,
        };
        if !(domain.is_empty() || domain == "ai.onnx") || Op::MCC_ONLY.contains(&op_type.as_str()) {
            return Err(unsupported(&name, &op_type, &domain));
        }
        let mut attrs = Vec::with_capacity(n.attribute.len());
        for a in &n.attribute {
            let an = a.name.clone().unwrap_or_default();
            attrs.push((
                an.clone(),
                attr_value(a, base).map_err(|m| node_err(format!("attribute `{an}`: {m}")))?,
            ));
        }
        if op_type == "Constant" {
            let [out] = n.output.as_slice() else {
                return Err(node_err("Constant has one output".into()));
            };
            let t = constant_value(attrs).map_err(node_err)?;
            let id = b.graph.add_const(out.clone(), t);
            b.define(out, id)?;
            continue;
        }
        let mut inputs: Vec<Option<Operand>> = n
            .input
            .iter()
            .map(|s| {
                if s.is_empty() {
                    None
                } else {
                    Some(Operand::Name(s.clone()))
                }
            })
            .collect();
        // The operator the node becomes (an old one may become its successor).
        let mut kind = op_type.clone();
        upgrade(
            &mut kind,
            opset,
            &mut attrs,
            &mut inputs,
            &mut b.graph,
            &name,
        )
        .map_err(node_err)?;
        let op = Op::from_attrs(&kind, attrs).map_err(|e| match e {
            AttrError::UnknownOp(_) => unsupported(&name, &op_type, &domain),
            other => node_err(other.to_string()),
        })?;
        let mut outs: Vec<String> = n.output.clone();
        while outs.last().is_some_and(String::is_empty) {
            outs.pop();
        }
        let outs: Vec<(String, TensorType)> = outs
            .into_iter()
            .enumerate()
            .map(|(k, o)| {
                (
                    if o.is_empty() {
                        format!("{name}.unused{k}")
                    } else {
                        o
                    },
                    TensorType::unknown(DType::F32),
                )
            })
            .collect();
        let id = b.graph.add_node(name.clone(), op, vec![], outs);
        let out_ids = b
            .graph
            .node(id)
            .map(|n| n.outputs.clone())
            .unwrap_or_default();
        for o in out_ids {
            let oname = b.graph.value(o).name.clone();
            b.define(&oname, o)?;
        }
        pending.push((id, inputs, name, op_type));
    }
    for (id, inputs, name, op_type) in pending {
        let mut resolved = Vec::with_capacity(inputs.len());
        for i in inputs {
            resolved.push(match i {
                None => None,
                Some(Operand::Value(v)) => Some(v),
                Some(Operand::Name(s)) => {
                    Some(*b.env.get(&s).ok_or_else(|| ImportError::Node {
                        node: name.clone(),
                        op: op_type.clone(),
                        message: format!(
                            "reads `{s}`, which no node, input or initializer defines"
                        ),
                    })?)
                }
            });
        }
        let _ = b.graph.set_inputs(id, resolved);
    }
    let mut outputs = vec![];
    for vi in &g.output {
        let name = vi.name.clone().unwrap_or_default();
        outputs.push(*b.env.get(&name).ok_or_else(|| {
            graph_err(format!(
                "graph output `{name}` is not defined by any node, input or initializer"
            ))
        })?);
    }
    if outputs.is_empty() {
        return Err(graph_err("the graph has no outputs".into()));
    }
    b.graph.set_outputs(outputs);
    if let Err(e) = b.graph.topo_order() {
        return Err(graph_err(e.to_string()));
    }
    mcc_ir::infer_all(&mut b.graph).map_err(|(node, op, e)| ImportError::Shape {
        node,
        op: op.to_string(),
        message: e.0,
    })?;
    mcc_ir::verify(&b.graph)?;
    let mut external = std::collections::BTreeSet::new();
    if let (Some(base), Some(g)) = (base, model.graph.as_ref()) {
        external_files(g, base, &mut external);
    }
    Ok(Imported {
        external: external.into_iter().collect(),
        graph: b.graph,
        opset,
        ir_version: model.ir_version.unwrap_or(0),
        producer: format!(
            "{} {}",
            model.producer_name.unwrap_or_default(),
            model.producer_version.unwrap_or_default()
        )
        .trim()
        .to_string(),
    })
}

/// A node operand before names are resolved.
enum Operand {
    Name(String),
    Value(ValueId),
}

struct Builder {
    graph: Graph,
    env: HashMap<String, ValueId>,
    path: PathBuf,
}

impl Builder {
    fn define(&mut self, name: &str, id: ValueId) -> Result<(), ImportError> {
        if self.env.insert(name.to_string(), id).is_some() {
            return Err(ImportError::Graph {
                path: self.path.clone(),
                message: format!("value `{name}` is defined twice"),
            });
        }
        Ok(())
    }
}

fn unsupported(node: &str, op: &str, domain: &str) -> ImportError {
    ImportError::UnsupportedOp {
        node: node.into(),
        op: op.into(),
        domain: domain.into(),
        supported: Op::onnx_names().collect::<Vec<_>>().join(", "),
    }
}

fn value_type(vi: &pb::ValueInfoProto) -> Result<TensorType, String> {
    let Some(pb::type_proto::Value::TensorType(t)) =
        vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err("only tensor inputs are supported".into());
    };
    let dtype = dtype_of(t.elem_type.unwrap_or(0))?;
    let shape = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .enumerate()
            .map(|(axis, d)| match &d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if *v >= 0 => {
                    Dim::Fixed(*v as usize)
                }
                // A placeholder (`?`, `-1`: no letter, as Paddle's exporter writes every free
                // size) names no size: each is a size of its own.
                Some(pb::tensor_shape_proto::dimension::Value::DimParam(p))
                    if !p.chars().any(|c| c.is_ascii_alphabetic()) =>
                {
                    Dim::Sym(sanitize_sym(&format!(
                        "{}_{axis}",
                        vi.name.as_deref().unwrap_or("input")
                    )))
                }
                Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) => {
                    Dim::Sym(sanitize_sym(p))
                }
                _ => Dim::Unknown,
            })
            .collect()
    });
    Ok(TensorType { dtype, shape })
}

/// Symbol names become text-form words: letters, digits and `_`.
fn sanitize_sym(p: &str) -> String {
    let s: String = p
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

fn attr_value(a: &pb::AttributeProto, base: Option<&Path>) -> Result<AttrValue, String> {
    use pb::attribute_proto::AttributeType as T;
    let ty = a
        .r#type
        .and_then(|t| T::try_from(t).ok())
        .unwrap_or(T::Undefined);
    let ty = if ty != T::Undefined {
        ty
    } else if a.f.is_some() {
        T::Float
    } else if a.i.is_some() {
        T::Int
    } else if a.s.is_some() {
        T::String
    } else if a.t.is_some() {
        T::Tensor
    } else if !a.floats.is_empty() {
        T::Floats
    } else if !a.ints.is_empty() {
        T::Ints
    } else {
        T::Undefined
    };
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| "a string attribute is not UTF-8".to_string())
    };
    Ok(match ty {
        T::Float => AttrValue::Float(a.f.unwrap_or(0.0)),
        T::Int => AttrValue::Int(a.i.unwrap_or(0)),
        T::String => AttrValue::Str(text(a.s.as_deref().unwrap_or_default())?),
        T::Floats => AttrValue::Floats(a.floats.clone()),
        T::Ints => AttrValue::Ints(a.ints.clone()),
        T::Tensor => AttrValue::Tensor(
            from_proto(
                a.t.as_ref().ok_or("tensor attribute without a tensor")?,
                base,
            )
            .map_err(|e| e.to_string())?,
        ),
        T::Graph | T::Graphs => {
            return Err("subgraph attributes (control flow) are not supported".into());
        }
        T::Undefined => return Err("the attribute has no value".into()),
        other => {
            return Err(format!(
                "attributes of kind {} are not supported",
                other.as_str_name()
            ));
        }
    })
}

fn constant_value(attrs: Vec<(String, AttrValue)>) -> Result<Tensor, String> {
    let [(k, v)] = attrs.as_slice() else {
        return Err("Constant needs exactly one value attribute".into());
    };
    let t = match (k.as_str(), v) {
        ("value", AttrValue::Tensor(t)) => t.clone(),
        ("value_float", AttrValue::Float(f)) => Tensor::scalar(*f),
        ("value_floats", AttrValue::Floats(f)) => {
            Tensor::from_vec(&[f.len()], f.clone()).map_err(|e| e.to_string())?
        }
        ("value_int", AttrValue::Int(i)) => Tensor::scalar(*i),
        ("value_ints", AttrValue::Ints(i)) => {
            Tensor::from_vec(&[i.len()], i.clone()).map_err(|e| e.to_string())?
        }
        (k, _) => return Err(format!("Constant attribute `{k}` is not supported")),
    };
    Ok(t)
}

fn take(attrs: &mut Vec<(String, AttrValue)>, key: &str) -> Option<AttrValue> {
    let i = attrs.iter().position(|(k, _)| k == key)?;
    Some(attrs.remove(i).1)
}

fn ints(v: &AttrValue, what: &str) -> Result<Vec<i64>, String> {
    match v {
        AttrValue::Ints(i) => Ok(i.clone()),
        AttrValue::Int(i) => Ok(vec![*i]),
        _ => Err(format!("`{what}` must be a list of integers")),
    }
}

fn float(v: &AttrValue, what: &str) -> Result<f32, String> {
    match v {
        AttrValue::Float(f) => Ok(*f),
        AttrValue::Int(i) => Ok(*i as f32),
        _ => Err(format!("`{what}` must be a float")),
    }
}

/// Puts a constant operand at `slot`, growing the operand list as needed.
fn put(
    graph: &mut Graph,
    inputs: &mut Vec<Option<Operand>>,
    slot: usize,
    node: &str,
    what: &str,
    t: Tensor,
) {
    let name = graph.fresh_value_name(&format!("{node}.{what}"));
    let id = graph.add_const(name, t);
    if inputs.len() <= slot {
        inputs.resize_with(slot + 1, || None);
    }
    inputs[slot] = Some(Operand::Value(id));
}

fn vec_i64(v: Vec<i64>) -> Tensor {
    let n = v.len();
    Tensor::from_vec(&[n], v).unwrap_or_else(|_| Tensor::scalar(0i64))
}

/// Sets a string attribute unless the node has it.
fn default_str(attrs: &mut Vec<(String, AttrValue)>, key: &str, value: &str) {
    if !attrs.iter().any(|(k, _)| k == key) {
        attrs.push((key.into(), AttrValue::Str(value.into())));
    }
}

/// Moves operand `from` to slot `to` (a gap becomes an absent operand).
fn move_operand(inputs: &mut Vec<Option<Operand>>, from: usize, to: usize) {
    let v = inputs.get_mut(from).and_then(Option::take);
    if inputs.len() <= to {
        inputs.resize_with(to + 1, || None);
    }
    inputs[to] = v;
}

/// Rewrites an older-opset node into the newest-opset form the IR uses; `op` becomes the
/// operator it is built as (`Upsample` becomes `Resize`).
fn upgrade(
    op: &mut String,
    opset: i64,
    attrs: &mut Vec<(String, AttrValue)>,
    inputs: &mut Vec<Option<Operand>>,
    graph: &mut Graph,
    node: &str,
) -> Result<(), String> {
    take(attrs, "consumed_inputs");
    match op.as_str() {
        // Resize 10 is `(X, scales)` with asymmetric coordinates, and Upsample (7: `scales` an
        // attribute, 9: an operand) the same for scales ≥ 1; nearest rounds down in both (as
        // PyTorch's nearest does; ONNX Runtime rounds opset-10 downsampling up instead).
        "Resize" if opset < 11 => {
            move_operand(inputs, 1, 2);
            default_str(attrs, "coordinate_transformation_mode", "asymmetric");
            default_str(attrs, "nearest_mode", "floor");
        }
        "Upsample" => {
            if opset < 7 {
                return Err(
                    "Upsample before opset 7 (height_scale/width_scale) is not supported".into(),
                );
            }
            if opset < 9 {
                let scales = take(attrs, "scales").ok_or("Upsample needs `scales`")?;
                let v = match scales {
                    AttrValue::Floats(f) => f,
                    _ => return Err("`scales` must be a list of floats".into()),
                };
                let n = v.len();
                let t = Tensor::from_vec(&[n], v).map_err(|e| e.to_string())?;
                put(graph, inputs, 2, node, "scales", t);
            } else {
                move_operand(inputs, 1, 2);
            }
            default_str(attrs, "coordinate_transformation_mode", "asymmetric");
            default_str(attrs, "nearest_mode", "floor");
            *op = "Resize".into();
        }
        "Resize"
            if attrs.iter().any(|(k, v)| {
                k == "coordinate_transformation_mode"
                    && *v == AttrValue::Str("tf_half_pixel_for_nn".into())
            }) =>
        {
            return Err("Resize's coordinate_transformation_mode `tf_half_pixel_for_nn` (opsets 11 and 12 only) is not supported".into());
        }
        "Unsqueeze" | "Squeeze" if opset < 13 => {
            if let Some(a) = take(attrs, "axes") {
                put(graph, inputs, 1, node, "axes", vec_i64(ints(&a, "axes")?));
            }
        }
        "Split" if opset < 13 => {
            if let Some(a) = take(attrs, "split") {
                put(graph, inputs, 1, node, "split", vec_i64(ints(&a, "split")?));
            }
        }
        "ReduceSum" if opset < 13 => {
            if let Some(a) = take(attrs, "axes") {
                put(graph, inputs, 1, node, "axes", vec_i64(ints(&a, "axes")?));
            }
        }
        "ReduceMax" | "ReduceMin" | "ReduceMean" if opset < 18 => {
            if let Some(a) = take(attrs, "axes") {
                put(graph, inputs, 1, node, "axes", vec_i64(ints(&a, "axes")?));
            }
        }
        "Clip" if opset < 11 => {
            if let Some(v) = take(attrs, "min") {
                put(
                    graph,
                    inputs,
                    1,
                    node,
                    "min",
                    Tensor::scalar(float(&v, "min")?),
                );
            }
            if let Some(v) = take(attrs, "max") {
                put(
                    graph,
                    inputs,
                    2,
                    node,
                    "max",
                    Tensor::scalar(float(&v, "max")?),
                );
            }
        }
        "Softmax" | "LogSoftmax" if opset < 13 => {
            if !attrs.iter().any(|(k, _)| k == "axis") {
                attrs.push(("axis".into(), AttrValue::Int(1)));
            }
            attrs.push(("legacy_2d".into(), AttrValue::Int(1)));
        }
        "Reshape" if opset < 5 => {
            if let Some(s) = take(attrs, "shape") {
                put(graph, inputs, 1, node, "shape", vec_i64(ints(&s, "shape")?));
            }
        }
        "Pad" if opset < 11 => {
            let pads = take(attrs, "pads").ok_or("Pad needs `pads`")?;
            put(
                graph,
                inputs,
                1,
                node,
                "pads",
                vec_i64(ints(&pads, "pads")?),
            );
            if let Some(v) = take(attrs, "value") {
                put(
                    graph,
                    inputs,
                    2,
                    node,
                    "value",
                    Tensor::scalar(float(&v, "value")?),
                );
            }
        }
        "Slice" if opset < 10 => {
            let starts = take(attrs, "starts").ok_or("Slice needs `starts`")?;
            let ends = take(attrs, "ends").ok_or("Slice needs `ends`")?;
            put(
                graph,
                inputs,
                1,
                node,
                "starts",
                vec_i64(ints(&starts, "starts")?),
            );
            put(
                graph,
                inputs,
                2,
                node,
                "ends",
                vec_i64(ints(&ends, "ends")?),
            );
            if let Some(a) = take(attrs, "axes") {
                put(graph, inputs, 3, node, "axes", vec_i64(ints(&a, "axes")?));
            }
        }
        "Dropout" => {
            if let Some(t) = take(attrs, "is_test")
                && t == AttrValue::Int(0)
            {
                return Err("training-mode Dropout (is_test=0) draws random masks; mcc compiles models for inference".into());
            }
            if opset < 12
                && let Some(r) = take(attrs, "ratio")
            {
                put(
                    graph,
                    inputs,
                    1,
                    node,
                    "ratio",
                    Tensor::scalar(float(&r, "ratio")?),
                );
            }
        }
        "BatchNormalization" => {
            take(attrs, "is_test");
            if let Some(s) = take(attrs, "spatial")
                && s != AttrValue::Int(1)
            {
                return Err("BatchNormalization with spatial=0 is not supported".into());
            }
            if let Some(t) = take(attrs, "training_mode")
                && t != AttrValue::Int(0)
            {
                return Err("training-mode BatchNormalization is not supported: mcc compiles trained models for inference".into());
            }
        }
        "Gemm" if opset < 7 => {
            take(attrs, "broadcast");
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" if opset < 7 => {
            if take(attrs, "axis").is_some() {
                return Err("opset < 7 broadcasting along an `axis` is not supported".into());
            }
            take(attrs, "broadcast");
        }
        "Cast" => {
            if let Some(to) = take(attrs, "to") {
                let d = match &to {
                    AttrValue::Int(c) => dtype_of(*c as i32)?,
                    AttrValue::Str(s) => match s.as_str() {
                        "FLOAT" => DType::F32,
                        "DOUBLE" => DType::F64,
                        "INT8" => DType::I8,
                        "INT16" => DType::I16,
                        "INT32" => DType::I32,
                        "INT64" => DType::I64,
                        "UINT8" => DType::U8,
                        "UINT16" => DType::U16,
                        "UINT32" => DType::U32,
                        "UINT64" => DType::U64,
                        "BOOL" => DType::Bool,
                        other => return Err(format!("Cast to `{other}` is not supported")),
                    },
                    _ => return Err("`to` must name an element type".into()),
                };
                attrs.push(("to".into(), AttrValue::Str(d.name().into())));
            }
        }
        _ => {}
    }
    Ok(())
}

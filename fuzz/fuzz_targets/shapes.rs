//! Fuzzes what a changed size or attribute does to the whole pipeline: a valid corpus model
//! (a CNN, a transformer, PyTorch's newer dynamic-batch exports) has its input sizes, its
//! attributes, its integer constants (the shape arithmetic) and its declared output sizes
//! changed as the input bytes say, then goes through import, specialization of its sizes
//! (with canonicalization), the reference evaluator, the exact merges, lowering and the
//! runtime. Each stage may refuse with an error; none may panic, and where both the
//! evaluator and native code run, they must agree.
#![no_main]

use std::sync::OnceLock;

use mcc_ir::{DType, Dim, Graph, Tensor};
use mcc_onnx::pb;
use pb::tensor_shape_proto::{Dimension, dimension};
use prost::Message;

/// The seed models, as bytes of the repository's corpus, with their external data (if any).
const SEEDS: &[(&str, &[u8], &[u8])] = &[
    ("vit_mini", include_bytes!("../../corpus/vit_mini.onnx"), &[]),
    (
        "vit_mini_dynamo",
        include_bytes!("../../corpus/vit_mini_dynamo.onnx"),
        include_bytes!("../../corpus/vit_mini_dynamo.onnx.data"),
    ),
    (
        "resnet_bn_dynamo",
        include_bytes!("../../corpus/resnet_bn_dynamo.onnx"),
        include_bytes!("../../corpus/resnet_bn_dynamo.onnx.data"),
    ),
    ("mobilenet_dw", include_bytes!("../../corpus/mobilenet_dw.onnx"), &[]),
    ("inception_mini", include_bytes!("../../corpus/inception_mini.onnx"), &[]),
];

/// The seeds decoded, external data moved into the tensors (so a mutated model is one
/// self-contained buffer).
fn seeds() -> &'static [pb::ModelProto] {
    static S: OnceLock<Vec<pb::ModelProto>> = OnceLock::new();
    S.get_or_init(|| {
        SEEDS
            .iter()
            .map(|(_, bytes, data)| {
                let mut m = pb::ModelProto::decode(*bytes).expect("a corpus model decodes");
                if let Some(g) = m.graph.as_mut() {
                    for t in &mut g.initializer {
                        inline(t, data);
                    }
                }
                m
            })
            .collect()
    })
}

/// Moves an external tensor's bytes (`offset`, `length` into `data`) into `raw_data`.
fn inline(t: &mut pb::TensorProto, data: &[u8]) {
    if t.external_data.is_empty() {
        return;
    }
    let key = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key.as_deref() == Some(k))
            .and_then(|e| e.value.as_deref()?.parse::<usize>().ok())
    };
    let off = key("offset").unwrap_or(0);
    let len = key("length").unwrap_or(data.len().saturating_sub(off));
    t.raw_data = Some(data[off..off + len].to_vec());
    t.external_data.clear();
    t.data_location = None;
}

/// Reads the fuzzer's bytes as choices.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn index(&mut self, n: usize) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let hi = self.byte()? as usize;
        let lo = self.byte()? as usize;
        Some((hi << 8 | lo) % n)
    }
    /// A size or index: mostly small (negative and zero included), sometimes huge.
    fn int(&mut self) -> Option<i64> {
        let b = self.byte()?;
        Some(match b {
            0..=191 => i64::from(b % 12) - 2,
            192..=223 => i64::from(b - 192) * 7,
            224..=247 => 1i64 << (b - 224 + 8),
            248 => i64::MAX,
            249 => i64::MIN,
            250 => -(1 << 40),
            _ => 1 << 62,
        })
    }
    fn float(&mut self) -> Option<f32> {
        let b = self.byte()?;
        Some(match b % 10 {
            0 => 0.0,
            1 => -1.0,
            2 => f32::NAN,
            3 => f32::INFINITY,
            4 => 1e-30,
            5 => 1e30,
            6 => 0.5,
            _ => f32::from(b) / 16.0,
        })
    }
}

/// A tensor type's shape, for changing.
fn shape_of(v: &mut pb::ValueInfoProto) -> Option<&mut pb::TensorShapeProto> {
    match v.r#type.as_mut()?.value.as_mut()? {
        pb::type_proto::Value::TensorType(t) => t.shape.as_mut(),
        _ => None,
    }
}

/// Applies up to 8 changes the bytes choose to `m` (a change that does not apply — an
/// attribute of a node without any — is skipped). True when a float attribute became
/// non-finite or extreme: then the evaluator and native code may legitimately disagree
/// (NaN through min/max, a variance of 1e-30), and only "no panic" is checked.
fn mutate(m: &mut pb::ModelProto, c: &mut Choices) -> bool {
    let mut wild = false;
    let Some(g) = m.graph.as_mut() else { return wild };
    for _ in 0..8 {
        let Some(kind) = c.byte() else { break };
        if change(g, kind, c) == Some(true) {
            wild = true;
        }
    }
    wild
}

/// One change of kind `kind` (see [`mutate`]); `None` when it does not apply, `Some(true)`
/// when it made a float attribute wild.
fn change(g: &mut pb::GraphProto, kind: u8, c: &mut Choices) -> Option<bool> {
    let inits: std::collections::HashSet<String> =
        g.initializer.iter().filter_map(|t| t.name.clone()).collect();
    {
        match kind % 8 {
            // An input's size: a number or a name (shared with another axis or not).
            0 | 1 => {
                let ins: Vec<usize> = (0..g.input.len())
                    .filter(|&i| !g.input[i].name.as_ref().is_some_and(|n| inits.contains(n)))
                    .collect();
                let i = ins[c.index(ins.len())?];
                let shape = shape_of(&mut g.input[i])?;
                let axis = c.index(shape.dim.len())?;
                let b = c.byte()?;
                shape.dim[axis].value = Some(match b % 4 {
                    0 => dimension::Value::DimParam(["N", "h", "w", "?", "batch"][b as usize % 5].into()),
                    _ => dimension::Value::DimValue(c.int()?),
                });
            }
            // An integer attribute, or one element of a list attribute.
            2 | 3 => {
                let n = c.index(g.node.len())?;
                let node = &mut g.node[n];
                let a = c.index(node.attribute.len())?;
                let attr = &mut node.attribute[a];
                if attr.i.is_some() {
                    attr.i = Some(c.int()?);
                } else if !attr.ints.is_empty() {
                    let k = c.index(attr.ints.len() + 1)?;
                    match attr.ints.get_mut(k) {
                        Some(x) => *x = c.int()?,
                        None => attr.ints.push(c.int()?),
                    }
                } else if attr.f.is_some() {
                    let f = c.float()?;
                    attr.f = Some(f);
                    return Some(!f.is_finite() || !(1e-6..=1e6).contains(&f.abs()) && f != 0.0);
                } else if let Some(t) = attr.t.as_mut() {
                    int_tensor(t, c)?;
                }
            }
            // An attribute dropped, or a list attribute shortened.
            4 => {
                let n = c.index(g.node.len())?;
                let node = &mut g.node[n];
                let a = c.index(node.attribute.len())?;
                if node.attribute[a].ints.len() > 1 {
                    node.attribute[a].ints.pop();
                } else {
                    node.attribute.remove(a);
                }
            }
            // An element of an integer constant (a Reshape's target, a Slice's ends…).
            5 | 6 => {
                let ints: Vec<usize> = (0..g.initializer.len())
                    .filter(|&i| g.initializer[i].data_type == Some(7))
                    .collect();
                let i = ins_or(&ints, c)?;
                int_tensor(&mut g.initializer[i], c)?;
            }
            // A declared output size.
            _ => {
                let o = c.index(g.output.len())?;
                let shape = shape_of(&mut g.output[o])?;
                let axis = c.index(shape.dim.len())?;
                shape.dim[axis] = Dimension {
                    value: Some(dimension::Value::DimValue(c.int()?)),
                    ..Default::default()
                };
            }
        }
    }
    Some(false)
}

fn ins_or(v: &[usize], c: &mut Choices) -> Option<usize> {
    Some(v[c.index(v.len())?])
}

/// Changes one element of an int64 tensor (raw or listed).
fn int_tensor(t: &mut pb::TensorProto, c: &mut Choices) -> Option<()> {
    if t.data_type != Some(7) {
        return None;
    }
    let x = c.int()?;
    if let Some(raw) = t.raw_data.as_mut() {
        let k = c.index(raw.len() / 8)?;
        raw[k * 8..k * 8 + 8].copy_from_slice(&x.to_le_bytes());
    } else {
        let k = c.index(t.int64_data.len())?;
        t.int64_data[k] = x;
    }
    Some(())
}

/// Small pseudo-random inputs of the sizes the graph declares, symbols at 1 to 3 (one size
/// per symbol); `None` when a size is not known, an input is not f32 or inputs are large.
fn inputs(g: &Graph, c: &mut Choices) -> Option<(Vec<Vec<usize>>, Vec<Tensor>)> {
    let mut syms = std::collections::HashMap::new();
    let mut dims = vec![];
    let mut tensors = vec![];
    for (i, &v) in g.inputs().iter().enumerate() {
        let ty = &g.value(v).ty;
        if ty.dtype != DType::F32 {
            return None;
        }
        let mut d = vec![];
        for dim in ty.shape.as_ref()? {
            d.push(match dim {
                Dim::Fixed(k) => *k,
                Dim::Sym(s) => match syms.get(s) {
                    Some(&k) => k,
                    None => {
                        // The batch small; other sizes from 1 to 32 (stride-2 models need
                        // room).
                        let b = c.byte().unwrap_or(0) as usize;
                        let k = if d.is_empty() {
                            1 + b % 3
                        } else {
                            [1, 2, 3, 5, 8, 16, 28, 32][b % 8]
                        };
                        syms.insert(s.clone(), k);
                        k
                    }
                },
                _ => return None,
            });
        }
        let n = d.iter().try_fold(1usize, |a, &k| a.checked_mul(k))?;
        if n > 1 << 16 {
            return None;
        }
        let data = mcc_ir::text::parse::pseudo_random(11 + i as u64, n, -2.0, 2.0)
            .into_iter()
            .map(|x| x as f32)
            .collect();
        tensors.push(Tensor::from_vec(&d, data).ok()?);
        dims.push(d);
    }
    Some((dims, tensors))
}

/// Elements of every value the graph computes, where known: `None` past `limit`.
fn work(g: &Graph, limit: usize) -> Option<()> {
    let mut total = 0usize;
    for n in g.node_ids() {
        for &v in &g.node(n)?.outputs {
            let shape = g.value(v).ty.shape.as_ref()?;
            let e = shape
                .iter()
                .try_fold(1usize, |a, d| a.checked_mul(d.fixed().unwrap_or(4)))?;
            total = total.checked_add(e)?;
        }
    }
    (total <= limit).then_some(())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut c = Choices(data);
    let Some(seed) = c.byte() else { return };
    let mut model = seeds()[seed as usize % SEEDS.len()].clone();
    let wild = mutate(&mut model, &mut c);
    let bytes = model.encode_to_vec();
    let Ok(imported) = mcc_onnx::import_bytes(&bytes, std::path::Path::new("fuzz.onnx"), None)
    else {
        return;
    };
    let mut graph = imported.graph;
    if let Err(e) = mcc_ir::verify(&graph) {
        panic!("an imported graph does not verify: {e}");
    }
    let Some((dims, xs)) = inputs(&graph, &mut c) else { return };
    if mcc_passes::specialize(&mut graph, &dims).is_err() {
        return;
    }
    if let Err(e) = mcc_ir::verify(&graph) {
        panic!("a specialized graph does not verify: {e}");
    }
    // Bounded work: every value small enough for the evaluator to finish quickly.
    if work(&graph, 1 << 21).is_none() {
        let _ = mcc::native::program(&graph);
        return;
    }
    let reference = mcc_ir::run(&graph, &xs);
    let Ok(prog) = mcc::native::program(&graph) else { return };
    let batch = dims.first().and_then(|d| d.first().copied()).unwrap_or(1);
    if prog.arena.saturating_mul(batch) > 1 << 24 {
        return;
    }
    let flat: Vec<Vec<f32>> = xs
        .iter()
        .map(|t| t.as_f32().map(|a| a.iter().copied().collect()).unwrap_or_default())
        .collect();
    let refs: Vec<&[f32]> = flat.iter().map(Vec::as_slice).collect();
    // The schedule interpreted, and compiled by Cranelift (the executable's code).
    let interpreted = match mcc_runtime::exec::Runner::new(&prog, 1) {
        Ok(mut runner) => runner.run(&refs),
        Err(e) => Err(e),
    };
    let compiled = match mcc_codegen::jit::Jit::new(prog, 1) {
        Ok(mut jit) => jit.run(&refs),
        Err(e) => Err(e),
    };
    let Ok(want) = reference else { return };
    if wild {
        return;
    }
    for (how, native) in [("interpreted", interpreted), ("compiled", compiled)] {
        let Ok(got) = native else { continue };
        if want.len() != got.len() {
            continue;
        }
        for (k, (w, g)) in want.iter().zip(&got).enumerate() {
            let Some(w) = w.as_f32() else { continue };
            assert_eq!(w.len(), g.len(), "output {k}: evaluator and {how} lengths differ");
            if w.iter().any(|x| !x.is_finite()) {
                continue;
            }
            let scale = 1.0 + w.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-3 * scale,
                    "output {k}[{i}]: evaluator {a}, {how} {b} (scale {scale})"
                );
            }
        }
    }
});

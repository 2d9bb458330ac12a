//! Import details the corpus alone does not cover, and the IR text of corpus models as
//! snapshots (the text must be stable: same model, same bytes; fingerprints pin the
//! decoded weights).

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_onnx::pb;
use mcc_tests::{corpus, load, npy};
use prost::Message;

/// Moves every initializer of lenet300 into one external data file (at offsets, as the
/// ONNX external-data format allows) and checks the model imports and computes the same.
#[test]
fn external_data_is_read_at_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut model =
        pb::ModelProto::decode(std::fs::read(corpus("lenet300.onnx")).unwrap().as_slice()).unwrap();
    let mut blob: Vec<u8> = b"some header bytes".to_vec();
    for t in &mut model.graph.as_mut().unwrap().initializer {
        let raw = t.raw_data.take().expect("lenet300 stores raw_data");
        let offset = blob.len();
        blob.extend_from_slice(&raw);
        t.data_location = Some(1);
        let kv = |k: &str, v: String| pb::StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v),
        };
        t.external_data = vec![
            kv("location", "data/weights.bin".into()),
            kv("offset", offset.to_string()),
            kv("length", raw.len().to_string()),
        ];
    }
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/weights.bin"), &blob).unwrap();
    let path = dir.path().join("external.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    assert!(
        std::fs::metadata(&path).unwrap().len() < 10_000,
        "the weights really moved out of the model file"
    );

    let ext = load(&path);
    let orig = load(&corpus("lenet300.onnx"));
    assert_eq!(mcc_ir::text::print(&ext), mcc_ir::text::print(&orig));
    let x = mcc::tensor_io::split_batch(&npy(&corpus("data/mnist_test_x784.npy")), 32).remove(0);
    assert_eq!(
        mcc_ir::run(&ext, std::slice::from_ref(&x)).unwrap(),
        mcc_ir::run(&orig, &[x]).unwrap()
    );

    // A length that does not match the tensor, and a path escaping the folder, are errors.
    let t = &mut model.graph.as_mut().unwrap().initializer[0];
    t.external_data[2].value = Some("4".into());
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let e = mcc_onnx::import(&path).unwrap_err().to_string();
    assert!(e.contains("4 bytes are given"), "{e}");
    let t = &mut model.graph.as_mut().unwrap().initializer[0];
    t.external_data[0].value = Some("../outside.bin".into());
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let e = mcc_onnx::import(&path).unwrap_err().to_string();
    assert!(e.contains("relative path inside the model's folder"), "{e}");
}

/// One size limit for every tensor (2^28 elements, the IR's) and a total for a model's
/// initializers (4 GiB), both checked from the declared shapes before anything is read or
/// allocated: a hostile model pointing at a huge sparse file costs nothing (issue #14).
#[test]
fn declared_sizes_are_bounded_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let mut model =
        pb::ModelProto::decode(std::fs::read(corpus("lenet300.onnx")).unwrap().as_slice()).unwrap();
    // A 16 GiB sparse file: present, so only the limits stop the reads.
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 34)
        .unwrap();
    let external = |elements: i64, name: &str| pb::TensorProto {
        name: Some(name.into()),
        dims: vec![elements],
        data_type: Some(1),
        data_location: Some(1),
        external_data: vec![
            pb::StringStringEntryProto {
                key: Some("location".into()),
                value: Some("big.bin".into()),
            },
            pb::StringStringEntryProto {
                key: Some("length".into()),
                value: Some((elements * 4).to_string()),
            },
        ],
        ..Default::default()
    };
    let path = dir.path().join("hostile.onnx");
    let graph = model.graph.as_mut().unwrap();
    let kept = graph.initializer.clone();
    // One tensor past 2^28 elements.
    graph.initializer.push(external((1 << 28) + 1, "too_big"));
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let e = mcc_onnx::import(&path).unwrap_err().to_string();
    assert!(
        e.contains("exceed mcc's limit of 268435456 (2^28) per tensor"),
        "{e}"
    );
    // Seventeen tensors of 2^26 floats (256 MiB each): each fits, together past 4 GiB.
    let graph = model.graph.as_mut().unwrap();
    graph.initializer = kept;
    for i in 0..17 {
        graph
            .initializer
            .push(external(1 << 26, &format!("part{i}")));
    }
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let e = mcc_onnx::import(&path).unwrap_err().to_string();
    assert!(e.contains("4 GiB"), "{e}");
}

#[test]
fn old_opsets_are_upgraded_to_current_forms() {
    // light models are opset 9: Unsqueeze's axes and Softmax's 2-D coercion were upgraded,
    // every initializer listed as an input became a constant, Dropout and the
    // ConstantOfShape weight generators are gone after canonicalization.
    let g = load(&corpus("light/light_densenet121.onnx"));
    assert_eq!(g.inputs().len(), 1, "only the image stays an input");
    let text = mcc_ir::text::print(&g);
    for gone in ["ConstantOfShape(", "Unsqueeze(", "Dropout(", "legacy_2d"] {
        assert!(!text.contains(gone), "{gone} survived canonicalization");
    }
    let raw = mcc::read_raw(&corpus("light/light_inception_v1.onnx")).unwrap();
    assert!(
        mcc_ir::text::print(&raw).contains("legacy_2d=1"),
        "the raw import keeps opset-9 softmax semantics"
    );
}

#[test]
fn ir_text_snapshots() {
    for m in ["lenet5", "mobilenet_dw", "resnet_bn"] {
        insta::assert_snapshot!(
            format!("ir_{m}"),
            mcc_ir::text::print(&load(&corpus(&format!("{m}.onnx"))))
        );
    }
    insta::assert_snapshot!(
        "ir_light_squeezenet",
        mcc_ir::text::print(&load(&corpus("light/light_squeezenet.onnx")))
    );
}

/// Placeholder sizes (`?`, `-1`: Paddle's exporter writes every free size so) are sizes of
/// their own, not one shared size: resnet_bn declared `[?, 1, ?, ?]` runs a 28×32 image, and
/// an input that does not fit is refused naming its axis.
#[test]
fn placeholder_dims_are_independent_sizes() {
    let mut model =
        pb::ModelProto::decode(std::fs::read(corpus("resnet_bn.onnx")).unwrap().as_slice())
            .unwrap();
    let graph = model.graph.as_mut().unwrap();
    let input = &mut graph.input[0];
    let Some(pb::type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!("resnet_bn's input is a tensor");
    };
    let dims = &mut t.shape.as_mut().unwrap().dim;
    for (axis, p) in [(0, "?"), (2, "?"), (3, "-1")] {
        dims[axis].value = Some(pb::tensor_shape_proto::dimension::Value::DimParam(p.into()));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("placeholders.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let g = load(&path);
    let ty = &g.value(g.inputs()[0]).ty;
    assert_eq!(ty.to_string(), "f32[input_0,1,input_2,input_3]");

    let data: Vec<f32> = mcc_ir::text::parse::pseudo_random(5, 2 * 28 * 32, 0.0, 1.0)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let x = mcc_ir::Tensor::from_vec(&[2, 1, 28, 32], data.clone()).unwrap();
    let y = mcc_ir::run(&g, std::slice::from_ref(&x)).unwrap();
    assert_eq!(y[0].shape(), [2, 10]);

    // Native code needs the sizes: refused without them (saying how to give them), and
    // specialized to 28×32 it computes what the evaluator computes; the batch stays free.
    let mut merged = g.clone();
    mcc_passes::merge_everything(&mut merged).unwrap();
    let e = mcc_codegen::lower(&merged).unwrap_err().to_string();
    assert!(e.contains("--input-shape"), "{e}");
    let mut sized = g.clone();
    mcc_passes::specialize(&mut sized, &[vec![1, 1, 28, 32]]).unwrap();
    assert_eq!(
        sized.value(sized.inputs()[0]).ty.to_string(),
        "f32[input_0,1,28,32]"
    );
    mcc_passes::merge_everything(&mut sized).unwrap();
    let p = mcc_codegen::lower(&sized).unwrap();
    let got = mcc_runtime::exec::Runner::new(&p, 1)
        .unwrap()
        .run(&[&data])
        .unwrap();
    let d = mcc_tests::compare(
        &mcc_ir::Tensor::from_vec(&[2, 10], got[0].clone()).unwrap(),
        &y[0],
        1e-4,
        1e-5,
    );
    assert!(d.allclose, "{d:?}");
    // A fixed axis must agree.
    let e = mcc_passes::specialize(&mut g.clone(), &[vec![1, 3, 28, 32]]).unwrap_err();
    assert!(
        e.to_string().contains("axis 1 is 1 in the model, not 3"),
        "{e}"
    );

    let bad = mcc_ir::Tensor::from_vec(&[2, 3, 28, 32], vec![0.5f32; 6 * 28 * 32]).unwrap();
    let e = mcc_ir::run(&g, &[bad]).unwrap_err().to_string();
    assert!(e.contains("axis 1 is 3; the model fixes it at 1"), "{e}");
}

/// `Resize` of opset 10 (`X, scales`) and `Upsample` (opset 7: scales as an attribute; 9: an
/// operand) import as today's `Resize` with asymmetric coordinates and nearest rounding
/// down; forms mcc cannot mean exactly are errors that say which.
#[test]
fn old_resize_and_upsample_import_as_resize() {
    let g = mcc_ir::text::parse(
        "graph \"up\" {\n  input %x: f32[1,1,2,2]\n  const %s: f32[4] = [1.0, 1.0, 2.0, 3.0]\n  node r = Resize(%x, _, %s) -> %y: f32[1,1,4,6]\n  output %y\n}\n",
    )
    .unwrap();
    let base = pb::ModelProto::decode(mcc_onnx::export(&g).unwrap().as_slice()).unwrap();
    let variant = |opset: i64, op: &str, inputs: &[&str], attribute: Vec<pb::AttributeProto>| {
        let mut m = base.clone();
        m.opset_import[0].version = Some(opset);
        let graph = m.graph.as_mut().unwrap();
        let n = &mut graph.node[0];
        n.op_type = Some(op.into());
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.attribute = attribute;
        if !inputs.contains(&"s") {
            graph.initializer.clear();
        }
        mcc_onnx::import_bytes(&m.encode_to_vec(), std::path::Path::new("old.onnx"), None)
    };
    let text = |key: &str, value: &str| pb::AttributeProto {
        name: Some(key.into()),
        s: Some(value.as_bytes().to_vec()),
        r#type: Some(pb::attribute_proto::AttributeType::String as i32),
        ..Default::default()
    };
    let scales = pb::AttributeProto {
        name: Some("scales".into()),
        floats: vec![1.0, 1.0, 2.0, 3.0],
        r#type: Some(pb::attribute_proto::AttributeType::Floats as i32),
        ..Default::default()
    };
    let x = mcc_ir::Tensor::from_vec(&[1, 1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let row = |a: f32, b: f32| [a, a, a, b, b, b];
    let want: Vec<f32> = [row(1.0, 2.0), row(1.0, 2.0), row(3.0, 4.0), row(3.0, 4.0)].concat();
    for (opset, op, inputs, attrs) in [
        (10, "Resize", vec!["x", "s"], vec![]),
        (9, "Upsample", vec!["x", "s"], vec![text("mode", "nearest")]),
        (7, "Upsample", vec!["x"], vec![scales.clone()]),
    ] {
        let graph = variant(opset, op, &inputs, attrs)
            .unwrap_or_else(|e| panic!("{op}-{opset}: {e}"))
            .graph;
        let printed = mcc_ir::text::print(&graph);
        assert!(
            printed.contains("coordinate_transformation_mode=\"asymmetric\"")
                && printed.contains("nearest_mode=\"floor\""),
            "{op}-{opset}:\n{printed}"
        );
        let y = mcc_ir::run(&graph, std::slice::from_ref(&x))
            .unwrap()
            .remove(0);
        assert_eq!(y.shape(), [1, 1, 4, 6], "{op}-{opset}");
        assert_eq!(
            y.as_f32().unwrap().iter().copied().collect::<Vec<_>>(),
            want,
            "{op}-{opset}"
        );
    }
    let e = variant(
        11,
        "Resize",
        &["x", "", "s"],
        vec![text(
            "coordinate_transformation_mode",
            "tf_half_pixel_for_nn",
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tf_half_pixel_for_nn") && e.contains("not supported"),
        "{e}"
    );
    let e = variant(1, "Upsample", &["x"], vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("before opset 7"), "{e}");
    let e = variant(
        19,
        "Resize",
        &["x", "", "s"],
        vec![text("mode", "bilinear")],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`bilinear`"), "{e}");
}

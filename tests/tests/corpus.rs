//! Every corpus model evaluates to its ONNX Runtime reference.
//!
//! Trained MNIST models (the transformer `vit_mini` too): the whole 1000-sample test set against `ref/<model>_test_out.npy`
//! (rtol 1e-4, atol 1e-5), and the top-1 accuracy equal to the reference's. Light models:
//! the seeded input against `_seed0_out.npy` and, where the model ends in Softmax, the
//! pre-softmax tensor against `_seed0_presoftmax.npy` relatively (values reach 1e31).

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_tests::{LIGHT, TRAINED, compare, corpus, load, npy};

fn accuracy(logits: &mcc_ir::Tensor, labels: &[i64]) -> usize {
    let (n, c) = (logits.shape()[0], logits.shape()[1]);
    let v = logits.to_f64_vec();
    (0..n)
        .filter(|&r| {
            let row = &v[r * c..(r + 1) * c];
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (i, &x)| if x > row[b] { i } else { b });
            best as i64 == labels[r]
        })
        .count()
}

fn trained(name: &str) {
    let input = mcc_tests::every_trained()
        .find(|(m, _)| *m == name)
        .map(|(_, i)| *i)
        .unwrap();
    let g = load(&corpus(&format!("{name}.onnx")));
    let x = npy(&corpus(input));
    let got = mcc_ir::run(&g, &[x]).unwrap().remove(0);
    let want = npy(&corpus(&format!("ref/{name}_test_out.npy")));
    let d = compare(&got, &want, 1e-4, 1e-5);
    let labels = npy(&corpus("data/mnist_test_y.npy")).to_i64_vec();
    let (ours, reference) = (accuracy(&got, &labels), accuracy(&want, &labels));
    println!(
        "{name}: max abs {:.3e}, max rel {:.3e}, accuracy {ours}/1000 (ORT {reference}/1000)",
        d.max_abs, d.max_rel
    );
    assert!(
        d.allclose,
        "{name}: outputs differ from ONNX Runtime beyond rtol 1e-4 / atol 1e-5: {d:?}"
    );
    assert_eq!(
        ours, reference,
        "{name}: accuracy differs from ONNX Runtime's"
    );
}

fn light(name: &str) {
    let mut g = load(&corpus(&format!("light/light_{name}.onnx")));
    // Also expose the Softmax's operand, the informative tensor.
    let softmax = g
        .node_ids()
        .into_iter()
        .find(|&n| matches!(g.node(n).unwrap().op, mcc_ir::Op::Softmax(_)));
    if let Some(s) = softmax {
        let pre = g.node(s).unwrap().inputs[0].unwrap();
        let mut outs = g.outputs().to_vec();
        outs.push(pre);
        g.set_outputs(outs);
    }
    let x = npy(&corpus("light/light_input_seed0.npy"));
    let outs = mcc_ir::run(&g, &[x]).unwrap();
    let want = npy(&corpus(&format!("light/light_{name}_seed0_out.npy")));
    let d = compare(&outs[0], &want, 1e-4, 1e-7);
    print!(
        "light_{name}: output max abs {:.3e} rel {:.3e}",
        d.max_abs, d.max_rel
    );
    assert!(d.allclose, "light_{name}: output differs: {d:?}");
    match softmax {
        Some(_) => {
            let want = npy(&corpus(&format!("light/light_{name}_seed0_presoftmax.npy")));
            let got = &outs[1];
            let got = if got.shape() == want.shape() {
                got.clone()
            } else {
                mcc_ir::map_tensor!(got, a => a.clone().into_shape_with_order(want.shape()).unwrap())
            };
            let d = compare(&got, &want, 1e-4, 0.0);
            println!(
                "; pre-softmax max abs {:.3e} rel {:.3e}",
                d.max_abs, d.max_rel
            );
            assert!(
                d.allclose,
                "light_{name}: pre-softmax differs beyond rtol 1e-4: {d:?}"
            );
        }
        None => {
            println!("; no Softmax (the output itself is the pre-activation)");
            assert!(!corpus(&format!("light/light_{name}_seed0_presoftmax.npy")).exists());
        }
    }
}

macro_rules! models {
    ($f:ident: $($name:ident)*) => { $( #[test] fn $name() { $f(stringify!($name)) } )* };
}

mod trained_models {
    use super::trained;
    models!(trained: lenet300 lenet5 vgg_bn resnet_bn mobilenet_dw inception_mini vit_mini vit_mini_dynamo resnet_bn_dynamo);
}

mod light_models {
    use super::light;
    models!(light: bvlc_alexnet densenet121 inception_v1 inception_v2 resnet50 shufflenet squeezenet vgg19 zfnet512);
}

#[test]
fn the_lists_cover_the_corpus() {
    let mut files: Vec<String> = std::fs::read_dir(corpus("light"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".onnx"))
        .collect();
    files.sort();
    let listed: Vec<String> = LIGHT.iter().map(|m| format!("light_{m}.onnx")).collect();
    assert_eq!(files, listed);
    assert_eq!(TRAINED.len(), 6);
    // Every trained model at the corpus's top level is in a list.
    let mut top: Vec<String> = std::fs::read_dir(corpus(""))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".onnx").map(str::to_string))
        .collect();
    top.sort();
    let mut every: Vec<String> = mcc_tests::every_trained()
        .map(|(m, _)| m.to_string())
        .collect();
    every.sort();
    assert_eq!(top, every);
}

//! The small LeNet-like model (Conv, MaxPool, Gemm, Relu, with real names to select) that
//! the recipe fuzz targets check recipes against; included by `#[path]` from each.

use std::sync::OnceLock;

/// The model, as IR text.
const MODEL: &str = r#"graph "m" {
  input %x: f32[N,1,12,12]
  const %w1: f32[4,1,3,3] = splat(0.5)
  const %b1: f32[4] = splat(0.0)
  const %w2: f32[10,100] = splat(0.25)
  const %b2: f32[10] = splat(0.0)
  node /conv1/Conv = Conv(%x, %w1, %b1) {kernel_shape=[3, 3]} -> %c1: f32[N,4,10,10]
  node /relu/Relu = Relu(%c1) -> %r1: f32[N,4,10,10]
  node /pool/MaxPool = MaxPool(%r1) {kernel_shape=[2, 2], strides=[2, 2]} -> %p1: f32[N,4,5,5]
  node /flatten/Flatten = Flatten(%p1) -> %f1: f32[N,100]
  node /fc/Gemm = Gemm(%f1, %w2, %b2) {transB=1} -> %y: f32[N,10]
  output %y
}"#;

pub fn model() -> &'static mcc_ir::Graph {
    static G: OnceLock<mcc_ir::Graph> = OnceLock::new();
    G.get_or_init(|| mcc_ir::text::parse(MODEL).expect("the fuzz model parses"))
}

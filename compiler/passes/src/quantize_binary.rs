//! `quantize binary`: weights in {−α, +α} (BinaryConnect's sign with XNOR-Net's scale,
//! applied after training). Each group — an output channel, or the layer with `per: tensor`
//! — keeps the sign of every weight and one magnitude α, the mean |w| of the group (the α
//! that minimizes the weight error for fixed signs). With `refit: on`, the two values are
//! refit independently by least squares to the layer's outputs on calibration data, so they
//! may differ in magnitude (−α₁, +α₂).
//!
//! Keeps: the graph's structure and every shape; a weight that was zero (pruned) stays zero
//! and costs nothing, every other weight becomes its group's value of its sign.
//!
//! Leaves alone (reported): layers without f32 constant weights, layers merged away; with
//! `refit: on`, layers without a row-wise input (grouped Conv, Gemm with transA).
//!
//! Stores: `codebook1 per channel(axis)` (or `per tensor`): one bit a weight, two f32 a group.

use mcc_plan::registry::{Applies, Status, VariantSchema, no_param_check};

use crate::quantize::{self, Fit};

/// `quantize binary`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "binary",
    summary: "weights in {−α, +α}: the sign of each weight, one α per channel",
    params: &[quantize::PER_CHANNEL, quantize::REFIT],
    applies: Applies::Weighted,
    status: Status::Ready(&quantize::Tables {
        bits: |_| 1,
        fit: |_, v| binary(v),
    }),
    check_params: no_param_check,
    sweep: None,
};

/// Signs and the mean magnitude: table `[−α, α]`, code 1 for a positive weight.
pub fn binary(values: &[f64]) -> Fit {
    let alpha = values.iter().map(|v| v.abs()).sum::<f64>() / values.len().max(1) as f64;
    Fit {
        table: vec![-alpha, alpha],
        codes: values.iter().map(|&v| u32::from(v > 0.0)).collect(),
    }
}

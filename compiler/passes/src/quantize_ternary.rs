//! `quantize ternary`: weights in {−α, 0, +α} (Ternary Weight Networks, Li & Liu 2016,
//! applied after training). In each group — an output channel, or the layer with `per:
//! tensor` — weights with |w| ≤ Δ = `threshold` · mean|w| become zero, the others keep their
//! sign and one magnitude α, the mean |w| of those kept (TWN's closed form). With `refit:
//! on`, the negative and positive values are refit independently by least squares to the
//! layer's outputs on calibration data (−α₁, +α₂: the asymmetric scales of Trained Ternary
//! Quantization, fitted post-training instead of trained).
//!
//! Keeps: the graph's structure and every shape; a weight that was zero stays zero, every
//! other weight becomes zero or its group's value of its sign.
//!
//! Leaves alone (reported): layers without f32 constant weights, layers merged away; with
//! `refit: on`, layers without a row-wise input (grouped Conv, Gemm with transA).
//!
//! Stores: the zeros as a sparse layout (they are not stored), the rest as `codebook1`: one
//! bit a kept weight plus its position.

use mcc_plan::registry::{Applies, Default, Status, VariantSchema, no_param_check, num, p};

use crate::quantize::{self, DROP, Fit};

/// `quantize ternary`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "ternary",
    summary: "weights in {−α, 0, +α} (TWN), one α per channel",
    params: &[
        p(
            "threshold",
            mcc_plan::registry::RATIO,
            Default::Num(0.7),
            "weights up to this fraction of the group's mean |w| become zero",
        ),
        quantize::PER_CHANNEL,
        quantize::REFIT,
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&quantize::Tables {
        bits: |_| 1,
        fit: |step, v| ternary(v, num(&step.params, "threshold").unwrap_or(0.7)),
    }),
    check_params: no_param_check,
    sweep: None,
};

/// TWN: zero up to `t`·mean|w|, the rest ±(mean |w| of those kept).
pub fn ternary(values: &[f64], t: f64) -> Fit {
    let n = values.len().max(1) as f64;
    let delta = t * values.iter().map(|v| v.abs()).sum::<f64>() / n;
    // A group never loses every weight: with a threshold at or above its largest |w| (equal
    // magnitudes, a threshold of 100%), the largest stay.
    let top = values.iter().fold(0f64, |m, v| m.max(v.abs()));
    let delta = if delta >= top {
        top * (1.0 - f64::EPSILON)
    } else {
        delta
    };
    let kept: Vec<f64> = values
        .iter()
        .map(|v| v.abs())
        .filter(|&a| a > delta)
        .collect();
    let alpha = kept.iter().sum::<f64>() / kept.len().max(1) as f64;
    Fit {
        table: vec![-alpha, alpha],
        codes: values
            .iter()
            .map(|&v| {
                if v.abs() <= delta {
                    DROP
                } else {
                    u32::from(v > 0.0)
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_weights_drop_and_the_rest_share_one_magnitude() {
        // mean |w| = 1.2, Δ = 0.84: 0.5 and −0.2 drop; α = mean(2, 1.5, 2.5, 1.0) = 1.75.
        let f = ternary(&[2.0, -1.5, 0.5, -0.2, 2.5, -1.0], 0.7);
        assert_eq!(f.codes, [1, 0, DROP, DROP, 1, 0]);
        assert!((f.table[1] - 1.75).abs() < 1e-12 && f.table[0] == -f.table[1]);
        let b = crate::quantize_binary::binary(&[2.0, -1.0, 0.5, -0.5]);
        assert_eq!(b.codes, [1, 0, 1, 0]);
        assert_eq!(b.table, [-1.0, 1.0]);
    }
}

//! `encode huffman`: entropy-codes a layer's stored weights (Deep Compression's third stage).
//! The integer or codebook codes of each selected layer are Huffman-coded, and so are the
//! positions of a sparse layer's kept weights, as gaps between them (`gaps(b)`: the paper's
//! relative indices, with the gap width `b` from 1 to 8 chosen to give the fewest bytes).
//! Canonical code lengths are stored with each stream; mcc decodes them when it reads the
//! model and checks every length and code.
//!
//! Keeps: every weight's value, bit for bit (coding is lossless), the graph's structure and
//! every shape. Only the stored form changes, to the smallest Huffman-coded one of the same
//! values and kept set.
//!
//! Leaves alone (reported): layers without constant weights, layers merged away, and layers
//! whose stored form no coding makes smaller (dense f32 weights have no codes to code: put
//! `quantize` or `prune` before it).
//!
//! Stores: the same values in the same or a gap layout, coding `huffman`.

use mcc_ir::stored::{Coding, Layout, Values};
use mcc_ir::{Graph, StepId, Stored};
use mcc_plan::plan::Step;
use mcc_plan::registry::{Applies, Status, VariantSchema, no_param_check};
use mcc_plan::{LeftAlone, Outcome, Reason, Stats, Technique, TechniqueError};

use crate::{layers, quantize};

/// `encode huffman`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "huffman",
    summary: "Huffman-code weight codes and sparse positions (Deep Compression's last step)",
    params: &[],
    applies: Applies::Weighted,
    status: Status::Ready(&EncodeHuffman),
    check_params: no_param_check,
    sweep: None,
};

/// Huffman coding as a technique.
pub struct EncodeHuffman;

impl Technique for EncodeHuffman {
    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        _stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let mut out = Outcome::default();
        for name in &step.nodes {
            let fail = |message: String| TechniqueError {
                node: name.clone(),
                message,
            };
            let w = match layers::weighted(graph, name) {
                Ok(w) => w,
                Err(left) => {
                    out.left_alone.push(left);
                    continue;
                }
            };
            let (node, weights) = (w.id, w.weights);
            let current = match graph.stored(weights) {
                Some(s) => s.clone(),
                None => Stored::smallest_f32(w.tensor).map_err(|e| fail(e.to_string()))?,
            };
            match coded(&current).map_err(|e| fail(e.to_string()))? {
                Some(s) => {
                    quantize::store(graph, node, weights, s, &step.nodes, id)
                        .map_err(|e| fail(e.to_string()))?;
                    out.changed.push(name.clone());
                }
                None => out.left_alone.push(left_alone(name, &current)),
            }
        }
        Ok(out)
    }
}

fn left_alone(name: &str, current: &Stored) -> LeftAlone {
    let e = current.encoding();
    let detail = if e.coding == Coding::Huffman {
        "its weights are Huffman-coded already".to_string()
    } else if e.values == Values::F32 && e.layout == Layout::Dense {
        "its weights are dense f32: no codes or positions to code (quantize or prune it first)"
            .to_string()
    } else {
        format!(
            "no Huffman-coded form of its weights is smaller than `{e}` ({} bytes)",
            current.bytes()
        )
    };
    layers::leave(name, Reason::NotSmaller, detail)
}

/// The smallest Huffman-coded form of `s`'s values and kept set, when it is smaller than `s`.
fn coded(s: &Stored) -> Result<Option<Stored>, mcc_ir::stored::StoredError> {
    let e = s.encoding();
    if e.coding == Coding::Huffman {
        return Ok(None);
    }
    let mut parts = s.parts()?;
    let mut candidates: Vec<Layout> = vec![];
    if e.values != Values::F32 {
        candidates.push(e.layout);
    }
    if e.layout != Layout::Dense {
        if parts.keep.is_empty() {
            parts.keep = vec![true; s.decoded().len()];
        }
        candidates.extend((1..=8).map(|bits| Layout::Gaps { bits }));
        if e.values != Values::F32 {
            candidates.extend([Layout::Bitmask, Layout::Csr]);
        }
    }
    let mut best: Option<Stored> = None;
    for layout in candidates {
        let encoding = mcc_ir::stored::Encoding {
            values: e.values,
            layout,
            coding: Coding::Huffman,
        };
        // A layout that cannot hold this kept set (blocks, N:M) is simply not a candidate.
        let Ok(c) = Stored::new(encoding, s.shape(), &parts) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| c.bytes() < b.bytes()) {
            best = Some(c);
        }
    }
    Ok(best.filter(|b| b.bytes() < s.bytes()))
}

//! `merge pad`: fold a Pad into the Convs and pools that read it, as their own padding.
//!
//! A zero Pad of the spatial axes followed by a Conv computes exactly what the Conv computes
//! with its `pads` enlarged by the same amounts; likewise for an AveragePool that counts the
//! padding in its average (`count_include_pad = 1`, or a pool with no padding of its own,
//! which then gets that flag), and for a MaxPool when the Pad's value is −∞ (a MaxPool's own
//! padding never wins the max).
//!
//! Keeps: every graph output, exactly (no arithmetic changes). The readers keep their names,
//! read the Pad's input and record the step; the Pad is removed.
//!
//! Leaves alone (reported with the reason): a Pad that is not `constant` mode, has computed
//! or negative pads, pads the batch or channel axes, pads with another value than the readers
//! need, is a graph output, or has a reader that cannot absorb it (any other op, a reader
//! using `auto_pad`, an AveragePool that excludes its padding from the average or uses
//! `ceil_mode`).

use mcc_ir::{AutoPad, Graph, NodeId, Op, Origin, StepId};

use crate::PassError;
use crate::merge::MergePass;
use crate::merge::{LeftAlone, Merged, OrSkip, Reason, Skip, a_or_an, leave};
use mcc_plan::registry::{Applies, Status, VariantSchema, no_param_check};

/// What a foldable Pad was found to be.
struct Fold {
    /// Its input.
    input: mcc_ir::ValueId,
    /// Spatial pads: begins then ends.
    pads: Vec<i64>,
    /// Its readers.
    readers: Vec<NodeId>,
}

/// The Pad's pads over every axis (begins then ends), with `axes` expanded.
fn full_pads(graph: &Graph, n: &mcc_ir::Node, rank: usize) -> Result<Vec<i64>, Skip> {
    let pv = n
        .inputs
        .get(1)
        .copied()
        .flatten()
        .or_leave(Reason::MissingOperand, "it has no pads")?;
    let pads = graph
        .const_data(pv)
        .or_leave(Reason::NotConstant, "its pads are computed at run time")?
        .to_i64_vec();
    let axes: Vec<usize> = match n.inputs.get(3).copied().flatten() {
        None => (0..rank).collect(),
        Some(a) => graph
            .const_data(a)
            .or_leave(Reason::NotConstant, "its axes are computed at run time")?
            .to_i64_vec()
            .iter()
            .map(|&a| if a < 0 { a + rank as i64 } else { a })
            .map(|a| usize::try_from(a).ok().filter(|&a| a < rank))
            .collect::<Option<_>>()
            .or_leave(Reason::ShapeMismatch, "its axes are out of range")?,
    };
    if pads.len() != 2 * axes.len() {
        return Err(leave(
            Reason::ShapeMismatch,
            "its pads do not match its axes",
        ));
    }
    let mut full = vec![0; 2 * rank];
    for (i, &a) in axes.iter().enumerate() {
        full[a] = pads[i];
        full[rank + a] = pads[axes.len() + i];
    }
    Ok(full)
}

fn check(graph: &Graph, pad: NodeId) -> Result<Fold, Skip> {
    let n = graph.node(pad).or_bug("no such layer")?;
    let Op::Pad(p) = &n.op else {
        return Err(leave(
            Reason::UnsupportedOp,
            format!("it is {}, not a Pad", a_or_an(n.op.name())),
        ));
    };
    if p.mode != "constant" {
        return Err(leave(
            Reason::UnsupportedAttribute,
            format!(
                "it pads in `{}` mode; Convs and pools pad with a constant",
                p.mode
            ),
        ));
    }
    let input = n
        .inputs
        .first()
        .copied()
        .flatten()
        .or_leave(Reason::MissingOperand, "it has no input")?;
    let rank = graph
        .value(input)
        .ty
        .shape
        .as_ref()
        .map(Vec::len)
        .or_leave(Reason::UnknownShape, "its input's rank is not known")?;
    if rank < 3 {
        return Err(leave(
            Reason::ShapeMismatch,
            "its input has no spatial axes",
        ));
    }
    let full = full_pads(graph, n, rank)?;
    if full.iter().any(|&x| x < 0) {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "it crops (negative pads)",
        ));
    }
    if full[0] != 0 || full[1] != 0 || full[rank] != 0 || full[rank + 1] != 0 {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "it pads the batch or channel axis",
        ));
    }
    let value = match n.inputs.get(2).copied().flatten() {
        None => 0.0,
        Some(v) => {
            let t = graph
                .const_data(v)
                .or_leave(Reason::NotConstant, "its value is computed at run time")?;
            match t.to_f64_vec().as_slice() {
                [] => 0.0,
                [x] => *x,
                _ => return Err(leave(Reason::ShapeMismatch, "its value is not a scalar")),
            }
        }
    };
    let out = *n.outputs.first().or_bug("it has no output")?;
    if graph.outputs().contains(&out) {
        return Err(leave(
            Reason::GraphInterface,
            "its output is a graph output",
        ));
    }
    let users = graph.users(out);
    if users.is_empty() {
        return Err(leave(Reason::UnsupportedOp, "nothing reads it"));
    }
    for &(u, slot) in &users {
        let un = graph.node(u).or_bug("a reader vanished")?;
        let why = |reason: Reason, what: &str| leave(reason, format!("`{}` {what}", un.name));
        if slot != 0 {
            return Err(why(
                Reason::UnsupportedAttribute,
                "reads it as a parameter, not as its input",
            ));
        }
        let (auto_pad, zero_ok) = match &un.op {
            Op::Conv(c) => (&c.auto_pad, true),
            Op::AveragePool(a) => {
                if a.count_include_pad == 0 && a.pads.iter().any(|&x| x != 0) {
                    return Err(why(
                        Reason::NotExact,
                        "leaves its own padding out of the average",
                    ));
                }
                if a.ceil_mode != 0 {
                    return Err(why(
                        Reason::NotExact,
                        "uses ceil_mode, whose partial windows would change",
                    ));
                }
                (&a.auto_pad, true)
            }
            Op::MaxPool(m) => (&m.auto_pad, false),
            other => {
                return Err(why(
                    Reason::UnsupportedOp,
                    &format!("is {}, which cannot absorb padding", a_or_an(other.name())),
                ));
            }
        };
        if !matches!(auto_pad, AutoPad::NotSet) {
            return Err(why(
                Reason::UnsupportedAttribute,
                "derives its padding from auto_pad",
            ));
        }
        let own = match &un.op {
            Op::Conv(c) => c.pads.len(),
            Op::AveragePool(a) => a.pads.len(),
            Op::MaxPool(m) => m.pads.len(),
            _ => 0,
        };
        if own != 0 && own != 2 * (rank - 2) {
            return Err(why(
                Reason::ShapeMismatch,
                "has pads that do not match its rank",
            ));
        }
        match (zero_ok, value) {
            (true, v) if v != 0.0 => {
                return Err(why(Reason::NotExact, &format!("pads with 0, not {v}")));
            }
            (false, v) if v != f64::NEG_INFINITY => {
                return Err(why(
                    Reason::NotExact,
                    &format!("is a MaxPool, which pads with −∞, not {v}"),
                ));
            }
            _ => {}
        }
    }
    let spatial = rank - 2;
    let pads = full[2..rank]
        .iter()
        .chain(&full[rank + 2..])
        .copied()
        .collect::<Vec<_>>();
    debug_assert_eq!(pads.len(), 2 * spatial);
    Ok(Fold {
        input,
        pads,
        readers: users.into_iter().map(|(u, _)| u).collect(),
    })
}

/// Adds `extra` to a reader's own pads; `false` when their lengths disagree.
fn add_pads(own: &mut Vec<i64>, extra: &[i64]) -> bool {
    if own.is_empty() {
        own.resize(extra.len(), 0);
    }
    if own.len() != extra.len() {
        return false;
    }
    for (o, e) in own.iter_mut().zip(extra) {
        *o += e;
    }
    true
}

/// Folds each named Pad it can into its readers; reports the others.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    let fail = |node: &str, message: String| PassError::Node {
        pass: "merge-pad",
        node: node.to_string(),
        op: "Pad",
        message,
    };
    let (mut merged, mut left) = (vec![], vec![]);
    for name in nodes {
        // A layer an earlier step merged away is no longer there to merge.
        let Some(pad) = graph.find_node(name) else {
            continue;
        };
        let fold = match check(graph, pad) {
            Ok(f) => f,
            Err(skip) => {
                left.extend(skip.report(name, "merge-pad")?);
                continue;
            }
        };
        let mut into: Vec<String> = vec![];
        for &r in &fold.readers {
            let Some(n) = graph.node_mut(r) else {
                return Err(fail(name, "a reader vanished".into()));
            };
            let fits = match &mut n.op {
                Op::Conv(c) => add_pads(&mut c.pads, &fold.pads),
                Op::AveragePool(a) => {
                    a.count_include_pad = 1;
                    add_pads(&mut a.pads, &fold.pads)
                }
                Op::MaxPool(m) => add_pads(&mut m.pads, &fold.pads),
                _ => false,
            };
            if !fits {
                return Err(fail(name, "a reader's pads do not match its rank".into()));
            }
            n.origin = Origin::Step(step);
            into.push(n.name.clone());
            graph
                .set_input(r, 0, Some(fold.input))
                .map_err(|e| fail(name, e.to_string()))?;
        }
        graph
            .remove_node(pad)
            .map_err(|e| fail(name, e.to_string()))?;
        merged.extend(into.into_iter().map(|reader| Merged {
            removed: name.clone(),
            stands_for: reader.clone(),
            into: reader,
        }));
    }
    graph.remove_unused_consts();
    Ok((merged, left))
}

/// `merge pad`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "pad",
    summary: "fold a Pad into the Convs and pools that read it",
    params: &[],
    applies: Applies::Ops(&["Pad"]),
    status: Status::Ready(&MergePass(run)),
    check_params: no_param_check,
    sweep: None,
};

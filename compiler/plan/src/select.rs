//! Resolving recipe selectors against a model: which nodes a selector picks, and a precise
//! diagnostic for every part of it that picks nothing (the peer tools' worst habit is to
//! ignore a typo'd layer name silently).

use std::collections::BTreeSet;

use mcc_ir::{Graph, Op, ValueDef};

use crate::code::Code;
use mcc_recipe::ast::{Cmp, SelKind, Selector, SetOp, Span, ValueKind};

/// What the selector language can test about a node.
pub const ATTRIBUTES: &[(&str, &str)] = &[
    ("kernel", "largest kernel dimension (Conv, pools)"),
    ("stride", "largest stride"),
    ("dilation", "largest dilation"),
    ("group", "Conv groups"),
    (
        "in_channels",
        "input channels / features (Conv, Gemm, MatMul)",
    ),
    (
        "out_channels",
        "output channels / features (Conv, Gemm, MatMul)",
    ),
    ("params", "weight elements"),
];

/// A node as selectors see it.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    /// The node's name.
    pub name: String,
    /// Its op type.
    pub op: &'static str,
    /// Names of the values it defines.
    pub outputs: Vec<String>,
    /// Attribute values for predicates.
    pub attrs: Vec<(&'static str, f64)>,
    /// Whether it has a constant weight operand a compression technique can change.
    pub weighted: bool,
    /// Indices of the nodes whose outputs it reads.
    pub reads: Vec<usize>,
}

/// Every node's facts, in the IR text's (topological) order.
pub fn facts(graph: &Graph) -> Vec<NodeFacts> {
    let order = graph.topo_order().unwrap_or_else(|_| graph.node_ids());
    let index: std::collections::HashMap<mcc_ir::NodeId, usize> =
        order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut out = Vec::with_capacity(order.len());
    for &n in &order {
        let Some(node) = graph.node(n) else { continue };
        let shape_of = |slot: usize| {
            node.inputs
                .get(slot)
                .copied()
                .flatten()
                .and_then(|v| graph.value(v).ty.fixed_dims())
        };
        let is_const = |slot: usize| {
            node.inputs
                .get(slot)
                .copied()
                .flatten()
                .is_some_and(|v| matches!(graph.value(v).def, ValueDef::Const(_)))
        };
        let mut attrs: Vec<(&'static str, f64)> = vec![];
        let max = |v: &[i64]| v.iter().copied().max().unwrap_or(1) as f64;
        let mut weighted = false;
        match &node.op {
            Op::Conv(c) => {
                let w = shape_of(1).unwrap_or_default();
                let k = if c.kernel_shape.is_empty() {
                    w.iter().skip(2).copied().max().unwrap_or(1) as f64
                } else {
                    max(&c.kernel_shape)
                };
                attrs.extend([
                    ("kernel", k),
                    ("stride", max(&c.strides)),
                    ("dilation", max(&c.dilations)),
                    ("group", c.group as f64),
                ]);
                if w.len() >= 2 {
                    attrs.push(("out_channels", w[0] as f64));
                    attrs.push(("in_channels", (w[1] as i64 * c.group) as f64));
                }
                weighted = is_const(1);
            }
            Op::Gemm(g) => {
                if let Some(b) = shape_of(1).filter(|b| b.len() == 2) {
                    let (k, n) = if g.transB != 0 {
                        (b[1], b[0])
                    } else {
                        (b[0], b[1])
                    };
                    attrs.extend([("in_channels", k as f64), ("out_channels", n as f64)]);
                }
                weighted = is_const(1);
            }
            Op::MatMul(_) => {
                if let Some(b) = shape_of(1).filter(|b| b.len() >= 2) {
                    attrs.extend([
                        ("in_channels", b[b.len() - 2] as f64),
                        ("out_channels", b[b.len() - 1] as f64),
                    ]);
                }
                weighted = is_const(1);
            }
            Op::MaxPool(p) => attrs.extend([
                ("kernel", max(&p.kernel_shape)),
                ("stride", max(&p.strides)),
                ("dilation", max(&p.dilations)),
            ]),
            Op::AveragePool(p) => attrs.extend([
                ("kernel", max(&p.kernel_shape)),
                ("stride", max(&p.strides)),
                ("dilation", max(&p.dilations)),
            ]),
            _ => {}
        }
        let params: usize = node
            .inputs
            .iter()
            .flatten()
            .filter(|v| {
                matches!(graph.value(**v).def, ValueDef::Const(_))
                    && graph.value(**v).ty.dtype.is_float()
            })
            .filter_map(|v| graph.value(*v).ty.numel())
            .sum();
        attrs.push(("params", params as f64));
        let mut reads: Vec<usize> = node
            .inputs
            .iter()
            .flatten()
            .filter_map(|v| graph.producer(*v))
            .filter_map(|p| index.get(&p).copied())
            .collect();
        reads.sort_unstable();
        reads.dedup();
        out.push(NodeFacts {
            name: node.name.clone(),
            op: node.op.name(),
            outputs: node
                .outputs
                .iter()
                .map(|&o| graph.value(o).name.clone())
                .collect(),
            attrs,
            weighted,
            reads,
        });
    }
    out
}

/// Up to three candidates close to `wanted` (Jaro similarity above 0.7, and within 0.05 of
/// the best one), best first.
pub fn suggest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| (strsim::jaro(wanted, c), c))
        .filter(|(s, _)| *s > 0.7)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    // When one candidate is clearly closest, the others are noise.
    let best = scored.first().map_or(0.0, |b| b.0);
    scored.retain(|(s, _)| *s >= best - 0.05);
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// "did you mean `a`?" / "did you mean one of `a`, `b`?"
pub fn did_you_mean(s: &[String]) -> Option<String> {
    match s {
        [] => None,
        [one] => Some(format!("did you mean `{one}`?")),
        many => Some(format!(
            "did you mean one of {}?",
            many.iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A selector problem, before it becomes a diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectError {
    /// Diagnostic code suffix (`unknown_layer`, `empty_selector`…).
    pub code: Code,
    /// The message.
    pub message: String,
    /// The label at the span.
    pub label: String,
    /// Where.
    pub span: Span,
    /// Help.
    pub help: Option<String>,
}

/// Matches a glob (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`) against a whole name.
pub fn glob_match(pat: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().position(|&c| c == ']').filter(|&c| c > 1) else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let (neg, set) = if p[1] == '!' {
                    (true, &p[2..close])
                } else {
                    (false, &p[1..close])
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != neg && go(&p[close + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Resolves a selector to node indices (into `facts`). Every atom that matches nothing
/// outside an optional (`?`) part is reported; all problems are collected.
pub fn resolve(
    sel: &Selector,
    facts: &[NodeFacts],
    model: &str,
    errors: &mut Vec<SelectError>,
) -> BTreeSet<usize> {
    resolve_in(sel, facts, model, false, errors)
}

fn resolve_in(
    sel: &Selector,
    facts: &[NodeFacts],
    model: &str,
    optional: bool,
    errors: &mut Vec<SelectError>,
) -> BTreeSet<usize> {
    let all = || (0..facts.len()).collect::<BTreeSet<usize>>();
    let names = || facts.iter().map(|f| f.name.as_str());
    let empty = |what: String, help: Option<String>, errors: &mut Vec<SelectError>| {
        if !optional {
            errors.push(SelectError {
                code: Code::EmptySelector,
                message: format!("{what} matches no layer of {model}"),
                label: "matches nothing".into(),
                span: sel.span,
                help: help.or_else(|| Some("mark it optional with `?` if that is intended; `mcc inspect MODEL` lists the layers".into())),
            });
        }
    };
    match &sel.kind {
        SelKind::All => all(),
        SelKind::Name(n) => {
            let hit: BTreeSet<usize> = facts
                .iter()
                .enumerate()
                .filter(|(_, f)| &f.name == n)
                .map(|(i, _)| i)
                .collect();
            if hit.is_empty() && !optional {
                // A tensor name instead of a node name is a common mix-up: say so.
                let producer = facts.iter().find(|f| f.outputs.iter().any(|o| o == n));
                let help = match producer {
                    Some(f) => Some(format!(
                        "`{n}` is a tensor; the layer that computes it is `{}`",
                        f.name
                    )),
                    None => did_you_mean(&suggest(n, names()))
                        .or_else(|| Some("`mcc inspect MODEL` lists the layers".into())),
                };
                errors.push(SelectError {
                    code: Code::UnknownLayer,
                    message: format!("no layer named `{n}` in {model}"),
                    label: "not a layer of this model".into(),
                    span: sel.span,
                    help,
                });
            }
            hit
        }
        SelKind::Glob(g) => {
            let hit: BTreeSet<usize> = facts
                .iter()
                .enumerate()
                .filter(|(_, f)| glob_match(g, &f.name))
                .map(|(i, _)| i)
                .collect();
            if hit.is_empty() {
                empty(format!("the pattern `{g}`"), None, errors);
            }
            hit
        }
        SelKind::Regex(r) => match regex::Regex::new(r) {
            Err(e) => {
                errors.push(SelectError {
                    code: Code::BadRegex,
                    message: "invalid regular expression".into(),
                    label: first_line(&e.to_string()),
                    span: sel.span,
                    help: Some(
                        "the regex syntax is Rust's `regex` crate (Perl-like, no look-around)"
                            .into(),
                    ),
                });
                BTreeSet::new()
            }
            Ok(re) => {
                let hit: BTreeSet<usize> = facts
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| re.is_match(&f.name))
                    .map(|(i, _)| i)
                    .collect();
                if hit.is_empty() {
                    empty(format!("the regular expression `/{r}/`"), None, errors);
                }
                hit
            }
        },
        SelKind::Op { name, preds } => {
            if !Op::NAMES.contains(&name.name.as_str()) {
                errors.push(SelectError {
                    code: Code::UnknownOp,
                    message: format!("`{}` is not an operator type mcc knows", name.name),
                    label: "unknown operator".into(),
                    span: name.span,
                    help: did_you_mean(&suggest(&name.name, Op::NAMES.iter().copied()))
                        .or_else(|| Some(format!("operator types: {}", Op::NAMES.join(", ")))),
                });
                return BTreeSet::new();
            }
            let mut ok_preds = vec![];
            for p in preds {
                if !ATTRIBUTES.iter().any(|(a, _)| *a == p.attr.name) {
                    let known: Vec<&str> = ATTRIBUTES.iter().map(|(a, _)| *a).collect();
                    errors.push(SelectError {
                        code: Code::UnknownAttribute,
                        message: format!("layers have no attribute `{}`", p.attr.name),
                        label: "unknown attribute".into(),
                        span: p.attr.span,
                        help: did_you_mean(&suggest(&p.attr.name, known.iter().copied()))
                            .or_else(|| Some(format!("attributes: {}", known.join(", ")))),
                    });
                    continue;
                }
                let ValueKind::Number { value, unit: None } = p.value.kind else {
                    errors.push(SelectError {
                        code: Code::BadPredicate,
                        message: format!("`{}` is compared with a plain number", p.attr.name),
                        label: "expected a number without a unit".into(),
                        span: p.value.span,
                        help: None,
                    });
                    continue;
                };
                ok_preds.push((p.attr.name.as_str(), p.cmp, value, p.attr.span));
            }
            let of_type: Vec<usize> = facts
                .iter()
                .enumerate()
                .filter(|(_, f)| f.op == name.name)
                .map(|(i, _)| i)
                .collect();
            for &(attr, _, _, span) in &ok_preds {
                if !of_type.is_empty()
                    && !of_type
                        .iter()
                        .any(|&i| facts[i].attrs.iter().any(|(a, _)| *a == attr))
                {
                    errors.push(SelectError {
                        code: Code::AttributeNotApplicable,
                        message: format!("`{}` layers have no `{attr}`", name.name),
                        label: "not an attribute of this operator".into(),
                        span,
                        help: Some(format!(
                            "{} layers have: {}",
                            name.name,
                            facts[of_type[0]]
                                .attrs
                                .iter()
                                .map(|(a, _)| *a)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    });
                    return BTreeSet::new();
                }
            }
            let hit: BTreeSet<usize> = of_type
                .into_iter()
                .filter(|&i| {
                    ok_preds.iter().all(|(attr, cmp, v, _)| {
                        facts[i]
                            .attrs
                            .iter()
                            .any(|(a, x)| a == attr && cmp_holds(*cmp, *x, *v))
                    })
                })
                .collect();
            if hit.is_empty() {
                let present: BTreeSet<&str> = facts.iter().map(|f| f.op).collect();
                let help = if present.contains(name.name.as_str()) {
                    Some("no layer of this type passes the attribute tests".into())
                } else {
                    Some(format!(
                        "the model's operator types are {}",
                        present.into_iter().collect::<Vec<_>>().join(", ")
                    ))
                };
                empty(format!("`{}`", &name.name), help, errors);
            }
            hit
        }
        SelKind::After(s) => {
            let src = resolve_in(s, facts, model, optional, errors);
            facts
                .iter()
                .enumerate()
                .filter(|(_, f)| f.reads.iter().any(|r| src.contains(r)))
                .map(|(i, _)| i)
                .collect()
        }
        SelKind::Before(s) => {
            let dst = resolve_in(s, facts, model, optional, errors);
            dst.iter()
                .flat_map(|&d| facts[d].reads.iter().copied())
                .collect()
        }
        SelKind::Inside(prefix) => {
            let hit: BTreeSet<usize> = facts
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name.starts_with(prefix.as_str()))
                .map(|(i, _)| i)
                .collect();
            if hit.is_empty() {
                empty(format!("inside(\"{prefix}\")"), None, errors);
            }
            hit
        }
        SelKind::Combine(first, rest) => {
            // Left to right, one term at a time: a long union does not recurse per term.
            let mut x = resolve_in(first, facts, model, optional, errors);
            for (op, term) in rest {
                let y = resolve_in(term, facts, model, optional, errors);
                match op {
                    SetOp::Union => x.extend(y),
                    SetOp::Inter => x.retain(|i| y.contains(i)),
                    SetOp::Diff => x.retain(|i| !y.contains(i)),
                }
            }
            x
        }
        SelKind::Optional(s) => resolve_in(s, facts, model, true, errors),
    }
}

fn cmp_holds(c: Cmp, a: f64, b: f64) -> bool {
    c.holds(a, b)
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or("").trim().to_string()
}

/// Whether a selector may select nothing: it is marked `?`, or it is a union of such
/// parts, or what it narrows down (`A - B`, `A & B`) may.
pub fn is_optional(sel: &Selector) -> bool {
    match &sel.kind {
        SelKind::Optional(_) => true,
        SelKind::Combine(first, rest) => {
            rest.iter()
                .fold(is_optional(first), |opt, (op, term)| match op {
                    SetOp::Union => opt && is_optional(term),
                    SetOp::Diff => opt,
                    SetOp::Inter => opt || is_optional(term),
                })
        }
        _ => false,
    }
}

//! Fuzzes the recipe language where hand-written text rarely goes: recipes generated from
//! the fuzz input with many definitions that `use` each other (with and without arguments,
//! in chains, diamonds and cycles, and the standard library's), parameters of every type,
//! and selectors nested up to twice the nesting limit. Every generated recipe must check
//! against a small model into a plan or diagnostics, never a panic; every diagnostic must
//! point inside its file and render (terminal and JSON) without a panic.
#![no_main]

use std::fmt::Write as _;
use std::path::Path;

#[path = "small_model.rs"]
mod small_model;
use small_model::model;

/// Choices read off the fuzz input; zeros once it is used up.
struct Gen<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Gen<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[self.byte() as usize % from.len()]
    }
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

const TECHNIQUES: &[&str] = &[
    "prune unstructured",
    "prune",
    "merge batchnorm",
    "merge",
    "merge cleanup",
    "quantize int8",
    "factorize svd",
    "shave",
];
const VALUES: &[&str] = &[
    "50%", "0%", "100%", "250%", "-5%", "0.5", "1e400", "auto", "amount", "sparsity", "p", "q",
    "\"l1\"", "4 KiB", "8 bits", "3", "channel", "tensor", "same",
];
const PARAMS: &[&str] = &[
    "amount", "sparsity", "bits", "per", "pad", "keep", "by", "p", "q",
];
const TYPES: &[&str] = &[
    "",
    ": ratio",
    ": bits",
    ": word",
    ": number",
    ": size",
    ": nothing",
];
const ATOMS: &[&str] = &[
    "*",
    "Conv",
    "Gemm",
    "Relu",
    "MaxPool",
    "Conv[params >= 10]",
    "Gemm[params < 1 M, kernel == 3]",
    "Conv[bogus > 1]",
    "\"/conv1/Conv\"",
    "\"/missing\"",
    "/co.*/",
    "/(/",
    "after(Conv)",
    "before(\"/fc/Gemm\")",
    "inside(\"/fc\")",
];
const OPS: &[&str] = &[" | ", " & ", " - "];

fn selector(g: &mut Gen, depth: usize, limit: usize, out: &mut String) {
    if depth >= limit || g.done() {
        out.push_str(g.pick(ATOMS));
        return;
    }
    match g.byte() % 8 {
        0 | 1 => {
            out.push('(');
            selector(g, depth + 1, limit, out);
            out.push(')');
        }
        2 | 3 => {
            selector(g, depth + 1, limit, out);
            out.push_str(g.pick(OPS));
            selector(g, depth + 1, limit, out);
        }
        4 => {
            out.push_str(g.pick(&["after(", "before(", "inside("]));
            selector(g, depth + 1, limit, out);
            out.push(')');
        }
        5 => {
            selector(g, depth + 1, limit, out);
            out.push('?');
        }
        _ => out.push_str(g.pick(ATOMS)),
    }
}

fn args(g: &mut Gen, out: &mut String) {
    if g.byte() % 2 == 0 {
        return;
    }
    out.push('(');
    for i in 0..g.byte() % 3 {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: {}", g.pick(PARAMS), g.pick(VALUES));
    }
    out.push(')');
}

fn use_stmt(g: &mut Gen, defs: usize, out: &mut String) {
    out.push_str("use ");
    if defs > 0 && g.byte() % 4 != 0 {
        let _ = write!(out, "r{}", g.byte() as usize % defs);
    } else {
        out.push_str(g.pick(&[
            "std.deep_compression",
            "std.int8",
            "std.sparsify",
            "std.fold_norms",
            "std.merge",
            "std.missing",
            "r99",
        ]));
    }
    args(g, out);
    out.push('\n');
}

fn rule(g: &mut Gen, limit: usize, out: &mut String) {
    let _ = write!(out, "  {} on ", g.pick(TECHNIQUES));
    selector(g, 0, limit, out);
    if g.byte() % 3 != 0 {
        out.push_str(" { ");
        for i in 0..g.byte() % 3 {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}: {}", g.pick(PARAMS), g.pick(VALUES));
        }
        out.push_str(" }");
    }
    out.push('\n');
}

fn body(g: &mut Gen, defs: usize, limit: usize, in_stage: bool, out: &mut String) {
    for _ in 0..g.byte() % 4 {
        match g.byte() % 3 {
            0 => use_stmt(g, defs, out),
            1 if !in_stage => {
                let _ = writeln!(out, "stage s{} {{", g.byte() % 4);
                body(g, defs, limit, true, out);
                out.push_str("}\n");
            }
            _ => rule(g, limit, out),
        }
    }
}

/// A recipe: definitions r0…, then top-level uses, a budget, stages and rules.
fn recipe(g: &mut Gen) -> String {
    // Up to twice the nesting limit, so both sides of it are reached.
    let limit = g.byte() as usize % (2 * mcc_recipe::MAX_NESTING + 8);
    let defs = (g.byte() % 12) as usize;
    let mut out = String::new();
    for i in 0..defs {
        let _ = write!(out, "recipe r{i}");
        if g.byte() % 2 == 0 {
            out.push('(');
            for j in 0..g.byte() % 3 {
                if j > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}{}", g.pick(PARAMS), g.pick(TYPES));
                if g.byte() % 2 == 0 {
                    let _ = write!(out, " = {}", g.pick(VALUES));
                }
            }
            out.push(')');
        }
        out.push_str(" {\n");
        body(g, defs, limit, false, &mut out);
        out.push_str("}\n");
    }
    if g.byte() % 2 == 0 {
        let _ = writeln!(
            out,
            "budget {{ {} <= {} }}",
            g.pick(&["accuracy_drop", "size", "flops", "latency", "fidelity"]),
            g.pick(VALUES)
        );
    }
    while !g.done() {
        match g.byte() % 3 {
            0 => use_stmt(g, defs, &mut out),
            1 => {
                let _ = writeln!(out, "stage t{} {{", g.byte() % 4);
                body(g, defs, limit, true, &mut out);
                out.push_str("}\n");
            }
            _ => rule(g, limit, &mut out),
        }
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let src = recipe(&mut Gen { data, pos: 0 });
    let checked = mcc_plan::plan::check(
        &src,
        "fuzz.mcr",
        Path::new("."),
        model(),
        "m.onnx",
        &mcc_passes::registry(),
    );
    for d in &checked.diags {
        let len = checked.files[d.file].text.len() as u32;
        assert!(
            d.span.start <= d.span.end && d.span.end <= len,
            "diagnostic span out of its file: {d:?}\n{src}"
        );
    }
    let handler = miette::GraphicalReportHandler::new();
    for r in mcc::diagnostics::rendered(&checked) {
        let mut s = String::new();
        handler
            .render_report(&mut s, &r)
            .expect("a diagnostic renders");
    }
    let _ = mcc::diagnostics::checked_json_lines(&checked, "fuzz.mcr");
});

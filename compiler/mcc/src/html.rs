//! `report.html`: the typed report ([`Report`]) for people, in one file a browser opens.
//!
//! Guarantees, each tested (unit tests here; `tests/report_html.rs` in headless Chromium):
//!
//! - **Self-contained**: no network and nothing outside the file — inline CSS, one small
//!   inline script (table sorting), charts as inline SVG drawn here. A Content-Security-Policy
//!   forbids every fetch and lets only that script run (by its SHA-256), so the page stays
//!   whole offline and a string that escaped escaping still could not run.
//! - **Escaped**: every string from the model, the recipe or the data (layer names, recipe
//!   text, file names, budget constraints) goes through [`escape`]; a layer named
//!   `<script>alert(1)</script>` shows as that text.
//! - **Only the report's numbers**: everything shown comes from the [`Report`] and the sizes
//!   of the files written beside it ([`Files`]); what the report does not hold is not shown —
//!   except a measured latency, which only `mcc bench --report` adds ([`render_measured`]),
//!   in a section of its own: the page `mcc build` writes holds no timing.
//! - **Deterministic**: the same report and files give the same bytes (no timestamps, no
//!   hash-map order, Rust's float formatting).

use std::fmt::Write as _;

use crate::report::{
    AllocatedLayer, BeforeAfter, Engine, KernelForm, Latency, Layer, OnnxForm, ParamValue, Report,
};
use crate::sensitivity::{Metric, signed_points};

/// The sizes of native files written with the report (they are not in `report.json`: the
/// linker decides them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Files {
    /// The executable's size in bytes, when one was written.
    pub executable_bytes: Option<u64>,
    /// The object file's size in bytes, when one was written.
    pub object_bytes: Option<u64>,
}

impl Files {
    /// The sizes of the native files `report` names, as they are in `dir` (where the report
    /// is written); a file that is not there has none.
    pub fn in_folder(dir: &std::path::Path, report: &Report) -> Files {
        let size = |f: &str| std::fs::metadata(dir.join(f)).ok().map(|m| m.len());
        let native = report.native.as_ref();
        Files {
            executable_bytes: native.and_then(|n| n.executable.as_deref()).and_then(size),
            object_bytes: native.and_then(|n| size(&n.object)),
        }
    }
}

/// The sorting script: a click on (or Enter in) a header of a `table.sortable` sorts its body
/// by that column — by `data-v` as a number for `data-type="num"` headers (cells without a
/// number last, either way), else by text — and marks the header with `aria-sort`.
const SCRIPT: &str = r#"(function () {
  "use strict";
  function key(row, i, num) {
    var c = row.cells[i];
    if (!c) { return num ? NaN : ""; }
    var v = c.hasAttribute("data-v") ? c.getAttribute("data-v") : c.textContent;
    return num ? (v === "" ? NaN : Number(v)) : v.trim().toLowerCase();
  }
  function sortBy(table, th, i) {
    var heads = table.tHead.rows[0].cells;
    var asc = th.getAttribute("aria-sort") !== "ascending";
    for (var h = 0; h < heads.length; h++) { heads[h].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var num = th.getAttribute("data-type") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, i, num), y = key(b, i, num), d;
      if (num) {
        var xn = isNaN(x), yn = isNaN(y);
        if (xn || yn) { d = xn === yn ? 0 : (xn ? 1 : -1); return d || a.dataset.i - b.dataset.i; }
        d = x - y;
      } else {
        d = x < y ? -1 : (x > y ? 1 : 0);
      }
      return (asc ? d : -d) || a.dataset.i - b.dataset.i;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r, n) { r.dataset.i = n; });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th, i); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, i); }
      });
    });
  });
})();"#;

const STYLE: &str = r#"
:root { --fg: #1d2330; --muted: #5b6476; --line: #d8dce3; --bg: #ffffff; --band: #f4f6f9;
  --before: #aab2bf; --after: #2a64d6; --bad: #b3261e; --good: #1e7a3c; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1280px; padding: 24px 28px 48px; color: var(--fg);
  background: var(--bg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  "DejaVu Sans", "Liberation Sans", sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
p.meta, p.note { color: var(--muted); margin: 4px 0; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 170px; background: var(--band); }
.card .k { color: var(--muted); font-size: 12px; }
.card .v { font-size: 18px; font-weight: 600; }
.card .d { font-size: 12px; color: var(--muted); }
table { border-collapse: collapse; margin: 6px 0; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \2195"; color: var(--muted); font-weight: 400; }
table.sortable th[aria-sort="ascending"]::after { content: " \2191"; color: var(--fg); }
table.sortable th[aria-sort="descending"]::after { content: " \2193"; color: var(--fg); }
.wide { overflow-x: auto; }
#layers td { font-size: 12.5px; padding: 4px 6px; }
#layers th { white-space: normal; vertical-align: bottom; }
#layers td:nth-child(3) { min-width: 180px; }
#layers td:nth-child(13) { min-width: 220px; }
.ok { color: var(--good); font-weight: 600; }
.fail { color: var(--bad); font-weight: 600; }
.why { color: var(--muted); font-size: 12px; }
svg { display: block; margin: 8px 0 16px; font-family: inherit; }
svg text { font-size: 11px; fill: var(--fg); }
svg text.why { fill: var(--muted); }
svg .axis { stroke: var(--line); }
svg .before { fill: var(--before); }
svg .after { fill: var(--after); }
svg .curve { fill: none; stroke: var(--after); stroke-width: 1.5; }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; vertical-align: middle; }
.curves { display: flex; flex-wrap: wrap; gap: 8px 20px; }
"#;

/// The page for `report` as `mcc build` writes it (`files`: the native files' sizes, when
/// written): what the report holds, never a timing.
pub fn render(report: &Report, files: &Files) -> String {
    page(report, files, None)
}

/// [`render`] with a measured latency in the summary (`mcc bench --report`): the same page
/// plus its latency section.
pub fn render_measured(report: &Report, files: &Files, latency: &Latency) -> String {
    page(report, files, Some(latency))
}

fn page(report: &Report, files: &Files, measured: Option<&Latency>) -> String {
    let script_hash = sha256_base64(SCRIPT.as_bytes());
    let model = &report.inputs.model.file;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(
        h,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{script_hash}'\">"
    );
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str("<link rel=\"icon\" href=\"data:,\">\n");
    let _ = writeln!(h, "<title>mcc report: {}</title>", escape(model));
    let _ = writeln!(h, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(h, "<h1>mcc report: <code>{}</code></h1>", escape(model));
    let _ = writeln!(
        h,
        "<p class=\"meta\">recipe <code>{}</code> · mcc {} · report schema {}</p>",
        escape(&report.inputs.recipe.file),
        escape(&report.mcc_version),
        report.schema_version
    );
    summary(&mut h, report, files);
    latency(&mut h, report, measured);
    budget(&mut h, report);
    predictions(&mut h, report);
    layers(&mut h, report);
    charts(&mut h, report);
    stages(&mut h, report);
    attribution(&mut h, report);
    allocation(&mut h, report);
    others(&mut h, report);
    inputs(&mut h, report);
    let _ = writeln!(h, "<script>{SCRIPT}</script>\n</body>\n</html>");
    h
}

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe in text and in quoted
/// attributes, in HTML and in inline SVG.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn sha256_base64(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An integer with thousands separated by commas.
fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count for people: `12,345 B (12.1 KiB)`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{} B", int(n));
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{} B ({v:.1} {unit})", int(n))
}

/// How `after` compares to `before`: `−80.0%`, `+3.1%`, `same`.
fn change(before: f64, after: f64) -> String {
    if before == after {
        "same".into()
    } else if before == 0.0 {
        "new".into()
    } else {
        let pct = (after - before) / before * 100.0;
        let ratio = if after > 0.0 && after < before {
            format!(", ×{:.2} smaller", before / after)
        } else {
            String::new()
        };
        format!(
            "{}{:.1}%{ratio}",
            if pct < 0.0 { "−" } else { "+" },
            pct.abs()
        )
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", x * 100.0)
    } else {
        num(x)
    }
}

/// A float for people, non-finite ones named.
fn num(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else if x == 0.0 {
        "0".into()
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        let sign = if x < 0.0 { "-" } else { "" };
        format!("{sign}{}", int(x.abs() as u64))
    } else if x.abs() >= 1e-3 && x.abs() < 1e4 {
        format!("{}", (x * 1e4).round() / 1e4)
    } else {
        format!("{x:.3e}")
    }
}

/// A `data-v` sort key: the number, or empty (sorted last) when there is none.
fn key(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

fn card(h: &mut String, label: &str, value: &str, detail: &str) {
    let _ = writeln!(
        h,
        "<div class=\"card\"><div class=\"k\">{label}</div><div class=\"v\">{value}</div><div class=\"d\">{detail}</div></div>"
    );
}

fn summary(h: &mut String, r: &Report, files: &Files) {
    let t = &r.model_totals;
    h.push_str("<h2 id=\"summary\">Summary</h2>\n<div class=\"cards\">\n");
    let ba = |v: BeforeAfter<u64>| {
        (
            format!("{} → {}", int(v.before), int(v.after)),
            change(v.before as f64, v.after as f64),
        )
    };
    let (v, d) = ba(t.bytes);
    card(h, "stored weight bytes", &v, &d);
    let (v, d) = ba(t.params);
    card(h, "parameters", &v, &d);
    let (v, d) = ba(t.nonzero_params);
    card(h, "nonzero parameters", &v, &d);
    let (v, d) = ba(t.macs);
    card(h, "MACs per sample", &v, &d);
    if let Some(a) = t.accuracy {
        card(
            h,
            "top-1 accuracy",
            &format!("{} → {}", pct(a.before), pct(a.after)),
            &format!(
                "{} points, {} evaluation samples",
                signed_points(a.after - a.before),
                r.measurement.evaluation_samples
            ),
        );
    }
    if let Some(f) = t.output_fidelity {
        card(
            h,
            "outputs vs original",
            &format!("rel. L2 {}", num(f.relative_l2)),
            &format!("cosine {}", num(f.cosine)),
        );
    }
    if let Some(n) = &r.native {
        let exe = match (&n.executable, files.executable_bytes) {
            (Some(_), Some(b)) => bytes(b),
            (Some(_), None) => "not written".into(),
            (None, _) => "none".into(),
        };
        let why = n.no_executable.as_deref().map_or_else(
            || n.executable.as_deref().map_or(String::new(), escape),
            escape,
        );
        card(h, "executable", &exe, &why);
        card(
            h,
            "weight data in the object file",
            &bytes(n.weight_bytes),
            if n.weights_stored {
                "stored compressed, expanded at load"
            } else {
                "dense, mapped from the executable"
            },
        );
        card(
            h,
            "arena (peak activations per sample)",
            &bytes(n.arena_bytes_per_sample),
            &format!("scratch {}", bytes(n.scratch_bytes)),
        );
    }
    h.push_str("</div>\n");
    let engine = match r.measurement.engine {
        Engine::Compiled => "the compiled code the executable runs",
        Engine::Evaluator => "the reference evaluator",
    };
    let _ = writeln!(
        h,
        "<p class=\"meta\">Measured on {engine}, instruction set <code>{}</code> (the CPU's model is not recorded: the report depends only on the instruction set); {} calibration and {} evaluation samples.{}</p>",
        escape(&r.measurement.isa),
        r.measurement.calibration_samples,
        r.measurement.evaluation_samples,
        r.measurement
            .engine_note
            .as_deref()
            .map_or(String::new(), |n| format!(" {}", escape(n)))
    );
    if let Some(n) = &r.native {
        let sizes: Vec<String> = n
            .input_sizes
            .iter()
            .map(|size| {
                size.iter()
                    .map(|dims| {
                        dims.iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join("×")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        let _ = writeln!(
            h,
            "<p class=\"meta\">Native code <code>{}</code>: {} steps ({} inline), compiled for input sizes {}{}{}.</p>",
            escape(&n.name),
            n.steps,
            n.inline_steps,
            escape(&sizes.join("; ")),
            n.fixed_batch
                .map_or(String::new(), |b| format!(", batch fixed at {b}")),
            files
                .object_bytes
                .map_or(String::new(), |b| format!("; object file {}", bytes(b)))
        );
    }
}

/// The summary's latency section: the measured latency (`mcc bench --report`); without one,
/// for a recipe with a `latency` budget, where the times are; else nothing. A section of its
/// own (`#latency`): the page without it is the build's, byte for byte.
fn latency(h: &mut String, r: &Report, measured: Option<&Latency>) {
    let Some(l) = measured else {
        let budgeted = r.budget.iter().any(|b| {
            b.constraint
                .trim_start()
                .strip_prefix("latency")
                .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
        });
        if budgeted {
            h.push_str(
                "<section id=\"latency\">\n<p class=\"meta\">Latency: the budget's verdict is below; the times measured for it are in <code>timings.json</code>, not on this page, which shows only what the build's inputs determine. <code>mcc bench --report DIR</code> times both models and adds them here.</p>\n</section>\n",
            );
        }
        return;
    };
    h.push_str("<section id=\"latency\">\n<div class=\"cards\">\n");
    let after = format!("{} ms", num(l.after_ms));
    let (value, detail) = match l.before_ms {
        Some(b) if l.after_ms > 0.0 && b > 0.0 => (
            format!("{} ms → {after}", num(b)),
            if b >= l.after_ms {
                format!("×{:.2} faster", b / l.after_ms)
            } else {
                format!("×{:.2} slower", l.after_ms / b)
            },
        ),
        Some(b) => (format!("{} ms → {after}", num(b)), String::new()),
        None => (after, "the original has no native code".into()),
    };
    card(h, &format!("latency, batch {}", l.batch), &value, &detail);
    h.push_str("</div>\n");
    let _ = writeln!(
        h,
        "<p class=\"meta\">Latency: the median of {} timed runs (after 5 warm-up runs) of a batch of {} on {} thread{}, CPU <code>{}</code>; the original and the compressed model each compiled as the executable is. Measured by <code>mcc bench --report</code> and kept in <code>timings.json</code>: times vary from run to run, so <code>report.json</code> holds none.</p>",
        l.runs,
        l.batch,
        l.threads,
        if l.threads == 1 { "" } else { "s" },
        escape(&l.cpu)
    );
    h.push_str("</section>\n");
}

fn budget(h: &mut String, r: &Report) {
    if r.budget.is_empty() {
        return;
    }
    h.push_str("<h2 id=\"budget\">Budget</h2>\n<table id=\"budget-table\">\n<thead><tr><th>constraint</th><th class=\"n\">recipe line</th><th>measured</th><th>verdict</th></tr></thead>\n<tbody>\n");
    for b in &r.budget {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&b.constraint),
            b.line,
            escape(&b.measured),
            if b.ok { "ok" } else { "fail" },
            if b.ok { "holds" } else { "violated" }
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn predictions(h: &mut String, r: &Report) {
    let Some(p) = &r.predictions else {
        return;
    };
    h.push_str("<h2 id=\"classes\">Accuracy per class</h2>\n");
    h.push_str("<table id=\"classes-table\" class=\"sortable\">\n<thead><tr><th data-type=\"num\" class=\"n\">class</th><th data-type=\"num\" class=\"n\">samples</th><th data-type=\"num\" class=\"n\">before</th><th data-type=\"num\" class=\"n\">after</th><th data-type=\"num\" class=\"n\">change (points)</th></tr></thead>\n<tbody>\n");
    for c in &p.per_class {
        let d = c.accuracy.after - c.accuracy.before;
        let _ = writeln!(
            h,
            "<tr><td class=\"n\">{}</td><td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td></tr>",
            c.class,
            c.samples,
            int(c.samples as u64),
            key(Some(c.accuracy.before)),
            pct(c.accuracy.before),
            key(Some(c.accuracy.after)),
            pct(c.accuracy.after),
            key(Some(d)),
            signed_points(d)
        );
    }
    h.push_str("</tbody>\n</table>\n");
    let _ = writeln!(
        h,
        "<h3 id=\"changed\">Samples whose prediction changed: {}</h3>",
        int(p.changed_total as u64)
    );
    if p.changed.is_empty() {
        return;
    }
    if p.changed.len() < p.changed_total {
        let _ = writeln!(
            h,
            "<p class=\"note\">The first {} by index (the report lists no more).</p>",
            p.changed.len()
        );
    }
    h.push_str("<div class=\"wide\" style=\"max-height: 320px; overflow-y: auto\"><table id=\"changed-table\" class=\"sortable\">\n<thead><tr><th data-type=\"num\" class=\"n\">sample</th><th data-type=\"num\" class=\"n\">label</th><th data-type=\"num\" class=\"n\">predicted before</th><th data-type=\"num\" class=\"n\">predicted after</th><th>now</th></tr></thead>\n<tbody>\n");
    let shown = |p: Option<usize>| p.map_or("none (NaN)".to_string(), |k| k.to_string());
    for c in &p.changed {
        let (b, a) = (c.prediction.before, c.prediction.after);
        let right = |p: Option<usize>| p.is_some_and(|k| k as i64 == c.label);
        let now = match (right(b), right(a)) {
            (true, false) => "<span class=\"fail\">wrong</span>",
            (false, true) => "<span class=\"ok\">right</span>",
            _ => "still wrong",
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td><td>{now}</td></tr>",
            c.sample,
            c.label,
            key(b.map(|k| k as f64)),
            shown(b),
            key(a.map(|k| k as f64)),
            shown(a)
        );
    }
    h.push_str("</tbody>\n</table></div>\n");
}

fn param(v: &ParamValue) -> String {
    match v {
        ParamValue::Num(n) => num(*n),
        ParamValue::Text(t) => t.clone(),
    }
}

fn kernel(l: &Layer) -> (String, String) {
    let Some(s) = &l.storage else {
        return (
            if l.removed { "removed" } else { "—" }.into(),
            String::new(),
        );
    };
    let k = match s.kernel {
        KernelForm::Dense => "dense",
        KernelForm::Sparse => "sparse",
        KernelForm::BlockSparse => "block-sparse",
        KernelForm::SizeOnly => "dense (size only)",
        KernelForm::ExpandedAtLoad => "dense, expanded at load",
    };
    let why = match (&s.kernel_why, s.kernel) {
        (Some(w), _) => w.clone(),
        (None, KernelForm::ExpandedAtLoad) => "no kernel runs this stored form yet".into(),
        (None, _) => String::new(),
    };
    (k.into(), why)
}

fn layers(h: &mut String, r: &Report) {
    let _ = writeln!(
        h,
        "<h2 id=\"layers-title\">Layers ({} changed or removed)</h2>\n<p class=\"note\">Click a column header to sort. Output error: the layer's output against the original model's at the same point, on the calibration data.</p>",
        r.layers.len()
    );
    h.push_str("<div class=\"wide\"><table id=\"layers\" class=\"sortable\">\n<thead><tr>");
    let heads: [(&str, bool); 13] = [
        ("layer", false),
        ("op", false),
        ("techniques (recipe line)", false),
        ("params<br>before", true),
        ("params<br>after", true),
        ("nonzero<br>after", true),
        ("MACs<br>before", true),
        ("MACs<br>after", true),
        ("bytes<br>before", true),
        ("bytes<br>after", true),
        ("output error<br>(rel. L2)", true),
        ("cosine", true),
        ("stored as · kernel: why", false),
    ];
    for (name, numeric) in heads {
        if numeric {
            let _ = write!(h, "<th data-type=\"num\" class=\"n\">{name}</th>");
        } else {
            let _ = write!(h, "<th>{name}</th>");
        }
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for l in &r.layers {
        let techniques: Vec<String> = l
            .techniques
            .iter()
            .map(|t| {
                let params: Vec<String> = t
                    .params
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", param(v)))
                    .collect();
                format!(
                    "{} {}{} <span class=\"why\">({} line {})</span>",
                    escape(&t.technique),
                    escape(&t.variant),
                    if params.is_empty() {
                        String::new()
                    } else {
                        format!(" {{ {} }}", escape(&params.join(", ")))
                    },
                    escape(&t.recipe_file),
                    t.recipe_line
                )
            })
            .collect();
        let mut techniques = techniques.join("<br>");
        if l.removed && !l.merged_into.is_empty() {
            let _ = write!(
                techniques,
                "<br><span class=\"why\">merged into {}</span>",
                escape(&l.merged_into.join(", "))
            );
        }
        let n = |v: u64| format!("<td class=\"n\" data-v=\"{v}\">{}</td>", int(v));
        let (err, cos) = match l.output_error {
            Some(e) => (
                format!(
                    "<td class=\"n\" data-v=\"{}\">{}</td>",
                    key(Some(e.relative_l2)),
                    num(e.relative_l2)
                ),
                format!(
                    "<td class=\"n\" data-v=\"{}\">{}</td>",
                    key(Some(e.cosine)),
                    num(e.cosine)
                ),
            ),
            None => (
                "<td class=\"n\" data-v=\"\">—</td>".to_string(),
                "<td class=\"n\" data-v=\"\">—</td>".to_string(),
            ),
        };
        let stored = l.storage.as_ref().map_or("—".to_string(), |s| {
            format!(
                "<code>{}</code>{}",
                escape(&s.encoding),
                match s.onnx {
                    OnnxForm::Dense => "",
                    OnnxForm::DequantizeLinear =>
                        " <span class=\"why\">(ONNX: DequantizeLinear)</span>",
                }
            )
        });
        let (k, why) = kernel(l);
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{techniques}</td>{}{}{}{}{}{}{}{err}{cos}<td>{stored}<br>{}{}</td></tr>",
            escape(&l.name),
            escape(&l.op),
            n(l.params.before),
            n(l.params.after),
            n(l.nonzero_params.after),
            n(l.macs.before),
            n(l.macs.after),
            n(l.bytes.before),
            n(l.bytes.after),
            format_args!("kernel: {}", escape(&k)),
            if why.is_empty() {
                String::new()
            } else {
                format!("<br><span class=\"why\">{}</span>", escape(&why))
            }
        );
    }
    h.push_str("</tbody>\n</table></div>\n");
}

/// Up to `max` characters of `s`, with `…` when cut (before escaping).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A round step near `span / 4` (1, 2 or 5 times a power of ten).
fn nice_step(span: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / 4.0;
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let k = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * p
}

const CHART_W: f64 = 900.0;
const LABEL_W: f64 = 230.0;
const LABEL_CHARS: usize = 34;

fn charts(h: &mut String, r: &Report) {
    if r.layers.is_empty() {
        return;
    }
    h.push_str("<h2 id=\"charts\">Charts</h2>\n");
    bytes_chart(h, r);
    error_chart(h, r);
}

/// Per layer, stored bytes before (grey) and after (blue): horizontal bars on a linear scale.
fn bytes_chart(h: &mut String, r: &Report) {
    let row = 24.0;
    let top = 28.0;
    let height = top + row * r.layers.len() as f64 + 10.0;
    let plot = CHART_W - LABEL_W - 170.0;
    let max = r
        .layers
        .iter()
        .map(|l| l.bytes.before.max(l.bytes.after))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let unit = if max >= 1024.0 * 1024.0 {
        1024.0 * 1024.0
    } else if max >= 1024.0 {
        1024.0
    } else {
        1.0
    };
    let step = nice_step(max / unit) * unit;
    let x = |v: f64| LABEL_W + v / max * plot;
    h.push_str("<h3>Stored bytes per layer</h3>\n<p class=\"legend note\"><span style=\"background: var(--before)\"></span>before<span style=\"background: var(--after)\"></span>after</p>\n");
    let _ = writeln!(
        h,
        "<svg id=\"chart-bytes\" role=\"img\" aria-label=\"stored bytes per layer, before and after\" width=\"{CHART_W}\" height=\"{height}\" viewBox=\"0 0 {CHART_W} {height}\">"
    );
    let mut t = 0.0;
    while t <= max + step * 1e-9 {
        let _ = writeln!(
            h,
            "<line class=\"axis\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1}\" y2=\"{2:.1}\"/><text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>",
            x(t),
            top - 6.0,
            height - 6.0,
            top - 12.0,
            short_bytes(t)
        );
        t += step;
    }
    for (i, l) in r.layers.iter().enumerate() {
        let y = top + row * i as f64;
        let name = escape(&l.name);
        let _ = writeln!(
            h,
            "<g class=\"bar\"><title>{name}: {} → {} bytes</title><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect class=\"before\" x=\"{LABEL_W}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\"/><rect class=\"after\" x=\"{LABEL_W}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            int(l.bytes.before),
            int(l.bytes.after),
            LABEL_W - 8.0,
            y + 14.0,
            escape(&clip(&l.name, LABEL_CHARS)),
            y + 3.0,
            x(l.bytes.before as f64) - LABEL_W,
            y + 11.0,
            x(l.bytes.after as f64) - LABEL_W,
            x(l.bytes.before.max(l.bytes.after) as f64) + 6.0,
            y + 14.0,
            format_args!(
                "{} → {}",
                short_bytes(l.bytes.before as f64),
                short_bytes(l.bytes.after as f64)
            )
        );
    }
    h.push_str("</svg>\n");
}

/// `1.5 MiB`, `512 KiB`, `20 B`: one decimal, dropped when it is 0.
fn short_bytes(v: f64) -> String {
    let (v, unit) = if v >= 1024.0 * 1024.0 {
        (v / 1024.0 / 1024.0, "MiB")
    } else if v >= 1024.0 {
        (v / 1024.0, "KiB")
    } else {
        (v, "B")
    };
    let s = format!("{v:.1}");
    format!("{} {unit}", s.strip_suffix(".0").unwrap_or(&s))
}

/// Per layer, the output's relative L2 error: horizontal bars on a log scale, each labelled
/// with its value; a layer without one (removed, not measured, zero, NaN) is labelled why.
fn error_chart(h: &mut String, r: &Report) {
    let values: Vec<Option<f64>> = r
        .layers
        .iter()
        .map(|l| l.output_error.map(|e| e.relative_l2))
        .collect();
    let positive: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    h.push_str("<h3>Output error per layer (relative L2, log scale)</h3>\n");
    if positive.is_empty() {
        h.push_str("<p class=\"note\">No layer has a nonzero measured output error.</p>\n");
        return;
    }
    let lo = positive
        .iter()
        .fold(f64::INFINITY, |a, &b| a.min(b))
        .log10()
        .floor();
    let mut hi = positive
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b))
        .log10()
        .ceil();
    if hi <= lo {
        hi = lo + 1.0;
    }
    let row = 20.0;
    let top = 28.0;
    let height = top + row * r.layers.len() as f64 + 10.0;
    let plot = CHART_W - LABEL_W - 110.0;
    let x = |v: f64| LABEL_W + (v.log10() - lo) / (hi - lo) * plot;
    let _ = writeln!(
        h,
        "<svg id=\"chart-error\" role=\"img\" aria-label=\"output error per layer\" width=\"{CHART_W}\" height=\"{height}\" viewBox=\"0 0 {CHART_W} {height}\">"
    );
    let mut d = lo;
    while d <= hi {
        let _ = writeln!(
            h,
            "<line class=\"axis\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1}\" y2=\"{2:.1}\"/><text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">1e{4}</text>",
            x(10f64.powf(d)),
            top - 6.0,
            height - 6.0,
            top - 12.0,
            d as i64
        );
        d += 1.0;
    }
    for (i, (l, v)) in r.layers.iter().zip(&values).enumerate() {
        let y = top + row * i as f64;
        let name = escape(&l.name);
        let label = escape(&clip(&l.name, LABEL_CHARS));
        let _ = write!(
            h,
            "<g class=\"bar\"><title>{name}: {}</title><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            v.map_or("not measured".to_string(), num),
            LABEL_W - 8.0,
            y + 13.0
        );
        match v {
            Some(v) if v.is_finite() && *v > 0.0 => {
                let _ = write!(
                    h,
                    "<rect class=\"after\" x=\"{LABEL_W}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    y + 3.0,
                    (x(*v) - LABEL_W).max(1.0),
                    x(*v).max(LABEL_W) + 6.0,
                    y + 13.0,
                    num(*v)
                );
            }
            other => {
                let why = match other {
                    Some(v) if *v == 0.0 => "0 (exact)".to_string(),
                    Some(v) => num(*v),
                    None if l.removed => "removed".to_string(),
                    None => "not measured".to_string(),
                };
                let _ = write!(
                    h,
                    "<text x=\"{:.1}\" y=\"{:.1}\" class=\"why\">{why}</text>",
                    LABEL_W + 4.0,
                    y + 13.0
                );
            }
        }
        h.push_str("</g>\n");
    }
    h.push_str("</svg>\n");
}

fn allocation(h: &mut String, r: &Report) {
    let Some(a) = &r.allocation else {
        return;
    };
    let _ = writeln!(
        h,
        "<h2 id=\"allocation\">How <code>auto</code> was chosen</h2>\n<p class=\"note\">Under <code>{}</code>: {}, {} with no <code>auto</code> rule applied, {} as allocated (estimated total {}).</p>",
        escape(&a.budget),
        escape(&a.metric),
        num(a.baseline),
        num(a.chosen_metric),
        num(a.estimated_total)
    );
    h.push_str("<table id=\"allocation-table\" class=\"sortable\">\n<thead><tr><th>layer</th><th>technique</th><th data-type=\"num\" class=\"n\">recipe line</th><th>parameter</th><th data-type=\"num\" class=\"n\">chosen</th><th data-type=\"num\" class=\"n\">uniform</th></tr></thead>\n<tbody>\n");
    let shown = |v: Option<f64>| v.map_or("left as is".to_string(), num);
    for l in &a.layers {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td></tr>",
            escape(&l.layer),
            escape(&l.technique),
            l.recipe_line,
            escape(&l.param),
            key(l.value),
            shown(l.value),
            key(l.uniform),
            shown(l.uniform)
        );
    }
    h.push_str("</tbody>\n</table>\n");
    if let Some(u) = &a.uniform {
        let _ = writeln!(
            h,
            "<p class=\"note\">Uniform alternative: {} on every layer, {} on calibration, {}{} bytes, {} MACs.</p>",
            num(u.value),
            num(u.calibration_metric),
            u.evaluation_accuracy.map_or(String::new(), |acc| format!(
                "evaluation accuracy {}, ",
                pct(acc)
            )),
            int(u.bytes),
            int(u.macs)
        );
    }
    let with_curves: Vec<&AllocatedLayer> = a.layers.iter().filter(|l| l.curve.len() > 1).collect();
    if with_curves.is_empty() {
        return;
    }
    h.push_str("<h3>Sensitivity curves (each layer alone, calibration set)</h3>\n<div class=\"curves\" id=\"curves\">\n");
    for l in with_curves {
        curve(h, l);
    }
    h.push_str("</div>\n");
}

/// A line chart's frame: the plot area inside its margins, and the data's ranges mapped onto
/// it (y upwards).
struct Plot {
    w: f64,
    ht: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Plot {
    /// The frame of `size` (width, height) with `margins` (left, right, top, bottom) for
    /// `points`, ignoring non-finite ones; `None` when none is finite. A flat range is
    /// widened (y by ±0.5, x to a span of 1).
    fn new(
        size: (f64, f64),
        margins: (f64, f64, f64, f64),
        points: impl Iterator<Item = (f64, f64)>,
    ) -> Option<Plot> {
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for (x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if !x0.is_finite() || !y0.is_finite() {
            return None;
        }
        if y1 - y0 < 1e-12 {
            y0 -= 0.5;
            y1 += 0.5;
        }
        if x1 - x0 < 1e-12 {
            x1 = x0 + 1.0;
        }
        let (w, ht) = size;
        let (left, right, top, bottom) = margins;
        Some(Plot {
            w,
            ht,
            left,
            right,
            top,
            bottom,
            x0,
            x1,
            y0,
            y1,
        })
    }

    fn px(&self, v: f64) -> f64 {
        self.left + (v - self.x0) / (self.x1 - self.x0) * (self.w - self.left - self.right)
    }

    fn py(&self, v: f64) -> f64 {
        self.top + (self.y1 - v) / (self.y1 - self.y0) * (self.ht - self.top - self.bottom)
    }

    /// The two axes, with the y range's ends (`y`) left of the y axis and the x range's
    /// (`x`) under the x axis.
    fn axes(&self, h: &mut String, y: impl Fn(f64) -> String, x: impl Fn(f64) -> String) {
        let (left, top, base) = (self.left, self.top, self.ht - self.bottom);
        let _ = writeln!(
            h,
            "<line class=\"axis\" x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{base}\"/><line class=\"axis\" x1=\"{left}\" x2=\"{}\" y1=\"{base}\" y2=\"{base}\"/>",
            self.w - self.right
        );
        for (v, at) in [(self.y0, base), (self.y1, top + 8.0)] {
            let _ = writeln!(
                h,
                "<text x=\"{}\" y=\"{at:.1}\" text-anchor=\"end\">{}</text>",
                left - 4.0,
                y(v)
            );
        }
        for (v, anchor) in [(self.x0, "start"), (self.x1, "end")] {
            let _ = writeln!(
                h,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
                self.px(v),
                base + 14.0,
                x(v)
            );
        }
    }
}

/// One layer's curve: accuracy (when every point has one) or output error against the
/// setting, with the chosen value marked.
fn curve(h: &mut String, l: &AllocatedLayer) {
    let accuracy = l.curve.iter().all(|p| p.accuracy.is_some());
    let ys: Vec<f64> = l
        .curve
        .iter()
        .map(|p| {
            if accuracy {
                p.accuracy.unwrap_or(0.0) * 100.0
            } else {
                p.error
            }
        })
        .collect();
    let xs: Vec<f64> = l.curve.iter().map(|p| p.value).collect();
    let Some(plot) = Plot::new(
        (300.0, 190.0),
        (52.0, 12.0, 30.0, 34.0),
        xs.iter().copied().zip(ys.iter().copied()),
    ) else {
        return;
    };
    let (w, ht, left) = (plot.w, plot.ht, plot.left);
    let (top, bottom, right) = (plot.top, plot.bottom, plot.right);
    let px = |v: f64| plot.px(v);
    let py = |v: f64| plot.py(v);
    let _ = writeln!(
        h,
        "<svg class=\"curve-chart\" role=\"img\" aria-label=\"sensitivity of {0}\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\"><title>{0}</title>",
        escape(&l.layer)
    );
    let _ = writeln!(
        h,
        "<text x=\"{left}\" y=\"14\" font-weight=\"600\">{}</text><text x=\"{left}\" y=\"26\" class=\"why\">{} vs {}</text>",
        escape(&clip(&l.layer, 40)),
        if accuracy { "accuracy" } else { "output error" },
        escape(&l.param)
    );
    plot.axes(
        h,
        |v| if accuracy { format!("{v:.2}%") } else { num(v) },
        num,
    );
    let points: Vec<String> = xs
        .iter()
        .zip(&ys)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(&x, &y)| format!("{:.1},{:.1}", px(x), py(y)))
        .collect();
    let _ = writeln!(
        h,
        "<polyline class=\"curve\" points=\"{}\"/>",
        points.join(" ")
    );
    for (p, (&x, &y)) in l.curve.iter().zip(xs.iter().zip(&ys)) {
        if x.is_finite() && y.is_finite() {
            let _ = writeln!(
                h,
                "<circle class=\"after\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"><title>{} {}: {}error {}, {} bytes, {} MACs</title></circle>",
                px(x),
                py(y),
                escape(&l.param),
                num(x),
                p.accuracy
                    .map_or(String::new(), |a| format!("accuracy {}, ", pct(a))),
                num(p.error),
                int(p.bytes),
                int(p.macs)
            );
        }
    }
    if let Some(v) = l.value.filter(|v| v.is_finite()) {
        // The label stays inside the chart at either end.
        let anchor = if px(v) > w - right - 40.0 {
            "end"
        } else if px(v) < left + 40.0 {
            "start"
        } else {
            "middle"
        };
        let _ = writeln!(
            h,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{1}\" stroke=\"#b3261e\" stroke-dasharray=\"4 3\"/><text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"{anchor}\" style=\"fill: #b3261e\">chosen {3}</text>",
            px(v),
            ht - bottom,
            ht - 4.0,
            num(v)
        );
    }
    h.push_str("</svg>\n");
}

/// Accuracy (or output error) against stored bytes after each stage: a line through the
/// stages on a logarithmic bytes axis, newest on the left, and the same numbers as a table.
fn stages(h: &mut String, r: &Report) {
    let Some(st) = &r.stages else {
        return;
    };
    let pts: Vec<(f64, f64)> = st
        .points
        .iter()
        .map(|p| {
            // A stage of exact rewrites only has no measurement: no point on the curve.
            let y = match st.metric {
                Metric::Accuracy => p.metric.map_or(f64::NAN, |v| v * 100.0),
                Metric::OutputError => p.metric.unwrap_or(f64::NAN),
            };
            ((p.bytes.max(1) as f64).log10(), y)
        })
        .collect();
    let finite: Vec<&(f64, f64)> = pts
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let _ = writeln!(
        h,
        "<h2 id=\"stages\">{} against size, stage by stage</h2>",
        match st.metric {
            Metric::Accuracy => "Accuracy",
            Metric::OutputError => "Output error",
        }
    );
    let plot = Plot::new(
        (CHART_W, 260.0),
        (64.0, 90.0, 16.0, 40.0),
        pts.iter().copied(),
    )
    .filter(|_| finite.len() >= 2);
    if let Some(plot) = plot {
        let (w, ht, left, right) = (plot.w, plot.ht, plot.left, plot.right);
        // Larger models on the right: the recipe moves the model leftwards.
        let px = |v: f64| plot.px(v);
        let py = |v: f64| plot.py(v);
        let _ = writeln!(
            h,
            "<svg id=\"stages-chart\" role=\"img\" aria-label=\"metric against stored bytes after each stage\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\">"
        );
        plot.axes(
            h,
            |v| match st.metric {
                Metric::Accuracy => format!("{v:.2}%"),
                Metric::OutputError => num(v),
            },
            |v| short_bytes(10f64.powf(v)),
        );
        let _ = writeln!(
            h,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" class=\"why\">stored weight bytes (log scale)</text>",
            (left + w - right) / 2.0,
            ht - 6.0
        );
        let line: Vec<String> = finite
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            h,
            "<polyline class=\"curve\" points=\"{}\"/>",
            line.join(" ")
        );
        for (i, (p, &(x, y))) in st.points.iter().zip(&pts).enumerate() {
            if !(x.is_finite() && y.is_finite()) {
                continue;
            }
            // Neighbouring stages of nearly equal size: labels alternate above and below.
            let dy = if i % 2 == 0 { -6.0 } else { 14.0 };
            let _ = writeln!(
                h,
                "<g class=\"stage-point\"><circle class=\"after\" cx=\"{0:.1}\" cy=\"{1:.1}\" r=\"3.5\"><title>{2}: {3} bytes, {4}</title></circle><text x=\"{5:.1}\" y=\"{6:.1}\">{2}</text></g>",
                px(x),
                py(y),
                escape(&clip(&p.stage, 24)),
                int(p.bytes),
                p.metric.map_or(String::new(), |v| st.metric.show(v)),
                px(x) + 6.0,
                py(y) + dy
            );
        }
        h.push_str("</svg>\n");
    }
    let _ = writeln!(
        h,
        "<table id=\"stages-table\">\n<thead><tr><th>after</th><th class=\"n\">stored bytes</th><th class=\"n\">MACs</th><th class=\"n\">{}</th></tr></thead>\n<tbody>",
        match st.metric {
            Metric::Accuracy => "accuracy",
            Metric::OutputError => "output error",
        }
    );
    for p in &st.points {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&p.stage),
            int(p.bytes),
            int(p.macs),
            p.metric
                .map_or("exact rewrites: not measured".into(), |v| st.metric.show(v))
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

/// What each compressed layer costs: a sortable table (only it compressed, only it restored)
/// and the suggestion.
fn attribution(h: &mut String, r: &Report) {
    let Some(a) = &r.attribution else {
        return;
    };
    let what = match a.metric {
        Metric::Accuracy => "top-1 accuracy on the evaluation set",
        Metric::OutputError => "relative L2 error of the outputs against the original's",
    };
    let _ = writeln!(
        h,
        "<h2 id=\"attribution\">What each layer costs</h2>\n<p class=\"note\">{what}, {} samples, each number a build of the recipe edited for that layer and measured like the build: the original {}, as compressed {}.</p>",
        a.samples,
        a.metric.show(a.original),
        a.metric.show(a.compressed)
    );
    if let Some(x) = &a.restore {
        let names: Vec<String> = x
            .layers
            .iter()
            .map(|l| format!("<code>{}</code>", escape(l)))
            .collect();
        let _ = writeln!(
            h,
            "<p id=\"restore\"><b>Restore {} to regain {}</b> ({} → {}, {} stored weight bytes, measured){}.</p>",
            names.join(", "),
            escape(&a.metric.change(a.compressed, x.metric)),
            a.metric.show(a.compressed),
            a.metric.show(x.metric),
            int(x.bytes),
            if x.enough {
                ""
            } else {
                "; less than half the loss"
            }
        );
    }
    h.push_str("<table id=\"attribution-table\" class=\"sortable\">\n<thead><tr><th>layer</th><th>rules</th><th data-type=\"num\" class=\"n\">only it compressed</th><th data-type=\"num\" class=\"n\">change alone</th><th data-type=\"num\" class=\"n\">only it restored</th><th data-type=\"num\" class=\"n\">restoring it regains</th></tr></thead>\n<tbody>\n");
    for l in &a.layers {
        // A number and its change (sort key: the change, better is larger).
        let cells = |v: Option<f64>, from: f64| match v {
            Some(v) => (
                format!(
                    "<td class=\"n\" data-v=\"{}\">{}</td>",
                    key(Some(v)),
                    a.metric.show(v)
                ),
                format!(
                    "<td class=\"n\" data-v=\"{}\">{}</td>",
                    key(Some(a.metric.gain(from, v))),
                    escape(&a.metric.change(from, v))
                ),
            ),
            None => (
                "<td class=\"n\" data-v=\"\">not measured</td>".to_string(),
                "<td class=\"n\" data-v=\"\"></td>".to_string(),
            ),
        };
        let (alone, change) = cells(l.alone, a.original);
        let (restored, regain) = cells(l.restored, a.compressed);
        let rules: Vec<String> = l
            .rules
            .iter()
            .map(|r| escape(&crate::report::rule_text(r)))
            .collect();
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code>{}</td><td>{}</td>{alone}{change}{restored}{regain}</tr>",
            escape(&l.layer),
            l.note.as_ref().map_or(String::new(), |n| format!(
                "<div class=\"why\">{}</div>",
                escape(n)
            )),
            rules.join("<br>")
        );
    }
    h.push_str("</tbody>\n</table>\n");
}

fn others(h: &mut String, r: &Report) {
    if !r.merged.is_empty() {
        h.push_str("<h2 id=\"merged\">Merged layers</h2>\n<table id=\"merged-table\">\n<thead><tr><th>removed</th><th>into</th><th>technique</th><th class=\"n\">recipe line</th></tr></thead>\n<tbody>\n");
        for m in &r.merged {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td></tr>",
                escape(&m.removed),
                escape(&m.into),
                escape(&m.technique),
                m.recipe_line
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    if !r.left_alone.is_empty() {
        h.push_str("<h2 id=\"left-alone\">Selected but left alone</h2>\n<table id=\"left-alone-table\" class=\"sortable\">\n<thead><tr><th>layer</th><th>technique</th><th data-type=\"num\" class=\"n\">recipe line</th><th>reason</th><th>why</th></tr></thead>\n<tbody>\n");
        for l in &r.left_alone {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&l.node),
                escape(&l.technique),
                l.recipe_line,
                escape(l.reason.code()),
                escape(&l.why)
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
}

fn inputs(h: &mut String, r: &Report) {
    h.push_str("<h2 id=\"inputs\">Inputs</h2>\n<table id=\"inputs-table\">\n<thead><tr><th>role</th><th>file</th><th>SHA-256</th></tr></thead>\n<tbody>\n");
    let i = &r.inputs;
    let rows = [
        ("recipe", Some(&i.recipe)),
        ("model", Some(&i.model)),
        ("calibration", i.calibration.as_ref()),
        ("evaluation", i.evaluation.as_ref()),
        ("labels", i.labels.as_ref()),
    ];
    for (role, f) in rows {
        if let Some(f) = f {
            let _ = writeln!(
                h,
                "<tr><td>{role}</td><td><code>{}</code></td><td class=\"mono\">{}</td></tr>",
                escape(&f.file),
                escape(&f.sha256)
            );
        }
    }
    h.push_str("</tbody>\n</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::*;

    fn file(name: &str) -> FileRef {
        FileRef {
            file: name.into(),
            sha256: "00".repeat(32),
        }
    }

    fn ba<T>(before: T, after: T) -> BeforeAfter<T> {
        BeforeAfter { before, after }
    }

    fn layer(name: &str, error: Option<f64>) -> Layer {
        Layer {
            name: name.into(),
            op: "Gemm".into(),
            removed: false,
            merged_into: vec![],
            techniques: vec![Applied {
                step: 1,
                stage: "s".into(),
                technique: "prune".into(),
                variant: "unstructured".into(),
                params: [("amount".to_string(), ParamValue::Num(0.5))].into(),
                recipe_file: "r.mcr".into(),
                recipe_line: 7,
            }],
            params: ba(100, 100),
            nonzero_params: ba(100, 50),
            bytes: ba(400, 250),
            storage: Some(Storage {
                encoding: "f32 bitmask".into(),
                onnx: OnnxForm::Dense,
                kernel: KernelForm::SizeOnly,
                kernel_why: Some("size only, no speedup at this sparsity".into()),
            }),
            macs: ba(100, 100),
            nonzero_macs: ba(100, 50),
            output_error: error.map(|e| OutputError {
                relative_l2: e,
                cosine: 1.0 - e,
            }),
        }
    }

    fn report(names: &[&str]) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            mcc_version: "0.0.0".into(),
            inputs: Inputs {
                recipe: file("r.mcr"),
                model: file("<b>model</b>.onnx"),
                calibration: None,
                evaluation: None,
                labels: None,
            },
            measurement: Measurement {
                engine: Engine::Compiled,
                engine_note: None,
                isa: "avx2".into(),
                calibration_samples: 8,
                evaluation_samples: 8,
            },
            layers: names
                .iter()
                .enumerate()
                .map(|(i, n)| layer(n, Some(10f64.powi(-(i as i32) - 1))))
                .collect(),
            model_totals: Totals {
                params: ba(1000, 1000),
                nonzero_params: ba(1000, 600),
                bytes: ba(4000, 2500),
                macs: ba(5000, 5000),
                accuracy: Some(ba(0.9, 0.875)),
                output_fidelity: Some(OutputError {
                    relative_l2: 0.01,
                    cosine: 0.999,
                }),
            },
            budget: vec![BudgetRow {
                constraint: "accuracy_drop <= 5%".into(),
                line: 3,
                value: Some(0.025),
                measured: "2.50%".into(),
                ok: true,
            }],
            merged: vec![],
            left_alone: vec![],
            native: None,
            allocation: Some(Allocation {
                budget: "size <= 3 KB".into(),
                metric: "top-1 accuracy".into(),
                baseline: 0.9,
                chosen_metric: 0.88,
                estimated_total: 2500.0,
                layers: vec![AllocatedLayer {
                    layer: names[0].into(),
                    technique: "prune unstructured".into(),
                    recipe_line: 7,
                    param: "amount".into(),
                    value: Some(0.5),
                    uniform: Some(0.4),
                    curve: (0..5)
                        .map(|k| CurvePoint {
                            value: k as f64 * 0.2,
                            accuracy: Some(0.9 - k as f64 * 0.01),
                            error: k as f64 * 0.05,
                            bytes: 400 - k * 50,
                            macs: 100,
                        })
                        .collect(),
                }],
                uniform: None,
                seconds: 1.5,
            }),
            predictions: Some(Predictions {
                per_class: vec![ClassAccuracy {
                    class: 0,
                    samples: 8,
                    accuracy: ba(0.9, 0.875),
                }],
                changed: vec![ChangedPrediction {
                    sample: 3,
                    label: 0,
                    prediction: ba(Some(0), None),
                }],
                changed_total: 1,
            }),
            stages: Some(crate::report::Stages {
                metric: Metric::Accuracy,
                points: ["original", names[0], "last"]
                    .iter()
                    .enumerate()
                    .map(|(i, st)| crate::report::StagePoint {
                        stage: st.to_string(),
                        bytes: 4000 >> i,
                        macs: 100,
                        metric: Some(0.9 - i as f64 * 0.01),
                    })
                    .collect(),
            }),
            attribution: Some(crate::report::Attribution {
                metric: Metric::Accuracy,
                samples: 8,
                original: 0.9,
                compressed: 0.875,
                layers: names
                    .iter()
                    .map(|n| crate::report::AttributedLayer {
                        layer: n.to_string(),
                        rules: vec![crate::report::RuleRef {
                            technique: "prune unstructured".into(),
                            file: n.to_string(),
                            line: 3,
                        }],
                        alone: Some(0.89),
                        restored: None,
                        restored_bytes: None,
                        note: Some(format!("could not build `{n}`")),
                    })
                    .collect(),
                restore: Some(crate::report::Restore {
                    layers: vec![names[0].to_string()],
                    metric: 0.9,
                    bytes: 100,
                    enough: true,
                }),
            }),
        }
    }

    #[test]
    fn a_layer_name_is_text_not_markup() {
        let evil = "<script>alert(1)</script>";
        let html = render(&report(&[evil, "fc\"2'&"]), &Files::default());
        assert!(!html.contains(evil), "a layer name came through unescaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("fc&quot;2&#39;&amp;"));
        assert!(
            !html.contains("<b>model</b>"),
            "the model's file name is escaped too"
        );
        // The only script is the page's own, and the policy admits it alone.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains(&format!("'sha256-{}'", sha256_base64(SCRIPT.as_bytes()))));
    }

    #[test]
    fn one_table_row_per_layer_and_the_charts() {
        let names = ["a", "b", "c"];
        let html = render(&report(&names), &Files::default());
        let table = html
            .split("<table id=\"layers\"")
            .nth(1)
            .and_then(|t| t.split("</table>").next())
            .unwrap();
        assert_eq!(table.matches("<tr>").count(), 1 + names.len());
        for id in ["chart-bytes", "chart-error", "curves"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "no {id}");
        }
        // The log-scale error chart spans the decades of the errors (1e-1 … 1e-3).
        assert!(html.contains(">1e-3<") && html.contains(">1e-1<"));
    }

    #[test]
    fn the_same_report_gives_the_same_bytes() {
        let r = report(&["a", "b"]);
        let files = Files {
            executable_bytes: Some(10),
            object_bytes: Some(5),
        };
        assert_eq!(render(&r, &files), render(&r.clone(), &files));
    }

    #[test]
    fn a_measured_latency_is_a_section_of_its_own() {
        let r = report(&["a"]);
        let files = Files::default();
        let l = Latency {
            cpu: "<b>CPU</b>".into(),
            threads: 1,
            runs: 7,
            batch: 4,
            before_ms: Some(2.0),
            after_ms: 0.5,
        };
        let page = render_measured(&r, &files, &l);
        let start = page.find("<section id=\"latency\">").unwrap();
        let end = start + page[start..].find("</section>\n").unwrap() + 11;
        let section = &page[start..end];
        for want in [
            "latency, batch 4",
            "2 ms → 0.5 ms",
            "×4.00 faster",
            "7 timed runs",
            "on 1 thread,",
            "&lt;b&gt;CPU&lt;/b&gt;",
        ] {
            assert!(section.contains(want), "no `{want}` in {section}");
        }
        // Outside it, the page `mcc build` writes, which has no latency (no latency budget).
        let built = render(&r, &files);
        assert_eq!(format!("{}{}", &page[..start], &page[end..]), built);
        assert!(!built.contains("latency"));
        // Slower, and an original without native code.
        let slower = Latency {
            before_ms: Some(0.5),
            after_ms: 1.0,
            ..l.clone()
        };
        assert!(render_measured(&r, &files, &slower).contains("×2.00 slower"));
        let alone = Latency {
            before_ms: None,
            ..l
        };
        let page = render_measured(&r, &files, &alone);
        assert!(page.contains(">0.5 ms<") && page.contains("the original has no native code"));
    }

    /// `mcc bench --report` renders the page again from report.json: read back, a report
    /// (with non-finite numbers and a reason's code in it) is the same report, and the same page.
    #[test]
    fn a_report_read_back_renders_the_same_page() {
        let mut r = report(&["a", "b"]);
        r.layers[0].output_error = Some(OutputError {
            relative_l2: f64::NAN,
            cosine: f64::NEG_INFINITY,
        });
        r.budget[0].value = Some(f64::INFINITY);
        r.left_alone.push(LeftAloneRow {
            node: "c".into(),
            step: 1,
            technique: "merge batchnorm".into(),
            reason: mcc_plan::Reason::ALL[1],
            why: "because".into(),
            recipe_line: 4,
        });
        let json = serde_json::to_string_pretty(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);
        let files = Files {
            executable_bytes: Some(10),
            object_bytes: None,
        };
        assert_eq!(render(&back, &files), render(&r, &files));
    }

    #[test]
    fn a_latency_budget_points_to_the_times() {
        let mut r = report(&["a"]);
        r.budget.push(BudgetRow {
            constraint: "latency <= 2 ms".into(),
            line: 3,
            value: None,
            measured: "met on the build machine (the time is in timings.json)".into(),
            ok: true,
        });
        let page = render(&r, &Files::default());
        assert!(page.contains("<section id=\"latency\">"), "{page}");
        assert!(page.contains("<code>mcc bench --report DIR</code> times both models"));
        // A word that merely starts like it is another metric.
        r.budget[1].constraint = "latency_p99 <= 2 ms".into();
        assert!(!render(&r, &Files::default()).contains("<section id=\"latency\">"));
    }

    #[test]
    fn self_contained() {
        let html = render(&report(&["a"]), &Files::default());
        for fetch in ["http:", "https:", "src=", "@import", "url("] {
            assert!(!html.contains(fetch), "the page refers to `{fetch}`");
        }
        assert!(html.contains("default-src 'none'"));
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(int(12), "12");
        assert_eq!(bytes(1724320), "1,724,320 B (1.6 MiB)");
        assert_eq!(short_bytes(512.0 * 1024.0), "512 KiB");
        assert_eq!(change(100.0, 25.0), "−75.0%, ×4.00 smaller");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(126605.0), "126,605");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(2.5e-5), "2.500e-5");
        assert_eq!(key(Some(f64::NAN)), "");
        // The SHA-256 of "abc", as RFC 4648 base64.
        assert_eq!(
            sha256_base64(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }
}

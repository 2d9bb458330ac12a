//! Prints a graph in the text form described in [`crate::text`].

use std::fmt::{self, Write};

use crate::attr::AttrValue;
use crate::graph::{ConstData, Origin, ValueDef};
use crate::{Graph, Tensor, ValueId, with_tensor};

/// How to print.
#[derive(Copy, Clone, Debug, Default)]
pub struct PrintOptions {
    /// Print every constant's data (as hex), so the text alone can be evaluated.
    pub weights: bool,
}

/// Constants with at most this many elements are printed as literals.
pub const INLINE_MAX: usize = 8;

/// Prints the review form: large constants appear by fingerprint.
pub fn print(graph: &Graph) -> String {
    print_with(graph, PrintOptions::default())
}

/// Prints with options. A graph with a cycle prints its nodes in id order, with a comment.
pub fn print_with(graph: &Graph, opts: PrintOptions) -> String {
    let mut s = String::new();
    let _ = write_graph(&mut s, graph, opts);
    s
}

fn write_graph(s: &mut String, graph: &Graph, opts: PrintOptions) -> fmt::Result {
    let (order, cyclic) = match graph.topo_order() {
        Ok(o) => (o, false),
        Err(_) => (graph.node_ids(), true),
    };
    writeln!(s, "graph {} {{", quoted(&graph.name))?;
    if cyclic {
        writeln!(s, "  ; the graph has a cycle: nodes are in creation order")?;
    }
    for &v in graph.inputs() {
        let val = graph.value(v);
        writeln!(s, "  input %{}: {}", name(&val.name), val.ty)?;
    }
    for v in graph.consts_in_use_order(&order) {
        let val = graph.value(v);
        write!(s, "  const %{}: {} = ", name(&val.name), val.ty)?;
        match &val.def {
            ValueDef::Const(ConstData::Dense(t)) => write_tensor_literal(s, t, opts.weights)?,
            ValueDef::Const(ConstData::Stored(st)) => {
                write!(s, "stored {} ", st.encoding())?;
                if opts.weights {
                    s.push_str("hex\"");
                    write_hex(s, st.blob())?;
                    s.push('"');
                } else {
                    write!(s, "#{:016x}", st.decoded().fingerprint())?;
                }
            }
            ValueDef::Const(ConstData::Elided {
                fingerprint,
                encoding,
            }) => {
                if let Some(e) = encoding {
                    write!(s, "stored {e} ")?;
                }
                write!(s, "#{fingerprint:016x}")?
            }
            _ => {}
        }
        writeln!(s)?;
    }
    for &n in &order {
        let Some(node) = graph.node(n) else { continue };
        write!(s, "  node {} = {}(", name(&node.name), node.op.name())?;
        for (i, v) in node.inputs.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            match v {
                Some(v) => write!(s, "%{}", name(&graph.value(*v).name))?,
                None => s.push('_'),
            }
        }
        s.push(')');
        let attrs = node.op.attrs();
        if !attrs.is_empty() {
            s.push_str(" {");
            for (i, (k, v)) in attrs.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write!(s, "{k}=")?;
                write_attr_value(s, v)?;
            }
            s.push('}');
        }
        s.push_str(" ->");
        for (i, &o) in node.outputs.iter().enumerate() {
            let val = graph.value(o);
            write!(
                s,
                "{} %{}: {}",
                if i > 0 { "," } else { "" },
                name(&val.name),
                val.ty
            )?;
        }
        if let Origin::Step(step) = node.origin {
            write!(s, " !{step}")?;
        }
        s.push('\n');
    }
    let outs: Vec<String> = graph
        .outputs()
        .iter()
        .map(|&v: &ValueId| format!("%{}", name(&graph.value(v).name)))
        .collect();
    if !outs.is_empty() {
        writeln!(s, "  output {}", outs.join(", "))?;
    }
    writeln!(s, "}}")
}

/// Whether a name can be printed bare.
pub fn is_bare(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'))
}

/// A name, bare or quoted.
pub fn name(n: &str) -> String {
    if is_bare(n) { n.to_string() } else { quoted(n) }
}

/// A quoted string with `\"` and `\\` escapes (and `\n`, `\t`, `\u{..}` for controls).
pub fn quoted(n: &str) -> String {
    let mut s = String::with_capacity(n.len() + 2);
    s.push('"');
    for c in n.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{{{:x}}}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn write_list<W: Write, T: Copy>(
    w: &mut W,
    items: impl Iterator<Item = T>,
    f: impl Fn(&mut W, T) -> fmt::Result,
) -> fmt::Result {
    w.write_char('[')?;
    for (i, x) in items.enumerate() {
        if i > 0 {
            w.write_str(", ")?;
        }
        f(w, x)?;
    }
    w.write_char(']')
}

/// A float that parses back to the same bits (`{:?}` is shortest round-trip).
fn write_f32<W: Write>(w: &mut W, x: f32) -> fmt::Result {
    write!(w, "{x:?}")
}

trait Lit: Copy {
    fn lit<W: Write>(self, w: &mut W) -> fmt::Result;
}
macro_rules! int_lit {
    ($($t:ty),*) => { $( impl Lit for $t { fn lit<W: Write>(self, w: &mut W) -> fmt::Result { write!(w, "{self}") } } )* };
}
int_lit!(i8, i16, i32, i64, u8, u16, u32, u64, bool);
impl Lit for f32 {
    fn lit<W: Write>(self, w: &mut W) -> fmt::Result {
        write_f32(w, self)
    }
}
impl Lit for f64 {
    fn lit<W: Write>(self, w: &mut W) -> fmt::Result {
        write!(w, "{self:?}")
    }
}

/// A constant's data: literal list, splat, fingerprint, or hex.
pub fn write_tensor_literal<W: Write>(w: &mut W, t: &Tensor, full: bool) -> fmt::Result {
    if t.len() <= INLINE_MAX {
        return with_tensor!(t, a => write_list(w, a.iter().copied(), |w, x| x.lit(w)));
    }
    if t.is_splat() {
        w.write_str("splat(")?;
        with_tensor!(t, a => if let Some(x) = a.iter().next() { x.lit(w)? });
        return w.write_char(')');
    }
    if full {
        w.write_str("hex\"")?;
        write_hex(w, &t.to_le_bytes())?;
        return w.write_char('"');
    }
    write!(w, "#{:016x}", t.fingerprint())
}

/// Writes `bytes` as lowercase hex, two digits a byte, from a table (`{:02x}` a byte made
/// printing vgg_bn's 1.2 MB full form take ~10 ms).
fn write_hex<W: Write>(w: &mut W, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 1024];
    for chunk in bytes.chunks(buf.len() / 2) {
        for (pair, &b) in buf.chunks_exact_mut(2).zip(chunk) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 15)];
        }
        // Only ASCII digits were written.
        w.write_str(std::str::from_utf8(&buf[..2 * chunk.len()]).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

/// An attribute value.
pub fn write_attr_value<W: Write>(w: &mut W, v: &AttrValue) -> fmt::Result {
    match v {
        AttrValue::Int(i) => write!(w, "{i}"),
        AttrValue::Float(f) => write_f32(w, *f),
        AttrValue::Ints(v) => write_list(w, v.iter().copied(), |w, x| write!(w, "{x}")),
        AttrValue::Floats(v) => write_list(w, v.iter().copied(), write_f32),
        AttrValue::Str(s) => w.write_str(&quoted(s)),
        AttrValue::Tensor(t) => {
            write!(w, "({} = ", t.ty())?;
            write_tensor_literal(w, t, true)?;
            w.write_char(')')
        }
    }
}

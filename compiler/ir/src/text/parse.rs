//! Parses the text form described in [`crate::text`] back into a [`Graph`].
//!
//! A hand-written recursive-descent reader over the source string: the syntax is small,
//! and reading names and numbers by context avoids a tokenizer that would have to guess
//! whether `-1` or `1.5` is a name. Errors carry the byte span they are about.

use std::collections::HashMap;

use miette::SourceSpan;

use crate::attr::AttrValue;
use crate::graph::Origin;
use crate::{DType, Dim, Graph, Op, StepId, Tensor, TensorType, ValueId};

/// A syntax or name-resolution error in IR text.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
#[diagnostic(code(mcc::ir::parse))]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// Where.
    #[label("here")]
    pub span: SourceSpan,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

struct P<'a> {
    src: &'a str,
    pos: usize,
}

type R<T> = Result<T, ParseError>;

impl<'a> P<'a> {
    fn err_at<T>(&self, at: usize, len: usize, message: impl Into<String>) -> R<T> {
        let before = &self.src[..at.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Err(ParseError {
            message: message.into(),
            span: (at, len).into(),
            line,
            col,
        })
    }
    fn err<T>(&self, message: impl Into<String>) -> R<T> {
        let len = self.rest().chars().next().map_or(0, char::len_utf8);
        self.err_at(self.pos, len, message)
    }
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }
    fn ws(&mut self) {
        loop {
            let r = self.rest();
            let t = r.trim_start();
            self.pos += r.len() - t.len();
            if t.starts_with(';') {
                self.pos += t.find('\n').unwrap_or(t.len());
            } else {
                break;
            }
        }
    }
    fn peek(&mut self, s: &str) -> bool {
        self.ws();
        self.rest().starts_with(s)
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.peek(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, s: &str, what: &str) -> R<()> {
        if self.eat(s) {
            Ok(())
        } else {
            self.err(format!("expected {what}"))
        }
    }
    /// A keyword or op name: letters, digits, `_`.
    fn word(&mut self) -> R<(&'a str, usize)> {
        self.ws();
        let start = self.pos;
        let len = self
            .rest()
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if len == 0 {
            return self.err("expected a word");
        }
        self.pos += len;
        Ok((&self.src[start..start + len], start))
    }
    fn quoted(&mut self) -> R<String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((j, 'u')) => {
                        let tail = &self.rest()[j + 1..];
                        let Some(close) = tail.find('}') else {
                            return self.err_at(start, 1, "bad \\u escape");
                        };
                        let code = tail
                            .get(1..close)
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32);
                        let Some(c) = code else {
                            return self.err_at(start, 1, "bad \\u escape");
                        };
                        out.push(c);
                        for _ in 0..close + 1 {
                            chars.next();
                        }
                    }
                    _ => return self.err_at(start, 1, "bad escape in string"),
                },
                c => out.push(c),
            }
        }
        self.err_at(start, 1, "unterminated string")
    }
    /// A bare or quoted name.
    fn name(&mut self) -> R<(String, usize)> {
        self.ws();
        let start = self.pos;
        if self.rest().starts_with('"') {
            return Ok((self.quoted()?, start));
        }
        let len = self
            .rest()
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'))
            .count();
        if len == 0 {
            return self.err("expected a name");
        }
        self.pos += len;
        Ok((self.src[start..start + len].to_string(), start))
    }
    fn value_ref(&mut self) -> R<(String, usize)> {
        self.expect("%", "`%` and a value name")?;
        self.name()
    }
    /// A number-ish atom: sign, digits, `.`, exponent, or `NaN`/`inf`.
    fn atom(&mut self) -> R<(&'a str, usize)> {
        self.ws();
        let start = self.pos;
        let len = self
            .rest()
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
            .count();
        if len == 0 {
            return self.err("expected a number");
        }
        self.pos += len;
        Ok((&self.src[start..start + len], start))
    }
    fn int(&mut self) -> R<i64> {
        let (a, at) = self.atom()?;
        a.parse()
            .or_else(|_| self.err_at(at, a.len(), format!("`{a}` is not an integer")))
    }

    fn ty(&mut self) -> R<TensorType> {
        let (w, at) = self.word()?;
        let Some(dtype) = DType::from_name(w) else {
            return self.err_at(
                at,
                w.len(),
                format!("`{w}` is not an element type (f32, i64, u8, bool, …)"),
            );
        };
        self.expect("[", "`[` and a shape")?;
        if self.eat("*") {
            self.expect("]", "`]`")?;
            return Ok(TensorType { dtype, shape: None });
        }
        let mut dims = vec![];
        if !self.eat("]") {
            loop {
                self.ws();
                if self.eat("?") {
                    dims.push(Dim::Unknown);
                } else if self.rest().starts_with(|c: char| c.is_ascii_digit()) {
                    let (a, at) = self.atom()?;
                    dims.push(Dim::Fixed(a.parse().or_else(|_| {
                        self.err_at(at, a.len(), format!("`{a}` is not a size"))
                    })?));
                } else {
                    let (w, _) = self.word()?;
                    dims.push(Dim::Sym(w.to_string()));
                }
                if self.eat("]") {
                    break;
                }
                self.expect(",", "`,` or `]`")?;
            }
        }
        Ok(TensorType {
            dtype,
            shape: Some(dims),
        })
    }

    /// A constant literal of the given type.
    fn literal(&mut self, ty: &TensorType) -> R<Literal> {
        self.ws();
        let at = self.pos;
        let dims = match ty.fixed_dims() {
            Some(d) => d,
            None => {
                return self.err_at(
                    at,
                    1,
                    format!("a constant needs a fully known shape, found {ty}"),
                );
            }
        };
        if self.eat("#") {
            let (h, hat) = self.atom()?;
            let fp = u64::from_str_radix(h, 16)
                .or_else(|_| self.err_at(hat, h.len(), "a fingerprint is 16 hex digits"))?;
            return Ok(Literal::Elided(fp));
        }
        if self.peek("stored") {
            return self.stored(ty, &dims);
        }
        if self.eat("hex\"") {
            let (bytes, start, len) = self.hex_body(at)?;
            return Tensor::from_le_bytes(ty.dtype, &dims, &bytes)
                .map(Literal::Data)
                .or_else(|e| self.err_at(start, len, e.to_string()));
        }
        let n = match crate::tensor::checked_numel(&dims) {
            Some(n) if n <= crate::tensor::MAX_ELEMENTS => n,
            _ => {
                return self.err_at(
                    at,
                    1,
                    format!(
                        "a constant of shape {dims:?} is too large (at most {} elements)",
                        crate::tensor::MAX_ELEMENTS
                    ),
                );
            }
        };
        if self.peek("splat") || self.peek("seeded") || self.peek("positive") {
            let (w, _) = self.word()?;
            self.expect("(", "`(`")?;
            let t = match w {
                "splat" => {
                    let (a, aat) = self.atom()?;
                    let one = elements(ty.dtype, &[(a, aat)], &[1])
                        .or_else(|m| self.err_at(aat, a.len(), m))?;
                    broadcast_scalar(&one, &dims)
                }
                _ => {
                    let seed = self.int()?;
                    let (lo, hi) = if w == "seeded" {
                        (-1.0, 1.0)
                    } else {
                        (0.5, 1.5)
                    };
                    let vals = pseudo_random(seed as u64, n, lo, hi);
                    match ty.dtype {
                        DType::F32 => {
                            Tensor::from_vec(&dims, vals.iter().map(|&v| v as f32).collect())
                        }
                        DType::F64 => Tensor::from_vec(&dims, vals),
                        other => {
                            return self.err_at(
                                at,
                                w.len(),
                                format!("`{w}` makes floats, not {other}"),
                            );
                        }
                    }
                    .or_else(|e| self.err_at(at, w.len(), e.to_string()))?
                }
            };
            self.expect(")", "`)`")?;
            return Ok(Literal::Data(t));
        }
        self.expect("[", "a constant: `[…]`, `splat(…)`, `seeded(…)`, `positive(…)`, `hex\"…\"` or `#fingerprint`")?;
        let mut atoms = vec![];
        if !self.eat("]") {
            loop {
                atoms.push(self.atom()?);
                if self.eat("]") {
                    break;
                }
                self.expect(",", "`,` or `]`")?;
            }
        }
        if atoms.len() != n {
            return self.err_at(
                at,
                1,
                format!("{ty} has {n} element(s), the literal has {}", atoms.len()),
            );
        }
        elements(ty.dtype, &atoms, &dims)
            .map(Literal::Data)
            .or_else(|m| self.err_at(at, 1, m))
    }

    /// The digits of a `hex"…"` literal whose opening was just eaten: (bytes, start, length).
    fn hex_body(&mut self, at: usize) -> R<(Vec<u8>, usize, usize)> {
        let start = self.pos;
        let len = self
            .rest()
            .find('"')
            .map_or_else(|| self.err_at(at, 4, "unterminated hex literal"), Ok)?;
        let hex = &self.src[start..start + len];
        self.pos += len + 1;
        if !hex.len().is_multiple_of(2) {
            return self.err_at(start, len, "hex data has an odd number of digits");
        }
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for i in (0..hex.len()).step_by(2) {
            let b = hex
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            bytes.push(b.map_or_else(|| self.err_at(start + i, 2, "not a hex digit"), Ok)?);
        }
        Ok((bytes, start, len))
    }

    /// `stored ENCODING hex"…"` or `stored ENCODING #fingerprint` (see [`crate::stored`]).
    fn stored(&mut self, ty: &TensorType, dims: &[usize]) -> R<Literal> {
        use crate::stored::{Coding, Encoding, Granularity, Layout, Values};
        let at = self.pos;
        self.expect("stored", "`stored`")?;
        if ty.dtype != DType::F32 {
            return self.err_at(at, 6, format!("stored constants are f32, not {}", ty.dtype));
        }
        let (v, vat) = self.word()?;
        let bits = |p: &Self, rest: &str| -> R<u8> {
            match rest.parse::<u8>() {
                Ok(b @ 1..=8) => Ok(b),
                _ => p.err_at(vat, v.len(), format!("`{v}`: 1 to 8 bits are stored")),
            }
        };
        let per = |p: &mut Self| -> R<Granularity> {
            p.expect(
                "per",
                "`per tensor`, `per channel(AXIS)` or `per group(SIZE)`",
            )?;
            let (w, wat) = p.word()?;
            Ok(match w {
                "tensor" => Granularity::Tensor,
                "channel" | "group" => {
                    p.expect("(", "`(`")?;
                    let n = p.int()?;
                    p.expect(")", "`)`")?;
                    match (w, u8::try_from(n), u32::try_from(n)) {
                        ("channel", Ok(a), _) => Granularity::Channel(a),
                        ("group", _, Ok(g)) if g > 0 => Granularity::Group(g),
                        _ => return p.err_at(wat, w.len(), format!("`{w}({n})` is out of range")),
                    }
                }
                other => {
                    return p.err_at(
                        wat,
                        other.len(),
                        format!("`per {other}`: expected tensor, channel or group"),
                    );
                }
            })
        };
        let values = if v == "f32" {
            Values::F32
        } else if let Some(b) = v.strip_prefix("int") {
            let bits = bits(self, b)?;
            Values::Int {
                bits,
                per: per(self)?,
            }
        } else if let Some(b) = v.strip_prefix("codebook") {
            let bits = bits(self, b)?;
            Values::Codebook {
                bits,
                per: per(self)?,
            }
        } else {
            return self.err_at(
                vat,
                v.len(),
                format!("`{v}`: expected f32, int<bits> or codebook<bits>"),
            );
        };
        let (l, lat) = self.word()?;
        let layout = match l {
            "dense" => Layout::Dense,
            "bitmask" => Layout::Bitmask,
            "csr" => Layout::Csr,
            "gaps" => {
                // `gaps(4)`.
                self.expect("(", "`(`")?;
                let b = self.int()?;
                self.expect(")", "`)`")?;
                match u8::try_from(b) {
                    Ok(bits) if (1..=8).contains(&bits) => Layout::Gaps { bits },
                    _ => {
                        return self.err_at(lat, l.len(), format!("`gaps({b})` is out of range"));
                    }
                }
            }
            "nm" | "blocks" => {
                // `nm(2:4)`, `blocks(4x1)`.
                self.expect("(", "`(`")?;
                let (a, b, sep) = if l == "nm" {
                    let a = self.int()?;
                    self.expect(":", "`:`")?;
                    (a, self.int()?, ":")
                } else {
                    // `4x1` is one atom.
                    let (t, at) = self.atom()?;
                    let dims = t
                        .split_once('x')
                        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                    let Some((a, b)) = dims else {
                        return self.err_at(at, t.len(), format!("`{t}`: expected RxC, e.g. 4x1"));
                    };
                    (a, b, "x")
                };
                self.expect(")", "`)`")?;
                match (u8::try_from(a), u8::try_from(b), l) {
                    (Ok(n), Ok(m), "nm") => Layout::NM { n, m },
                    (Ok(rows), Ok(cols), _) => Layout::Blocks { rows, cols },
                    _ => {
                        return self.err_at(
                            lat,
                            l.len(),
                            format!("`{l}({a}{sep}{b})` is out of range"),
                        );
                    }
                }
            }
            other => {
                return self.err_at(
                    lat,
                    other.len(),
                    format!(
                        "`{other}`: expected dense, bitmask, csr, nm(N:M), blocks(RxC) or gaps(B)"
                    ),
                );
            }
        };
        let coding = if self.eat("huffman") {
            Coding::Huffman
        } else {
            Coding::None
        };
        let encoding = Encoding {
            values,
            layout,
            coding,
        };
        if self.eat("#") {
            let (h, hat) = self.atom()?;
            let fp = u64::from_str_radix(h, 16)
                .or_else(|_| self.err_at(hat, h.len(), "a fingerprint is 16 hex digits"))?;
            return Ok(Literal::ElidedStored(fp, encoding));
        }
        let hat = self.pos;
        self.expect("hex\"", "`hex\"…\"` data or a `#fingerprint`")?;
        let (bytes, start, len) = self.hex_body(hat)?;
        crate::stored::Stored::from_blob(encoding, dims, bytes)
            .map(|s| Literal::Stored(Box::new(s)))
            .or_else(|e| self.err_at(start, len, e.to_string()))
    }

    fn attr_value(&mut self) -> R<AttrValue> {
        self.ws();
        if self.rest().starts_with('"') {
            return Ok(AttrValue::Str(self.quoted()?));
        }
        if self.eat("(") {
            let ty = self.ty()?;
            self.expect("=", "`=`")?;
            let lit = self.literal(&ty)?;
            self.expect(")", "`)`")?;
            return match lit {
                Literal::Data(t) => Ok(AttrValue::Tensor(t)),
                Literal::Elided(_) | Literal::ElidedStored(..) | Literal::Stored(_) => {
                    self.err("a tensor attribute needs its data, written dense")
                }
            };
        }
        if self.eat("[") {
            let mut atoms = vec![];
            if !self.eat("]") {
                loop {
                    atoms.push(self.atom()?);
                    if self.eat("]") {
                        break;
                    }
                    self.expect(",", "`,` or `]`")?;
                }
            }
            if atoms.iter().all(|(a, _)| a.parse::<i64>().is_ok()) {
                return Ok(AttrValue::Ints(
                    atoms.iter().filter_map(|(a, _)| a.parse().ok()).collect(),
                ));
            }
            let mut fs = vec![];
            for (a, at) in atoms {
                fs.push(
                    a.parse::<f32>()
                        .or_else(|_| self.err_at(at, a.len(), format!("`{a}` is not a number")))?,
                );
            }
            return Ok(AttrValue::Floats(fs));
        }
        let (a, at) = self.atom()?;
        if let Ok(i) = a.parse::<i64>() {
            return Ok(AttrValue::Int(i));
        }
        a.parse::<f32>()
            .map(AttrValue::Float)
            .or_else(|_| self.err_at(at, a.len(), format!("`{a}` is not an attribute value")))
    }
}

enum Literal {
    Data(Tensor),
    Stored(Box<crate::stored::Stored>),
    Elided(u64),
    ElidedStored(u64, crate::stored::Encoding),
}

fn broadcast_scalar(one: &Tensor, dims: &[usize]) -> Tensor {
    crate::map_tensor!(one, a => a.broadcast(ndarray::IxDyn(dims)).map(|v| v.to_owned()).unwrap_or_else(|| a.clone()))
}

fn elements(dtype: DType, atoms: &[(&str, usize)], dims: &[usize]) -> Result<Tensor, String> {
    fn all<T: std::str::FromStr>(atoms: &[(&str, usize)], what: &str) -> Result<Vec<T>, String> {
        atoms
            .iter()
            .map(|(a, _)| a.parse::<T>().map_err(|_| format!("`{a}` is not {what}")))
            .collect()
    }
    let t = match dtype {
        DType::F32 => Tensor::from_vec(dims, all::<f32>(atoms, "an f32")?),
        DType::F64 => Tensor::from_vec(dims, all::<f64>(atoms, "an f64")?),
        DType::I8 => Tensor::from_vec(dims, all::<i8>(atoms, "an i8")?),
        DType::I16 => Tensor::from_vec(dims, all::<i16>(atoms, "an i16")?),
        DType::I32 => Tensor::from_vec(dims, all::<i32>(atoms, "an i32")?),
        DType::I64 => Tensor::from_vec(dims, all::<i64>(atoms, "an i64")?),
        DType::U8 => Tensor::from_vec(dims, all::<u8>(atoms, "a u8")?),
        DType::U16 => Tensor::from_vec(dims, all::<u16>(atoms, "a u16")?),
        DType::U32 => Tensor::from_vec(dims, all::<u32>(atoms, "a u32")?),
        DType::U64 => Tensor::from_vec(dims, all::<u64>(atoms, "a u64")?),
        DType::Bool => Tensor::from_vec(dims, all::<bool>(atoms, "a bool")?),
    };
    t.map_err(|e| e.to_string())
}

/// Deterministic uniform numbers in `[lo, hi)` (splitmix64), for fixture constants.
pub fn pseudo_random(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    pseudo_random_iter(seed, lo, hi).take(n).collect()
}

/// The endless sequence whose first `n` numbers [`pseudo_random`] returns (for callers that
/// allocate the room themselves).
pub fn pseudo_random_iter(seed: u64, lo: f64, hi: f64) -> impl Iterator<Item = f64> {
    let mut state = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    std::iter::repeat_with(move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        lo + (hi - lo) * ((z >> 11) as f64 / (1u64 << 53) as f64)
    })
}

struct PendingNode {
    name: String,
    op: Op,
    inputs: Vec<Option<(String, usize)>>,
    outputs: Vec<(String, TensorType)>,
    origin: Origin,
}

/// Parses IR text into a graph. The result is not verified; call [`crate::verify`].
pub fn parse(src: &str) -> Result<Graph, ParseError> {
    let mut p = P { src, pos: 0 };
    let (kw, at) = p.word()?;
    if kw != "graph" {
        return p.err_at(at, kw.len(), "IR text starts with `graph`");
    }
    let (gname, _) = p.name()?;
    p.expect("{", "`{`")?;
    let mut g = Graph::new(gname);
    let mut names: HashMap<String, ValueId> = HashMap::new();
    let mut pending: Vec<PendingNode> = vec![];
    let mut outputs: Vec<(String, usize)> = vec![];
    let declare = |p: &P<'_>,
                   names: &mut HashMap<String, ValueId>,
                   n: &str,
                   at: usize,
                   id: ValueId|
     -> R<()> {
        if names.insert(n.to_string(), id).is_some() {
            return p.err_at(at, n.len(), format!("value `{n}` is defined twice"));
        }
        Ok(())
    };
    loop {
        if p.eat("}") {
            break;
        }
        p.ws();
        if p.rest().is_empty() {
            return p.err("expected `}` at the end of the graph");
        }
        let (kw, at) = p.word()?;
        match kw {
            "input" => {
                let (n, nat) = p.value_ref()?;
                p.expect(":", "`:` and a type")?;
                let ty = p.ty()?;
                let id = g.add_input(n.clone(), ty);
                declare(&p, &mut names, &n, nat, id)?;
            }
            "const" => {
                let (n, nat) = p.value_ref()?;
                p.expect(":", "`:` and a type")?;
                let ty = p.ty()?;
                p.expect("=", "`=` and the constant's data")?;
                let id = match p.literal(&ty)? {
                    Literal::Data(t) => g.add_const(n.clone(), t),
                    Literal::Elided(fp) => g.add_elided_const(n.clone(), ty, fp),
                    Literal::Stored(st) => {
                        let id = g.add_const(n.clone(), st.decoded().clone());
                        g.store_const(id, *st);
                        id
                    }
                    Literal::ElidedStored(fp, e) => g.add_elided_stored(n.clone(), ty, fp, e),
                };
                declare(&p, &mut names, &n, nat, id)?;
            }
            "node" => {
                let (name, _) = p.name()?;
                p.expect("=", "`=` and an operator")?;
                let (op_name, op_at) = p.word()?;
                p.expect("(", "`(`")?;
                let mut inputs = vec![];
                if !p.eat(")") {
                    loop {
                        if p.eat("_") {
                            inputs.push(None);
                        } else {
                            inputs.push(Some(p.value_ref()?));
                        }
                        if p.eat(")") {
                            break;
                        }
                        p.expect(",", "`,` or `)`")?;
                    }
                }
                let mut attrs = vec![];
                if p.eat("{") && !p.eat("}") {
                    loop {
                        let (k, _) = p.word()?;
                        p.expect("=", "`=`")?;
                        attrs.push((k.to_string(), p.attr_value()?));
                        if p.eat("}") {
                            break;
                        }
                        p.expect(",", "`,` or `}`")?;
                    }
                }
                let op = Op::from_attrs(op_name, attrs)
                    .or_else(|e| p.err_at(op_at, op_name.len(), e.to_string()))?;
                p.expect("->", "`->` and the outputs")?;
                let mut outs = vec![];
                loop {
                    let (n, _) = p.value_ref()?;
                    p.expect(":", "`:` and a type")?;
                    outs.push((n, p.ty()?));
                    if !p.eat(",") {
                        break;
                    }
                }
                let mut origin = Origin::Model;
                if p.eat("!step") {
                    origin = Origin::Step(StepId(p.int()? as u32));
                }
                pending.push(PendingNode {
                    name,
                    op,
                    inputs,
                    outputs: outs,
                    origin,
                });
            }
            "output" => loop {
                outputs.push(p.value_ref()?);
                if !p.eat(",") {
                    break;
                }
            },
            other => {
                return p.err_at(
                    at,
                    other.len(),
                    format!("expected `input`, `const`, `node`, `output` or `}}`, found `{other}`"),
                );
            }
        }
    }
    p.ws();
    if !p.rest().is_empty() {
        return p.err("unexpected text after the graph");
    }
    // Nodes may refer to values defined further down: define all outputs first.
    let mut ids = vec![];
    for node in &pending {
        let id = g.add_node(
            node.name.clone(),
            node.op.clone(),
            vec![],
            node.outputs.clone(),
        );
        if let Some(n) = g.node_mut(id) {
            n.origin = node.origin.clone();
        }
        ids.push(id);
    }
    for (node, &id) in pending.iter().zip(&ids) {
        let outs = g.node(id).map(|n| n.outputs.clone()).unwrap_or_default();
        for ((n, _), o) in node.outputs.iter().zip(outs) {
            if names.insert(n.clone(), o).is_some() {
                return p.err_at(0, 0, format!("value `{n}` is defined twice"));
            }
        }
    }
    let resolve = |names: &HashMap<String, ValueId>, (n, at): &(String, usize)| -> R<ValueId> {
        names.get(n).copied().map_or_else(
            || p.err_at(*at, n.len().max(1), format!("no value named `{n}`")),
            Ok,
        )
    };
    for (node, &id) in pending.iter().zip(&ids) {
        let ins = node
            .inputs
            .iter()
            .map(|i| i.as_ref().map(|r| resolve(&names, r)).transpose())
            .collect::<R<Vec<_>>>()?;
        let _ = g.set_inputs(id, ins);
    }
    let outs = outputs
        .iter()
        .map(|r| resolve(&names, r))
        .collect::<R<Vec<_>>>()?;
    g.set_outputs(outs);
    Ok(g)
}

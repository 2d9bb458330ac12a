//! Stored constants: a weight tensor kept in a compressed form, as its **values** × its
//! **layout** × its **coding** ([`Encoding`]), so Deep Compression (sparse + shared centroids +
//! Huffman), TTQ (per-channel centroids) and GPTQ (4-bit integers with per-group scales) are
//! combinations, not new kinds.
//!
//! A [`Stored`] is one byte string, the *blob*, in the format below, plus its shape and
//! encoding. Its stored size is the blob's length: the sum of its parts. Its meaning is
//! [`Stored::decoded`], the dense f32 tensor that decoding the blob gives; the evaluator, the
//! exporter and every pass read that tensor, so a stored constant means exactly what its
//! decoder says. Construction always goes through the decoder, so the two cannot disagree.
//!
//! # Blob format (little-endian, parts in this order)
//!
//! With `n` elements, `rows` = the first dimension, `cols = n / rows`, and `k` the elements
//! the layout keeps (row-major order):
//!
//! 1. **Layout.** `dense`: nothing (`k = n`). `bitmask`: ⌈n/8⌉ bytes, bit `i % 8` of byte
//!    `i / 8` set when element `i` is kept. `csr`: `rows + 1` u32 row offsets, then `k` column
//!    indices, u16 when `cols ≤ 65536`, else u32. `nm(N:M)` (structured N:M sparsity;
//!    `cols` a multiple of `M`): each row is cut into runs of `M` consecutive elements, and
//!    each run keeps exactly `N` (kept elements may be zero); for every run in row-major
//!    order, the `N` positions within it, increasing, each in ⌈log2 M⌉ bits, packed
//!    LSB-first over the whole tensor. `blocks(RxC)` (block sparsity; `rows` a multiple of
//!    `R`, `cols` of `C`): the `[rows, cols]` view is tiled by `R×C` blocks, each kept or
//!    dropped whole; ⌈blocks/8⌉ bytes of mask, one bit per block in row-major block order.
//!    `gaps(b)` (relative indices, Deep Compression's sparse format; `b` from 1 to 8): the
//!    kept elements' positions in the flattened tensor as a stream of `b`-bit *gap symbols*,
//!    read from position 0: a symbol `s < 2^b − 1` skips `s` elements and keeps the next one;
//!    the escape `2^b − 1` skips `2^b − 1` elements and keeps none. A u32 symbol count, then
//!    the symbols, coded like codes (part 3): packed, or Huffman-coded. The stream ends at the
//!    last kept element (it never ends on an escape).
//! 2. **Values**, for the `k` kept elements, in *storage order*: row-major, except for
//!    `blocks`, where a kept block's `R·C` elements are contiguous (blocks in row-major block
//!    order, row-major within a block) so a kernel reads a block in one run. ([`Parts`]
//!    always lists them row-major; the blob permutes.) `f32`: `k` f32. `int<b>` (b ≤ 8, signed two's
//!    complement): one f32 scale per group, one i8 zero point per group, then the codes;
//!    an element is `(q − zero_point) · scale`. `codebook<b>`: `2^b` f32 centroids per
//!    group, then the codes; an element is `centroids[q]`. Groups follow the granularity:
//!    `per tensor` (one), `per channel(axis)` (one per index along `axis`), `per group(g)`
//!    (one per `g` consecutive elements, row-major, counted over all `n` elements).
//! 3. **Codes** (int and codebook values): with coding `none`, `k` codes of `b` bits packed
//!    LSB-first; with `huffman`, `2^b` code lengths (u8, canonical Huffman), a u32 bit count,
//!    then the bit stream (LSB-first).
//!
//! Coding `huffman` applies to every symbol stream the encoding has — gap symbols and codes
//! (each with its own table) — so it needs at least one of them: f32 values take it only
//! with a `gaps` layout.
//!
//! Elements a layout does not keep are zero.

use std::fmt;

use mcc_runtime::huffman::{self, BitReader, BitWriter};

use crate::Tensor;

/// How a stored constant's values are represented.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Values {
    /// 32-bit floats.
    F32,
    /// Signed integers of `bits` bits with a scale and zero point per group.
    Int {
        /// Bits per code, 1 to 8.
        bits: u8,
        /// Which elements share a scale.
        per: Granularity,
    },
    /// Indices of `bits` bits into a table of `2^bits` centroids per group.
    Codebook {
        /// Bits per index, 1 to 8.
        bits: u8,
        /// Which elements share a table (`Tensor` or `Channel`).
        per: Granularity,
    },
}

/// Which elements share a scale or a codebook.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// The whole tensor.
    Tensor,
    /// Each index along an axis.
    Channel(u8),
    /// Each run of this many consecutive elements (row-major).
    Group(u32),
}

/// Which elements are stored.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// All of them.
    Dense,
    /// Those whose bit is set in a mask.
    Bitmask,
    /// Rows of column indices (compressed sparse rows over `[rows, n / rows]`).
    Csr,
    /// Exactly `n` of every `m` consecutive elements of a row (2:4, 4:8).
    NM {
        /// Elements kept per run.
        n: u8,
        /// Run length (2 to 16).
        m: u8,
    },
    /// Whole `rows × cols` blocks of the `[rows, n / rows]` view (4×1, 1×4, 8×1).
    Blocks {
        /// Block height (along the first axis).
        rows: u8,
        /// Block width.
        cols: u8,
    },
    /// Positions as gaps between kept elements, `bits`-bit symbols with an escape (relative
    /// indices, as Deep Compression stores them; Huffman-coded with coding `huffman`).
    Gaps {
        /// Bits per gap symbol, 1 to 8.
        bits: u8,
    },
}

impl Layout {
    /// Checks the layout's own parameters, and that it tiles a tensor of `shape`: N:M runs
    /// divide its rows, blocks its `[rows, cols]` view.
    fn check(self, shape: &[usize]) -> Result<(), StoredError> {
        let (rows, cols) = rows_cols(shape);
        match self {
            Layout::NM { n, m } if !(2..=16).contains(&m) || n == 0 || n >= m => err(format!(
                "nm({n}:{m}): a run of 2 to 16 elements keeps 1 to M − 1 of them"
            )),
            Layout::NM { n, m } if !cols.is_multiple_of(m as usize) => err(format!(
                "nm({n}:{m}) needs rows of a multiple of {m}, not {cols}"
            )),
            Layout::Blocks { rows: br, cols: bc } if br == 0 || bc == 0 || br == 1 && bc == 1 => {
                err(format!(
                    "blocks({br}x{bc}): a block has at least 2 elements"
                ))
            }
            Layout::Gaps { bits } if !(1..=8).contains(&bits) => {
                err(format!("gaps({bits}): gap symbols are 1 to 8 bits"))
            }
            Layout::Blocks { rows: br, cols: bc }
                if !rows.is_multiple_of(br as usize) || !cols.is_multiple_of(bc as usize) =>
            {
                err(format!(
                    "blocks({br}x{bc}) do not tile a {rows}×{cols} view (rows must be a multiple \
                     of {br}, columns of {bc})"
                ))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Layout {
    /// The text form: `dense`, `bitmask`, `csr`, `nm(2:4)`, `blocks(4x1)`, `gaps(4)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::Dense => f.write_str("dense"),
            Layout::Bitmask => f.write_str("bitmask"),
            Layout::Csr => f.write_str("csr"),
            Layout::NM { n, m } => write!(f, "nm({n}:{m})"),
            Layout::Blocks { rows, cols } => write!(f, "blocks({rows}x{cols})"),
            Layout::Gaps { bits } => write!(f, "gaps({bits})"),
        }
    }
}

/// How the codes are entropy-coded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    /// Packed at their bit width.
    None,
    /// Canonical Huffman codes (int and codebook values only).
    Huffman,
}

/// A stored constant's encoding: values × layout × coding.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Encoding {
    /// How values are represented.
    pub values: Values,
    /// Which elements are stored.
    pub layout: Layout,
    /// How codes are coded.
    pub coding: Coding,
}

impl Encoding {
    /// f32 values in `layout`, uncoded.
    pub const fn f32(layout: Layout) -> Encoding {
        Encoding {
            values: Values::F32,
            layout,
            coding: Coding::None,
        }
    }
}

impl fmt::Display for Encoding {
    /// The text form: `f32 bitmask`, `int4 per group(128) dense`, `codebook5 per tensor csr
    /// huffman`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |g: Granularity| match g {
            Granularity::Tensor => "per tensor".to_string(),
            Granularity::Channel(a) => format!("per channel({a})"),
            Granularity::Group(n) => format!("per group({n})"),
        };
        match self.values {
            Values::F32 => write!(f, "f32")?,
            Values::Int { bits, per: g } => write!(f, "int{bits} {}", per(g))?,
            Values::Codebook { bits, per: g } => write!(f, "codebook{bits} {}", per(g))?,
        }
        write!(f, " {}", self.layout)?;
        if self.coding == Coding::Huffman {
            f.write_str(" huffman")?;
        }
        Ok(())
    }
}

/// A constant in stored form: its blob, and the dense tensor the blob decodes to.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    encoding: Encoding,
    shape: Vec<usize>,
    blob: Vec<u8>,
    decoded: Tensor,
}

/// A stored form could not be made or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stored constant: {0}")]
pub struct StoredError(pub String);

/// The bit streams' and Huffman decoder's errors (`mcc_runtime::huffman`).
impl From<String> for StoredError {
    fn from(m: String) -> Self {
        StoredError(m)
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, StoredError> {
    Err(StoredError(m.into()))
}

/// The parts of a stored constant, before they are laid out as a blob.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parts {
    /// Which elements are kept (length `n`); empty for a dense layout.
    pub keep: Vec<bool>,
    /// f32 values of the kept elements, row-major (f32 values).
    pub values: Vec<f32>,
    /// Codes of the kept elements, row-major (int: signed, as i32; codebook: indices).
    pub codes: Vec<i32>,
    /// Scale per group (int).
    pub scales: Vec<f32>,
    /// Zero point per group (int).
    pub zero_points: Vec<i8>,
    /// `2^bits` centroids per group (codebook).
    pub centroids: Vec<f32>,
}

impl Stored {
    /// Lays out `parts` in `encoding` for a tensor of `shape`, and decodes the result.
    pub fn new(encoding: Encoding, shape: &[usize], parts: &Parts) -> Result<Stored, StoredError> {
        let blob = write_blob(encoding, shape, parts)?;
        Stored::from_blob(encoding, shape, blob)
    }

    /// Reads a blob (the full text form, an object file), checking every length and index.
    pub fn from_blob(
        encoding: Encoding,
        shape: &[usize],
        blob: Vec<u8>,
    ) -> Result<Stored, StoredError> {
        let decoded = decode(encoding, shape, &blob)?;
        Ok(Stored {
            encoding,
            shape: shape.to_vec(),
            blob,
            decoded,
        })
    }

    /// f32 weights in `layout` (zeros are the elements a sparse layout drops; `-0.0` is kept,
    /// so decoding gives back the same bits).
    pub fn f32(t: &Tensor, layout: Layout) -> Result<Stored, StoredError> {
        let Some(a) = t.as_f32() else {
            return err(format!("only f32 tensors are stored, not {}", t.dtype()));
        };
        let flat: Vec<f32> = a.iter().copied().collect();
        let keep: Vec<bool> = match layout {
            Layout::Dense => vec![],
            _ => keep_nonzero(layout, t.shape(), &flat)?,
        };
        let values = if keep.is_empty() {
            flat
        } else {
            flat.iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| *x)
                .collect()
        };
        let parts = Parts {
            keep,
            values,
            ..Parts::default()
        };
        Stored::new(Encoding::f32(layout), t.shape(), &parts)
    }

    /// The smallest of dense, bitmask, CSR and packed `gaps(1..=8)` f32 storage for `t`
    /// (the first of these on ties), chosen by [`layout_bytes`] before anything is written.
    pub fn smallest_f32(t: &Tensor) -> Result<Stored, StoredError> {
        let Some(a) = t.as_f32() else {
            return err(format!("only f32 tensors are stored, not {}", t.dtype()));
        };
        let keep: Vec<bool> = a.iter().map(|x| x.to_bits() != 0).collect();
        let k = keep.iter().filter(|&&b| b).count();
        // Dense holds every value; a sparse layout the kept ones (4 bytes each) plus itself.
        let dense = 4 * keep.len();
        match smallest_layout(t.shape(), &keep) {
            Some((layout, bytes)) if bytes + 4 * k < dense => Stored::f32(t, layout),
            _ => Stored::f32(t, Layout::Dense),
        }
    }

    /// Its encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The blob.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// Stored bytes: the blob's length.
    pub fn bytes(&self) -> usize {
        self.blob.len()
    }

    /// What it stands for: the dense f32 tensor.
    pub fn decoded(&self) -> &Tensor {
        &self.decoded
    }

    /// Its parts, read back from the blob (for exporters that can say them).
    pub fn parts(&self) -> Result<Parts, StoredError> {
        read_parts(self.encoding, &self.shape, &self.blob)
    }
}

/// Bytes the layout part of a blob takes for the kept set `keep` of a tensor of `shape`
/// (part 1 of the format), for the layouts that can hold any kept set: bitmask, CSR and gap
/// streams (`None` for the others). Values and codes take the same bytes in all of them, so
/// comparing these compares whole blobs (uncoded).
pub fn layout_bytes(layout: Layout, shape: &[usize], keep: &[bool]) -> Option<usize> {
    let (rows, cols) = rows_cols(shape);
    let k = keep.iter().filter(|&&b| b).count();
    match layout {
        Layout::Bitmask => Some(keep.len().div_ceil(8)),
        Layout::Csr => Some(4 * (rows + 1) + k * if cols <= 1 << 16 { 2 } else { 4 }),
        Layout::Gaps { bits } if (1..=8).contains(&bits) => {
            let escape = (1usize << bits) - 1;
            let (mut symbols, mut skipped) = (0usize, 0usize);
            for &kept in keep {
                if kept {
                    symbols += 1 + skipped / escape;
                    skipped = 0;
                } else {
                    skipped += 1;
                }
            }
            Some(4 + (symbols * bits as usize).div_ceil(8))
        }
        _ => None,
    }
}

/// The sparse layout (bitmask, CSR, or a gap stream of 1 to 8 bits, the first on ties) whose
/// layout part is smallest for the kept set, with its bytes; `None` when every element is kept
/// (a dense layout holds them with no layout part).
pub fn smallest_layout(shape: &[usize], keep: &[bool]) -> Option<(Layout, usize)> {
    if keep.iter().all(|&b| b) {
        return None;
    }
    let k = keep.iter().filter(|&&b| b).count();
    // Denser than half, a bitmask (1 bit an element) beats any gap stream (≥ 1 bit a kept one,
    // ≥ 2 bits for each of the rest).
    let gaps = (1..=8u8)
        .filter(|_| k * 2 <= keep.len())
        .map(|bits| Layout::Gaps { bits });
    [Layout::Bitmask, Layout::Csr]
        .into_iter()
        .chain(gaps)
        .filter_map(|l| layout_bytes(l, shape, keep).map(|b| (l, b)))
        .fold(None, |best: Option<(Layout, usize)>, (l, b)| match best {
            Some((_, bb)) if bb <= b => best,
            _ => Some((l, b)),
        })
}

/// The elements `layout` keeps of `flat` (shape `shape`) so that every nonzero survives: the
/// nonzeros for a bitmask or CSR; for N:M, each run's nonzeros padded with its first zeros
/// to `N` (an error when a run has more); for blocks, every block holding a nonzero.
fn keep_nonzero(layout: Layout, shape: &[usize], flat: &[f32]) -> Result<Vec<bool>, StoredError> {
    layout.check(shape)?;
    let mut keep: Vec<bool> = flat.iter().map(|x| x.to_bits() != 0).collect();
    match layout {
        Layout::NM { n, m } => {
            let (n, m) = (n as usize, m as usize);
            for (r, run) in keep.chunks_mut(m).enumerate() {
                let mut have = run.iter().filter(|&&b| b).count();
                if have > n {
                    return err(format!(
                        "run {r} (elements {}..{}) has {have} nonzeros; nm({n}:{m}) keeps {n}",
                        r * m,
                        r * m + m
                    ));
                }
                for k in run.iter_mut() {
                    if have < n && !*k {
                        *k = true;
                        have += 1;
                    }
                }
            }
        }
        Layout::Blocks { .. } => {
            for block in blocks(layout, shape) {
                let any = block.clone().any(|i| keep[i]);
                for i in block {
                    keep[i] = any;
                }
            }
        }
        _ => {}
    }
    Ok(keep)
}

/// The blocks of a `blocks(RxC)` layout over a tensor of `shape` (one it tiles), in
/// row-major block order: each block's element indices, row-major within the block. Empty
/// for any other layout.
fn blocks(
    layout: Layout,
    shape: &[usize],
) -> impl Iterator<Item = impl Iterator<Item = usize> + Clone> {
    let (rows, cols) = rows_cols(shape);
    let (br, bc) = match layout {
        Layout::Blocks { rows, cols } => (rows as usize, cols as usize),
        _ => (0, 0),
    };
    let origins = if br == 0 || bc == 0 {
        0
    } else {
        rows / br * (cols / bc)
    };
    (0..origins).map(move |b| {
        let (b0, c0) = (b / (cols / bc) * br, b % (cols / bc) * bc);
        (b0..b0 + br).flat_map(move |r| (c0..c0 + bc).map(move |c| r * cols + c))
    })
}

/// Bits of an N:M position.
fn nm_bits(m: usize) -> u32 {
    usize::BITS - (m - 1).leading_zeros()
}

/// The kept elements' row-major ranks in storage order: `order[j]` is the row-major rank of
/// the `j`-th stored value (the identity except for blocks).
fn storage_order(layout: Layout, shape: &[usize], keep: &[bool], k: usize) -> Vec<usize> {
    if !matches!(layout, Layout::Blocks { .. }) {
        return (0..k).collect();
    }
    let mut rank = vec![usize::MAX; keep.len()];
    for (r, (i, _)) in keep.iter().enumerate().filter(|(_, b)| **b).enumerate() {
        rank[i] = r;
    }
    blocks(layout, shape)
        .flatten()
        .filter_map(|i| rank.get(i).copied().filter(|&x| x != usize::MAX))
        .collect()
}

/// Maps an element's row-major index to its group.
type GroupOf = Box<dyn Fn(usize) -> usize>;

/// Groups of the granularity over a tensor of `shape`: (group count, group of element `i`).
fn groups(per: Granularity, shape: &[usize]) -> Result<(usize, GroupOf), StoredError> {
    let n: usize = shape.iter().product();
    Ok(match per {
        Granularity::Tensor => (1, Box::new(|_| 0)),
        Granularity::Channel(axis) => {
            let axis = axis as usize;
            let Some(&dim) = shape.get(axis) else {
                return err(format!("per channel({axis}) of a {}-D tensor", shape.len()));
            };
            let inner: usize = shape[axis + 1..].iter().product();
            (dim, Box::new(move |i| (i / inner.max(1)) % dim.max(1)))
        }
        Granularity::Group(g) => {
            let g = g as usize;
            if g == 0 {
                return err("a group of 0 elements");
            }
            (n.div_ceil(g), Box::new(move |i| i / g))
        }
    })
}

fn bits_of(values: Values) -> Option<u8> {
    match values {
        Values::F32 => None,
        Values::Int { bits, .. } | Values::Codebook { bits, .. } => Some(bits),
    }
}

fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let n: usize = shape.iter().product();
    let rows = shape.first().copied().unwrap_or(1).max(1);
    (rows, n / rows)
}

fn write_blob(encoding: Encoding, shape: &[usize], p: &Parts) -> Result<Vec<u8>, StoredError> {
    let n: usize = shape.iter().product();
    let mut out = vec![];
    // Layout.
    encoding.layout.check(shape)?;
    let k = match encoding.layout {
        Layout::Dense => n,
        _ => {
            if p.keep.len() != n {
                return err(format!("a mask of {} for {n} elements", p.keep.len()));
            }
            p.keep.iter().filter(|&&b| b).count()
        }
    };
    match encoding.layout {
        Layout::Dense => {}
        Layout::NM { n: keep_n, m } => {
            let (keep_n, m) = (keep_n as usize, m as usize);
            let mut w = BitWriter::default();
            for (r, run) in p.keep.chunks(m).enumerate() {
                let kept: Vec<usize> = (0..m).filter(|&j| run[j]).collect();
                if kept.len() != keep_n {
                    return err(format!(
                        "run {r} keeps {} elements; nm({keep_n}:{m}) keeps exactly {keep_n}",
                        kept.len()
                    ));
                }
                for j in kept {
                    w.put(j as u32, nm_bits(m));
                }
            }
            out.extend(w.finish());
        }
        Layout::Blocks { rows: br, cols: bc } => {
            let (_, cols) = rows_cols(shape);
            let mut w = BitWriter::default();
            for mut block in blocks(encoding.layout, shape) {
                let Some(corner) = block.next() else { continue };
                let first = p.keep[corner];
                if !block.all(|i| p.keep[i] == first) {
                    return err(format!(
                        "the block at row {}, column {} is partly kept; blocks({br}x{bc}) keep or \
                         drop whole blocks",
                        corner / cols.max(1),
                        corner % cols.max(1)
                    ));
                }
                w.bit(first);
            }
            out.extend(w.finish());
        }
        Layout::Gaps { bits } => {
            let symbols = gap_symbols(&p.keep, bits);
            out.extend((symbols.len() as u32).to_le_bytes());
            write_symbols(&mut out, &symbols, bits, encoding.coding);
        }
        Layout::Bitmask => {
            let mut bytes = vec![0u8; n.div_ceil(8)];
            for (i, _) in p.keep.iter().enumerate().filter(|(_, b)| **b) {
                bytes[i / 8] |= 1 << (i % 8);
            }
            out.extend(bytes);
        }
        Layout::Csr => {
            let (rows, cols) = rows_cols(shape);
            let mut at = 0u32;
            out.extend(at.to_le_bytes());
            for r in 0..rows {
                at += p.keep[r * cols..(r + 1) * cols]
                    .iter()
                    .filter(|&&b| b)
                    .count() as u32;
                out.extend(at.to_le_bytes());
            }
            for (i, _) in p.keep.iter().enumerate().filter(|(_, b)| **b) {
                let c = i % cols.max(1);
                if cols <= 1 << 16 {
                    out.extend((c as u16).to_le_bytes());
                } else {
                    out.extend((c as u32).to_le_bytes());
                }
            }
        }
    }
    // Values.
    match encoding.values {
        Values::F32 => {
            if p.values.len() != k {
                return err(format!("{} values for {k} kept elements", p.values.len()));
            }
            check_f32_coding(encoding)?;
            for j in storage_order(encoding.layout, shape, &p.keep, k) {
                out.extend(p.values[j].to_le_bytes());
            }
            return Ok(out);
        }
        Values::Int { bits, per } => {
            let (g, _) = groups(per, shape)?;
            if p.scales.len() != g || p.zero_points.len() != g {
                return err(format!(
                    "{} scales and {} zero points for {g} groups",
                    p.scales.len(),
                    p.zero_points.len()
                ));
            }
            check_bits(bits)?;
            check_zero_points(&p.zero_points, bits)?;
            for s in &p.scales {
                out.extend(s.to_le_bytes());
            }
            out.extend(p.zero_points.iter().map(|&z| z as u8));
        }
        Values::Codebook { bits, per } => {
            check_bits(bits)?;
            if matches!(per, Granularity::Group(_)) {
                return err("codebooks are per tensor or per channel");
            }
            let (g, _) = groups(per, shape)?;
            if p.centroids.len() != g << bits {
                return err(format!(
                    "{} centroids for {g} tables of {}",
                    p.centroids.len(),
                    1usize << bits
                ));
            }
            for c in &p.centroids {
                out.extend(c.to_le_bytes());
            }
        }
    }
    // Codes.
    let bits = bits_of(encoding.values).unwrap_or(8);
    if p.codes.len() != k {
        return err(format!("{} codes for {k} kept elements", p.codes.len()));
    }
    let symbol = |q: i32| -> Result<u32, StoredError> {
        let s = match encoding.values {
            Values::Int { .. } => {
                let lo = -(1i32 << (bits - 1));
                let hi = (1i32 << (bits - 1)) - 1;
                if q < lo || q > hi {
                    return err(format!("code {q} does not fit in {bits} signed bits"));
                }
                (q as u32) & ((1u32 << bits) - 1)
            }
            _ => {
                if q < 0 || q >= 1 << bits {
                    return err(format!("index {q} does not fit in {bits} bits"));
                }
                q as u32
            }
        };
        Ok(s)
    };
    let symbols = storage_order(encoding.layout, shape, &p.keep, k)
        .into_iter()
        .map(|j| symbol(p.codes[j]))
        .collect::<Result<Vec<u32>, _>>()?;
    write_symbols(&mut out, &symbols, bits, encoding.coding);
    Ok(out)
}

/// f32 values have no codes, so Huffman coding needs gap symbols to code.
fn check_f32_coding(encoding: Encoding) -> Result<(), StoredError> {
    if encoding.coding != Coding::None && !matches!(encoding.layout, Layout::Gaps { .. }) {
        return err(
            "Huffman coding applies to integer and codebook codes and to gap symbols, not to \
             f32 values in this layout",
        );
    }
    Ok(())
}

/// The gap symbols of a `gaps(bits)` layout for the kept set `keep` (see the format).
fn gap_symbols(keep: &[bool], bits: u8) -> Vec<u32> {
    let escape = (1usize << bits) - 1;
    let mut out = vec![];
    let mut skipped = 0usize;
    for &kept in keep {
        if !kept {
            skipped += 1;
            continue;
        }
        while skipped >= escape {
            out.push(escape as u32);
            skipped -= escape;
        }
        out.push(skipped as u32);
        skipped = 0;
    }
    out
}

/// Appends `bits`-bit symbols, packed LSB-first or Huffman-coded (lengths, bit count, stream).
fn write_symbols(out: &mut Vec<u8>, symbols: &[u32], bits: u8, coding: Coding) {
    match coding {
        Coding::None => {
            let mut w = BitWriter::default();
            for &s in symbols {
                w.put(s, bits as u32);
            }
            out.extend(w.finish());
        }
        Coding::Huffman => {
            let lengths = huffman::lengths(symbols, 1 << bits);
            let codes = huffman::canonical(&lengths);
            out.extend(&lengths);
            let mut w = BitWriter::default();
            for &s in symbols {
                let (code, len) = codes[s as usize];
                w.put_msb_first(code, len as u32);
            }
            out.extend((w.len() as u32).to_le_bytes());
            out.extend(w.finish());
        }
    }
}

/// Zero points are codes: they fit the values' bit width (an int4 zero point of 8 would mean
/// one thing here and another wherever codes are 4 bits wide).
fn check_zero_points(zps: &[i8], bits: u8) -> Result<(), StoredError> {
    let (lo, hi) = (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1);
    match zps
        .iter()
        .find(|&&z| i32::from(z) < lo || i32::from(z) > hi)
    {
        Some(z) => err(format!("zero point {z} does not fit in {bits} signed bits")),
        None => Ok(()),
    }
}

fn check_bits(bits: u8) -> Result<(), StoredError> {
    if (1..=8).contains(&bits) {
        Ok(())
    } else {
        err(format!("{bits}-bit codes (1 to 8 are stored)"))
    }
}

/// Reads bytes off the front of a blob, with bounds checks.
struct Reader<'a> {
    blob: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoredError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.blob.len());
        let Some(end) = end else {
            return err(format!(
                "the data ends after {} bytes, {n} more were expected at byte {}",
                self.blob.len(),
                self.at
            ));
        };
        let s = &self.blob[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, StoredError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, StoredError> {
        let b = self.take(
            n.checked_mul(4)
                .ok_or_else(|| StoredError("too large".into()))?,
        )?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Decodes a blob to the dense tensor it stands for.
fn decode(encoding: Encoding, shape: &[usize], blob: &[u8]) -> Result<Tensor, StoredError> {
    let parts = read_parts(encoding, shape, blob)?;
    Tensor::from_vec(shape, dense(encoding, shape, &parts)?).map_err(|e| StoredError(e.to_string()))
}

/// Reads a blob into its parts, checking every length, count and index (codes come back
/// sign-extended for int values).
fn read_parts(encoding: Encoding, shape: &[usize], blob: &[u8]) -> Result<Parts, StoredError> {
    let n = crate::tensor::checked_numel(shape)
        .filter(|&n| n <= crate::tensor::MAX_ELEMENTS)
        .ok_or_else(|| StoredError(format!("a tensor of shape {shape:?} is too large")))?;
    let mut r = Reader { blob, at: 0 };
    let mut parts = Parts::default();
    encoding.layout.check(shape)?;
    // Layout: which elements are kept.
    match encoding.layout {
        Layout::Dense => {}
        Layout::NM { n: keep_n, m } => {
            let (keep_n, m) = (keep_n as usize, m as usize);
            let runs = n / m;
            let bits = nm_bits(m);
            let bytes = r.take((runs * keep_n * bits as usize).div_ceil(8))?;
            let mut br = BitReader::new(bytes);
            parts.keep = vec![false; n];
            for run in 0..runs {
                let mut last = None;
                for _ in 0..keep_n {
                    let j = br.get(bits)? as usize;
                    if j >= m || last.is_some_and(|l| l >= j) {
                        return err(format!("run {run}: position {j} is out of order or range"));
                    }
                    last = Some(j);
                    parts.keep[run * m + j] = true;
                }
            }
        }
        Layout::Blocks { rows: bh, cols: bw } => {
            let count = n / (bh as usize * bw as usize);
            let mask = r.take(count.div_ceil(8))?;
            parts.keep = vec![false; n];
            for (b, block) in blocks(encoding.layout, shape).enumerate() {
                if mask[b / 8] >> (b % 8) & 1 == 1 {
                    for i in block {
                        parts.keep[i] = true;
                    }
                }
            }
        }
        Layout::Gaps { bits } => {
            let count = r.u32()? as usize;
            // Every symbol but an escape keeps an element, and an escape skips at least one:
            // more symbols than elements cannot be a stream of this tensor.
            if count > n {
                return err(format!("{count} gap symbols for {n} elements"));
            }
            let escape = (1usize << bits) - 1;
            parts.keep = vec![false; n];
            let symbols = read_codes(&mut r, encoding.coding, bits, count)?;
            let mut at = 0usize;
            for (j, &s) in symbols.iter().enumerate() {
                let s = s as usize;
                at += s;
                if s == escape {
                    if j + 1 == count {
                        return err("the gap stream ends on an escape");
                    }
                    continue;
                }
                let Some(k) = parts.keep.get_mut(at) else {
                    return err(format!("gap symbol {j} reaches element {at} of {n}"));
                };
                *k = true;
                at += 1;
            }
        }
        Layout::Bitmask => {
            let mask = r.take(n.div_ceil(8))?;
            parts.keep = (0..n).map(|i| mask[i / 8] >> (i % 8) & 1 == 1).collect();
        }
        Layout::Csr => {
            let (rows, cols) = rows_cols(shape);
            // The row offsets must all be there before anything is sized by `rows`.
            let offsets = rows
                .checked_add(1)
                .and_then(|r| r.checked_mul(4))
                .ok_or_else(|| StoredError("too many rows".into()))?;
            let raw = r.take(offsets)?;
            let ptr: Vec<usize> = raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
                .collect();
            let k = *ptr.last().unwrap_or(&0);
            if ptr[0] != 0 || ptr.windows(2).any(|w| w[0] > w[1]) || k > n {
                return err("CSR row offsets do not increase from 0");
            }
            let wide = cols > 1 << 16;
            let idx = r.take(k * if wide { 4 } else { 2 })?;
            let col = |j: usize| {
                if wide {
                    u32::from_le_bytes([idx[4 * j], idx[4 * j + 1], idx[4 * j + 2], idx[4 * j + 3]])
                        as usize
                } else {
                    u16::from_le_bytes([idx[2 * j], idx[2 * j + 1]]) as usize
                }
            };
            parts.keep = vec![false; n];
            for row in 0..rows {
                let mut last = None;
                for j in ptr[row]..ptr[row + 1] {
                    let c = col(j);
                    if c >= cols || last.is_some_and(|l| l >= c) {
                        return err(format!(
                            "CSR column {c} of row {row} is out of order or range"
                        ));
                    }
                    last = Some(c);
                    parts.keep[row * cols + c] = true;
                }
            }
        }
    }
    let k = if parts.keep.is_empty() {
        n
    } else {
        parts.keep.iter().filter(|&&b| b).count()
    };
    let order = storage_order(encoding.layout, shape, &parts.keep, k);
    match encoding.values {
        Values::F32 => {
            check_f32_coding(encoding)?;
            parts.values = unpermute(r.f32s(k)?, &order);
        }
        Values::Int { bits, per } => {
            check_bits(bits)?;
            let (g, _) = groups(per, shape)?;
            parts.scales = r.f32s(g)?;
            parts.zero_points = r.take(g)?.iter().map(|&b| b as i8).collect();
            check_zero_points(&parts.zero_points, bits)?;
            let codes = read_codes(&mut r, encoding.coding, bits, k)?
                .into_iter()
                // Sign-extend the b-bit code.
                .map(|s| ((s << (32 - bits)) as i32) >> (32 - bits))
                .collect();
            parts.codes = unpermute(codes, &order);
        }
        Values::Codebook { bits, per } => {
            check_bits(bits)?;
            if matches!(per, Granularity::Group(_)) {
                return err("codebooks are per tensor or per channel");
            }
            let (g, _) = groups(per, shape)?;
            parts.centroids = r.f32s(g << bits)?;
            let codes = read_codes(&mut r, encoding.coding, bits, k)?
                .into_iter()
                .map(|s| s as i32)
                .collect();
            parts.codes = unpermute(codes, &order);
        }
    }
    if r.at != blob.len() {
        return err(format!(
            "{} bytes of data left over after {}",
            blob.len() - r.at,
            r.at
        ));
    }
    Ok(parts)
}

/// Puts values read in storage order back in row-major order.
fn unpermute<T: Copy + Default>(stored: Vec<T>, order: &[usize]) -> Vec<T> {
    let mut out = vec![T::default(); stored.len()];
    for (&v, &j) in stored.iter().zip(order) {
        if let Some(o) = out.get_mut(j) {
            *o = v;
        }
    }
    out
}

/// What parts (as read by [`read_parts`]) stand for: the dense elements, row-major.
fn dense(encoding: Encoding, shape: &[usize], parts: &Parts) -> Result<Vec<f32>, StoredError> {
    let n: usize = shape.iter().product();
    let kept: Vec<usize> = if parts.keep.is_empty() {
        (0..n).collect()
    } else {
        (0..n).filter(|&i| parts.keep[i]).collect()
    };
    let mut out = vec![0f32; n];
    match encoding.values {
        Values::F32 => {
            for (&i, &v) in kept.iter().zip(&parts.values) {
                out[i] = v;
            }
        }
        Values::Int { per, .. } => {
            let (_, group) = groups(per, shape)?;
            for (&i, &q) in kept.iter().zip(&parts.codes) {
                let g = group(i);
                out[i] = (q - i32::from(parts.zero_points[g])) as f32 * parts.scales[g];
            }
        }
        Values::Codebook { bits, per } => {
            let (_, group) = groups(per, shape)?;
            for (&i, &q) in kept.iter().zip(&parts.codes) {
                out[i] = parts.centroids[(group(i) << bits) + q as usize];
            }
        }
    }
    Ok(out)
}

fn read_codes(
    r: &mut Reader<'_>,
    coding: Coding,
    bits: u8,
    k: usize,
) -> Result<Vec<u32>, StoredError> {
    match coding {
        Coding::None => {
            let bytes = r.take((k * bits as usize).div_ceil(8))?;
            let mut br = BitReader::new(bytes);
            (0..k)
                .map(|_| br.get(bits as u32).map_err(StoredError))
                .collect()
        }
        Coding::Huffman => {
            let lengths = r.take(1 << bits)?.to_vec();
            let total = r.u32()? as usize;
            let bytes = r.take(total.div_ceil(8))?;
            let table = huffman::Decoder::new(&lengths)?;
            let mut br = BitReader::new(bytes);
            let mut out = Vec::with_capacity(k);
            for _ in 0..k {
                out.push(table.next(&mut br)?);
            }
            if br.pos() != total {
                return err(format!(
                    "the Huffman stream holds {total} bits, {} were read",
                    br.pos()
                ));
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }

    #[test]
    fn f32_layouts_decode_to_the_same_bits() {
        let x = t(
            &[3, 4],
            vec![
                0.0, 1.5, 0.0, -0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, -3.0, 7.25,
            ],
        );
        for layout in [Layout::Dense, Layout::Bitmask, Layout::Csr] {
            let s = Stored::f32(&x, layout).unwrap();
            let got: Vec<u32> = s
                .decoded()
                .as_f32()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let want: Vec<u32> = x.as_f32().unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{layout:?}");
        }
        // Sizes are the sum of the parts: 5 kept values (−0.0 is kept).
        assert_eq!(Stored::f32(&x, Layout::Dense).unwrap().bytes(), 48);
        assert_eq!(Stored::f32(&x, Layout::Bitmask).unwrap().bytes(), 2 + 5 * 4);
        assert_eq!(
            Stored::f32(&x, Layout::Csr).unwrap().bytes(),
            4 * 4 + 5 * 2 + 5 * 4
        );
        assert_eq!(
            Stored::smallest_f32(&x).unwrap().encoding().layout,
            Layout::Bitmask
        );
    }

    #[test]
    fn int_codebook_and_huffman_combinations_decode() {
        let shape = [2, 4];
        // int4 per channel(0), bitmask: row 0 scale 0.5 zp 1, row 1 scale 2 zp 0.
        let keep = vec![true, false, true, true, false, true, true, false];
        let parts = Parts {
            keep: keep.clone(),
            codes: vec![3, -8, 1, 7, -1],
            scales: vec![0.5, 2.0],
            zero_points: vec![1, 0],
            ..Parts::default()
        };
        for coding in [Coding::None, Coding::Huffman] {
            let e = Encoding {
                values: Values::Int {
                    bits: 4,
                    per: Granularity::Channel(0),
                },
                layout: Layout::Bitmask,
                coding,
            };
            let s = Stored::new(e, &shape, &parts).unwrap();
            let got: Vec<f32> = s.decoded().as_f32().unwrap().iter().copied().collect();
            // Row 0 keeps 0, 2, 3: (3−1)·½, (−8−1)·½, (1−1)·½; row 1 keeps 5, 6: 7·2, −1·2.
            assert_eq!(
                got,
                [1.0, 0.0, -4.5, 0.0, 0.0, 14.0, -2.0, 0.0],
                "{coding:?}"
            );
            let back = Stored::from_blob(e, &shape, s.blob().to_vec()).unwrap();
            assert_eq!(back, s);
        }
        // Codebook per tensor, dense, Huffman: six of eight indices are 0.
        let e = Encoding {
            values: Values::Codebook {
                bits: 2,
                per: Granularity::Tensor,
            },
            layout: Layout::Dense,
            coding: Coding::Huffman,
        };
        let parts = Parts {
            codes: vec![0, 0, 0, 3, 0, 0, 2, 0],
            centroids: vec![-1.0, 0.25, 0.5, 4.0],
            ..Parts::default()
        };
        let s = Stored::new(e, &shape, &parts).unwrap();
        let got: Vec<f32> = s.decoded().as_f32().unwrap().iter().copied().collect();
        assert_eq!(got, [-1.0, -1.0, -1.0, 4.0, -1.0, -1.0, 0.5, -1.0]);
        // 4 centroids + 4 code lengths + the bit count + 8 symbols in 6·1 + 2·2 = 10 bits.
        assert_eq!(s.bytes(), 16 + 4 + 4 + 2);
    }

    #[test]
    fn bad_blobs_are_errors_not_panics() {
        let e = Encoding::f32(Layout::Csr);
        for blob in [vec![], vec![1, 0, 0, 0], vec![0; 3], vec![0xff; 40]] {
            assert!(Stored::from_blob(e, &[2, 3], blob).is_err());
        }
        let e = Encoding {
            values: Values::Int {
                bits: 3,
                per: Granularity::Group(0),
            },
            layout: Layout::Dense,
            coding: Coding::None,
        };
        assert!(Stored::from_blob(e, &[2, 3], vec![0; 64]).is_err());
        let huff = Encoding {
            values: Values::Codebook {
                bits: 1,
                per: Granularity::Tensor,
            },
            layout: Layout::Dense,
            coding: Coding::Huffman,
        };
        // Lengths 1 and 1 are fine; a bit count larger than the stream is not.
        let mut blob = vec![];
        blob.extend(0.0f32.to_le_bytes());
        blob.extend(1.0f32.to_le_bytes());
        blob.extend([1, 1]);
        blob.extend(100u32.to_le_bytes());
        assert!(Stored::from_blob(huff, &[2], blob).is_err());
    }

    #[test]
    fn review_findings_stay_fixed() {
        // An int4 zero point must be a 4-bit code.
        let e = Encoding {
            values: Values::Int {
                bits: 4,
                per: Granularity::Tensor,
            },
            layout: Layout::Dense,
            coding: Coding::None,
        };
        let parts = Parts {
            codes: vec![0, 1],
            scales: vec![1.0],
            zero_points: vec![8],
            ..Parts::default()
        };
        assert!(Stored::new(e, &[2], &parts).is_err());
        let mut blob = 1.0f32.to_le_bytes().to_vec();
        blob.extend([8u8, 0x10]);
        assert!(Stored::from_blob(e, &[2], blob).is_err());
        // A CSR shape with a huge row count and no data is an error, not an allocation.
        assert!(Stored::from_blob(Encoding::f32(Layout::Csr), &[1 << 40, 0], vec![]).is_err());
        // Fibonacci counts make an optimal code deeper than MAX_LEN: the writer limits it and
        // the result still decodes.
        let mut symbols = vec![];
        let (mut a, mut b) = (1u32, 1u32);
        for sym in 0..28u32 {
            symbols.extend(std::iter::repeat_n(sym as i32, a as usize));
            (a, b) = (b, a + b);
        }
        let n = symbols.len();
        let e = Encoding {
            values: Values::Codebook {
                bits: 5,
                per: Granularity::Tensor,
            },
            layout: Layout::Dense,
            coding: Coding::Huffman,
        };
        let parts = Parts {
            codes: symbols.clone(),
            centroids: (0..32).map(|c| c as f32).collect(),
            ..Parts::default()
        };
        let s = Stored::new(e, &[n], &parts).unwrap();
        let got: Vec<i32> = s
            .decoded()
            .as_f32()
            .unwrap()
            .iter()
            .map(|&v| v as i32)
            .collect();
        assert_eq!(got, symbols);
        assert!(s.blob()[128..160].iter().all(|&l| l <= huffman::MAX_LEN));
    }

    #[test]
    fn nm_and_block_layouts_keep_every_nonzero_and_say_their_size() {
        // 2:4 on rows of 8: at most two nonzeros per run; a run with one is padded by a zero.
        let x = t(
            &[2, 8],
            vec![
                0.0, 1.0, 0.0, 2.0, 3.0, 0.0, 0.0, 0.0, //
                0.0, 0.0, 4.0, -5.0, 0.0, 6.0, 7.0, 0.0,
            ],
        );
        let s = Stored::f32(&x, Layout::NM { n: 2, m: 4 }).unwrap();
        assert_eq!(s.decoded(), &x);
        // 4 runs × 2 positions × 2 bits = 2 bytes, then 8 f32.
        assert_eq!(s.bytes(), 2 + 8 * 4);
        assert_eq!(s.encoding().to_string(), "f32 nm(2:4)");
        let too_many = t(&[1, 4], vec![1.0, 2.0, 3.0, 0.0]);
        let e = Stored::f32(&too_many, Layout::NM { n: 2, m: 4 }).unwrap_err();
        assert!(e.0.contains("3 nonzeros"), "{e}");
        assert!(Stored::f32(&t(&[1, 6], vec![0.0; 6]), Layout::NM { n: 2, m: 4 }).is_err());

        // 2×2 blocks of a 4×4: two blocks hold nonzeros; their values lie block by block.
        let y = t(
            &[4, 4],
            vec![
                1.0, 2.0, 0.0, 0.0, //
                3.0, 0.0, 0.0, 0.0, //
                0.0, 0.0, 0.0, 5.0, //
                0.0, 0.0, 6.0, 7.0,
            ],
        );
        let b = Stored::f32(&y, Layout::Blocks { rows: 2, cols: 2 }).unwrap();
        assert_eq!(b.decoded(), &y);
        assert_eq!(b.bytes(), 1 + 8 * 4);
        let values: Vec<f32> = b.blob()[1..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(values, [1.0, 2.0, 3.0, 0.0, 0.0, 5.0, 6.0, 7.0]);
        // 2×1 blocks are columns of two: stored column by column, read back row-major.
        let z = t(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let c = Stored::f32(&z, Layout::Blocks { rows: 2, cols: 1 }).unwrap();
        let stored: Vec<f32> = c.blob()[1..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(stored, [1.0, 3.0, 2.0, 4.0]);
        assert_eq!(c.parts().unwrap().values, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(c.decoded(), &z);
        assert!(
            Stored::f32(
                &t(&[3, 4], vec![1.0; 12]),
                Layout::Blocks { rows: 2, cols: 1 }
            )
            .is_err()
        );
        assert!(Stored::f32(&y, Layout::Blocks { rows: 1, cols: 1 }).is_err());
    }

    #[test]
    fn bad_nm_and_block_blobs_are_errors() {
        let nm = Encoding::f32(Layout::NM { n: 2, m: 4 });
        // Positions 3 then 1: out of order.
        let mut blob = vec![0b0111];
        blob.extend([0u8; 8]);
        assert!(Stored::from_blob(nm, &[1, 4], blob).is_err());
        // Too short, too long.
        assert!(Stored::from_blob(nm, &[1, 4], vec![0b0100]).is_err());
        let mut long = vec![0b0100];
        long.extend([0u8; 9]);
        assert!(Stored::from_blob(nm, &[1, 4], long).is_err());
        // A partly kept block cannot be written.
        let parts = Parts {
            keep: vec![true, false, false, false],
            values: vec![1.0],
            ..Parts::default()
        };
        assert!(
            Stored::new(
                Encoding::f32(Layout::Blocks { rows: 1, cols: 2 }),
                &[1, 4],
                &parts
            )
            .is_err()
        );
    }

    #[test]
    fn gap_streams_escape_long_runs_and_reject_bad_streams() {
        // Kept at 0, 1, 9 and 30 of 32: gaps 0, 0, 7, 20.
        let mut v = vec![0.0f32; 32];
        for (i, x) in [(0, 1.0), (1, -2.0), (9, 3.0), (30, 4.0)] {
            v[i] = x;
        }
        let x = t(&[4, 8], v);
        for bits in 1..=8u8 {
            for coding in [Coding::None, Coding::Huffman] {
                let e = Encoding {
                    values: Values::F32,
                    layout: Layout::Gaps { bits },
                    coding,
                };
                let parts = Parts {
                    keep: x.as_f32().unwrap().iter().map(|v| *v != 0.0).collect(),
                    values: vec![1.0, -2.0, 3.0, 4.0],
                    ..Parts::default()
                };
                let s = Stored::new(e, &[4, 8], &parts).unwrap();
                assert_eq!(s.decoded(), &x, "{e}");
                assert_eq!(Stored::from_blob(e, &[4, 8], s.blob().to_vec()).unwrap(), s);
                assert_eq!(
                    e.to_string(),
                    format!(
                        "f32 gaps({bits}){}",
                        match coding {
                            Coding::None => "",
                            Coding::Huffman => " huffman",
                        }
                    )
                );
            }
        }
        // With 2-bit symbols (escape 3): 0, 0, 3 3 1, 3×6 2 → 12 symbols.
        assert_eq!(
            gap_symbols(
                &(0..32)
                    .map(|i| [0, 1, 9, 30].contains(&i))
                    .collect::<Vec<_>>(),
                2
            )
            .len(),
            12
        );
        let e = Encoding::f32(Layout::Gaps { bits: 2 });
        // More symbols than elements; a symbol past the end; a stream ending on an escape.
        let mut blob = 9u32.to_le_bytes().to_vec();
        blob.extend([0u8; 3]);
        assert!(Stored::from_blob(e, &[2, 4], blob).is_err());
        let mut past = 2u32.to_le_bytes().to_vec();
        past.push(0b1110);
        past.extend(7f32.to_le_bytes());
        past.extend(7f32.to_le_bytes());
        assert!(Stored::from_blob(e, &[1, 4], past).is_err());
        let mut escape = 2u32.to_le_bytes().to_vec();
        escape.push(0b1100);
        escape.extend(7f32.to_le_bytes());
        assert!(Stored::from_blob(e, &[1, 8], escape).is_err());
        // Huffman on f32 needs a gap stream; gap widths are 1 to 8.
        let bad = Encoding {
            values: Values::F32,
            layout: Layout::Bitmask,
            coding: Coding::Huffman,
        };
        assert!(Stored::f32(&x, Layout::Gaps { bits: 9 }).is_err());
        assert!(Stored::new(bad, &[4, 8], &Parts::default()).is_err());
    }
}

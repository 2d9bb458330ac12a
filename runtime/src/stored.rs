//! Weights in stored form in an object file: the program's packed weight array in one of two
//! forms, whichever is smaller. The model expands them once, when it is loaded, into memory it
//! owns; then the kernels run on dense weights as before.
//!
//! Packing (panel layouts, padding) moves weights but creates no nonzero, and no new value, so
//! a pruned model's packed array is as sparse as its weights, and a quantized or clustered
//! model's holds only its tables' values.
//!
//! Format, little-endian u32 words; the first word is the decoded length `n` (below 2^31),
//! with bit 31 set for the coded form.
//!
//! - **Chunked**: per chunk of [`CHUNK`] floats a header word — `0` for a dense chunk (its
//!   floats follow), or `1 + k` for a bitmask chunk with `k` kept elements (⌈len/32⌉ mask
//!   words, then the `k` floats). A kept element is one whose bits are not all zero, so
//!   decoding gives back the same bits (`-0.0` included).
//! - **Coded** (when the array holds at most [`MAX_DISTINCT`] distinct nonzero bit patterns
//!   — counted per table, and so at most that many (table, value) pairs in all: codebooks,
//!   low-bit integers, pruned layers of few values): a word `r`, then `r` channel regions of
//!   four words each (`at`, `len`, `segment`, `period`: [`Lanes`]), in order and apart. They
//!   split the elements into tables (contexts): table 0 for elements outside every region,
//!   then each region's channels in order. Then one head word per table — its size (at most
//!   [`MAX_DISTINCT`]) in bits 0–29, in bits 30–31 how its values are held — then each
//!   table's values: their bits, increasing, or, when they are exactly integers times one
//!   scale, the scale's bits and the integers as i8 or i16 (`table`). Then a byte stream
//!   padded to whole words: `d + RUNS + STEPS` Huffman code lengths (u8; `crate::huffman`;
//!   `d` the largest table), a u32 bit count, the bit stream. Symbol `s < d` is one element,
//!   the `s`-th value of its own table; symbol `d + j` is a run of `2^j` zeros (`j < RUNS`);
//!   a run of `L` zeros is written as its binary digits, the largest first; symbol
//!   `d + RUNS + j` is one element whose bits are the previous element's plus `j + 1` (`j < STEPS`) —
//!   the sparse kernel's increasing row indices and row offsets, stored as words among the
//!   floats. The writer takes a step whenever one fits, and only the elements it does not
//!   are in the tables. It tries no regions (one table: a layer-shared codebook), the packed
//!   layers' channels ([`lanes`]: a table per output channel, as per-channel quantized
//!   weights have), and one table per layer, and keeps the smallest.
//!
//! One packing does create new values: a Winograd convolution's transformed weights, dense
//! and 16/9 as many as its 3×3 kernels. The stored form holds the kernels there instead
//! ([`storage`]: the program's [`Source`]s, zeros after them in the region), and the model
//! transforms them back when it loads ([`derive`]), with the code that transformed them at
//! compile time, so the bits are the same.

use std::borrow::Cow;

use crate::kernels::winograd;
use crate::program::{ConvLayout, Program, Source, Step};

/// Floats per chunk.
pub const CHUNK: usize = 4096;

/// The most distinct nonzero values the coded form takes.
pub const MAX_DISTINCT: usize = 1 << 16;

/// Zero-run symbols of the coded form: runs of 1, 2, 4 … 2^(RUNS − 1) zeros.
const RUNS: usize = 16;

/// Step symbols of the coded form: an element `1 ..= STEPS` above the previous one's bits.
const STEPS: usize = 64;

/// Bit 31 of the first word: the coded form.
const CODED: u32 = 1 << 31;

/// The length in words of the chunked form (one pass, no allocation).
fn chunked_len(w: &[f32]) -> usize {
    1 + w
        .chunks(CHUNK)
        .map(|chunk| {
            let kept = chunk.iter().filter(|x| x.to_bits() != 0).count();
            let mask_words = chunk.len().div_ceil(32);
            1 + if mask_words + kept < chunk.len() {
                mask_words + kept
            } else {
                chunk.len()
            }
        })
        .sum::<usize>()
}

/// The length in words [`encode`] gives.
pub fn encoded_len(w: &[f32]) -> usize {
    encode(w).len()
}

/// Encodes `w` (fewer than 2^31 floats) in the smaller of its two forms, with no channels
/// known ([`encode_lanes`] with none).
pub fn encode(w: &[f32]) -> Vec<u32> {
    encode_lanes(w, &[])
}

/// Encodes `w` (fewer than 2^31 floats) in the smallest of its forms, given where its
/// channels lie ([`lanes`]): the chunked form, or the coded form with one table for all
/// values, one per region, or one per channel (the one choice for every region). If any
/// lane is invalid (out of order, overlapping, past `w`, a segment not whole periods), none
/// is used.
pub fn encode_lanes(w: &[f32], lanes: &[Lanes]) -> Vec<u32> {
    let lanes = if valid_lanes(lanes, w.len()) {
        lanes
    } else {
        &[]
    };
    let per_region: Vec<Lanes> = lanes
        .iter()
        .map(|l| Lanes {
            segment: l.len,
            period: 1,
            ..*l
        })
        .collect();
    // Per region or per channel, the keys are at least as many as the values: where one
    // table cannot hold them, neither can these.
    let mut best = coded(w, &[]);
    if let Some(b) = &mut best {
        for candidate in [lanes, &per_region[..]] {
            if candidate.is_empty() {
                continue;
            }
            if let Some(c) = coded(w, candidate)
                && c.len() < b.len()
            {
                *b = c;
            }
        }
    }
    match best {
        Some(c) if c.len() < chunked_len(w) => c,
        _ => chunked(w),
    }
}

/// Where a region of the weights keeps its channels: element `at + i` belongs to segment
/// `i / segment`, lane `i % period` of it (a segment is whole periods), and each (segment,
/// lane) is one channel — a
/// packed panel of `period` rows or columns interleaved along the depth (`segment` = depth ×
/// `period`), or `period` = 1 for one row after another. A per-channel quantized or ternary
/// layer draws each channel's values from its own few; the coded form then gives each
/// channel its own table, so an element costs the bits of its channel's choice, not of the
/// whole model's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lanes {
    /// First element.
    pub at: usize,
    /// Elements.
    pub len: usize,
    /// Elements of one segment.
    pub segment: usize,
    /// Channels interleaved in a segment.
    pub period: usize,
}

impl Lanes {
    /// Channels (tables) the region has, if the count fits.
    fn contexts(&self) -> Option<usize> {
        self.len.div_ceil(self.segment).checked_mul(self.period)
    }
}

/// Whether `lanes` are in order, apart, non-empty, inside `n` elements, with `1 ≤ period ≤
/// segment ≤ n` and whole periods in a segment (so every field fits the word it is stored
/// in, `n` being below 2^31).
fn valid_lanes(lanes: &[Lanes], n: usize) -> bool {
    let mut end = 0usize;
    lanes.iter().all(|l| {
        let ok = l.at >= end
            && l.len > 0
            && l.period >= 1
            && l.period <= l.segment
            && l.segment <= n
            && l.segment.is_multiple_of(l.period)
            && l.at.checked_add(l.len).is_some_and(|e| e <= n);
        end = l.at.saturating_add(l.len);
        ok
    })
}

/// The channels of `steps`' weights ([`Lanes`]) as their packing lays them out, each region
/// once, in order of offset; a region overlapping an earlier one is left out (the coded form
/// then gives its elements the common table).
pub fn lanes(steps: &[Step]) -> Vec<Lanes> {
    use crate::kernels::{blocked, gemm};
    let mut out: Vec<Lanes> = steps
        .iter()
        .filter_map(|s| {
            let (at, len, segment, period) = match s {
                // `gemm::pack_a` per group: MR-row panels along the depth, one group's
                // panels after another's.
                Step::Conv {
                    w,
                    m,
                    g,
                    groups,
                    layout: ConvLayout::Gemm,
                    ..
                } => {
                    let k = (g.c / (*groups).max(1)).saturating_mul(g.kh * g.kw);
                    let len = ConvLayout::Gemm.weights(g, *m, *groups);
                    (*w, len, k.saturating_mul(gemm::MR), gemm::MR)
                }
                // `blocked::pack_conv`: 16-channel blocks along the depth.
                Step::Conv {
                    w,
                    m,
                    g,
                    groups,
                    layout: layout @ ConvLayout::Blocked { .. },
                    ..
                } => {
                    let k = g.c.saturating_mul(g.kh * g.kw);
                    let len = layout.weights(g, *m, *groups);
                    (*w, len, k.saturating_mul(blocked::LANES), blocked::LANES)
                }
                // The stored form holds the 3×3 kernels ([`storage`]), a channel's after
                // another's.
                Step::Conv {
                    w,
                    m,
                    g,
                    layout: ConvLayout::Winograd,
                    ..
                } => (*w, winograd::source_len(*m, g.c), g.c.saturating_mul(9), 1),
                // `blocked::pack_depthwise`, or a channel's taps after another's.
                Step::Depthwise {
                    w, m, g, blocked, ..
                } => {
                    let kk = g.kh.saturating_mul(g.kw);
                    if *blocked {
                        (
                            *w,
                            m.saturating_mul(kk),
                            kk.saturating_mul(blocked::LANES),
                            blocked::LANES,
                        )
                    } else {
                        (*w, m.saturating_mul(kk), kk, 1)
                    }
                }
                // `gemm::pack_b`: NR-column panels along the depth.
                Step::Dense { w, k, n, .. } => (
                    *w,
                    gemm::pack_b_len(*k, *n),
                    k.saturating_mul(gemm::NR),
                    gemm::NR,
                ),
                _ => return None,
            };
            Some(Lanes {
                at,
                len,
                segment,
                period,
            })
        })
        .filter(|l| l.len > 0 && l.segment >= l.period && l.period >= 1)
        .collect();
    out.sort_unstable_by_key(|l| (l.at, std::cmp::Reverse(l.len)));
    let mut end = 0usize;
    out.retain(|l| {
        let keep = l.at >= end;
        if keep {
            end = l.at.saturating_add(l.len);
        }
        keep
    });
    out
}

/// Element by element in increasing order, the table (context) each belongs to: 0 for the
/// common one, then each region's channels in order.
struct Contexts<'a> {
    lanes: &'a [Lanes],
    next: usize,
    /// The first context of `lanes[next]`.
    base: usize,
}

impl<'a> Contexts<'a> {
    fn new(lanes: &'a [Lanes]) -> Self {
        Contexts {
            lanes,
            next: 0,
            base: 1,
        }
    }

    /// The context of element `i` (never less than the last one asked).
    fn of(&mut self, i: usize) -> usize {
        while let Some(l) = self.lanes.get(self.next)
            && i >= l.at + l.len
        {
            self.base += l.contexts().unwrap_or(0);
            self.next += 1;
        }
        match self.lanes.get(self.next) {
            Some(l) if i >= l.at => {
                let o = i - l.at;
                self.base + (o / l.segment) * l.period + o % l.period
            }
            _ => 0,
        }
    }
}

/// The coded form with one table per context of `lanes` (valid ones), when `w` has few
/// enough distinct values in them.
fn coded(w: &[f32], lanes: &[Lanes]) -> Option<Vec<u32>> {
    // The step above the previous element's bits that gives element `i`, if one does.
    let step = |i: usize| -> Option<u32> {
        let b = w[i].to_bits();
        let p = if i == 0 { 0 } else { w[i - 1].to_bits() };
        (b > p && ((b - p) as usize) <= STEPS).then(|| b - p)
    };
    let contexts = lanes
        .iter()
        .try_fold(1usize, |n, l| n.checked_add(l.contexts()?))?;
    let key = |c: usize, b: u32| (c as u64) << 32 | u64::from(b);
    let mut distinct = Distinct::new(w.len());
    let mut ctx = Contexts::new(lanes);
    for (i, x) in w.iter().enumerate() {
        let b = x.to_bits();
        if b == 0 || step(i).is_some() {
            continue;
        }
        if !distinct.insert(key(ctx.of(i), b)) {
            return None;
        }
    }
    let keys = distinct.ranked();
    // Each context's count; a key's rank is its index among its context's values.
    let mut counts = vec![0u32; contexts];
    for &k in &keys {
        counts[(k >> 32) as usize] += 1;
    }
    let d = counts.iter().copied().max().unwrap_or(0) as usize;
    let mut symbols = Vec::with_capacity(w.len() / 2);
    let mut run = 0usize;
    let flush = |run: &mut usize, symbols: &mut Vec<u32>| {
        for j in (0..usize::BITS as usize).rev() {
            // Runs longer than the largest symbol take several of it.
            let (bit, reps) = if j >= RUNS - 1 {
                (RUNS - 1, if j == RUNS - 1 { *run >> j } else { 0 })
            } else {
                (j, *run >> j & 1)
            };
            for _ in 0..reps {
                symbols.push((d + bit) as u32);
            }
        }
        *run = 0;
    };
    let mut ctx = Contexts::new(lanes);
    for (i, &x) in w.iter().enumerate() {
        let b = x.to_bits();
        if b == 0 {
            run += 1;
            continue;
        }
        if run > 0 {
            flush(&mut run, &mut symbols);
        }
        symbols.push(match step(i) {
            Some(j) => (d + RUNS) as u32 + j - 1,
            None => distinct.rank(key(ctx.of(i), b))?,
        });
    }
    if run > 0 {
        flush(&mut run, &mut symbols);
    }
    let lengths = crate::huffman::lengths(&symbols, d + RUNS + STEPS);
    let mut bits = crate::huffman::BitWriter::default();
    crate::huffman::write(&mut bits, &symbols, &lengths);
    let mut bytes = lengths;
    bytes.extend((bits.len() as u32).to_le_bytes());
    bytes.extend(bits.finish());
    let mut out = vec![w.len() as u32 | CODED, lanes.len() as u32];
    for l in lanes {
        out.extend([l.at, l.len, l.segment, l.period].map(|x| x as u32));
    }
    let values: Vec<u32> = keys.iter().map(|&k| k as u32).collect();
    let mut tables = Vec::with_capacity(contexts);
    let mut first = 0usize;
    for &c in &counts {
        let table = &values[first..first + c as usize];
        first += c as usize;
        tables.push(table::write(table));
    }
    out.extend(tables.iter().map(|(head, _)| *head));
    out.extend(tables.into_iter().flat_map(|(_, words)| words));
    out.extend(
        bytes
            .chunks(4)
            .map(|c| c.iter().rev().fold(0u32, |acc, &b| acc << 8 | u32::from(b))),
    );
    Some(out)
}

/// A coded form's table of values: a head word (its size, and in bits 30–31 how it is held),
/// then its words. Raw, each value's bits in a word; or, when every value is an integer
/// times one scale (`(q as f32) · s`, bit for bit: quantized channels), the scale's bits
/// and the integers as i8 (four a word) or i16 (two a word), least significant first.
mod table {
    /// Bits 30–31 of the head: raw, i8 or i16 integers.
    const RAW: u32 = 0;
    const I8: u32 = 1;
    const I16: u32 = 2;
    const SIZE: u32 = (1 << 30) - 1;

    /// The head and words of `values` (at most [`super::MAX_DISTINCT`]), the fewest words.
    pub(super) fn write(values: &[u32]) -> (u32, Vec<u32>) {
        let d = values.len() as u32;
        if let Some((s, q)) = scaled(values) {
            let wide = q.iter().any(|&q| i8::try_from(q).is_err());
            let (kind, per) = if wide { (I16, 2) } else { (I8, 4) };
            let bits = 32 / per;
            let mut words = vec![s];
            for chunk in q.chunks(per) {
                words.push(chunk.iter().enumerate().fold(0u32, |acc, (j, &q)| {
                    acc | (u32::from(q as u16) & ((1 << bits) - 1)) << (bits * j)
                }));
            }
            if words.len() < values.len() {
                return (d | kind << 30, words);
            }
        }
        (d | RAW << 30, values.to_vec())
    }

    /// `(scale bits, integers)` when every value is an integer (|q| < 2^15) times one
    /// scale, tried as the smallest magnitude over 1 … 4.
    fn scaled(values: &[u32]) -> Option<(u32, Vec<i16>)> {
        let smallest = values
            .iter()
            .map(|&b| f32::from_bits(b).abs())
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold(f32::INFINITY, f32::min);
        if !smallest.is_finite() {
            return None;
        }
        (1..=4u8).find_map(|k| {
            let s = smallest / f32::from(k);
            let q: Option<Vec<i16>> = values
                .iter()
                .map(|&b| {
                    let q = (f32::from_bits(b) / s).round();
                    let q = (q.abs() < 32768.0).then_some(q as i16)?;
                    ((f32::from(q) * s).to_bits() == b).then_some(q)
                })
                .collect();
            Some((s.to_bits(), q?))
        })
    }

    /// The number of values in the table of `head`.
    pub(super) fn size(head: u32) -> usize {
        (head & SIZE) as usize
    }

    /// Words the table of `head` takes, if its kind is known.
    pub(super) fn words(head: u32) -> Option<usize> {
        let d = (head & SIZE) as usize;
        match head >> 30 {
            RAW => Some(d),
            I8 => Some(1 + d.div_ceil(4)),
            I16 => Some(1 + d.div_ceil(2)),
            _ => None,
        }
    }

    /// Appends the values of the table `head` held in `words` (exactly [`words`] of them).
    pub(super) fn read(head: u32, words: &[u32], out: &mut Vec<u32>) {
        let d = (head & SIZE) as usize;
        let (per, bits) = match head >> 30 {
            I8 => (4, 8),
            I16 => (2, 16),
            _ => {
                out.extend(words);
                return;
            }
        };
        let Some((&s, rest)) = words.split_first() else {
            return;
        };
        let s = f32::from_bits(s);
        out.extend((0..d).map(|i| {
            let w = rest.get(i / per).copied().unwrap_or(0) >> (bits * (i % per));
            let q = if bits == 8 {
                f32::from(w as u8 as i8)
            } else {
                f32::from(w as u16 as i16)
            };
            (q * s).to_bits()
        }));
    }
}

/// The most slots a [`Distinct`] table has: at least twice what it may hold, a power of two.
const SLOTS: usize = (2 * (MAX_DISTINCT + 1)).next_power_of_two();

/// The distinct nonzero keys (a context and a value's bits) of an array, up to one more than
/// [`MAX_DISTINCT`], then each one's rank among its context's: a table with open addressing
/// and linear probing, never more than half full (a zero key is a free slot). The standard
/// sets took ~20 ms over a pruned VGG's 400 K weights, most of a native build's encoding.
struct Distinct {
    keys: Vec<u64>,
    ranks: Vec<u32>,
    len: usize,
}

impl Distinct {
    /// A table for the keys of `n` elements: as many slots as they need, at most [`SLOTS`]
    /// (a small array does not pay for clearing the largest table).
    fn new(n: usize) -> Distinct {
        let slots = (2 * (n.min(MAX_DISTINCT) + 1))
            .next_power_of_two()
            .min(SLOTS);
        Distinct {
            keys: vec![0; slots],
            ranks: vec![],
            len: 0,
        }
    }

    /// The slot holding `k`, or the free slot where it would go.
    fn slot(&self, k: u64) -> usize {
        let mixed = (k ^ k >> 29).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let slots = self.keys.len();
        let mut h = (mixed >> (64 - slots.trailing_zeros())) as usize;
        while self.keys[h] != 0 && self.keys[h] != k {
            h = (h + 1) & (slots - 1);
        }
        h
    }

    /// Adds `k` (not 0); false once more than [`MAX_DISTINCT`] are held (then add no more).
    fn insert(&mut self, k: u64) -> bool {
        let h = self.slot(k);
        if self.keys[h] == 0 {
            self.keys[h] = k;
            self.len += 1;
        }
        self.len <= MAX_DISTINCT
    }

    /// The keys held, increasing (so by context, then by value); afterwards [`Self::rank`]
    /// gives each one's index among its context's.
    fn ranked(&mut self) -> Vec<u64> {
        let mut keys: Vec<u64> = self.keys.iter().copied().filter(|&k| k != 0).collect();
        keys.sort_unstable();
        self.ranks = vec![0; self.keys.len()];
        let mut first = 0;
        for (i, &k) in keys.iter().enumerate() {
            if i > 0 && keys[i - 1] >> 32 != k >> 32 {
                first = i;
            }
            let h = self.slot(k);
            self.ranks[h] = (i - first) as u32;
        }
        keys
    }

    /// `k`'s index among its context's values (after [`Self::ranked`]), if it is one.
    fn rank(&self, k: u64) -> Option<u32> {
        let h = self.slot(k);
        (self.keys[h] == k).then(|| self.ranks[h])
    }
}

/// The chunked form.
fn chunked(w: &[f32]) -> Vec<u32> {
    let mut out = vec![w.len() as u32];
    for chunk in w.chunks(CHUNK) {
        let kept: Vec<u32> = chunk
            .iter()
            .map(|x| x.to_bits())
            .filter(|&b| b != 0)
            .collect();
        let mask_words = chunk.len().div_ceil(32);
        if mask_words + kept.len() < chunk.len() {
            out.push(1 + kept.len() as u32);
            let mut mask = vec![0u32; mask_words];
            for (i, x) in chunk.iter().enumerate() {
                if x.to_bits() != 0 {
                    mask[i / 32] |= 1 << (i % 32);
                }
            }
            out.extend(mask);
            out.extend(kept);
        } else {
            out.push(0);
            out.extend(chunk.iter().map(|x| x.to_bits()));
        }
    }
    out
}

/// Decodes words made by [`encode`] into `out` (which must hold the decoded length); every
/// length and count is checked, so corrupt data is an error, not a read out of bounds.
pub fn decode_into(words: &[u32], out: &mut [f32]) -> Result<(), String> {
    let (&n, mut rest) = words
        .split_first()
        .ok_or("stored weights: no length word")?;
    if n & CODED != 0 {
        return decode_coded(n & !CODED, rest, out);
    }
    if n as usize != out.len() {
        return Err(format!(
            "stored weights: {n} floats stored, {} expected",
            out.len()
        ));
    }
    for chunk in out.chunks_mut(CHUNK) {
        let (&head, tail) = rest
            .split_first()
            .ok_or("stored weights: the data ends early")?;
        rest = tail;
        let take = |rest: &mut &[u32], k: usize| -> Result<Vec<u32>, String> {
            if rest.len() < k {
                return Err("stored weights: the data ends early".into());
            }
            let (a, b) = rest.split_at(k);
            *rest = b;
            Ok(a.to_vec())
        };
        let len = chunk.len();
        if head == 0 {
            for (o, b) in chunk.iter_mut().zip(take(&mut rest, len)?) {
                *o = f32::from_bits(b);
            }
        } else {
            let k = head as usize - 1;
            if k > len {
                return Err("stored weights: a chunk keeps more floats than it has".into());
            }
            let mask = take(&mut rest, len.div_ceil(32))?;
            let kept = take(&mut rest, k)?;
            let mut next = kept.iter();
            for (i, o) in chunk.iter_mut().enumerate() {
                *o = if mask[i / 32] >> (i % 32) & 1 == 1 {
                    let b = next
                        .next()
                        .ok_or("stored weights: the mask sets more bits than floats kept")?;
                    f32::from_bits(*b)
                } else {
                    0.0
                };
            }
            if next.next().is_some() {
                return Err("stored weights: more floats kept than the mask sets".into());
            }
        }
    }
    if !rest.is_empty() {
        return Err(format!("stored weights: {} words left over", rest.len()));
    }
    Ok(())
}

/// Decodes the coded form (the words after the length word).
fn decode_coded(n: u32, words: &[u32], out: &mut [f32]) -> Result<(), String> {
    let fail = |m: &str| format!("stored weights: {m}");
    if n as usize != out.len() {
        return Err(format!(
            "stored weights: {n} floats stored, {} expected",
            out.len()
        ));
    }
    let (&r, rest) = words.split_first().ok_or_else(|| fail("no region count"))?;
    let r = r as usize;
    if r > rest.len() / 4 {
        return Err(fail("more regions than words"));
    }
    let (regions, rest) = rest.split_at(r * 4);
    let lanes: Vec<Lanes> = regions
        .chunks_exact(4)
        .map(|l| Lanes {
            at: l[0] as usize,
            len: l[1] as usize,
            segment: l[2] as usize,
            period: l[3] as usize,
        })
        .collect();
    if !valid_lanes(&lanes, out.len()) {
        return Err(fail(
            "the channel regions are out of order or out of bounds",
        ));
    }
    let contexts = lanes
        .iter()
        .try_fold(1usize, |c, l| c.checked_add(l.contexts()?))
        .filter(|&c| c <= rest.len())
        .ok_or_else(|| fail("more tables than words"))?;
    let (heads, mut rest) = rest.split_at(contexts);
    // Each table's first value in `values`, and its size.
    let mut tables = Vec::with_capacity(contexts);
    let mut values: Vec<u32> = vec![];
    let mut d = 0usize;
    for &head in heads {
        let words = table::words(head)
            .filter(|_| table::size(head) <= MAX_DISTINCT)
            .ok_or_else(|| fail("a table of an unknown kind or more values than the form takes"))?;
        if words > rest.len() {
            return Err(fail("more values than words"));
        }
        let (these, after) = rest.split_at(words);
        rest = after;
        let first = values.len();
        table::read(head, these, &mut values);
        tables.push((first, values.len() - first));
        d = d.max(values.len() - first);
    }
    let bytes: Vec<u8> = rest.iter().flat_map(|w| w.to_le_bytes()).collect();
    let alphabet = d + RUNS + STEPS;
    if bytes.len() < alphabet + 4 {
        return Err(fail("the data ends early"));
    }
    let decoder = crate::huffman::Decoder::new(&bytes[..alphabet]).map_err(|e| fail(&e))?;
    let count = &bytes[alphabet..alphabet + 4];
    let total = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
    let stream = &bytes[alphabet + 4..];
    if total.div_ceil(8) > stream.len() || stream.len() - total.div_ceil(8) >= 4 {
        return Err(fail("the bit count does not match the data"));
    }
    let mut r = crate::huffman::BitReader::new(stream);
    let mut ctx = Contexts::new(&lanes);
    let mut at = 0usize;
    while at < out.len() {
        let s = decoder.next(&mut r).map_err(|e| fail(&e))? as usize;
        if s < d {
            let (first, size) = tables[ctx.of(at)];
            if s >= size {
                return Err(fail("a value past its table"));
            }
            out[at] = f32::from_bits(values[first + s]);
            at += 1;
        } else if s >= d + RUNS {
            let previous = if at == 0 { 0 } else { out[at - 1].to_bits() };
            let b = previous
                .checked_add((s - d - RUNS + 1) as u32)
                .ok_or_else(|| fail("a step past the largest word"))?;
            out[at] = f32::from_bits(b);
            at += 1;
        } else {
            let run = 1usize << (s - d);
            let end = at
                .checked_add(run)
                .filter(|&e| e <= out.len())
                .ok_or_else(|| fail("a run of zeros goes past the end"))?;
            out[at..end].fill(0.0);
            at = end;
        }
    }
    if r.pos() != total {
        return Err(fail("the bit stream holds more symbols than floats"));
    }
    Ok(())
}

/// The decoded length of encoded words, if they have one.
pub fn decoded_len(words: &[u32]) -> Option<usize> {
    words.first().map(|&n| (n & !CODED) as usize)
}

/// The most floats `words` can decode to: 32 per word in the chunked form (a chunk of 4096
/// takes at least 129 words), 2^(RUNS − 1) per bit of the coded form's stream. A length
/// beyond it is corrupt, and is refused before anything is allocated.
pub fn max_decoded_len(words: &[u32]) -> usize {
    match words.first() {
        Some(&n) if n & CODED != 0 => words.len().saturating_mul(32 << (RUNS - 1)),
        _ => words.len().saturating_mul(32),
    }
}

/// The regions of `steps`' weights that are computed from others when a model loads: each
/// Winograd convolution's `(offset, output channels, input channels)`, in order of offset,
/// each once (steps may share weights). Regions that overlap are corrupt.
fn derived(steps: &[Step]) -> Result<Vec<(usize, usize, usize)>, String> {
    let mut regions: Vec<(usize, usize, usize)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Conv {
                w,
                m,
                g,
                layout: ConvLayout::Winograd,
                ..
            } => Some((*w, *m, g.c)),
            _ => None,
        })
        .collect();
    regions.sort_unstable();
    regions.dedup();
    for pair in regions.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.0.saturating_add(winograd::weights_len(a.1, a.2)) > b.0 {
            return Err(format!(
                "stored weights: Winograd weights at {} and {} overlap",
                a.0, b.0
            ));
        }
    }
    Ok(regions)
}

/// `prog`'s weights as the stored form holds them: each Winograd convolution's region holds
/// its 3×3 kernels (the program's [`Source`] at that offset), zeros after them. The weights
/// themselves where the program has no Winograd convolution.
pub fn storage(prog: &Program) -> Result<Cow<'_, [f32]>, String> {
    let regions = derived(&prog.steps)?;
    if regions.is_empty() {
        return Ok(Cow::Borrowed(&prog.weights));
    }
    let mut w = prog.weights.clone();
    for (at, m, c) in regions {
        let Source { floats, .. } = prog
            .sources
            .iter()
            .find(|s| s.at == at)
            .ok_or_else(|| format!("the Winograd weights at {at} have no source kernels"))?;
        let region = w
            .get_mut(at..at.saturating_add(winograd::weights_len(m, c)))
            .ok_or_else(|| format!("the Winograd weights at {at} run past the weights"))?;
        if floats.len() != winograd::source_len(m, c) {
            return Err(format!(
                "the Winograd weights at {at} have {} source floats, not {}",
                floats.len(),
                winograd::source_len(m, c)
            ));
        }
        region.fill(0.0);
        region[..floats.len()].copy_from_slice(floats);
    }
    Ok(Cow::Owned(w))
}

/// Floats of [`storage`] that are not the zero tails of its Winograd regions: the weights'
/// own size, against which the stored form must save a tenth to be chosen (so a model with
/// nothing compressed keeps its packed weights in read-only data, used in place, rather than
/// paying a copy and a transform when it loads).
pub fn storage_floats(prog: &Program) -> Result<usize, String> {
    let tails: usize = derived(&prog.steps)?
        .into_iter()
        .map(|(_, m, c)| winograd::weights_len(m, c).saturating_sub(winograd::source_len(m, c)))
        .sum();
    Ok(prog.weights.len().saturating_sub(tails))
}

/// Computes, in place, the weights that [`storage`] replaced by their sources, from the
/// sources the decoded stored form holds: the same bits `prog.weights` had when it was
/// compiled. Called once, after [`decode_into`], before anything runs.
pub fn derive(steps: &[Step], w: &mut [f32]) -> Result<(), String> {
    for (at, m, c) in derived(steps)? {
        let region = w
            .get_mut(at..at.saturating_add(winograd::weights_len(m, c)))
            .ok_or_else(|| format!("stored weights: the Winograd weights at {at} run past them"))?;
        let source = region
            .get(..winograd::source_len(m, c))
            .ok_or_else(|| format!("stored weights: the Winograd region at {at} is too short"))?;
        let packed = winograd::pack_weights(source, m, c);
        region.copy_from_slice(&packed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_and_dense_chunks_round_trip_to_the_same_bits() {
        // Chunk 1 sparse (every 5th nonzero), chunk 2 dense, a short tail with -0.0.
        let mut w: Vec<f32> = (0..CHUNK)
            .map(|i| if i % 5 == 0 { i as f32 * 0.5 } else { 0.0 })
            .collect();
        w.extend((0..CHUNK).map(|i| i as f32 - 7.0));
        w.extend([0.0, -0.0, 3.5]);
        let e = encode(&w);
        assert!(
            e.len() < w.len(),
            "{} words for {} floats",
            e.len(),
            w.len()
        );
        let mut back = vec![f32::NAN; w.len()];
        decode_into(&e, &mut back).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&w));
        assert_eq!(decoded_len(&e), Some(w.len()));
    }

    #[test]
    fn corrupt_words_are_errors() {
        let w: Vec<f32> = (0..100)
            .map(|i| if i % 9 == 0 { 1.0 } else { 0.0 })
            .collect();
        let e = encode(&w);
        let mut out = vec![0.0; 100];
        for cut in 0..e.len() {
            assert!(decode_into(&e[..cut], &mut out).is_err(), "cut at {cut}");
        }
        let mut extra = e.clone();
        extra.push(0);
        assert!(decode_into(&extra, &mut out).is_err());
        let mut wrong = e.clone();
        wrong[1] = 1 + 200;
        assert!(decode_into(&wrong, &mut out).is_err());
        assert!(decode_into(&e, &mut vec![0.0; 99]).is_err());
    }

    #[test]
    fn few_valued_weights_take_the_coded_form_and_round_trip() {
        // 90% zeros in runs of every length, the rest from 16 values (and -0.0).
        let mut w: Vec<f32> = (0..100_000u32)
            .map(|i| {
                let h = i.wrapping_mul(2_654_435_761) >> 7;
                if h % 10 == 0 {
                    ((h >> 4) % 16) as f32 * 0.125 - 1.0
                } else {
                    0.0
                }
            })
            .collect();
        w[5] = -0.0;
        w.extend(std::iter::repeat_n(0.0, 70_000));
        w.push(2.5);
        // Increasing small integers as words (a CSR's row indices): steps.
        w.extend([3u32, 9, 12, 70, 71, 200, 201].map(f32::from_bits));
        w.push(f32::from_bits(u32::MAX));
        let e = encode(&w);
        assert_ne!(e[0] & CODED, 0, "coded form expected");
        assert!(e.len() < chunked_len(&w) / 2, "{} words", e.len());
        let mut back = vec![f32::NAN; w.len()];
        decode_into(&e, &mut back).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&w));
        assert_eq!(decoded_len(&e), Some(w.len()));
        assert!(max_decoded_len(&e) >= w.len());
        // Every truncation, an extra word, a wrong length, a flipped bit: errors or the
        // same length of floats, never a panic.
        for cut in 0..e.len() {
            assert!(decode_into(&e[..cut], &mut back).is_err(), "cut at {cut}");
        }
        let mut extra = e.clone();
        extra.push(0);
        assert!(decode_into(&extra, &mut back).is_err());
        assert!(decode_into(&e, &mut vec![0.0; w.len() - 1]).is_err());
        for i in 1..e.len().min(200) {
            let mut bad = e.clone();
            bad[i] ^= 1 << (i % 32);
            let _ = decode_into(&bad, &mut back);
        }
        // All zeros, nothing at all.
        for w in [vec![0.0f32; 5000], vec![]] {
            let e = encode(&w);
            let mut back = vec![1.0; w.len()];
            decode_into(&e, &mut back).unwrap();
            assert_eq!(back, w);
        }
        // Many distinct values: the chunked form.
        let dense: Vec<f32> = (0..(MAX_DISTINCT + 10)).map(|i| i as f32 + 0.5).collect();
        assert_eq!(encode(&dense)[0] & CODED, 0);
    }

    /// A program whose weights hold two Winograd convolutions (the first 60% zeros, as a
    /// pruned layer's) between other floats.
    fn winograd_program() -> Program {
        use crate::kernels::conv::Geometry;
        use crate::kernels::epilogue::Act;
        use crate::program::Buf;
        let g = |c: usize| Geometry::three_by_three(c, 8, 8, 1);
        let mut weights = vec![1.5f32; 48];
        let mut sources = vec![];
        let mut steps = vec![];
        for (k, (m, c)) in [(32, 16), (16, 32)].into_iter().enumerate() {
            let src: Vec<f32> = crate::testing::uniform(k as u64 + 1, winograd::source_len(m, c))
                .into_iter()
                .enumerate()
                .map(|(i, v)| if k == 0 && i % 5 < 3 { 0.0 } else { v })
                .collect();
            let at = weights.len();
            weights.extend(winograd::pack_weights(&src, m, c));
            weights.extend([-2.0; 16]);
            sources.push(Source { at, floats: src });
            steps.push(Step::Conv {
                x: Buf {
                    off: 0,
                    len: c * 64,
                },
                y: Buf {
                    off: 0,
                    len: m * 64,
                },
                g: g(c),
                m,
                groups: 1,
                w: at,
                bias: None,
                residual: None,
                act: Act::None,
                layout: ConvLayout::Winograd,
            });
        }
        Program {
            sources,
            ..crate::testing::bare_program(steps, weights)
        }
    }

    /// Stored, a Winograd convolution's region holds its 3×3 kernels (as sparse as the
    /// layer: the pruned one's region shrinks); decoded and derived, the weights are the
    /// compiled bits again.
    #[test]
    fn winograd_weights_are_stored_as_their_kernels_and_derived_back() {
        let p = winograd_program();
        let storage = storage(&p).unwrap();
        assert_eq!(storage.len(), p.weights.len());
        let first = &p.sources[0];
        assert_eq!(
            &storage[first.at..first.at + first.floats.len()],
            &first.floats[..]
        );
        let zeros = |w: &[f32]| w.iter().filter(|v| v.to_bits() == 0).count();
        assert!(zeros(&storage) > zeros(&p.weights) + first.floats.len() / 2);
        let words = encode(&storage);
        assert!(words.len() < encode(&p.weights).len());
        let mut back = vec![f32::NAN; p.weights.len()];
        decode_into(&words, &mut back).unwrap();
        derive(&p.steps, &mut back).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&p.weights));
        // Steps that share weights derive them once.
        let mut shared = p.steps.clone();
        shared.push(p.steps[0].clone());
        let mut again = storage.to_vec();
        derive(&shared, &mut again).unwrap();
        assert_eq!(bits(&again), bits(&p.weights));
    }

    /// A Winograd region without its kernels, overlapping another, or past the weights is
    /// an error, not a wrong model or a panic.
    #[test]
    fn malformed_winograd_regions_are_errors() {
        let mut p = winograd_program();
        p.sources.pop();
        assert!(storage(&p).unwrap_err().contains("no source kernels"));
        let p = winograd_program();
        let mut w = p.weights.clone();
        let mut overlapping = p.steps.clone();
        if let Step::Conv { w: at, .. } = &mut overlapping[1] {
            *at = p.sources[0].at + 16;
        }
        assert!(
            derive(&overlapping, &mut w)
                .unwrap_err()
                .contains("overlap")
        );
        let mut short = p.weights[..p.weights.len() - 100].to_vec();
        assert!(
            derive(&p.steps, &mut short)
                .unwrap_err()
                .contains("run past")
        );
    }

    /// Steps of each packing over weights whose every element's value is its output
    /// channel's number (1-based), packed by the packing functions themselves, at offsets
    /// apart: `(steps, weights)`.
    fn channel_numbered_steps() -> (Vec<Step>, Vec<f32>) {
        use crate::kernels::conv::Geometry;
        use crate::kernels::epilogue::Act;
        use crate::kernels::{blocked, gemm};
        use crate::program::Buf;
        let buf = Buf { off: 0, len: 0 };
        let numbered = |m: usize, per: usize| -> Vec<f32> {
            (0..m * per).map(|i| (i / per + 1) as f32).collect()
        };
        let mut weights = vec![0.5f32; 7];
        let mut steps = vec![];
        let push = |w: Vec<f32>, weights: &mut Vec<f32>| {
            let at = weights.len();
            weights.extend(w);
            weights.extend([0.25; 3]);
            at
        };
        // Gemm-layout convolutions: 13 channels, 1 and 2 groups.
        for groups in [1, 2] {
            let g = Geometry::three_by_three(8, 6, 6, 1);
            let (m, k) = (14, 8 / groups * 9);
            let w = numbered(m, k);
            let mg = m / groups;
            let packed: Vec<f32> = (0..groups)
                .flat_map(|gi| gemm::pack_a(&w[gi * mg * k..(gi + 1) * mg * k], mg, k))
                .collect();
            let at = push(packed, &mut weights);
            steps.push(Step::Conv {
                x: buf,
                y: buf,
                g,
                m,
                groups,
                w: at,
                bias: None,
                residual: None,
                act: Act::None,
                layout: ConvLayout::Gemm,
            });
        }
        // A blocked convolution (20 channels: a partial block).
        for x_blocked in [false, true] {
            let g = Geometry::three_by_three(16, 6, 6, 1);
            let w = numbered(20, 16 * 9);
            let at = push(
                blocked::pack_conv(&w, 20, 16, 3, 3, x_blocked),
                &mut weights,
            );
            steps.push(Step::Conv {
                x: buf,
                y: buf,
                g,
                m: 20,
                groups: 1,
                w: at,
                bias: None,
                residual: None,
                act: Act::None,
                layout: ConvLayout::Blocked { x_blocked },
            });
        }
        // Depthwise, blocked and not.
        for blocked in [true, false] {
            let g = Geometry::three_by_three(32, 6, 6, 1);
            let w = numbered(32, 9);
            let packed = if blocked {
                blocked::pack_depthwise(&w, 32, 9)
            } else {
                w
            };
            let at = push(packed, &mut weights);
            steps.push(Step::Depthwise {
                x: buf,
                y: buf,
                g,
                m: 32,
                w: at,
                bias: None,
                act: Act::None,
                blocked,
            });
        }
        // A fully connected layer, 37 columns of depth 11 (given transposed, as Gemm's).
        let w = numbered(37, 11);
        let at = push(gemm::pack_b(&w, 11, 37, 1, 11), &mut weights);
        steps.push(Step::Dense {
            x: buf,
            y: buf,
            rows: 1,
            k: 11,
            n: 37,
            w: at,
            bias: None,
            act: Act::None,
        });
        (steps, weights)
    }

    /// [`lanes`] describes each packing as it lays its channels out: the elements it puts
    /// in one table are one channel's (padding zeros aside), and the Winograd region's source
    /// kernels a channel's row after another.
    #[test]
    fn lanes_put_each_channel_of_every_packing_in_a_table_of_its_own() {
        let (steps, weights) = channel_numbered_steps();
        let lanes = lanes(&steps);
        assert_eq!(lanes.len(), steps.len());
        assert!(valid_lanes(&lanes, weights.len()));
        let mut ctx = Contexts::new(&lanes);
        let mut channel_of: std::collections::HashMap<usize, u32> = Default::default();
        let mut tables_of_region = vec![std::collections::BTreeSet::new(); lanes.len()];
        for (i, &v) in weights.iter().enumerate() {
            let c = ctx.of(i);
            let region = lanes.iter().position(|l| (l.at..l.at + l.len).contains(&i));
            match region {
                None => assert_eq!(c, 0, "element {i} outside the regions"),
                Some(r) if v != 0.0 => {
                    assert_ne!(c, 0);
                    assert_eq!(
                        *channel_of.entry(c).or_insert(v.to_bits()),
                        v.to_bits(),
                        "element {i} (region {r}) shares table {c} with another channel"
                    );
                    tables_of_region[r].insert(c);
                }
                Some(_) => {}
            }
        }
        // One table per channel: 14 per Gemm conv, 20 per blocked, 32 per depthwise, 37.
        let channels: Vec<usize> = tables_of_region.iter().map(|t| t.len()).collect();
        assert_eq!(channels, [14, 14, 20, 20, 32, 32, 37]);
        // The Winograd program's regions: the kernels, one channel after another.
        let p = winograd_program();
        let l = super::lanes(&p.steps);
        assert_eq!(
            l.iter()
                .map(|l| (l.at, l.len, l.segment, l.period))
                .collect::<Vec<_>>(),
            p.sources
                .iter()
                .zip([(32, 16), (16, 32)])
                .map(|(s, (m, c))| (s.at, m * c * 9, c * 9, 1))
                .collect::<Vec<_>>()
        );
    }

    /// Weights quantized per channel (each channel an integer times its own scale, zeros
    /// among them) take a table per channel, held as integers, far smaller than one shared
    /// table; tables of another kind (wide integers, raw values, -0.0) round-trip too, and
    /// corrupt words are errors, never a panic.
    #[test]
    fn per_channel_values_take_a_table_each_and_round_trip() {
        let (steps, mut weights) = channel_numbered_steps();
        let lanes = lanes(&steps);
        let mut h = 12345u32;
        for (i, v) in weights.iter_mut().enumerate() {
            h = h.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let Some(l) = lanes.iter().find(|l| (l.at..l.at + l.len).contains(&i)) else {
                continue;
            };
            if *v == 0.0 {
                continue;
            }
            // Channel `v`'s scale; the last region wide integers, one channel raw values.
            let scale = 0.01 + 0.003 * *v;
            let q = if l.at == lanes[lanes.len() - 1].at {
                (h >> 8) as i32 % 2001 - 1000
            } else {
                (h >> 8) as i32 % 15 - 7
            };
            *v = if l.at == lanes[2].at && *v == 3.0 {
                f32::from_bits(0x3f80_0000 + (h >> 20))
            } else {
                q as f32 * scale
            };
        }
        weights[lanes[0].at] = -0.0;
        let shared = encode(&weights);
        let with = encode_lanes(&weights, &lanes);
        assert_ne!(with[0] & CODED, 0);
        assert!(with[1] > 0, "the channel tables were not chosen");
        let r = with[1] as usize;
        let tables = 1 + lanes.iter().map(|l| l.contexts().unwrap()).sum::<usize>();
        let kinds: std::collections::BTreeSet<u32> = with[2 + 4 * r..][..tables]
            .iter()
            .map(|h| h >> 30)
            .collect();
        assert_eq!(kinds, [0, 1, 2].into(), "raw, i8 and i16 tables");
        assert!(
            with.len() * 5 < shared.len() * 4,
            "{} words with channel tables, {} without",
            with.len(),
            shared.len()
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut back = vec![f32::NAN; weights.len()];
        decode_into(&with, &mut back).unwrap();
        assert_eq!(bits(&back), bits(&weights));
        for cut in 0..with.len() {
            assert!(
                decode_into(&with[..cut], &mut back).is_err(),
                "cut at {cut}"
            );
        }
        for i in 1..with.len() {
            let mut bad = with.clone();
            bad[i] ^= 1 << (i % 32);
            let _ = decode_into(&bad, &mut back);
            bad[i] = u32::MAX;
            let _ = decode_into(&bad, &mut back);
        }
        // Lanes that overlap or run past the weights are not used.
        let mut wrong = lanes.clone();
        wrong[1].at = wrong[0].at + 1;
        assert_eq!(encode_lanes(&weights, &wrong), shared);
        wrong = lanes.clone();
        wrong.last_mut().unwrap().len = weights.len();
        assert_eq!(encode_lanes(&weights, &wrong), shared);
        wrong = lanes.clone();
        wrong[0].segment += 1;
        assert_eq!(encode_lanes(&weights, &wrong), shared);
    }

    /// A layer-shared codebook (every channel drawing on the same few values) keeps one
    /// table: per-channel tables would repeat it.
    #[test]
    fn a_shared_codebook_keeps_one_table() {
        let (steps, mut weights) = channel_numbered_steps();
        let lanes = lanes(&steps);
        let book = [-0.75f32, -0.3, 0.1, 0.45, 0.9];
        for (i, v) in weights.iter_mut().enumerate() {
            *v = book[i * 7 % 5];
        }
        let e = encode_lanes(&weights, &lanes);
        assert!(e.len() <= encode(&weights).len());
        let mut back = vec![0.0; weights.len()];
        decode_into(&e, &mut back).unwrap();
        assert_eq!(back, weights);
    }
}

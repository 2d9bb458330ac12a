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
//! - **Coded** (when the array holds at most [`MAX_DISTINCT`] distinct nonzero bit patterns:
//!   codebooks, low-bit integers, pruned layers of few values): a word `d`, the `d` distinct
//!   values (their bits, increasing), then a byte stream padded to whole words: `d + RUNS +
//!   STEPS` Huffman code lengths (u8; `crate::huffman`), a u32 bit count, the bit stream.
//!   Symbol `s < d` is one element of value `s`; symbol `d + j` is a run of `2^j` zeros (`j <
//!   RUNS`); a run of `L` zeros is written as its binary digits, the largest first; symbol
//!   `d + RUNS + j` is one element whose bits are the previous element's plus `j + 1` (`j <
//!   STEPS`) — the sparse kernel's increasing row indices and row offsets, stored as words
//!   among the floats. The writer takes a step whenever one fits, and only the elements it
//!   does not are in the table.
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

/// Encodes `w` (fewer than 2^31 floats) in the smaller of its two forms.
pub fn encode(w: &[f32]) -> Vec<u32> {
    match coded(w) {
        Some(c) if c.len() < chunked_len(w) => c,
        _ => chunked(w),
    }
}

/// The coded form, when `w` has few enough distinct values.
fn coded(w: &[f32]) -> Option<Vec<u32>> {
    // The step above the previous element's bits that gives element `i`, if one does.
    let step = |i: usize| -> Option<u32> {
        let b = w[i].to_bits();
        let p = if i == 0 { 0 } else { w[i - 1].to_bits() };
        (b > p && ((b - p) as usize) <= STEPS).then(|| b - p)
    };
    let mut distinct = Distinct::new();
    for (i, x) in w.iter().enumerate() {
        let b = x.to_bits();
        if b == 0 || step(i).is_some() {
            continue;
        }
        if !distinct.insert(b) {
            return None;
        }
    }
    let values = distinct.ranked();
    let d = values.len();
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
            None => distinct.rank(b)?,
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
    let mut out = vec![w.len() as u32 | CODED, d as u32];
    out.extend(values);
    out.extend(
        bytes
            .chunks(4)
            .map(|c| c.iter().rev().fold(0u32, |acc, &b| acc << 8 | u32::from(b))),
    );
    Some(out)
}

/// Slots of a [`Distinct`] table: at least twice what it may hold, a power of two.
const SLOTS: usize = (2 * (MAX_DISTINCT + 1)).next_power_of_two();

/// The distinct nonzero bit patterns of an array, up to one more than [`MAX_DISTINCT`], then
/// each one's rank among them: a table with open addressing and linear probing, never more
/// than half full (a zero key is a free slot). The standard sets took ~20 ms over a pruned
/// VGG's 400 K weights, most of a native build's encoding.
struct Distinct {
    keys: Vec<u32>,
    ranks: Vec<u32>,
    len: usize,
}

impl Distinct {
    fn new() -> Distinct {
        Distinct {
            keys: vec![0; SLOTS],
            ranks: vec![],
            len: 0,
        }
    }

    /// The slot holding `b`, or the free slot where it would go.
    fn slot(&self, b: u32) -> usize {
        let mut h = (b.wrapping_mul(0x9E37_79B1) >> (32 - SLOTS.trailing_zeros())) as usize;
        while self.keys[h] != 0 && self.keys[h] != b {
            h = (h + 1) & (SLOTS - 1);
        }
        h
    }

    /// Adds `b` (not 0); false once more than [`MAX_DISTINCT`] are held (then add no more).
    fn insert(&mut self, b: u32) -> bool {
        let h = self.slot(b);
        if self.keys[h] == 0 {
            self.keys[h] = b;
            self.len += 1;
        }
        self.len <= MAX_DISTINCT
    }

    /// The values held, increasing; afterwards [`Self::rank`] gives each one's index there.
    fn ranked(&mut self) -> Vec<u32> {
        let mut values: Vec<u32> = self.keys.iter().copied().filter(|&k| k != 0).collect();
        values.sort_unstable();
        self.ranks = vec![0; SLOTS];
        for (i, &v) in values.iter().enumerate() {
            let h = self.slot(v);
            self.ranks[h] = i as u32;
        }
        values
    }

    /// `b`'s index among the values (after [`Self::ranked`]), if it is one.
    fn rank(&self, b: u32) -> Option<u32> {
        let h = self.slot(b);
        (self.keys[h] == b).then(|| self.ranks[h])
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
    let (&d, rest) = words.split_first().ok_or_else(|| fail("no value count"))?;
    let d = d as usize;
    if d > MAX_DISTINCT || d > rest.len() {
        return Err(fail("more values than words"));
    }
    let (values, rest) = rest.split_at(d);
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
    let mut at = 0usize;
    while at < out.len() {
        let s = decoder.next(&mut r).map_err(|e| fail(&e))? as usize;
        if s < d {
            out[at] = f32::from_bits(values[s]);
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
}

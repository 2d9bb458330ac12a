//! Canonical Huffman codes and the bit streams they are written to: the one entropy coder of
//! stored weights, shared by the compiler (which writes the IR's stored constants and the
//! object file's weights) and the runtime (which reads the object file's weights at load).
//!
//! Bits are packed least significant first within each byte; a Huffman code is written most
//! significant bit first (codes are prefixes from the top). Code lengths are at most
//! [`MAX_LEN`]; the writer limits them and the reader checks them, with every other length,
//! count and code, so corrupt data is an error, never a panic or a read out of bounds.

/// The longest code the writer makes and the reader accepts.
pub const MAX_LEN: u8 = 24;

/// Writes bits, least significant first within each byte.
#[derive(Default, Debug)]
pub struct BitWriter {
    bytes: Vec<u8>,
    len: usize,
}

impl BitWriter {
    /// `n` bits of `v` (at most 32), least significant first: as many at a time as the
    /// current byte has room for.
    pub fn put(&mut self, v: u32, n: u32) {
        let (mut v, mut n) = (u64::from(v) & ((1u64 << n.min(32)) - 1), n.min(32));
        while n > 0 {
            let used = (self.len % 8) as u32;
            if used == 0 {
                self.bytes.push(0);
            }
            let take = (8 - used).min(n);
            if let Some(last) = self.bytes.last_mut() {
                *last |= ((v & ((1 << take) - 1)) << used) as u8;
            }
            v >>= take;
            n -= take;
            self.len += take as usize;
        }
    }

    /// `n` bits of `v`, most significant first (a Huffman code).
    pub fn put_msb_first(&mut self, v: u32, n: u32) {
        for b in (0..n).rev() {
            self.bit(v >> b & 1 == 1);
        }
    }

    /// One bit.
    pub fn bit(&mut self, one: bool) {
        if self.len.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if one && let Some(last) = self.bytes.last_mut() {
            *last |= 1 << (self.len % 8);
        }
        self.len += 1;
    }

    /// Bits written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes (the last one padded with zero bits).
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads bits written by [`BitWriter`], failing at the end of its bytes.
#[derive(Debug)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0 }
    }

    /// The next bit.
    pub fn bit(&mut self) -> Result<u32, String> {
        let Some(b) = self.bytes.get(self.pos / 8) else {
            return Err("the code stream ends early".into());
        };
        let v = u32::from(b >> (self.pos % 8) & 1);
        self.pos += 1;
        Ok(v)
    }

    /// The next `n` bits (at most 32) as written by [`BitWriter::put`], a byte's worth at a
    /// time.
    pub fn get(&mut self, n: u32) -> Result<u32, String> {
        let n = n.min(32);
        if self.pos + n as usize > self.bytes.len() * 8 {
            return Err("the code stream ends early".into());
        }
        let (mut v, mut got) = (0u64, 0u32);
        while got < n {
            let used = (self.pos % 8) as u32;
            let take = (8 - used).min(n - got);
            let byte = u64::from(self.bytes[self.pos / 8] >> used) & ((1 << take) - 1);
            v |= byte << got;
            got += take;
            self.pos += take as usize;
        }
        Ok(v as u32)
    }

    /// Bits read so far.
    pub fn pos(&self) -> usize {
        self.pos
    }
}

/// Code lengths (0 for absent symbols) for symbols `0..freq.len()` occurring `freq` times, at
/// most [`MAX_LEN`] bits; a lone symbol gets 1 bit. Ties break by symbol, so the lengths are a
/// function of the counts alone. When the optimal code is deeper than [`MAX_LEN`] (very
/// skewed counts), the counts are halved (kept ≥ 1) until it is not — slightly longer
/// output, never a failure.
pub fn lengths_of_counts(freq: &[u64]) -> Vec<u8> {
    let mut freq = freq.to_vec();
    loop {
        let l = optimal_lengths(&freq);
        if l.iter().all(|&x| x <= MAX_LEN) {
            return l;
        }
        for f in freq.iter_mut().filter(|f| **f > 0) {
            *f = (*f / 2).max(1);
        }
    }
}

/// Code lengths for `symbols` over the alphabet `0..alphabet` (see [`lengths_of_counts`]);
/// symbols outside the alphabet are not counted.
pub fn lengths(symbols: &[u32], alphabet: usize) -> Vec<u8> {
    let mut freq = vec![0u64; alphabet];
    for &s in symbols {
        if let Some(f) = freq.get_mut(s as usize) {
            *f += 1;
        }
    }
    lengths_of_counts(&freq)
}

/// Huffman code lengths for these counts (unlimited depth).
fn optimal_lengths(freq: &[u64]) -> Vec<u8> {
    let alphabet = freq.len();
    let present: Vec<usize> = (0..alphabet).filter(|&s| freq[s] > 0).collect();
    let mut lengths = vec![0u8; alphabet];
    match present.len() {
        0 => return lengths,
        1 => {
            lengths[present[0]] = 1;
            return lengths;
        }
        _ => {}
    }
    // Nodes: (weight, id); leaves are 0..alphabet, internal nodes follow.
    let mut parent: Vec<usize> = vec![usize::MAX; 2 * alphabet];
    let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>> = present
        .iter()
        .map(|&s| std::cmp::Reverse((freq[s], s)))
        .collect();
    let mut next = alphabet;
    while heap.len() > 1 {
        let (Some(std::cmp::Reverse((wa, a))), Some(std::cmp::Reverse((wb, b)))) =
            (heap.pop(), heap.pop())
        else {
            break;
        };
        parent[a] = next;
        parent[b] = next;
        heap.push(std::cmp::Reverse((wa + wb, next)));
        next += 1;
    }
    for &s in &present {
        let (mut d, mut x) = (0u8, s);
        while parent[x] != usize::MAX {
            x = parent[x];
            d = d.saturating_add(1);
        }
        lengths[s] = d;
    }
    lengths
}

/// (code, length) per symbol, canonical: shorter codes first, then by symbol. Lengths are at
/// most [`MAX_LEN`] (the writer limits them, the reader checks), so codes fit a u32; the
/// arithmetic is in u64 so no length can overflow it.
pub fn canonical(lengths: &[u8]) -> Vec<(u32, u8)> {
    let mut order: Vec<usize> = (0..lengths.len()).filter(|&s| lengths[s] > 0).collect();
    order.sort_by_key(|&s| (lengths[s], s));
    let mut out = vec![(0u32, 0u8); lengths.len()];
    let (mut code, mut len) = (0u64, 0u8);
    for (i, &s) in order.iter().enumerate() {
        if i > 0 {
            code += 1;
        }
        code <<= u32::from(lengths[s].saturating_sub(len)).min(63);
        len = lengths[s];
        out[s] = (code as u32, len);
    }
    out
}

/// Writes `symbols` with the canonical code of `lengths` (every symbol must have a length).
pub fn write(w: &mut BitWriter, symbols: &[u32], lengths: &[u8]) {
    let codes = canonical(lengths);
    for &s in symbols {
        let (code, len) = codes.get(s as usize).copied().unwrap_or((0, 0));
        w.put_msb_first(code, u32::from(len));
    }
}

/// Decodes canonical codes: per length, the first code and where its symbols start in the
/// symbols sorted by (length, symbol), so each bit costs a comparison.
#[derive(Debug)]
pub struct Decoder {
    /// Codes of each length (index = length).
    count: [u32; MAX_LEN as usize + 1],
    /// The first code of each length.
    first: [u32; MAX_LEN as usize + 1],
    /// Where each length's symbols start in `symbols`.
    start: [u32; MAX_LEN as usize + 1],
    /// Symbols sorted by (length, symbol).
    symbols: Vec<u32>,
}

impl Decoder {
    /// The decoder of the canonical code with these lengths; lengths beyond [`MAX_LEN`] or
    /// that do not form a prefix code are errors.
    pub fn new(lengths: &[u8]) -> Result<Decoder, String> {
        if lengths.iter().any(|&l| l > MAX_LEN) {
            return Err(format!("a Huffman code longer than {MAX_LEN} bits"));
        }
        let mut count = [0u32; MAX_LEN as usize + 1];
        for &l in lengths.iter().filter(|&&l| l > 0) {
            count[l as usize] += 1;
        }
        // Kraft: the lengths must describe a prefix code (sum of 2^-l at most 1), checked
        // exactly in units of 2^-MAX_LEN.
        let kraft: u64 = (1..=MAX_LEN as usize)
            .map(|l| u64::from(count[l]) << (MAX_LEN as usize - l))
            .sum();
        if kraft > 1u64 << MAX_LEN {
            return Err("the Huffman code lengths do not form a prefix code".into());
        }
        let mut symbols: Vec<u32> = (0..lengths.len() as u32)
            .filter(|&s| lengths[s as usize] > 0)
            .collect();
        symbols.sort_by_key(|&s| (lengths[s as usize], s));
        let (mut first, mut start) = ([0u32; MAX_LEN as usize + 1], [0u32; MAX_LEN as usize + 1]);
        let (mut code, mut at) = (0u64, 0u32);
        for l in 1..=MAX_LEN as usize {
            code <<= 1;
            first[l] = code as u32;
            start[l] = at;
            code += u64::from(count[l]);
            at += count[l];
        }
        Ok(Decoder {
            count,
            first,
            start,
            symbols,
        })
    }

    /// The next symbol.
    pub fn next(&self, r: &mut BitReader<'_>) -> Result<u32, String> {
        let mut code = 0u32;
        for l in 1..=MAX_LEN as usize {
            code = (code << 1) | r.bit()?;
            let offset = code.wrapping_sub(self.first[l]);
            if code >= self.first[l] && offset < self.count[l] {
                return Ok(self.symbols[(self.start[l] + offset) as usize]);
            }
        }
        Err("a bit sequence that is no Huffman code".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_of_every_width_round_trip_across_bytes() {
        let items: Vec<(u32, u32)> = (0..500u32)
            .map(|i| {
                let n = i % 33;
                let v =
                    i.wrapping_mul(2_654_435_761) & if n == 32 { u32::MAX } else { (1 << n) - 1 };
                (v, n)
            })
            .collect();
        let mut w = BitWriter::default();
        for &(v, n) in &items {
            w.put(v, n);
        }
        let total = w.len();
        assert_eq!(total, items.iter().map(|&(_, n)| n as usize).sum::<usize>());
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &items {
            assert_eq!(r.get(n).unwrap(), v, "{n} bits");
        }
        assert_eq!(r.pos(), total);
        // Reading past the end is an error, and one bit at a time agrees with `get`.
        let mut r = BitReader::new(&bytes);
        assert!(r.get(32).is_ok());
        let mut r2 = BitReader::new(&bytes[..2]);
        assert!(r2.get(17).is_err());
        let mut one = BitReader::new(&bytes);
        let mut all = BitReader::new(&bytes);
        for _ in 0..64 {
            assert_eq!(one.bit().unwrap(), all.get(1).unwrap());
        }
    }

    #[test]
    fn codes_round_trip_and_bad_lengths_are_errors() {
        let symbols: Vec<u32> = (0..2000u32).map(|i| (i * i + 7 * i) % 37 % 11).collect();
        let l = lengths(&symbols, 16);
        let mut w = BitWriter::default();
        write(&mut w, &symbols, &l);
        let bits = w.len();
        let bytes = w.finish();
        let d = Decoder::new(&l).unwrap();
        let mut r = BitReader::new(&bytes);
        let back: Vec<u32> = (0..symbols.len())
            .map(|_| d.next(&mut r).unwrap())
            .collect();
        assert_eq!(back, symbols);
        assert_eq!(r.pos(), bits);
        assert!(d.next(&mut r).is_err());
        // Over-full (three 1-bit codes) and too long.
        assert!(Decoder::new(&[1, 1, 1]).is_err());
        assert!(Decoder::new(&[MAX_LEN + 1, 1]).is_err());
        // A lone symbol takes one bit; skewed counts stay within MAX_LEN.
        assert_eq!(lengths(&[3, 3, 3], 4), [0, 0, 0, 1]);
        let fib: Vec<u64> = (0..40)
            .scan((1u64, 1u64), |s, _| {
                *s = (s.1, s.0 + s.1);
                Some(s.0)
            })
            .collect();
        assert!(lengths_of_counts(&fib).iter().all(|&x| x <= MAX_LEN));
    }
}

//! Weights in stored form in an object file: the program's packed weight array cut into
//! chunks of [`CHUNK`] floats, each kept dense or as a bitmask of its nonzero elements plus
//! those elements, whichever is smaller. The model expands them once, when it is loaded, into
//! memory it owns; then the kernels run on dense weights as before.
//!
//! Packing (panel layouts, padding) moves weights but creates no nonzero, so a pruned model's
//! packed array is as sparse as its weights.
//!
//! Format, little-endian u32 words: `n` (the decoded length), then per chunk a header word —
//! `0` for a dense chunk (its floats follow), or `1 + k` for a bitmask chunk with `k` kept
//! elements (⌈len/32⌉ mask words, then the `k` floats). A kept element is one whose bits are
//! not all zero, so decoding gives back the same bits (`-0.0` included).

/// Floats per chunk.
pub const CHUNK: usize = 4096;

/// The length in words [`encode`] would give, without encoding (one pass, no allocation).
pub fn encoded_len(w: &[f32]) -> usize {
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

/// Encodes `w`.
pub fn encode(w: &[f32]) -> Vec<u32> {
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

/// The decoded length of encoded words, if they have one.
pub fn decoded_len(words: &[u32]) -> Option<usize> {
    words.first().map(|&n| n as usize)
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
}

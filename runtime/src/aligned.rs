//! Buffers of `f32` aligned to 64 bytes (a cache line, one AVX-512 vector), so that a vector
//! load or store of 16 floats at a multiple of 16 never straddles two lines. (A large
//! `Vec<f32>` comes from the allocator 16-byte aligned: every such access would split.)
//!
//! Also the fallible allocation that every buffer whose size comes from the input (the
//! batch) goes through: out of memory is an error the caller reports (`NAME_run` returns
//! non-zero), never an abort of the process that embeds the model.

use std::ops::{Deref, DerefMut};

/// One cache line of floats.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A zero-initialised, fixed-length run of floats starting on a cache line.
#[derive(Clone, Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> AlignedVec {
        AlignedVec {
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
            len,
        }
    }

    /// `len` zeros, or an out-of-memory error naming `what` needed them.
    pub fn try_zeroed(len: usize, what: &str) -> Result<AlignedVec, String> {
        Ok(AlignedVec {
            lines: try_vec(len.div_ceil(16), Line([0.0; 16]), what)?,
            len,
        })
    }

    /// A copy of `data`.
    pub fn from_slice(data: &[f32]) -> AlignedVec {
        let mut v = AlignedVec::zeroed(data.len());
        v.copy_from_slice(data);
        v
    }
}

/// `len` copies of `value`, or an out-of-memory error naming `what` needed them (a size
/// past the address space included).
pub fn try_vec<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| out_of_memory(len.saturating_mul(size_of::<T>()), what))?;
    v.resize(len, value);
    Ok(v)
}

/// The message for `bytes` that could not be allocated for `what`.
pub fn out_of_memory(bytes: usize, what: &str) -> String {
    format!("out of memory: {what} needs {bytes} bytes")
}

impl Deref for AlignedVec {
    type Target = [f32];
    #[allow(unsafe_code)]
    fn deref(&self) -> &[f32] {
        // SAFETY: `lines` holds `len.div_ceil(16)` lines of 16 initialised floats, laid out
        // contiguously (`repr(C)`, size 64 = 16 floats, no padding); `len` of them are ours.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }
}

impl DerefMut for AlignedVec {
    #[allow(unsafe_code)]
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, borrowed mutably through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

impl std::fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedVec({} floats)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_holds_what_was_copied() {
        for n in [0, 1, 15, 16, 17, 100_000, 1 << 20] {
            let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let v = AlignedVec::from_slice(&data);
            assert_eq!(v.as_ptr() as usize % 64, 0, "{n}");
            assert_eq!(&v[..], &data[..]);
        }
    }

    #[test]
    fn too_much_memory_is_an_error() {
        // Past the address space: fails on every machine, and says how much was asked.
        let e = AlignedVec::try_zeroed(1 << 60, "the arena").unwrap_err();
        assert_eq!(
            e,
            format!("out of memory: the arena needs {} bytes", 1u64 << 62)
        );
        assert!(try_vec(usize::MAX, 0f32, "x").is_err());
        assert_eq!(AlignedVec::try_zeroed(17, "x").unwrap().len(), 17);
    }
}

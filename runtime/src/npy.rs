//! Reading and writing NumPy `.npy` files (format versions 1–3), without ndarray, so the
//! executables mcc emits can use it too.
//!
//! Data is kept as little-endian bytes in C (row-major) order; big-endian and
//! Fortran-order files are converted on read.

use std::io::Write;
use std::path::Path;

/// Element types `.npy` files can hold that mcc reads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NpyType {
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `|i1`
    I8,
    /// `<i2`
    I16,
    /// `<i4`
    I32,
    /// `<i8`
    I64,
    /// `|u1`
    U8,
    /// `<u2`
    U16,
    /// `<u4`
    U32,
    /// `<u8`
    U64,
    /// `|b1`
    Bool,
}

impl NpyType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyType::F32 | NpyType::I32 | NpyType::U32 => 4,
            NpyType::F64 | NpyType::I64 | NpyType::U64 => 8,
            NpyType::I16 | NpyType::U16 => 2,
            NpyType::I8 | NpyType::U8 | NpyType::Bool => 1,
        }
    }

    fn code(self) -> (char, u8) {
        match self {
            NpyType::F32 => ('f', 4),
            NpyType::F64 => ('f', 8),
            NpyType::I8 => ('i', 1),
            NpyType::I16 => ('i', 2),
            NpyType::I32 => ('i', 4),
            NpyType::I64 => ('i', 8),
            NpyType::U8 => ('u', 1),
            NpyType::U16 => ('u', 2),
            NpyType::U32 => ('u', 4),
            NpyType::U64 => ('u', 8),
            NpyType::Bool => ('b', 1),
        }
    }

    /// The NumPy dtype string (`<f4`, `|u1`, …).
    pub fn descr(self) -> String {
        let (k, n) = self.code();
        format!("{}{k}{n}", if n == 1 { '|' } else { '<' })
    }

    /// A short name (`float32`, …) for messages.
    pub fn name(self) -> &'static str {
        match self {
            NpyType::F32 => "float32",
            NpyType::F64 => "float64",
            NpyType::I8 => "int8",
            NpyType::I16 => "int16",
            NpyType::I32 => "int32",
            NpyType::I64 => "int64",
            NpyType::U8 => "uint8",
            NpyType::U16 => "uint16",
            NpyType::U32 => "uint32",
            NpyType::U64 => "uint64",
            NpyType::Bool => "bool",
        }
    }
}

/// An array read from or to be written to a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Element type.
    pub dtype: NpyType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Little-endian element bytes in C order.
    pub data: Vec<u8>,
}

/// Why a `.npy` file could not be read or written.
#[derive(Debug)]
pub enum NpyError {
    /// I/O failed.
    Io(std::io::Error),
    /// The file is not in `.npy` format or is damaged.
    Format(String),
    /// A valid `.npy` file with an element type mcc does not read.
    Type(String),
}

impl std::fmt::Display for NpyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NpyError::Io(e) => write!(f, "{e}"),
            NpyError::Format(m) => write!(f, "not a valid .npy file: {m}"),
            NpyError::Type(t) => write!(
                f,
                "unsupported element type `{t}` (mcc reads float32/64, int8–64, uint8–64 and bool)"
            ),
        }
    }
}

impl std::error::Error for NpyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NpyError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for NpyError {
    fn from(e: std::io::Error) -> NpyError {
        NpyError::Io(e)
    }
}

fn fmt_err<T>(m: impl Into<String>) -> Result<T, NpyError> {
    Err(NpyError::Format(m.into()))
}

/// Finds `'key': value` in a header dict and returns the value text.
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_a = format!("'{key}'");
    let pat_b = format!("\"{key}\"");
    let start = header
        .find(&pat_a)
        .map(|i| i + pat_a.len())
        .or_else(|| header.find(&pat_b).map(|i| i + pat_b.len()))?;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else if let Some(q) = rest.strip_prefix('\'') {
        q.find('\'')? + 2
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

impl NpyArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a `.npy` file.
    pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
        NpyArray::parse(&std::fs::read(path)?)
    }

    /// Parses `.npy` bytes.
    pub fn parse(bytes: &[u8]) -> Result<NpyArray, NpyError> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return fmt_err("missing the \\x93NUMPY magic");
        }
        let major = bytes[6];
        let (hlen, hstart): (usize, usize) = match major {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 => {
                if bytes.len() < 12 {
                    return fmt_err("truncated header");
                }
                (
                    u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                    12,
                )
            }
            v => return fmt_err(format!("format version {v} is unknown")),
        };
        let hend = hstart
            .checked_add(hlen)
            .filter(|&e| e <= bytes.len())
            .map_or_else(|| fmt_err("truncated header"), Ok)?;
        let header = std::str::from_utf8(&bytes[hstart..hend])
            .map_or_else(|_| fmt_err("header is not text"), Ok)?;
        let descr = field(header, "descr")
            .map_or_else(|| fmt_err("header has no 'descr'"), Ok)?
            .trim_matches('\'');
        let fortran = match field(header, "fortran_order") {
            Some("True") => true,
            Some("False") => false,
            _ => return fmt_err("header has no valid 'fortran_order'"),
        };
        let shape_txt =
            field(header, "shape").map_or_else(|| fmt_err("header has no 'shape'"), Ok)?;
        let inner = shape_txt
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .map_or_else(|| fmt_err("'shape' is not a tuple"), Ok)?;
        let mut shape = vec![];
        for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            shape.push(
                part.trim_end_matches('L')
                    .parse::<usize>()
                    .map_or_else(|_| fmt_err(format!("bad dimension `{part}`")), Ok)?,
            );
        }
        // The byte-order character, then the type code (a character, not a byte: the
        // header is any text).
        let mut chars = descr.chars();
        let endian = chars.next();
        let code = chars.as_str();
        let dtype = match code {
            "f4" => NpyType::F32,
            "f8" => NpyType::F64,
            "i1" => NpyType::I8,
            "i2" => NpyType::I16,
            "i4" => NpyType::I32,
            "i8" => NpyType::I64,
            "u1" => NpyType::U8,
            "u2" => NpyType::U16,
            "u4" => NpyType::U32,
            "u8" => NpyType::U64,
            "b1" => NpyType::Bool,
            _ => return Err(NpyError::Type(descr.to_string())),
        };
        let big = match endian {
            Some('<' | '|' | '=') => false,
            Some('>') => true,
            _ => return Err(NpyError::Type(descr.to_string())),
        };
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .map_or_else(|| fmt_err("shape is too large"), Ok)?;
        let need = n
            .checked_mul(dtype.size())
            .map_or_else(|| fmt_err("shape is too large"), Ok)?;
        let body = &bytes[hend..];
        if body.len() < need {
            return fmt_err(format!(
                "data is truncated: {} bytes for {n} elements of {}",
                body.len(),
                dtype.name()
            ));
        }
        let mut data = body[..need].to_vec();
        let sz = dtype.size();
        if big {
            for ch in data.chunks_exact_mut(sz) {
                ch.reverse();
            }
        }
        if fortran && shape.len() > 1 {
            data = fortran_to_c(&data, &shape, sz);
        }
        Ok(NpyArray { dtype, shape, data })
    }

    /// Serializes as `.npy` version 1.0 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let dims: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        let shape = if dims.len() == 1 {
            format!("({},)", dims[0])
        } else {
            format!("({})", dims.join(", "))
        };
        let mut header = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
            self.dtype.descr()
        );
        let total = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - total % 64) % 64));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + self.data.len());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Writes a `.npy` file atomically (a temporary file renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), NpyError> {
        let tmp = path.with_extension("npy.partial");
        let res = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&self.to_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(res?)
    }
}

fn fortran_to_c(data: &[u8], shape: &[usize], sz: usize) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut out = vec![0u8; data.len()];
    let mut idx = vec![0usize; shape.len()];
    for c in 0..n {
        let mut rem = c;
        for d in (0..shape.len()).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        let (mut f, mut stride) = (0, 1);
        for d in 0..shape.len() {
            f += idx[d] * stride;
            stride *= shape[d];
        }
        out[c * sz..(c + 1) * sz].copy_from_slice(&data[f * sz..(f + 1) * sz]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let a = NpyArray {
            dtype: NpyType::F32,
            shape: vec![2, 3],
            data: (0..24).map(|i| i as u8).collect(),
        };
        let b = NpyArray::parse(&a.to_bytes()).unwrap();
        assert_eq!(a, b);
        assert!(
            a.to_bytes().len().is_multiple_of(64) || (a.to_bytes().len() - 24).is_multiple_of(64)
        );
        assert!(NpyArray::parse(b"nope").is_err());
        let mut cut = a.to_bytes();
        cut.truncate(cut.len() - 1);
        assert!(matches!(NpyArray::parse(&cut), Err(NpyError::Format(_))));
    }

    #[test]
    fn reads_fortran_order() {
        // 2×3 array [[0,1,2],[3,4,5]] stored column-major as u8.
        let header = "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0, 3, 1, 4, 2, 5]);
        let a = NpyArray::parse(&bytes).unwrap();
        assert_eq!(a.data, vec![0, 1, 2, 3, 4, 5]);
    }

    /// `.npy` bytes with this header and no data.
    fn with_header(header: &str) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes
    }

    #[test]
    fn a_dtype_of_any_text_is_an_error_not_a_panic() {
        for descr in ["é", "éf4", "<é", "€", "", "<", "<f", "f4<", "<f4é"] {
            let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}");
            let e = NpyArray::parse(&with_header(&h)).unwrap_err();
            assert!(
                matches!(e, NpyError::Type(ref d) if d == descr),
                "{descr}: {e}"
            );
        }
    }
}

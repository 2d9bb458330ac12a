//! Reading and writing NumPy `.npy` files (format versions 1–3), without ndarray, so the
//! executables mcc emits can use it too.
//!
//! Data is kept as little-endian bytes in C (row-major) order; big-endian and
//! Fortran-order files are converted on read.
//!
//! **Invariant:** the header is read and checked first — magic, a header of at most
//! [`MAX_HEADER`] bytes, dtype, shape, and for a regular file that its size is exactly the
//! header plus the shape's data — before any data is read or its buffer allocated, and that
//! buffer is allocated fallibly. So a file that is not `.npy` (or `/dev/zero`) costs a few
//! bytes, and [`NpyHeader::open`] alone tells what a file holds without reading it.

use std::io::Read;
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

/// The longest header read, in bytes. NumPy writes headers of a few hundred bytes for the
/// element types mcc reads (and its own reader refuses more than 10,000 by default).
pub const MAX_HEADER: usize = 1 << 16;

/// What a `.npy` header says, checked: a known element type and a shape whose data size
/// fits in memory's address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: NpyType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Whether the data is in Fortran (column-major) order.
    pub fortran_order: bool,
    /// Whether the elements are big-endian.
    pub big_endian: bool,
    /// Where the data starts in the file (bytes).
    pub data_offset: u64,
    /// The data's size (bytes).
    pub data_len: usize,
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
    /// The data does not fit in memory.
    OutOfMemory(usize),
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
            NpyError::OutOfMemory(n) => {
                write!(f, "its data ({n} bytes) does not fit in memory")
            }
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

impl NpyHeader {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens a `.npy` file and reads its header, leaving the file at the data. For a regular
    /// file, also checks that the data is exactly as long as the header declares; devices
    /// and pipes are checked as their data is read.
    pub fn open(path: &Path) -> Result<(NpyHeader, std::fs::File), NpyError> {
        let mut file = std::fs::File::open(path)?;
        let header = NpyHeader::read_from(&mut file)?;
        let meta = file.metadata()?;
        if meta.is_file() {
            check_size(&header, meta.len().saturating_sub(header.data_offset))?;
        }
        Ok((header, file))
    }

    /// Reads and checks a header from `r`, reading nothing past it.
    pub fn read_from(r: &mut impl Read) -> Result<NpyHeader, NpyError> {
        let mut prefix = [0u8; 8];
        let got = read_full(r, &mut prefix)?;
        if got < 6 || &prefix[..6] != b"\x93NUMPY" {
            return fmt_err("missing the \\x93NUMPY magic");
        }
        if got < 8 {
            return fmt_err("truncated header");
        }
        let (hlen, hstart): (usize, u64) = match prefix[6] {
            1 => {
                let mut n = [0u8; 2];
                if read_full(r, &mut n)? < 2 {
                    return fmt_err("truncated header");
                }
                (u16::from_le_bytes(n) as usize, 10)
            }
            2 | 3 => {
                let mut n = [0u8; 4];
                if read_full(r, &mut n)? < 4 {
                    return fmt_err("truncated header");
                }
                (u32::from_le_bytes(n) as usize, 12)
            }
            v => return fmt_err(format!("format version {v} is unknown")),
        };
        if hlen > MAX_HEADER {
            return fmt_err(format!(
                "its header is {hlen} bytes long; mcc reads headers of at most {MAX_HEADER}"
            ));
        }
        let mut text = vec![0u8; hlen];
        if read_full(r, &mut text)? < hlen {
            return fmt_err("truncated header");
        }
        let header =
            std::str::from_utf8(&text).map_or_else(|_| fmt_err("header is not text"), Ok)?;
        NpyHeader::parse(header, hstart + hlen as u64)
    }

    /// Parses a header's text (the Python dict); the data starts at `data_offset`.
    fn parse(header: &str, data_offset: u64) -> Result<NpyHeader, NpyError> {
        let descr = field(header, "descr")
            .map_or_else(|| fmt_err("header has no 'descr'"), Ok)?
            .trim_matches('\'');
        let fortran_order = match field(header, "fortran_order") {
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
        let big_endian = match endian {
            Some('<' | '|' | '=') => false,
            Some('>') => true,
            _ => return Err(NpyError::Type(descr.to_string())),
        };
        let data_len = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.size()))
            .filter(|&n| n <= isize::MAX as usize)
            .map_or_else(|| fmt_err("shape is too large"), Ok)?;
        Ok(NpyHeader {
            dtype,
            shape,
            fortran_order,
            big_endian,
            data_offset,
            data_len,
        })
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, NpyError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
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

    /// Reads a `.npy` file: its header first ([`NpyHeader::open`]), then exactly the data it
    /// declares, into a buffer allocated fallibly.
    pub fn read(path: &Path) -> Result<NpyArray, NpyError> {
        let (header, mut file) = NpyHeader::open(path)?;
        NpyArray::read_data(header, &mut file)
    }

    /// Parses `.npy` bytes (exactly a header and its data).
    pub fn parse(mut bytes: &[u8]) -> Result<NpyArray, NpyError> {
        let header = NpyHeader::read_from(&mut bytes)?;
        check_size(&header, bytes.len() as u64)?;
        NpyArray::read_data(header, &mut bytes)
    }

    /// Reads the data `header` declares from `r` (positioned after the header).
    pub fn read_data(header: NpyHeader, r: &mut impl Read) -> Result<NpyArray, NpyError> {
        let need = header.data_len;
        let mut data = try_bytes(need)?;
        r.take(need as u64).read_to_end(&mut data)?;
        if data.len() < need {
            return fmt_err(format!(
                "data is truncated: {} bytes for {} elements of {}",
                data.len(),
                header.len(),
                header.dtype.name()
            ));
        }
        let sz = header.dtype.size();
        if header.big_endian {
            for ch in data.chunks_exact_mut(sz) {
                ch.reverse();
            }
        }
        if header.fortran_order && header.shape.len() > 1 {
            data = fortran_to_c(&data, &header.shape, sz)?;
        }
        Ok(NpyArray {
            dtype: header.dtype,
            shape: header.shape,
            data,
        })
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
        Ok(crate::output::write(path, &self.to_bytes())?)
    }
}

/// An empty buffer with room for `n` bytes, or an error when there is no memory for it.
fn try_bytes(n: usize) -> Result<Vec<u8>, NpyError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| NpyError::OutOfMemory(n))?;
    Ok(v)
}

/// A regular file (or buffer) of `size` bytes after the header must hold exactly the data the
/// header declares.
fn check_size(header: &NpyHeader, size: u64) -> Result<(), NpyError> {
    let need = header.data_len as u64;
    if size != need {
        return fmt_err(format!(
            "data is {}: {size} bytes where {} elements of {} take {need}",
            if size < need {
                "truncated"
            } else {
                "followed by extra bytes"
            },
            header.len(),
            header.dtype.name()
        ));
    }
    Ok(())
}

fn fortran_to_c(data: &[u8], shape: &[usize], sz: usize) -> Result<Vec<u8>, NpyError> {
    let n: usize = shape.iter().product();
    let mut out = try_bytes(data.len())?;
    out.resize(data.len(), 0);
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
    Ok(out)
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

    #[test]
    fn the_header_is_read_alone_and_checked_first() {
        let a = NpyArray {
            dtype: NpyType::I16,
            shape: vec![3],
            data: vec![1, 0, 2, 0, 3, 0],
        };
        // The header reader stops at the data, even of an endless stream.
        let bytes = a.to_bytes();
        let mut endless = bytes[..bytes.len() - 6].chain(std::io::repeat(7));
        let h = NpyHeader::read_from(&mut endless).unwrap();
        assert_eq!(
            (h.dtype, h.shape.clone(), h.data_len),
            (NpyType::I16, vec![3], 6)
        );
        assert_eq!(h.data_offset as usize, bytes.len() - 6);
        let rest = NpyArray::read_data(h, &mut endless).unwrap();
        assert_eq!(rest.data, vec![7; 6]);
        // Trailing bytes are refused, as a short file is.
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(NpyArray::parse(&long), Err(NpyError::Format(m)) if m.contains("extra")));
        // Not `.npy`, endlessly: one read of the magic.
        let e = NpyHeader::read_from(&mut std::io::repeat(0)).unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
        // A header longer than MAX_HEADER is refused before it is read.
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        v2.extend_from_slice(&(u32::MAX).to_le_bytes());
        let e = NpyHeader::read_from(&mut v2.as_slice().chain(std::io::repeat(b' '))).unwrap_err();
        assert!(e.to_string().contains("at most 65536"), "{e}");
        // A shape whose size overflows is a format error, not an allocation.
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }";
        assert!(
            matches!(NpyArray::parse(&with_header(h)), Err(NpyError::Format(m)) if m.contains("too large"))
        );
    }

    /// The executable's `-o`: a device is written through (and stays a device), a symbolic
    /// link's target is replaced (the link stays), a link loop is an error.
    #[test]
    fn writes_go_through_devices_and_links() {
        let a = NpyArray {
            dtype: NpyType::F32,
            shape: vec![2],
            data: [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        if Path::new("/dev/null").exists() {
            a.write(Path::new("/dev/null")).unwrap();
            use std::os::unix::fs::FileTypeExt;
            assert!(
                std::fs::metadata("/dev/null")
                    .unwrap()
                    .file_type()
                    .is_char_device()
            );
        }
        let dir = std::env::temp_dir().join(format!("mcc-npy-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("real.npy"), b"old").unwrap();
        std::os::unix::fs::symlink("real.npy", dir.join("link.npy")).unwrap();
        a.write(&dir.join("link.npy")).unwrap();
        assert!(
            std::fs::symlink_metadata(dir.join("link.npy"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(dir.join("real.npy")).unwrap(), a.to_bytes());
        std::os::unix::fs::symlink("loop.npy", dir.join("loop.npy")).unwrap();
        assert!(a.write(&dir.join("loop.npy")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

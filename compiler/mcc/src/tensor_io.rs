//! `.npy` files ↔ IR tensors, with the checks a user needs: the right dtype and a shape
//! that fits the model's input, reported by name when they do not. Every check is made on
//! the file's header before its data is read ([`read_header`], [`check_input`]).

use std::path::Path;

use mcc_ir::{DType, Dim, Tensor, TensorType};
use mcc_runtime::npy::{NpyArray, NpyError, NpyHeader, NpyType};

use crate::Error;

fn npy_type(d: DType) -> NpyType {
    match d {
        DType::F32 => NpyType::F32,
        DType::F64 => NpyType::F64,
        DType::I8 => NpyType::I8,
        DType::I16 => NpyType::I16,
        DType::I32 => NpyType::I32,
        DType::I64 => NpyType::I64,
        DType::U8 => NpyType::U8,
        DType::U16 => NpyType::U16,
        DType::U32 => NpyType::U32,
        DType::U64 => NpyType::U64,
        DType::Bool => NpyType::Bool,
    }
}

fn ir_type(d: NpyType) -> DType {
    match d {
        NpyType::F32 => DType::F32,
        NpyType::F64 => DType::F64,
        NpyType::I8 => DType::I8,
        NpyType::I16 => DType::I16,
        NpyType::I32 => DType::I32,
        NpyType::I64 => DType::I64,
        NpyType::U8 => DType::U8,
        NpyType::U16 => DType::U16,
        NpyType::U32 => DType::U32,
        NpyType::U64 => DType::U64,
        NpyType::Bool => DType::Bool,
    }
}

fn npy_error(path: &Path, e: NpyError) -> Error {
    match e {
        NpyError::Io(cause) => Error::Io {
            path: path.to_path_buf(),
            cause,
        },
        other => Error::Npy {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// What a `.npy` file holds (element type and shape), from its header alone; the file's size
/// is checked against the shape, no data is read.
pub fn read_header(path: &Path) -> Result<(DType, Vec<usize>), Error> {
    let (h, _) = NpyHeader::open(path).map_err(|e| npy_error(path, e))?;
    Ok((ir_type(h.dtype), h.shape))
}

/// Reads any `.npy` file as a tensor.
pub fn read_npy(path: &Path) -> Result<Tensor, Error> {
    let a = NpyArray::read(path).map_err(|e| npy_error(path, e))?;
    Tensor::from_le_bytes(ir_type(a.dtype), &a.shape, &a.data).map_err(|e| Error::Npy {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Writes a tensor as a `.npy` file (atomically).
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), Error> {
    let a = NpyArray {
        dtype: npy_type(t.dtype()),
        shape: t.shape().to_vec(),
        data: t.to_le_bytes(),
    };
    crate::write_atomic(path, &a.to_bytes())
}

fn describe(dtype: DType, shape: &[usize]) -> String {
    format!("{}{shape:?}", npy_type(dtype).name())
}

/// Checks an input file against the model input `name: ty` from its header alone; returns
/// the file's shape.
pub fn check_input(path: &Path, name: &str, ty: &TensorType) -> Result<Vec<usize>, Error> {
    let (dtype, shape) = read_header(path)?;
    let mismatch = |help: String| Error::InputMismatch {
        path: path.to_path_buf(),
        input: name.to_string(),
        expected: ty.to_string(),
        got: describe(dtype, &shape),
        help,
    };
    if dtype != ty.dtype {
        return Err(mismatch(format!(
            "convert the array with `.astype(numpy.{})`",
            npy_type(ty.dtype).name()
        )));
    }
    if let Some(why) = ty.misfit(&shape, &mut vec![]) {
        let hint = match &ty.shape {
            Some(dims) if dims.len() != shape.len() => format!(
                "the model wants a rank-{} array; reshape it, e.g. to {}",
                dims.len(),
                example_shape(dims, &shape)
            ),
            _ => format!(
                "{why}: each fixed dimension must match exactly; named ones (like N) may be any size, the same name the same size"
            ),
        };
        return Err(mismatch(hint));
    }
    Ok(shape)
}

/// Reads an input file, checked against the model input `name: ty` (from its header, before
/// its data is read).
pub fn read_input(path: &Path, name: &str, ty: &TensorType) -> Result<Tensor, Error> {
    check_input(path, name, ty)?;
    read_npy(path)
}

fn example_shape(dims: &[Dim], got: &[usize]) -> String {
    let batch = got.first().copied().unwrap_or(1);
    let parts: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Fixed(n) => n.to_string(),
            _ if i == 0 => batch.to_string(),
            _ => "?".to_string(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Splits a tensor into chunks of at most `n` along axis 0.
pub fn split_batch(t: &Tensor, n: usize) -> Vec<Tensor> {
    let total = t.shape().first().copied().unwrap_or(0);
    let n = n.max(1);
    (0..total.div_ceil(n))
        .map(|i| {
            let (a, b) = (i * n, ((i + 1) * n).min(total));
            mcc_ir::map_tensor!(t, x => x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(a..b)).to_owned())
        })
        .collect()
}

/// Samples `first..first + n` of a batch-first tensor.
pub fn slice_batch(t: &Tensor, first: usize, n: usize) -> Tensor {
    let total = t.shape().first().copied().unwrap_or(0);
    let (a, b) = (first.min(total), (first + n).min(total));
    mcc_ir::map_tensor!(t, x => x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(a..b)).to_owned())
}

/// Joins tensors along axis 0.
pub fn concat_batch(parts: &[Tensor]) -> Result<Tensor, Error> {
    let refs: Vec<Option<&Tensor>> = parts.iter().map(Some).collect();
    mcc_ir::eval_op(
        &mcc_ir::Op::Concat(mcc_ir::op::Concat { axis: 0 }),
        &refs,
        1,
    )
    .map(|mut v| v.remove(0))
    .map_err(|e| Error::Usage(format!("cannot join batch results: {e}")))
}

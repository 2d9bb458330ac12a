//! ONNX `TensorProto` ↔ `mcc_ir::Tensor`: element-type codes, the typed data fields,
//! `raw_data`, and external data files.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use mcc_ir::{DType, Tensor};

use crate::ImportError;
use crate::pb;

/// The ONNX `TensorProto.DataType` code of a dtype.
pub(crate) fn dtype_code(d: DType) -> i32 {
    match d {
        DType::F32 => 1,
        DType::U8 => 2,
        DType::I8 => 3,
        DType::U16 => 4,
        DType::I16 => 5,
        DType::I32 => 6,
        DType::I64 => 7,
        DType::Bool => 9,
        DType::F64 => 11,
        DType::U32 => 12,
        DType::U64 => 13,
    }
}

/// The dtype of an ONNX code; `Err` names the unsupported type.
pub(crate) fn dtype_of(code: i32) -> Result<DType, String> {
    Ok(match code {
        1 => DType::F32,
        2 => DType::U8,
        3 => DType::I8,
        4 => DType::U16,
        5 => DType::I16,
        6 => DType::I32,
        7 => DType::I64,
        9 => DType::Bool,
        11 => DType::F64,
        12 => DType::U32,
        13 => DType::U64,
        8 => return Err("string tensors are not supported".into()),
        10 => return Err("float16 tensors are not supported yet".into()),
        16 => return Err("bfloat16 tensors are not supported yet".into()),
        14 | 15 => return Err("complex tensors are not supported".into()),
        17..=20 | 23..=26 => {
            return Err("8-bit and smaller float formats are not supported yet".into());
        }
        21 | 22 | 27 | 28 => {
            return Err("4-bit and 2-bit integer tensors are not supported yet".into());
        }
        0 => return Err("the element type is undefined".into()),
        c => return Err(format!("element type code {c} is unknown")),
    })
}

fn dims_of(t: &pb::TensorProto, name: &str) -> Result<Vec<usize>, ImportError> {
    let mut total: u128 = 1;
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(ImportError::Tensor {
                name: name.into(),
                message: format!("negative dimension {d}"),
            });
        }
        total = total.saturating_mul(d as u128);
        dims.push(d as usize);
    }
    // One limit for every tensor mcc holds (the IR's): checked before anything is allocated.
    if total > mcc_ir::tensor::MAX_ELEMENTS as u128 {
        return Err(ImportError::Tensor {
            name: name.into(),
            message: format!(
                "{total} elements exceed mcc's limit of {} (2^28) per tensor",
                mcc_ir::tensor::MAX_ELEMENTS
            ),
        });
    }
    Ok(dims)
}

/// The most bytes of initializers one model may declare (4 GiB): checked over all of them,
/// from their declared shapes, before any is read.
pub const MAX_WEIGHT_BYTES: u128 = 1 << 32;

/// The bytes `t` declares (its shape times its element size), or an error past the
/// per-tensor limit; unknown element types count 0 here (decoding reports them).
pub(crate) fn declared_bytes(t: &pb::TensorProto, name: &str) -> Result<u128, ImportError> {
    let dims = dims_of(t, name)?;
    let size = dtype_of(t.data_type.unwrap_or(0)).map_or(0, |d| d.size());
    Ok(dims.iter().map(|&d| d as u128).product::<u128>() * size as u128)
}

/// Decodes an initializer or attribute tensor. `base` is the model's folder, for external data.
pub(crate) fn from_proto(t: &pb::TensorProto, base: Option<&Path>) -> Result<Tensor, ImportError> {
    let name = t.name.clone().unwrap_or_default();
    let err = |message: String| ImportError::Tensor {
        name: name.clone(),
        message,
    };
    let dtype = dtype_of(t.data_type.unwrap_or(0)).map_err(err)?;
    let dims = dims_of(t, &name)?;
    let n: usize = dims.iter().product();
    if t.data_location == Some(1) {
        let bytes = read_external(t, &name, base, n * dtype.size())?;
        return Tensor::from_le_bytes(dtype, &dims, &bytes).map_err(|e| err(e.to_string()));
    }
    if let Some(raw) = &t.raw_data {
        if raw.len() != n * dtype.size() {
            return Err(err(format!(
                "raw_data holds {} bytes, {n} elements of {dtype} need {}",
                raw.len(),
                n * dtype.size()
            )));
        }
        return Tensor::from_le_bytes(dtype, &dims, raw).map_err(|e| err(e.to_string()));
    }
    let count = |len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(err(format!("holds {len} values for {n} elements")))
        }
    };
    let t = match dtype {
        DType::F32 => {
            count(t.float_data.len())?;
            Tensor::from_vec(&dims, t.float_data.clone())
        }
        DType::F64 => {
            count(t.double_data.len())?;
            Tensor::from_vec(&dims, t.double_data.clone())
        }
        DType::I64 => {
            count(t.int64_data.len())?;
            Tensor::from_vec(&dims, t.int64_data.clone())
        }
        DType::U64 | DType::U32 => {
            count(t.uint64_data.len())?;
            if dtype == DType::U64 {
                Tensor::from_vec(&dims, t.uint64_data.clone())
            } else {
                Tensor::from_vec(&dims, t.uint64_data.iter().map(|&v| v as u32).collect())
            }
        }
        DType::I32 | DType::I16 | DType::I8 | DType::U16 | DType::U8 | DType::Bool => {
            count(t.int32_data.len())?;
            let v = &t.int32_data;
            match dtype {
                DType::I32 => Tensor::from_vec(&dims, v.clone()),
                DType::I16 => Tensor::from_vec(&dims, v.iter().map(|&x| x as i16).collect()),
                DType::I8 => Tensor::from_vec(&dims, v.iter().map(|&x| x as i8).collect()),
                DType::U16 => Tensor::from_vec(&dims, v.iter().map(|&x| x as u16).collect()),
                DType::U8 => Tensor::from_vec(&dims, v.iter().map(|&x| x as u8).collect()),
                _ => Tensor::from_vec(&dims, v.iter().map(|&x| x != 0).collect()),
            }
        }
    };
    t.map_err(|e| err(e.to_string()))
}

fn read_external(
    t: &pb::TensorProto,
    name: &str,
    base: Option<&Path>,
    want: usize,
) -> Result<Vec<u8>, ImportError> {
    let mut location = None;
    let (mut offset, mut length) = (0u64, None);
    for kv in &t.external_data {
        let v = kv.value.clone().unwrap_or_default();
        match kv.key.as_deref() {
            Some("location") => location = Some(v),
            Some("offset") => offset = v.parse().unwrap_or(u64::MAX),
            Some("length") => length = Some(v.parse().unwrap_or(u64::MAX)),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| ImportError::Tensor {
        name: name.into(),
        message: "external data without a `location`".into(),
    })?;
    let rel = Path::new(&location);
    let fail = |message: String| ImportError::ExternalData {
        name: name.into(),
        file: rel.to_path_buf(),
        message,
    };
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(fail(
            "the location must be a relative path inside the model's folder".into(),
        ));
    }
    let base = base.ok_or_else(|| {
        fail("the model was not loaded from a file, so there is no folder to look in".into())
    })?;
    let path = base.join(rel);
    let fail = |message: String| ImportError::ExternalData {
        name: name.into(),
        file: path.clone(),
        message,
    };
    let mut f = std::fs::File::open(&path).map_err(|e| fail(e.to_string()))?;
    let size = f.metadata().map_err(|e| fail(e.to_string()))?.len();
    let len = length.unwrap_or(size.saturating_sub(offset));
    if len != want as u64 {
        return Err(fail(format!(
            "{len} bytes are given, the tensor needs {want}"
        )));
    }
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(fail(format!(
            "bytes {offset}..{} lie beyond the end of the file ({size} bytes)",
            offset.saturating_add(len)
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| fail(e.to_string()))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(want)
        .map_err(|_| fail(format!("cannot allocate {want} bytes for it")))?;
    buf.resize(want, 0);
    f.read_exact(&mut buf).map_err(|e| fail(e.to_string()))?;
    Ok(buf)
}

/// Encodes a tensor as an ONNX `TensorProto` with `raw_data`.
pub(crate) fn to_proto(name: &str, t: &Tensor) -> pb::TensorProto {
    pb::TensorProto {
        name: Some(name.to_string()),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(dtype_code(t.dtype())),
        raw_data: Some(t.to_le_bytes()),
        ..Default::default()
    }
}

/// Decodes a serialized `TensorProto` (the `.pb` files of ONNX's conformance tests).
pub fn tensor_from_bytes(bytes: &[u8], name: &str) -> Result<Tensor, ImportError> {
    use prost::Message;
    let t = pb::TensorProto::decode(bytes).map_err(|e| ImportError::Tensor {
        name: name.into(),
        message: format!("not a TensorProto: {e}"),
    })?;
    from_proto(&t, None)
}

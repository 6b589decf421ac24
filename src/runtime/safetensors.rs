//! A minimal reader of `.safetensors` files (8-byte little-endian header length, JSON header,
//! raw little-endian data), for the reference data bundled with model directories.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// A tensor of a safetensors file: dtype, shape and raw bytes.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// `F32`, `I64`, `U8`, ...
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// The values as f32 (`F32` tensors only).
    pub fn f32s(&self) -> Option<Vec<f32>> {
        (self.dtype == "F32").then(|| {
            self.bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
    }

    /// The values as i64 (`I64` tensors only).
    pub fn i64s(&self) -> Option<Vec<i64>> {
        (self.dtype == "I64").then(|| {
            self.bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect()
        })
    }
}

/// Largest constants or reference tensor file read whole (a full-size model's reference cases
/// take tens of MB).
pub const MAX_SAFETENSORS_BYTES: u64 = 4 << 30;

/// Reads every tensor of the safetensors file at `path`; the error is one sentence without the
/// path (callers wrap it in their own error type).
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, RawTensor>, String> {
    let data = super::read_regular_file(path, MAX_SAFETENSORS_BYTES)?;
    let n = data
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or("too short for a safetensors file")?;
    let end = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= data.len())
        .ok_or("the header runs past the end of the file")?;
    let header: HashMap<String, serde_json::Value> = serde_json::from_slice(&data[8..end])
        .map_err(|e| format!("malformed safetensors header: {e}"))?;
    let body = &data[end..];
    #[derive(Deserialize)]
    struct Info {
        dtype: String,
        shape: Vec<usize>,
        data_offsets: [usize; 2],
    }
    let mut out = HashMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let info: Info = serde_json::from_value(v).map_err(|e| format!("tensor `{name}`: {e}"))?;
        let [a, b] = info.data_offsets;
        let bytes = body
            .get(a..b)
            .ok_or_else(|| format!("tensor `{name}` runs past the end of the file"))?
            .to_vec();
        let width = match info.dtype.as_str() {
            "F32" | "I32" => 4,
            "I64" | "F64" => 8,
            "F16" | "BF16" => 2,
            "U8" | "BOOL" => 1,
            _ => 0, // other dtypes are kept unchecked
        };
        if width > 0 && info.shape.iter().product::<usize>() * width != bytes.len() {
            return Err(format!(
                "tensor `{name}` has {} bytes for shape {:?} {}",
                bytes.len(),
                info.shape,
                info.dtype
            ));
        }
        out.insert(
            name,
            RawTensor {
                dtype: info.dtype,
                shape: info.shape,
                bytes,
            },
        );
    }
    Ok(out)
}

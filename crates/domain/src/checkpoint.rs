//! A checkpoint as the service keeps it: the training position and named tensors as host
//! bytes. The engine turns its tensors into these and back; the store writes and reads
//! them. Neither side's types leak into the other: no tch here, no file format.

/// The element type of a [`HostTensor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::I32 | Self::F32 => 4,
            Self::I64 | Self::F64 => 8,
        }
    }
}

/// A dense tensor in host memory: little-endian elements in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl HostTensor {
    /// A tensor of `dtype` and `shape` over `data`, or why they do not agree.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Self, String> {
        let want = shape.iter().product::<usize>() * dtype.size();
        if data.len() != want {
            return Err(format!(
                "a {dtype:?} tensor of shape {shape:?} needs {want} bytes, got {}",
                data.len()
            ));
        }
        Ok(Self { dtype, shape, data })
    }

    /// A 0-dimensional i64.
    pub fn scalar_i64(v: i64) -> Self {
        Self {
            dtype: DType::I64,
            shape: Vec::new(),
            data: v.to_le_bytes().to_vec(),
        }
    }

    /// The value of a one-element integer tensor.
    pub fn as_i64(&self) -> Option<i64> {
        let n: usize = self.shape.iter().product();
        if n != 1 {
            return None;
        }
        let d = &self.data;
        Some(match self.dtype {
            DType::I64 => i64::from_le_bytes(d[..8].try_into().ok()?),
            DType::I32 => i64::from(i32::from_le_bytes(d[..4].try_into().ok()?)),
            DType::I16 => i64::from(i16::from_le_bytes(d[..2].try_into().ok()?)),
            DType::I8 => i64::from(d[0] as i8),
            DType::U8 | DType::Bool => i64::from(d[0]),
            _ => return None,
        })
    }
}

/// Everything needed to continue a run, bit for bit: after the end of `epoch` when
/// `iteration` is 0, otherwise inside `epoch` after its first `iteration` batches (taken
/// when a job is stopped mid-epoch; it then also holds the epoch's outputs so far).
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub epoch: u32,
    pub iteration: u32,
    pub global_step: u64,
    /// Position of the dropout generator's stream.
    pub dropout_word_pos: u128,
    /// Model variables (`model.<name>`), optimizer state (`opt.<name>`) and whatever else
    /// the engine needs to resume, by name.
    pub tensors: Vec<(String, HostTensor)>,
}

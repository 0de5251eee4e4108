//! Between the engine's tensors and the service's host-memory checkpoint
//! ([`gradstream_domain::Checkpoint`]), which is what the store writes.

use gradstream_domain::{Checkpoint, DType, HostTensor};
use tch::{Device, Kind, Tensor};

use super::{EngineError, TrainingState};

fn dtype(kind: Kind) -> Result<DType, EngineError> {
    Ok(match kind {
        Kind::Bool => DType::Bool,
        Kind::Uint8 => DType::U8,
        Kind::Int8 => DType::I8,
        Kind::Int16 => DType::I16,
        Kind::Int => DType::I32,
        Kind::Int64 => DType::I64,
        Kind::Half => DType::F16,
        Kind::BFloat16 => DType::BF16,
        Kind::Float => DType::F32,
        Kind::Double => DType::F64,
        other => {
            return Err(EngineError::Internal(format!(
                "a checkpoint cannot hold a tensor of kind {other:?}"
            )));
        }
    })
}

fn kind(dtype: DType) -> Kind {
    match dtype {
        DType::Bool => Kind::Bool,
        DType::U8 => Kind::Uint8,
        DType::I8 => Kind::Int8,
        DType::I16 => Kind::Int16,
        DType::I32 => Kind::Int,
        DType::I64 => Kind::Int64,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
    }
}

/// A copy of `t` in host memory (any device, any layout).
pub fn to_host(t: &Tensor) -> Result<HostTensor, EngineError> {
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
    let dtype = dtype(t.f_kind()?)?;
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let numel: usize = shape.iter().product();
    let mut data = vec![0u8; numel * dtype.size()];
    if numel > 0 {
        t.f_copy_data_u8(&mut data, numel)?;
    }
    Ok(HostTensor { dtype, shape, data })
}

/// A CPU tensor with the contents of `h`.
pub fn from_host(h: &HostTensor) -> Result<Tensor, EngineError> {
    let size: Vec<i64> = h.shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(&h.data, &size, kind(h.dtype))?)
}

impl TrainingState {
    /// This state in host memory, for the store.
    pub fn into_checkpoint(self) -> Result<Checkpoint, EngineError> {
        Ok(Checkpoint {
            epoch: self.epoch,
            iteration: self.iteration,
            global_step: self.global_step,
            dropout_word_pos: self.dropout_word_pos,
            tensors: self
                .tensors
                .iter()
                .map(|(n, t)| Ok((n.clone(), to_host(t)?)))
                .collect::<Result<_, EngineError>>()?,
        })
    }

    /// A stored checkpoint as tensors on the CPU.
    pub fn from_checkpoint(c: &Checkpoint) -> Result<Self, EngineError> {
        Ok(Self {
            epoch: c.epoch,
            iteration: c.iteration,
            global_step: c.global_step,
            dropout_word_pos: c.dropout_word_pos,
            tensors: c
                .tensors
                .iter()
                .map(|(n, h)| Ok((n.clone(), from_host(h)?)))
                .collect::<Result<_, EngineError>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_a_checkpoint_holds_round_trips_bit_for_bit() {
        let base = Tensor::from_slice(&[1.5f64, -2.25, 0.0, 1e-300, f64::MAX, 7.0]).view([2, 3]);
        for k in [
            Kind::Float,
            Kind::Double,
            Kind::Int64,
            Kind::Int,
            Kind::Uint8,
            Kind::Half,
            Kind::BFloat16,
            Kind::Bool,
        ] {
            let t = base.to_kind(k);
            let back = from_host(&to_host(&t).unwrap()).unwrap();
            assert_eq!(back.kind(), k);
            assert_eq!(back.size(), vec![2, 3]);
            assert!(back.equal(&t), "{k:?}");
        }
        // A non-contiguous view and a scalar.
        let tr = base.tr();
        assert!(from_host(&to_host(&tr).unwrap()).unwrap().equal(&tr));
        let s = Tensor::from(42i64);
        let h = to_host(&s).unwrap();
        assert_eq!(h.as_i64(), Some(42));
        assert!(from_host(&h).unwrap().equal(&s));
    }
}

//! Element types of array files, decoded to `f64` (exact for every type but 64-bit
//! integers beyond 2^53, which no feature or label needs).

/// Byte order of multi-byte elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

/// One element's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    Float { bytes: usize, order: ByteOrder },
    Int { bytes: usize, order: ByteOrder },
    Uint { bytes: usize, order: ByteOrder },
    Bool,
}

impl ElementType {
    pub fn size(self) -> usize {
        match self {
            Self::Float { bytes, .. } | Self::Int { bytes, .. } | Self::Uint { bytes, .. } => bytes,
            Self::Bool => 1,
        }
    }

    pub fn is_integer(self) -> bool {
        matches!(self, Self::Int { .. } | Self::Uint { .. } | Self::Bool)
    }

    /// A NumPy `descr` such as `<f4`, `>i8`, `|u1`, `|b1`; `None` for any other.
    pub fn from_numpy(descr: &str) -> Option<Self> {
        let mut chars = descr.chars();
        let order = match chars.next()? {
            '<' => ByteOrder::Little,
            '>' => ByteOrder::Big,
            // Native ('=') is little-endian on every platform NumPy writes .npy files on
            // that we run on; '|' means the order does not apply (one byte).
            '=' | '|' => ByteOrder::Little,
            _ => return None,
        };
        let kind = chars.next()?;
        let bytes: usize = chars.as_str().parse().ok()?;
        match (kind, bytes) {
            ('f', 2 | 4 | 8) => Some(Self::Float { bytes, order }),
            ('i', 1 | 2 | 4 | 8) => Some(Self::Int { bytes, order }),
            ('u', 1 | 2 | 4 | 8) => Some(Self::Uint { bytes, order }),
            ('b', 1) => Some(Self::Bool),
            _ => None,
        }
    }

    /// An IDX type code (0x08 unsigned byte … 0x0E double), always big-endian.
    pub fn from_idx(code: u8) -> Option<Self> {
        let order = ByteOrder::Big;
        match code {
            0x08 => Some(Self::Uint { bytes: 1, order }),
            0x09 => Some(Self::Int { bytes: 1, order }),
            0x0B => Some(Self::Int { bytes: 2, order }),
            0x0C => Some(Self::Int { bytes: 4, order }),
            0x0D => Some(Self::Float { bytes: 4, order }),
            0x0E => Some(Self::Float { bytes: 8, order }),
            _ => None,
        }
    }

    /// Decodes one element (`b.len() == self.size()`).
    pub fn decode(self, b: &[u8]) -> f64 {
        fn word<const N: usize>(b: &[u8], order: ByteOrder) -> [u8; N] {
            let mut w = [0u8; N];
            w.copy_from_slice(b);
            if order == ByteOrder::Big {
                w.reverse();
            }
            w
        }
        match self {
            Self::Bool => f64::from(u8::from(b[0] != 0)),
            Self::Float { bytes: 2, order } => half_to_f64(u16::from_le_bytes(word(b, order))),
            Self::Float { bytes: 4, order } => f64::from(f32::from_le_bytes(word(b, order))),
            Self::Float { order, .. } => f64::from_le_bytes(word(b, order)),
            Self::Int { bytes: 1, .. } => f64::from(b[0] as i8),
            Self::Int { bytes: 2, order } => f64::from(i16::from_le_bytes(word(b, order))),
            Self::Int { bytes: 4, order } => f64::from(i32::from_le_bytes(word(b, order))),
            Self::Int { order, .. } => i64::from_le_bytes(word(b, order)) as f64,
            Self::Uint { bytes: 1, .. } => f64::from(b[0]),
            Self::Uint { bytes: 2, order } => f64::from(u16::from_le_bytes(word(b, order))),
            Self::Uint { bytes: 4, order } => f64::from(u32::from_le_bytes(word(b, order))),
            Self::Uint { order, .. } => u64::from_le_bytes(word(b, order)) as f64,
        }
    }
}

/// IEEE 754 half precision to `f64`.
fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_descrs_and_decoding() {
        let f4 = ElementType::from_numpy("<f4").unwrap();
        assert_eq!(f4.decode(&1.5f32.to_le_bytes()), 1.5);
        let be = ElementType::from_numpy(">i2").unwrap();
        assert_eq!(be.decode(&(-3i16).to_be_bytes()), -3.0);
        let h = ElementType::from_numpy("<f2").unwrap();
        assert_eq!(h.decode(&0x3c00u16.to_le_bytes()), 1.0);
        assert_eq!(h.decode(&0xc000u16.to_le_bytes()), -2.0);
        assert!(h.decode(&0x7e00u16.to_le_bytes()).is_nan());
        assert_eq!(ElementType::from_numpy("|b1").unwrap().decode(&[2]), 1.0);
        assert_eq!(ElementType::from_numpy("<U8"), None);
        assert_eq!(ElementType::from_numpy("<c16"), None);
        assert_eq!(ElementType::from_numpy("O"), None);
    }

    #[test]
    fn idx_codes_are_big_endian() {
        let f = ElementType::from_idx(0x0D).unwrap();
        assert_eq!(f.decode(&0.25f32.to_be_bytes()), 0.25);
        assert_eq!(ElementType::from_idx(0x08).unwrap().decode(&[255]), 255.0);
        assert_eq!(ElementType::from_idx(0x0A), None);
    }
}

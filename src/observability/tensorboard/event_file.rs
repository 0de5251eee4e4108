//! One TensorBoard event file: TFRecord framing (little-endian u64 length, masked CRC32C of
//! the length, the payload, masked CRC32C of the payload) around `Event` protobufs, the
//! first of which names the file version.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::proto::{Event, What};

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// TFRecord's masked CRC32C.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = CRC32C.checksum(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Seconds since the epoch, as TensorBoard's `wall_time`.
pub fn wall_time(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub struct EventFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventFile {
    /// Creates `dir` if needed and a new event file in it,
    /// `events.out.tfevents.<seconds>.<host>.<pid>`, starting with its version record.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .unwrap_or_else(|| "localhost".into());
        let path = dir.join(format!(
            "events.out.tfevents.{secs}.{host}.{}",
            std::process::id()
        ));
        let out = BufWriter::new(File::create_new(&path)?);
        let mut file = Self { path, out };
        file.write(&Event {
            wall_time: wall_time(now),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (buffered: see [`EventFile::flush`]).
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        let payload = event.encode_to_vec();
        let len = (payload.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(&payload)?;
        self.out.write_all(&masked_crc(&payload).to_le_bytes())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorboard() {
        // `tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c(b"123456789")`
        // (CRC32C's check value 0xE3069283, masked).
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }
}

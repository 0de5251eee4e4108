//! Training batches streamed from a stored dataset ([`ShardedDataset`]) with bounded
//! memory: each epoch visits the shards in a seeded order and mixes their training rows
//! through a shuffle buffer of at most `shuffle_buffer` rows (tf.data's and WebDataset's
//! scheme), on a producer thread that prepares (normalizes) batches into a queue of at
//! most `prefetch` ready batches, so that reading overlaps training. The same seed gives
//! the same batches, bit for bit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::{Batch, BatchLoader, EngineError};
use gradstream_data::shards::ShardedDataset;
use gradstream_data::{DataError, HeldOut, Normalizer};

/// A batch as the producer prepares it: normalized rows and their classes.
struct Prepared {
    features: Vec<f32>,
    targets: Vec<i64>,
}

/// How the loader reads: sizes of its buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamingOptions {
    pub batch_size: usize,
    /// Rows mixed at once (at least 1).
    pub shuffle_buffer: usize,
    /// Batches prepared ahead (at least 1).
    pub prefetch: usize,
}

/// The training rows of a stored dataset (every row `held_out` does not mark), streamed.
pub struct StreamingLoader {
    data: Arc<ShardedDataset>,
    held_out: Arc<HeldOut>,
    normalizer: Arc<Normalizer>,
    options: StreamingOptions,
    samples: usize,
    seed: u64,
    device: Device,
    /// Rows in the shuffle buffer, the batch being filled and the queue, now and at most.
    held: Arc<Held>,
    error: Option<EngineError>,
}

#[derive(Default)]
struct Held {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Held {
    fn add(&self, n: usize) {
        let now = self.now.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.now.fetch_sub(n, Ordering::Relaxed);
    }
}

impl StreamingLoader {
    pub fn new(
        data: Arc<ShardedDataset>,
        held_out: Arc<HeldOut>,
        normalizer: Arc<Normalizer>,
        options: StreamingOptions,
        seed: u64,
        device: Device,
    ) -> Self {
        let m = &data.manifest;
        let held_rows = held_out.count();
        let samples = m.rows as usize - held_rows;
        Self {
            samples,
            data,
            held_out,
            normalizer,
            options: StreamingOptions {
                batch_size: options.batch_size.max(1),
                // More than every training row would only allocate.
                shuffle_buffer: options.shuffle_buffer.min(samples).max(1),
                prefetch: options.prefetch.max(1),
            },
            seed,
            device,
            held: Arc::default(),
            error: None,
        }
    }

    /// The most rows the loader has held at once (shuffle buffer, the batch being filled
    /// and prepared batches not yet taken by training), since it was made.
    pub fn peak_rows_held(&self) -> usize {
        self.held.peak.load(Ordering::Relaxed)
    }

    /// The bound [`Self::peak_rows_held`] never exceeds.
    pub fn row_bound(&self) -> usize {
        let o = self.options;
        o.shuffle_buffer + (o.prefetch + 1) * o.batch_size
    }
}

impl BatchLoader for StreamingLoader {
    fn samples(&self) -> usize {
        self.samples
    }

    fn batch_size(&self) -> usize {
        self.options.batch_size
    }

    fn epoch(&mut self, epoch: u32) -> Box<dyn Iterator<Item = Batch> + '_> {
        let (tx, rx) = sync_channel(self.options.prefetch - 1);
        let producer = Producer {
            data: self.data.clone(),
            held_out: self.held_out.clone(),
            normalizer: self.normalizer.clone(),
            options: self.options,
            held: self.held.clone(),
            seed: self.seed ^ (u64::from(epoch) << 32),
        };
        let thread = std::thread::Builder::new()
            .name("batch-producer".into())
            .spawn(move || producer.run(&tx))
            .expect("a thread can be started");
        Box::new(Batches {
            rx: Some(rx),
            thread: Some(thread),
            loader: self,
        })
    }

    fn take_error(&mut self) -> Option<EngineError> {
        self.error.take()
    }
}

/// One epoch's batches as training takes them.
struct Batches<'a> {
    rx: Option<Receiver<Result<Prepared, DataError>>>,
    thread: Option<JoinHandle<()>>,
    loader: &'a mut StreamingLoader,
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        match self.rx.as_ref()?.recv() {
            Ok(Ok(p)) => {
                let n = p.targets.len();
                self.loader.held.sub(n);
                let width = self.loader.data.manifest.width as i64;
                let device = self.loader.device;
                Some(Batch {
                    features: Tensor::from_slice(&p.features)
                        .view([n as i64, width])
                        .to_device(device),
                    targets: Tensor::from_slice(&p.targets).to_device(device),
                })
            }
            Ok(Err(e)) => {
                self.loader.error = Some(EngineError::Internal(format!(
                    "reading the stored dataset failed: {e}"
                )));
                self.rx = None;
                None
            }
            // The producer ended: the epoch is complete, unless it panicked.
            Err(_) => {
                self.rx = None;
                if let Some(t) = self.thread.take()
                    && t.join().is_err()
                {
                    self.loader.error = Some(EngineError::Internal(
                        "the batch producer failed; see the server log".into(),
                    ));
                }
                None
            }
        }
    }
}

impl Drop for Batches<'_> {
    fn drop(&mut self) {
        // Dropping the receiver makes the producer's next send fail, so it stops.
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.loader.held.now.store(0, Ordering::Relaxed);
    }
}

/// The producer thread's state for one epoch.
struct Producer {
    data: Arc<ShardedDataset>,
    held_out: Arc<HeldOut>,
    normalizer: Arc<Normalizer>,
    options: StreamingOptions,
    held: Arc<Held>,
    seed: u64,
}

impl Producer {
    fn run(self, tx: &SyncSender<Result<Prepared, DataError>>) {
        if let Err(e) = self.produce(tx) {
            let _ = tx.send(Err(e));
        }
    }

    /// Sends the epoch's batches; `Ok` also when training stopped taking them.
    fn produce(&self, tx: &SyncSender<Result<Prepared, DataError>>) -> Result<(), DataError> {
        let m = &self.data.manifest;
        let (width, k) = (m.width, m.labels.len());
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        // Each shard's first ordinal per class, in storage order: the split is by ordinal.
        let mut firsts = Vec::with_capacity(m.shards.len());
        let mut next = vec![0usize; k];
        for shard in &m.shards {
            firsts.push(next.clone());
            for (n, &c) in next.iter_mut().zip(&shard.class_counts) {
                *n += c as usize;
            }
        }
        let mut order: Vec<usize> = (0..m.shards.len()).collect();
        order.shuffle(&mut rng);

        let cap = self.options.shuffle_buffer;
        let mut buffer = RowBuffer::new(width, cap);
        let mut batch = Prepared::with_capacity(self.options.batch_size, width);
        let mut row = vec![0f32; width];
        for &s in &order {
            let mut ordinal = firsts[s].clone();
            let mut cursor = self.data.shard(s)?;
            while let Some(class) = cursor.next_row(&mut row)? {
                let k = ordinal[class];
                ordinal[class] += 1;
                if self.held_out.is_held_out(class, k) {
                    continue;
                }
                self.normalizer.apply_row(&mut row);
                if buffer.len() < cap {
                    buffer.push(&row, class);
                    self.held.add(1);
                    continue;
                }
                // Full: a random buffered row leaves for the batch, the new one takes its place.
                let j = rng.random_range(0..cap);
                batch.push(buffer.row(j), buffer.class(j));
                buffer.replace(j, &row, class);
                self.held.add(1);
                if !self.emit_if_full(&mut batch, tx) {
                    return Ok(());
                }
            }
        }
        // Drain what is left in random order.
        while buffer.len() > 0 {
            let j = rng.random_range(0..buffer.len());
            let (r, c) = buffer.swap_remove(j);
            batch.push(&r, c);
            if !self.emit_if_full(&mut batch, tx) {
                return Ok(());
            }
        }
        if !batch.targets.is_empty() {
            let _ = tx.send(Ok(batch));
        }
        Ok(())
    }

    /// Sends `batch` when it is full; `false` when training no longer takes batches.
    fn emit_if_full(
        &self,
        batch: &mut Prepared,
        tx: &SyncSender<Result<Prepared, DataError>>,
    ) -> bool {
        if batch.targets.len() < self.options.batch_size {
            return true;
        }
        let width = self.data.manifest.width;
        let full = std::mem::replace(
            batch,
            Prepared::with_capacity(self.options.batch_size, width),
        );
        tx.send(Ok(full)).is_ok()
    }
}

impl Prepared {
    fn with_capacity(rows: usize, width: usize) -> Self {
        Self {
            features: Vec::with_capacity(rows * width),
            targets: Vec::with_capacity(rows),
        }
    }

    fn push(&mut self, row: &[f32], class: usize) {
        self.features.extend_from_slice(row);
        self.targets.push(class as i64);
    }
}

/// The shuffle buffer: rows of `width` in one allocation.
struct RowBuffer {
    width: usize,
    features: Vec<f32>,
    classes: Vec<usize>,
}

impl RowBuffer {
    fn new(width: usize, cap: usize) -> Self {
        Self {
            width,
            features: Vec::with_capacity(cap * width),
            classes: Vec::with_capacity(cap),
        }
    }

    fn len(&self) -> usize {
        self.classes.len()
    }

    fn push(&mut self, row: &[f32], class: usize) {
        self.features.extend_from_slice(row);
        self.classes.push(class);
    }

    fn row(&self, j: usize) -> &[f32] {
        &self.features[j * self.width..(j + 1) * self.width]
    }

    fn class(&self, j: usize) -> usize {
        self.classes[j]
    }

    fn replace(&mut self, j: usize, row: &[f32], class: usize) {
        self.features[j * self.width..(j + 1) * self.width].copy_from_slice(row);
        self.classes[j] = class;
    }

    fn swap_remove(&mut self, j: usize) -> (Vec<f32>, usize) {
        let last = self.len() - 1;
        let row = self.row(j).to_vec();
        let class = self.classes.swap_remove(j);
        if j != last {
            let (a, b) = self.features.split_at_mut(last * self.width);
            a[j * self.width..(j + 1) * self.width].copy_from_slice(&b[..self.width]);
        }
        self.features.truncate(last * self.width);
        (row, class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradstream_data::shards::{ShardWriter, SourceInfo};
    use gradstream_data::stratified_split;

    /// 1,000 rows whose first feature is the row's index, 3 classes, shards of 97 rows.
    fn stored(dir: &std::path::Path) -> Arc<ShardedDataset> {
        let at = dir.join("d");
        let names = vec!["i".into(), "x".into()];
        let mut w = ShardWriter::with_shard_rows(&at, 2, vec![2], names, 97).unwrap();
        for i in 0..1000 {
            let class = ["a", "b", "c"][(i * 7 % 11) % 3];
            w.push(&[i as f32, (i % 13) as f32], class).unwrap();
        }
        let source = SourceInfo {
            description: "test".into(),
            sha256: String::new(),
            bytes: 0,
        };
        w.finish(
            |n| {
                let mut s: Vec<&String> = n.iter().collect();
                s.sort();
                n.iter()
                    .map(|x| s.iter().position(|y| *y == x).unwrap())
                    .collect()
            },
            source,
        )
        .unwrap();
        Arc::new(ShardedDataset::open(&at).unwrap())
    }

    fn loader(data: &Arc<ShardedDataset>, seed: u64) -> StreamingLoader {
        let m = &data.manifest;
        let counts: Vec<usize> = m.class_counts.iter().map(|&n| n as usize).collect();
        let identity = Normalizer {
            mean: vec![0.0; m.width],
            std: vec![1.0; m.width],
        };
        let options = StreamingOptions {
            batch_size: 16,
            shuffle_buffer: 50,
            prefetch: 2,
        };
        StreamingLoader::new(
            data.clone(),
            Arc::new(HeldOut::new(&counts, 0.2, 9)),
            Arc::new(identity),
            options,
            seed,
            Device::Cpu,
        )
    }

    fn rows_of(batches: impl Iterator<Item = Batch>) -> Vec<(Vec<f32>, Vec<i64>)> {
        batches
            .map(|b| {
                (
                    Vec::<f32>::try_from(&b.features.flatten(0, -1)).unwrap(),
                    Vec::<i64>::try_from(&b.targets).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn every_training_row_once_per_epoch_the_split_of_the_rows_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let data = stored(dir.path());
        let in_memory = data.load().unwrap();
        let split = stratified_split(&in_memory, 0.2, 9);
        let mut l = loader(&data, 1);
        assert_eq!(l.samples(), split.train.len());
        let batches = rows_of(l.epoch(1));
        assert_eq!(batches.len(), l.batches_per_epoch());
        let mut seen = Vec::new();
        for (x, y) in &batches {
            for (row, &class) in x.chunks_exact(2).zip(y) {
                let i = row[0] as usize;
                assert_eq!(
                    in_memory.targets[i], class as usize,
                    "row {i} keeps its class"
                );
                assert_eq!(row[1], (i % 13) as f32, "row {i} keeps its features");
                seen.push(i);
            }
        }
        let in_order: Vec<usize> = seen.clone();
        seen.sort_unstable();
        assert_eq!(seen, split.train);
        assert_ne!(in_order, split.train, "the rows are shuffled");
        // The buffers bound what the loader holds, far below the 800 training rows.
        assert!(
            l.peak_rows_held() <= l.row_bound(),
            "{} > {}",
            l.peak_rows_held(),
            l.row_bound()
        );
        assert!(l.row_bound() < 200);
    }

    #[test]
    fn same_seed_same_batches_bit_for_bit_and_epochs_differ() {
        let dir = tempfile::tempdir().unwrap();
        let data = stored(dir.path());
        let (mut a, mut b) = (loader(&data, 5), loader(&data, 5));
        let first = rows_of(a.epoch(1));
        assert_eq!(first, rows_of(b.epoch(1)));
        assert_ne!(first, rows_of(a.epoch(2)));
        assert_ne!(first, rows_of(loader(&data, 6).epoch(1)));
    }

    #[test]
    fn a_stopped_epoch_stops_its_producer_and_a_damaged_shard_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let data = stored(dir.path());
        let mut l = loader(&data, 2);
        assert_eq!(l.epoch(1).take(3).count(), 3);
        // Dropped after three batches: the producer was joined and the next epoch is whole.
        assert_eq!(l.epoch(2).count(), l.batches_per_epoch());
        assert!(l.take_error().is_none());

        // A shard cut short after the manifest was checked fails the epoch, named.
        let shard = data.dir().join("shard-000004.f32");
        let len = std::fs::metadata(&shard).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&shard)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let n = l.epoch(3).count();
        assert!(n < l.batches_per_epoch());
        let e = l.take_error().expect("the error is kept").to_string();
        assert!(e.contains("shard-000004.f32"), "{e}");
    }
}

//! TensorBoard export (`--tensorboard-dir DIR`): every job writes standard event files
//! under `DIR/<job name>-<id prefix>/` as it trains, so `tensorboard --logdir DIR` shows
//! gradstream jobs beside a user's own runs. Fed from the job's *committed* events (the
//! writer thread hands each to [`TensorBoard::event_committed`]), written by a thread of its
//! own so that a slow disk never holds back a commit. A write that fails is logged, that
//! job's export stops, and the job carries on.

mod event_file;
mod proto;
mod summaries;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use event_file::EventFile;
use proto::{Event, Summary, What};

use crate::domain::{EventKind, JobEvent};

enum Message {
    Event {
        dir: String,
        event: Arc<JobEvent>,
    },
    /// Answered once everything sent before it is written and flushed.
    Flush(mpsc::Sender<()>),
}

/// The exporter of one server.
pub struct TensorBoard {
    tx: mpsc::Sender<Message>,
}

impl TensorBoard {
    /// Starts the export thread, writing under `root` (created when the first job writes);
    /// it ends when the `TensorBoard` is dropped.
    pub fn start(root: PathBuf) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("tensorboard".into())
            .spawn(move || Exporter::new(root).run(&rx))?;
        Ok(Self { tx })
    }

    /// The folder of a job's event files under the export root: its name made safe for a
    /// path (letters, digits, `-`, `_`, `.`), then the id's first 8 characters, so that two
    /// jobs of one name stay apart.
    pub fn job_dir(job_id: &str, name: &str) -> String {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let id = &job_id[..8.min(job_id.len())];
        match safe.trim_matches('.') {
            "" => id.to_string(),
            name => format!("{name}-{id}"),
        }
    }

    /// A job event was committed: its summaries are written.
    pub fn event_committed(&self, job_name: &str, event: &Arc<JobEvent>) {
        let dir = Self::job_dir(&event.job_id, job_name);
        let _ = self.tx.send(Message::Event {
            dir,
            event: event.clone(),
        });
    }

    /// Waits until everything sent so far is on disk.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

/// A job's export: its open file, or why it stopped.
enum JobFile {
    Open(EventFile),
    Failed,
}

struct Exporter {
    root: PathBuf,
    jobs: HashMap<String, JobFile>,
}

impl Exporter {
    fn new(root: PathBuf) -> Self {
        Self {
            root,
            jobs: HashMap::new(),
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Message>) {
        while let Ok(first) = rx.recv() {
            let mut flushed = Vec::new();
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Event { dir, event } => self.write(&dir, &event),
                    Message::Flush(done) => flushed.push(done),
                }
                next = rx.try_recv().ok();
            }
            self.flush_all();
            for done in flushed {
                let _ = done.send(());
            }
        }
    }

    fn write(&mut self, dir: &str, event: &JobEvent) {
        let ended = matches!(&event.kind, EventKind::Status { status, .. } if status.is_terminal());
        if let Some((step, values)) = summaries::of(event) {
            let record = Event {
                wall_time: event_file::wall_time(event.time),
                step,
                what: Some(What::Summary(Summary { value: values })),
            };
            let root = self.root.clone();
            let file = self
                .jobs
                .entry(dir.to_string())
                .or_insert_with(|| open(&root.join(dir), &event.job_id));
            if let JobFile::Open(f) = file
                && let Err(e) = f.write(&record)
            {
                failed(&event.job_id, f.path(), &e);
                *file = JobFile::Failed;
            }
        }
        if ended
            && let Some(JobFile::Open(mut f)) = self.jobs.remove(dir)
            && let Err(e) = f.flush()
        {
            failed(&event.job_id, f.path(), &e);
        }
    }

    fn flush_all(&mut self) {
        for file in self.jobs.values_mut() {
            if let JobFile::Open(f) = file
                && let Err(e) = f.flush()
            {
                failed("", f.path(), &e);
                *file = JobFile::Failed;
            }
        }
    }
}

fn open(dir: &Path, job_id: &str) -> JobFile {
    match EventFile::create(dir) {
        Ok(f) => JobFile::Open(f),
        Err(e) => {
            failed(job_id, dir, &e);
            JobFile::Failed
        }
    }
}

fn failed(job_id: &str, path: &Path, e: &std::io::Error) {
    tracing::warn!(
        job = job_id,
        path = %path.display(),
        error = %e,
        "TensorBoard export stopped for this job; the job itself is unaffected"
    );
}

#[cfg(test)]
mod tests {
    use super::TensorBoard;

    #[test]
    fn job_folders_are_safe_and_distinct() {
        let id = "0123456789abcdef";
        assert_eq!(TensorBoard::job_dir(id, "mnist run"), "mnist_run-01234567");
        assert_eq!(TensorBoard::job_dir(id, "../../etc"), "_.._etc-01234567");
        assert_eq!(TensorBoard::job_dir(id, ".."), "01234567");
        assert_eq!(TensorBoard::job_dir(id, ""), "01234567");
    }
}

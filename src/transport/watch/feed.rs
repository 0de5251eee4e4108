//! A job's events encoded once: one log of gRPC frames per watched job, filled by one task
//! from one [`Subscription`], read by every `WatchJob` stream of that job.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};

use http_body::Frame;
use prost::Message;
use prost::bytes::{BufMut, Bytes};
use tokio::sync::{oneshot, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::WatchStream;
use tonic::Status;
use tonic::codegen::http::{HeaderMap, HeaderName, HeaderValue};

use crate::domain::JobEvent;
use crate::jobs::{JobError, JobManager, Subscription};
use crate::observability::{WatcherGuard, WatcherKind};
use crate::transport::{pb, status};

/// Encoded events a stream takes from the log at once (reference counts, not copies).
const CATCH_UP: usize = 64;

/// The encoded logs of the jobs being watched, by job id. A log lives while a stream
/// reads it: the last stream of a job to end frees it, and a later watcher fills a new one
/// from the job's log (lazily, from seq 1).
#[derive(Clone, Default)]
pub struct Feeds {
    logs: Arc<Mutex<HashMap<String, Weak<Feed>>>>,
}

impl Feeds {
    /// A stream of job `id`'s encoded events from `from_seq` (1-based; 0 means 1): each
    /// event once, in order, once it is on disk, as the gRPC frame of a `pb::JobEvent`.
    pub fn watch(
        &self,
        jobs: &JobManager,
        id: &str,
        from_seq: u64,
    ) -> Result<FeedStream, JobError> {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let feed = match logs.get(id).and_then(Weak::upgrade) {
            Some(feed) => feed,
            None => {
                let feed = Feed::start(id, jobs.subscribe(id, 1)?);
                logs.retain(|_, f| f.strong_count() > 0);
                logs.insert(id.to_string(), Arc::downgrade(&feed));
                feed
            }
        };
        drop(logs);
        let watcher = jobs.metrics().watcher(WatcherKind::WatchJob);
        Ok(FeedStream::new(feed, from_seq, watcher))
    }

    /// Job `id` was deleted: its encoded log is freed now, and streams that had not read
    /// it to the end end with NOT_FOUND, as a new watcher of the job would.
    pub fn forget(&self, id: &str) {
        let feed = self
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
            .and_then(|f| f.upgrade());
        if let Some(feed) = feed {
            feed.discard();
        }
    }
}

/// One job's encoded log.
pub struct Feed {
    job_id: String,
    log: RwLock<Log>,
    /// Bumped after the log grows or ends; streams wait on it.
    grew: watch::Sender<()>,
    /// Dropped with the feed (when its last stream ends), which stops the filling task.
    _filled: oneshot::Receiver<()>,
}

#[derive(Default)]
struct Log {
    /// Event seq `i + 1`: its gRPC frame (uncompressed flag, length, `pb::JobEvent`).
    events: Vec<Bytes>,
    /// The job's log ended: nothing follows `events`.
    ended: bool,
    /// The job was deleted.
    discarded: bool,
}

impl Feed {
    /// A feed of `sub`'s events, filled by a task of its own until the job's log ends or
    /// the feed is dropped.
    fn start(job_id: &str, sub: Subscription) -> Arc<Feed> {
        let (stop, filled) = oneshot::channel();
        let feed = Arc::new(Feed {
            job_id: job_id.to_string(),
            log: RwLock::new(Log::default()),
            grew: watch::channel(()).0,
            _filled: filled,
        });
        tokio::spawn(fill(Arc::downgrade(&feed), sub, stop));
        feed
    }

    fn update(&self, f: impl FnOnce(&mut Log)) {
        f(&mut self.log.write().unwrap_or_else(|e| e.into_inner()));
        // Never waits, whoever watches.
        self.grew.send_replace(());
    }

    fn discard(&self) {
        self.update(|log| {
            log.events = Vec::new();
            log.discarded = true;
        });
    }
}

/// Encodes each event of `sub` once and appends it to `feed`. Watchers never slow this
/// down: it takes the log's lock only to append, and wakes them without waiting.
async fn fill(feed: Weak<Feed>, mut sub: Subscription, mut stop: oneshot::Sender<()>) {
    loop {
        let batch = tokio::select! {
            b = sub.next_batch() => b,
            _ = stop.closed() => return,
        };
        let Some(feed) = feed.upgrade() else { return };
        match batch {
            Some(batch) => {
                let encoded: Vec<Bytes> = batch.iter().map(|e| encode(e)).collect();
                feed.update(|log| log.events.extend(encoded));
            }
            None => return feed.update(|log| log.ended = true),
        }
    }
}

/// The gRPC frame of `e` as a `pb::JobEvent`: the bytes tonic's prost codec would send.
fn encode(e: &JobEvent) -> Bytes {
    let message = pb::JobEvent::from(e);
    let len = message.encoded_len();
    let mut frame = Vec::with_capacity(5 + len);
    frame.put_u8(0);
    frame.put_u32(u32::try_from(len).expect("an event is under 4 GiB"));
    message
        .encode(&mut frame)
        .expect("the frame has room for the message");
    frame.into()
}

/// One watcher's position in a feed, and the body of its `WatchJob` response. It holds
/// at most [`CATCH_UP`] references to shared frames; HTTP/2 polls it only while the
/// client's flow-control window has room, so a watcher that stops reading holds no more
/// than that window of queued (shared) frames, and later catches up from the feed where it
/// left off.
pub struct FeedStream {
    feed: Arc<Feed>,
    /// Index of the next event to take from the feed (seq - 1).
    next: usize,
    taken: VecDeque<Bytes>,
    grew: WatchStream<()>,
    /// The trailers were sent.
    done: bool,
    /// Counts this stream in `gradstream_watchers` while it lives.
    _watcher: WatcherGuard,
}

impl FeedStream {
    fn new(feed: Arc<Feed>, from_seq: u64, watcher: WatcherGuard) -> Self {
        // Subscribed before the first read, so no growth after it goes unnoticed.
        let grew = WatchStream::from_changes(feed.grew.subscribe());
        Self {
            feed,
            next: from_seq.max(1) as usize - 1,
            taken: VecDeque::with_capacity(CATCH_UP),
            grew,
            done: false,
            _watcher: watcher,
        }
    }

    /// Takes the next events from the feed; `Err` if the stream is over (`None`: the log
    /// ended and was read to its end).
    fn take(&mut self) -> Result<(), Option<Status>> {
        let log = self.feed.log.read().unwrap_or_else(|e| e.into_inner());
        if log.discarded {
            return Err(Some(status::from_job_error(JobError::NotFound(
                self.feed.job_id.clone(),
            ))));
        }
        let new = log.events.get(self.next..).unwrap_or_default();
        let new = &new[..new.len().min(CATCH_UP)];
        self.taken.extend(new.iter().cloned());
        self.next += new.len();
        if new.is_empty() && log.ended {
            return Err(None);
        }
        Ok(())
    }
}

impl http_body::Body for FeedStream {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.taken.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.take() {
                Ok(()) if !this.taken.is_empty() => continue,
                Ok(()) => {}
                Err(end) => {
                    this.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(end)))));
                }
            }
            // Nothing new: wait for the feed to change, then look again.
            match Pin::new(&mut this.grew).poll_next(cx) {
                Poll::Ready(_) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The trailers that end a stream: OK, or `status`.
fn trailers(status: Option<Status>) -> HeaderMap {
    let mut map = HeaderMap::new();
    match status {
        None => {
            map.insert(
                HeaderName::from_static("grpc-status"),
                HeaderValue::from_static("0"),
            );
        }
        Some(status) => {
            // Only a status whose metadata cannot be headers fails; ours has none.
            let _ = status.add_header(&mut map);
        }
    }
    map
}

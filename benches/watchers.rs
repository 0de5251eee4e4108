//! `make bench`, part 2: 1,000 concurrent watchers on one running job. Reports event
//! delivery latency (server timestamp → watcher receives it), how much the watchers slow
//! training (RUNNING→SUCCEEDED with and without them, interleaved rounds), the server's
//! CPU time per delivered event and its peak memory.
//!
//! The server runs in this process; the watcher clients run in a second one (this bench
//! executed again with `WATCHERS_URL` set), so their decoding is not the server's CPU
//! time. Every watcher checks that it received every event exactly once, in order.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use gradstream::transport::pb::{self, trainer_client::TrainerClient};
use tonic::transport::{Channel, Endpoint};

const WATCHERS: usize = 1000;
/// Set to watch with another number of watchers than [`WATCHERS`] (to find the floor of
/// the latency, for example, with 1).
const WATCHERS_COUNT: &str = "WATCHERS_COUNT";

fn watcher_count() -> usize {
    std::env::var(WATCHERS_COUNT).map_or(WATCHERS, |n| n.parse().expect("a number of watchers"))
}
/// Watchers share connections; HTTP/2 servers cap concurrent streams per connection.
const CONNECTIONS: usize = 10;
/// Pairs of jobs, one watched and one not, in alternating order.
const ROUNDS: usize = 5;
/// Set in the watcher process: the server's URL.
const WATCHERS_URL: &str = "WATCHERS_URL";
/// Set (to a niceness, e.g. 19) to run the watcher process at a lower priority than the
/// server, which shows the server's own share of the slowdown on a machine this small.
const WATCHERS_NICE: &str = "WATCHERS_NICE";

fn main() {
    match std::env::var(WATCHERS_URL) {
        Ok(url) => watcher_process(&url),
        Err(_) => server_process(),
    }
}

// ---------------------------------------------------------------------------------------
// The server's process: the server, the jobs and the measurements.

/// What one job cost the server.
struct Job {
    training_seconds: f64,
    /// CPU seconds of the whole server process, from just before the job could start
    /// until its last event was delivered.
    cpu: f64,
    /// The kernel's part of `cpu` (system time: sockets, wake-ups).
    system_cpu: f64,
    /// CPU seconds of the async runtime's threads (gRPC, delivery) in the same span.
    runtime_cpu: f64,
}

fn server_process() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let server = start_server(dir.path()).await;
        let url = format!("http://{}", server.addr);
        let mut client = TrainerClient::connect(url.clone()).await.unwrap();
        let mut watchers = Watchers::spawn(&url);
        println!(
            "watchers: {} watchers over {CONNECTIONS} connections in a separate process{}, on one job (MLP {FEATURES}-{HIDDEN}-{CLASSES}, {SAMPLES} samples x {EPOCHS} epochs, default report interval), {ROUNDS} rounds",
            watcher_count(),
            std::env::var(WATCHERS_NICE).map(|n| format!(" (nice {n})")).unwrap_or_default()
        );
        let (mut alone, mut watched) = (vec![], vec![]);
        let (mut latencies, mut epoch_latencies) = (vec![], vec![]);
        let (mut per_event_cpu, mut per_event_runtime_cpu, mut system_share) = (vec![], vec![], vec![]);
        let mut hwm_before = None;
        let start = Instant::now();
        for round in 1..=ROUNDS {
            let watched_first = round % 2 == 0;
            let mut report = None;
            let mut pair = [None, None];
            for with_watchers in [watched_first, !watched_first] {
                let w = with_watchers.then_some(&mut watchers);
                let (job, r) = run_job(&mut client, w).await;
                if let Some(r) = r {
                    report = Some(r);
                } else if hwm_before.is_none() {
                    hwm_before = Some(vm_hwm_kib());
                }
                pair[with_watchers as usize] = Some(job);
            }
            let [Some(a), Some(w)] = pair else { unreachable!() };
            let r = report.unwrap();
            let deliveries = r.deliveries as f64;
            let cpu = (w.cpu - a.cpu) / deliveries;
            let runtime_cpu = (w.runtime_cpu - a.runtime_cpu) / deliveries;
            println!(
                "  round {round}: training {:.3}s alone, {:.3}s watched ({:+.1}%); {} events ({} KiB, {} KiB of them in epoch events) x {} watchers; server CPU {:.2}s alone, {:.2}s watched: {:.1} us per delivery ({:.1} us on the async threads); watcher process CPU {:.2}s",
                a.training_seconds,
                w.training_seconds,
                (w.training_seconds / a.training_seconds - 1.0) * 100.0,
                r.events,
                r.bytes / 1024,
                r.epoch_bytes / 1024,
                watcher_count(),
                a.cpu,
                w.cpu,
                cpu * 1e6,
                runtime_cpu * 1e6,
                r.cpu_seconds,
            );
            alone.push(a.training_seconds);
            watched.push(w.training_seconds);
            per_event_cpu.push(cpu);
            per_event_runtime_cpu.push(runtime_cpu);
            system_share.push((w.system_cpu - a.system_cpu) / (w.cpu - a.cpu));
            latencies.extend(r.latencies);
            epoch_latencies.extend(r.epoch_latencies);
        }
        let (alone, watched) = (median(alone), median(watched));
        let other = latencies.clone();
        latencies.extend(&epoch_latencies);
        for (what, mut l) in [
            ("live events", latencies),
            ("  epoch events", epoch_latencies),
            ("  other events", other),
        ] {
            l.sort_by(f64::total_cmp);
            println!(
                "delivery latency of {what} (ms): p50 {:.2}  p99 {:.2}  max {:.2}  ({} deliveries)",
                percentile(&l, 0.5) * 1e3,
                percentile(&l, 0.99) * 1e3,
                l.last().unwrap() * 1e3,
                l.len()
            );
        }
        println!("(goal: p99 of live events < 10 ms)");
        println!(
            "training time, median: alone {alone:.3}s, watched {watched:.3}s, slowdown {:+.1}% (goal < 2%)",
            (watched / alone - 1.0) * 100.0
        );
        println!(
            "server CPU per delivered event, median: {:.2} us (whole process, watched minus alone; {:.0}% of it in the kernel), {:.2} us on the async threads",
            median(per_event_cpu) * 1e6,
            median(system_share) * 100.0,
            median(per_event_runtime_cpu) * 1e6
        );
        println!(
            "server peak memory (VmHWM): {:.1} MiB after the first job without watchers, {:.1} MiB at the end",
            hwm_before.unwrap() as f64 / 1024.0,
            vm_hwm_kib() as f64 / 1024.0
        );
        println!("bench wall time {:.1}s", start.elapsed().as_secs_f64());
        watchers.finish();
        server.shutdown().await.unwrap();
    });
}

/// Trains one benchmark job, watched by the watcher process when `watchers` is given.
/// The watchers subscribe while the job is queued behind a gate job, so the job trains
/// with all of them attached from its first step; the unwatched job runs the same way.
async fn run_job(
    client: &mut TrainerClient<Channel>,
    mut watchers: Option<&mut Watchers>,
) -> (Job, Option<Report>) {
    let mut gate_spec = bench_spec(0);
    gate_spec.epochs = 100;
    let gate = submit(client, gate_spec).await;
    let job = submit(client, bench_spec(0)).await;
    if let Some(w) = watchers.as_deref_mut() {
        w.watch(&job.id);
    }
    let ((cpu0, system0), runtime0) = (process_cpu(), runtime_cpu());
    client
        .cancel_job(pb::CancelJobRequest { job_id: gate.id })
        .await
        .unwrap();
    let done = wait_until_finished(client, &job.id).await;
    let report = watchers.map(Watchers::report);
    let (cpu1, system1) = process_cpu();
    let cost = Job {
        training_seconds: seconds_between(&done.started, &done.finished),
        cpu: cpu1 - cpu0,
        system_cpu: system1 - system0,
        runtime_cpu: runtime_cpu() - runtime0,
    };
    assert_eq!(done.status(), pb::JobStatus::Succeeded, "{}", done.message);
    (cost, report)
}

async fn submit(client: &mut TrainerClient<Channel>, spec: pb::JobSpec) -> pb::Job {
    client
        .submit_job(pb::SubmitJobRequest {
            spec: Some(spec),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_until_finished(client: &mut TrainerClient<Channel>, id: &str) -> pb::Job {
    loop {
        let job = client
            .get_job(pb::GetJobRequest { job_id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if job.finished.is_some() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn seconds_between(a: &Option<prost_types::Timestamp>, b: &Option<prost_types::Timestamp>) -> f64 {
    to_system_time(b)
        .duration_since(to_system_time(a))
        .unwrap()
        .as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Clock ticks per second of /proc's CPU times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    })
}

/// The task's name, and utime + stime and stime of a /proc `stat` file's text, in seconds.
fn stat_cpu(stat: &str) -> (String, f64, f64) {
    let (head, rest) = stat.rsplit_once(')').unwrap();
    let name = head.split_once('(').unwrap().1.to_string();
    // The fields after the name start at field 3 (state); utime and stime are 14 and 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (user, system) = (f[11].parse::<f64>().unwrap(), f[12].parse::<f64>().unwrap());
    (
        name,
        (user + system) / clock_ticks(),
        system / clock_ticks(),
    )
}

/// CPU seconds of this process (the server's) so far, and their system part.
fn process_cpu() -> (f64, f64) {
    let (_, cpu, system) = stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap());
    (cpu, system)
}

fn pid_cpu(pid: u32) -> f64 {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap()).1
}

/// CPU seconds so far of the tokio runtime's worker threads (where gRPC and delivery run;
/// not the job threads, the state writer or libtorch's threads).
fn runtime_cpu() -> f64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .map(|s| stat_cpu(&s))
        .filter(|(name, _, _)| name.starts_with("tokio-"))
        .map(|(_, cpu, _)| cpu)
        .sum()
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The watcher process, driven line by line over its standard input and output.
struct Watchers {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    /// The watcher process's CPU seconds when it was last asked to watch a job.
    cpu_at_watch: f64,
}

/// What the watcher process saw of one job.
#[derive(serde::Deserialize)]
struct Report {
    /// Events of the job (each watcher received all of them, in order).
    events: usize,
    /// Bytes of those events (as protobuf messages), and of its epoch events alone.
    bytes: usize,
    epoch_bytes: usize,
    deliveries: usize,
    /// Seconds from each live event's timestamp to its receipt, for every watcher: epoch
    /// events (with metrics and curves, most of the bytes), and the others.
    epoch_latencies: Vec<f64>,
    latencies: Vec<f64>,
    /// CPU seconds of the watcher process while it watched the job.
    #[serde(skip)]
    cpu_seconds: f64,
}

impl Watchers {
    fn spawn(url: &str) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut command = match std::env::var(WATCHERS_NICE) {
            Ok(n) => {
                let mut c = Command::new("nice");
                c.args(["-n", &n]).arg(exe);
                c
            }
            Err(_) => Command::new(exe),
        };
        let mut child = command
            .env(WATCHERS_URL, url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the watcher process");
        let to = child.stdin.take().unwrap();
        let mut from = BufReader::new(child.stdout.take().unwrap());
        expect_line(&mut from, "connected");
        Self {
            child,
            to,
            from,
            cpu_at_watch: 0.0,
        }
    }

    /// Opens every watcher's stream on job `id`; returns once all of them are attached.
    fn watch(&mut self, id: &str) {
        self.cpu_at_watch = pid_cpu(self.child.id());
        writeln!(self.to, "{id}").unwrap();
        self.to.flush().unwrap();
        expect_line(&mut self.from, "subscribed");
    }

    /// Waits for the watchers to have read the job to its end.
    fn report(&mut self) -> Report {
        let mut line = String::new();
        self.from.read_line(&mut line).unwrap();
        let mut r: Report = serde_json::from_str(&line).expect("the watcher process's report");
        r.cpu_seconds = pid_cpu(self.child.id()) - self.cpu_at_watch;
        assert_eq!(
            r.deliveries,
            r.events * watcher_count(),
            "every watcher saw every event"
        );
        r
    }

    fn finish(mut self) {
        drop(self.to);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the watcher process failed: {status}");
    }
}

fn expect_line(from: &mut impl BufRead, want: &str) {
    let mut line = String::new();
    from.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), want, "the watcher process failed");
}

// ---------------------------------------------------------------------------------------
// The watcher process: 1,000 WatchJob clients over a few connections.

fn watcher_process(url: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            let endpoint = Endpoint::from_shared(url.to_string()).unwrap();
            channels.push(endpoint.connect().await.unwrap());
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "connected").unwrap();
        out.flush().unwrap();
        drop(out);
        let mut lines = std::io::stdin().lines();
        while let Some(Ok(id)) = lines.next() {
            let report = watch_job(&channels, id.trim()).await;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{report}").unwrap();
            out.flush().unwrap();
        }
    });
}

/// Opens [`watcher_count`] streams on job `id` (saying "subscribed" once each has its first
/// event), reads them to the end, checks each, and returns the report as JSON.
async fn watch_job(channels: &[Channel], id: &str) -> serde_json::Value {
    let n = watcher_count();
    let subscribed = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = TrainerClient::new(channels[i % channels.len()].clone());
        let id = id.to_string();
        let subscribed = subscribed.clone();
        tasks.push(tokio::spawn(async move {
            let req = pb::WatchJobRequest {
                job_id: id,
                from_seq: 1,
            };
            let mut stream = c.watch_job(req).await.unwrap().into_inner();
            let connected = SystemTime::now();
            let mut seen = 0u64;
            let (mut bytes, mut epoch_bytes) = (0, 0);
            let (mut latencies, mut epoch_latencies) = (Vec::new(), Vec::new());
            let mut last = None;
            while let Some(e) = stream.message().await.unwrap() {
                let received = SystemTime::now();
                seen += 1;
                bytes += prost::Message::encoded_len(&e);
                assert_eq!(e.seq, seen, "every event once, in order");
                let sent = to_system_time(&e.time);
                if sent >= connected {
                    let l = received.duration_since(sent).unwrap_or_default().as_secs_f64();
                    match e.kind {
                        Some(pb::job_event::Kind::Epoch(_)) => epoch_latencies.push(l),
                        _ => latencies.push(l),
                    }
                }
                if let Some(pb::job_event::Kind::Epoch(_)) = e.kind {
                    epoch_bytes += prost::Message::encoded_len(&e);
                }
                if seen == 1 {
                    subscribed.wait().await;
                }
                last = e.kind;
            }
            let ended = matches!(last, Some(pb::job_event::Kind::Status(s)) if s.status == pb::JobStatus::Succeeded as i32);
            assert!(ended, "the stream ends with the job's SUCCEEDED status");
            ((seen, bytes, epoch_bytes), latencies, epoch_latencies)
        }));
    }
    subscribed.wait().await;
    println!("subscribed");
    let (mut events, mut bytes, mut epoch_bytes) = (None, None, 0);
    let (mut deliveries, mut latencies, mut epoch_latencies) = (0, Vec::new(), Vec::new());
    for t in tasks {
        let ((seen, b, eb), l, el) = t.await.unwrap();
        epoch_bytes = eb;
        assert_eq!(
            *events.get_or_insert(seen),
            seen,
            "every watcher saw the same events"
        );
        assert_eq!(
            *bytes.get_or_insert(b),
            b,
            "every watcher saw the same bytes"
        );
        deliveries += seen;
        latencies.extend(l);
        epoch_latencies.extend(el);
    }
    serde_json::json!({
        "events": events,
        "bytes": bytes,
        "epoch_bytes": epoch_bytes,
        "deliveries": deliveries,
        "latencies": latencies,
        "epoch_latencies": epoch_latencies,
    })
}

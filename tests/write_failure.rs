//! The durability invariants under write failure, against the real server process with its
//! state directory on a small tmpfs of its own that the test fills mid-job: the job ends
//! FAILED saying why, the server stays up and trains the next job once there is room, and
//! nothing a watcher was shown is missing from the disk (a server started on a copy of
//! the state directory replays the same events and resumes from the last one's
//! checkpoint).

mod common;

use std::io::Write;
use std::path::Path;

use common::process::ServerProcess;
use common::*;
use gradstream::transport::pb::{self, job_event::Kind, trainer_client::TrainerClient};

/// Many short epochs: the disk fills while it trains.
fn long_spec() -> pb::JobSpec {
    let mut s = spec(4000, 2, 400);
    s.batch_size = 64;
    s.report_every = 5;
    s
}

/// Fills the file system holding `dir` until a write fails for want of space.
fn fill(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 1 << 16];
    loop {
        if let Err(e) = f.write_all(&block).and_then(|()| f.sync_data()) {
            assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
            return path;
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "filler" || name == "lock" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn epoch_of(e: &pb::JobEvent) -> Option<u32> {
    match &e.kind {
        Some(Kind::Epoch(x)) => Some(x.epoch),
        _ => None,
    }
}

// Multi-threaded: the client's connection tasks must keep running while the test waits
// for the server process to exit, or its graceful shutdown waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_job_honestly_and_the_server_carries_on() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_on_tmpfs(data.path(), state.path(), "16m");
    let mut c = TrainerClient::connect(server.url.clone()).await.unwrap();

    let job = c
        .submit_job(request(long_spec()))
        .await
        .unwrap()
        .into_inner();
    let mut stream = watch_stream(&mut c, &job.id, 1).await;
    let mut seen = Vec::new();
    // Two epochs recorded, then the disk fills.
    while seen.iter().filter_map(epoch_of).count() < 2 {
        let e = bounded("the first epochs", stream.message())
            .await
            .unwrap()
            .expect("the job ended before two epochs");
        seen.push(e);
    }
    let state_seen_by_server = server.root(state.path());
    let filler = fill(&state_seen_by_server);
    // The stream shows what reached the disk, then ends.
    while let Some(e) = bounded("the stream's end", stream.message()).await.unwrap() {
        seen.push(e);
    }
    assert_gap_free(&seen);
    let failed = get_job(&mut c, &job.id).await;
    assert_eq!(failed.status(), pb::JobStatus::Failed, "{}", failed.message);
    assert!(
        failed
            .message
            .contains("could not save this job's progress")
            && (failed.message.contains("No space left on device")
                || failed.message.contains("disk is full")),
        "{}",
        failed.message
    );
    let last_epoch = seen.iter().rev().find_map(epoch_of).unwrap();
    assert!(
        failed
            .message
            .contains(&format!("nothing after epoch {last_epoch} was kept")),
        "the message names the last saved epoch ({last_epoch}): {}",
        failed.message
    );
    assert_eq!(
        failed.epochs_completed, last_epoch,
        "only saved epochs count"
    );
    // The checkpoint of the last epoch a watcher saw is on disk.
    // (Checkpoints live in their run's folder; a lone model is the job's run 0.)
    let job_dir = state_seen_by_server
        .join("jobs")
        .join(&job.id)
        .join("runs")
        .join("0");
    assert!(
        job_dir
            .join(format!("epoch-{last_epoch:06}.safetensors"))
            .exists(),
        "checkpoint of recorded epoch {last_epoch} missing in {}",
        job_dir.display()
    );

    // What is on disk now, copied out (the tmpfs lives only as long as the server).
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&state_seen_by_server, copy.path());

    // The server is still up: with room again, the next job trains.
    std::fs::remove_file(&filler).unwrap();
    let next = bounded(
        "a job after the disk was freed",
        train(&mut c, spec(200, 2, 2)),
    )
    .await;
    assert_eq!(
        statuses(&next).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(&next)
    );
    server.stop("TERM");

    // A server on the copy replays exactly what the watcher was shown, and the job resumes
    // from the checkpoint of the last epoch shown.
    let again = ServerProcess::start(data.path(), copy.path());
    let mut c = TrainerClient::connect(again.url.clone()).await.unwrap();
    let mut stream = watch_stream(&mut c, &job.id, 1).await;
    // The FAILED status itself reached the disk only if the disk still had room for it.
    let failed_on_disk = statuses(&seen).last() == Some(&pb::JobStatus::Failed);
    let mut replayed: Vec<pb::JobEvent> = Vec::new();
    loop {
        let e = bounded("the replayed history", stream.message())
            .await
            .unwrap();
        let Some(e) = e else {
            assert!(failed_on_disk, "the history ended before the job resumed");
            break;
        };
        let resumed = matches!(&e.kind, Some(Kind::Status(s))
            if s.status == pb::JobStatus::Running as i32 && s.message.contains("resumed after"));
        replayed.push(e);
        if resumed {
            assert!(
                last_message(&replayed)
                    .contains(&format!("resumed after {last_epoch} complete epoch(s)"))
            );
            break;
        }
    }
    // Everything shown before is there, unchanged, in the same places.
    assert!(replayed.len() >= seen.len(), "events were lost");
    if let Some(i) = (0..seen.len()).find(|&i| replayed[i] != seen[i]) {
        panic!(
            "event {i} differs\nshown before: {:?}\nafter restart: {:?}",
            seen[i], replayed[i]
        );
    }
    c.cancel_job(pb::CancelJobRequest {
        job_id: job.id.clone(),
    })
    .await
    .unwrap();
    again.stop("TERM");
}

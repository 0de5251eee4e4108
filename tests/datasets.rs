//! Dataset uploads against the real server: validated while streaming, visible only when
//! complete and valid, nothing left behind otherwise; used by jobs and protected while used.

mod common;

use common::*;
use gradstream::transport::pb::{
    self, datasets_client::DatasetsClient, upload_dataset_request::Part,
};
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic::transport::Channel;

fn header(name: &str, label_column: &str, sha256: &str) -> pb::UploadDatasetRequest {
    pb::UploadDatasetRequest {
        part: Some(Part::Header(pb::DatasetHeader {
            name: name.into(),
            format: pb::DatasetFormat::Csv as i32,
            label_column: label_column.into(),
            sha256: sha256.into(),
        })),
    }
}

fn chunks(bytes: &[u8], size: usize) -> Vec<pb::UploadDatasetRequest> {
    bytes
        .chunks(size)
        .map(|c| pb::UploadDatasetRequest {
            part: Some(Part::Chunk(c.to_vec())),
        })
        .collect()
}

/// A whole upload: the header, then `bytes` in chunks of `size`.
fn upload_msgs(
    name: &str,
    label_column: &str,
    sha256: &str,
    bytes: &[u8],
    size: usize,
) -> Vec<pb::UploadDatasetRequest> {
    [
        vec![header(name, label_column, sha256)],
        chunks(bytes, size),
    ]
    .concat()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Three separable classes with text labels in column "kind".
fn csv_text(rows: usize) -> String {
    let mut s = String::from("a,kind,b\n");
    for i in 0..rows {
        let (label, shift) = [("cat", 0.0), ("dog", 4.0), ("emu", -4.0)][i % 3];
        s.push_str(&format!(
            "{},{label},{}\n",
            shift + (i % 5) as f64 * 0.1,
            shift - (i % 7) as f64 * 0.1
        ));
    }
    s
}

async fn upload(
    c: &mut DatasetsClient<Channel>,
    msgs: Vec<pb::UploadDatasetRequest>,
) -> Result<pb::DatasetInfo, tonic::Status> {
    c.upload_dataset(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// Files in the server's dataset folder (uploads in progress live in tmp/).
fn stored_files(ts: &TestServer) -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["datasets", "datasets/tmp"] {
        if let Ok(rd) = std::fs::read_dir(ts.state_path().join(dir)) {
            for e in rd.flatten() {
                if e.path().is_file() {
                    out.push(format!("{dir}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_in_chunks_then_train_on_it_and_delete_it_when_unused() {
    let ts = TestServer::start(1).await;
    let mut d = DatasetsClient::connect(ts.url()).await.unwrap();
    let text = csv_text(300);
    let msgs = upload_msgs("pets", "kind", &sha(text.as_bytes()), text.as_bytes(), 97);
    let info = upload(&mut d, msgs).await.unwrap();
    assert_eq!(
        (info.name.as_str(), info.rows, info.features, info.classes),
        ("pets", 300, 2, 3)
    );
    assert_eq!(info.labels, vec!["cat", "dog", "emu"]);
    assert_eq!(info.class_counts, vec![100, 100, 100]);
    assert_eq!(
        (info.bytes, info.sha256.clone()),
        (text.len() as u64, sha(text.as_bytes()))
    );
    assert_eq!(info.label_column, "kind");
    // The stored file is exactly what was sent.
    let file = ts
        .state_path()
        .join("datasets")
        .join(format!("{}.csv", info.id));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    let listed = d
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .datasets;
    assert_eq!(listed, vec![info.clone()]);
    let got = d
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: info.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, info);

    // A job trains on it by id.
    let mut c = ts.client().await;
    let mut s = spec(0, 0, 2);
    s.dataset = Some(pb::Dataset {
        source: Some(pb::dataset::Source::DatasetId(info.id.clone())),
    });
    let events = train(&mut c, s.clone()).await;
    assert_eq!(
        statuses(&events).last(),
        Some(&pb::JobStatus::Succeeded),
        "{}",
        last_message(&events)
    );
    let val = epochs(&events).pop().unwrap().validation.unwrap();
    assert_eq!(
        val.confusion_matrix.unwrap().labels,
        vec!["cat", "dog", "emu"]
    );

    // While a job that uses it is queued or running, it cannot be deleted.
    s.epochs = 1000;
    let long = c.submit_job(request(s)).await.unwrap().into_inner();
    let err = d
        .delete_dataset(pb::DeleteDatasetRequest {
            dataset_id: info.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&long.id), "{}", err.message());
    c.cancel_job(pb::CancelJobRequest {
        job_id: long.id.clone(),
    })
    .await
    .unwrap();
    let ended = watch(&mut c, &long.id, 1).await;
    assert_eq!(statuses(&ended).last(), Some(&pb::JobStatus::Cancelled));
    d.delete_dataset(pb::DeleteDatasetRequest {
        dataset_id: info.id.clone(),
    })
    .await
    .unwrap();
    assert!(!file.exists());
    let err = d
        .get_dataset(pb::GetDatasetRequest {
            dataset_id: info.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A job naming a deleted or unknown dataset is refused at submit.
    let mut s = spec(0, 0, 1);
    s.dataset = Some(pb::Dataset {
        source: Some(pb::dataset::Source::DatasetId(info.id.clone())),
    });
    let err = c.submit_job(request(s)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("spec.dataset.dataset_id"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_fail_clearly_and_leave_nothing_behind() {
    let ts = TestServer::start_with(|c| c.max_dataset_bytes = 2_000).await;
    let mut d = DatasetsClient::connect(ts.url()).await.unwrap();
    let good = csv_text(30);
    let ragged = "a,b,y\n1,2,0\n3,4,1\n5,6\n7,8,1\n";
    let text = "a,b,y\n1,2,0\n3,x,1\n";
    let cases: Vec<(&str, Vec<pb::UploadDatasetRequest>, Code, Vec<&str>)> = vec![
        (
            "ragged row in the second chunk",
            upload_msgs("ragged", "", "", ragged.as_bytes(), 13),
            Code::InvalidArgument,
            vec!["ragged:4:3:", "2 fields but the header has 3"],
        ),
        (
            "non-numeric feature",
            upload_msgs("text", "", "", text.as_bytes(), 5),
            Code::InvalidArgument,
            vec!["text:3:2:", "not a number"],
        ),
        (
            "missing label column",
            upload_msgs("nolabel", "species", "", good.as_bytes(), 50),
            Code::InvalidArgument,
            vec!["nolabel:1:1:", "no column named 'species'"],
        ),
        (
            "checksum mismatch",
            upload_msgs("sum", "kind", &sha(b"something else"), good.as_bytes(), 50),
            Code::InvalidArgument,
            vec!["sha256"],
        ),
        (
            "larger than --max-dataset-bytes",
            upload_msgs("big", "kind", "", csv_text(400).as_bytes(), 500),
            Code::ResourceExhausted,
            vec!["2000 bytes", "--max-dataset-bytes"],
        ),
        (
            "no header",
            chunks(good.as_bytes(), 50),
            Code::InvalidArgument,
            vec!["header"],
        ),
        (
            "empty file",
            vec![header("empty", "", "")],
            Code::InvalidArgument,
            vec!["empty"],
        ),
    ];
    for (what, msgs, code, needles) in cases {
        let err = upload(&mut d, msgs).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {}", err.message());
        for n in needles {
            assert!(
                err.message().contains(n),
                "{what}: {:?} lacks {n:?}",
                err.message()
            );
        }
        assert!(
            stored_files(&ts).is_empty(),
            "{what}: left {:?}",
            stored_files(&ts)
        );
    }
    assert!(
        d.list_datasets(pb::ListDatasetsRequest {})
            .await
            .unwrap()
            .into_inner()
            .datasets
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_client_is_killed_leaves_nothing_behind() {
    let ts = TestServer::start_with(|c| c.max_dataset_bytes = 1 << 40).await;
    let mut d = DatasetsClient::connect(ts.url()).await.unwrap();
    // A file large enough that the upload is still streaming when the client dies.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let mut text = String::from("a,b,y\n");
    for i in 0..2_000_000 {
        text.push_str(&format!("{}.5,{},{}\n", i % 97, i % 13, i % 2));
    }
    std::fs::write(&path, &text).unwrap();
    let mut client = std::process::Command::new(process::BIN)
        .args(["datasets", "upload", "--server", &ts.url()])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the server is writing the upload, then kill the client.
    let mut started = false;
    for _ in 0..1000 {
        if !stored_files(&ts).is_empty() {
            started = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(started, "the upload in progress is written to datasets/tmp");
    client.kill().unwrap();
    client.wait().unwrap();
    // The server sees the connection drop and removes the partial file.
    let mut cleaned = false;
    for _ in 0..1000 {
        if stored_files(&ts).is_empty() {
            cleaned = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(cleaned, "left {:?}", stored_files(&ts));
    assert!(
        d.list_datasets(pb::ListDatasetsRequest {})
            .await
            .unwrap()
            .into_inner()
            .datasets
            .is_empty()
    );
}

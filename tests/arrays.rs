//! Labelled arrays by path under the data directory, written by NumPy itself
//! (`tests/reference/write_arrays.py`): `.npy` pairs, a compressed `.npz` with the user's
//! own array names, MNIST-format IDX images trained on by a CNN, and malformed files that
//! fail naming the file, the array and the index.

mod common;

use common::{TestServer, bounded, epochs, request, run_reference, spec, train};
use gradstream::transport::pb;

fn arrays(format: pb::ArrayFormat, x: &str, y: &str) -> Option<pb::Dataset> {
    Some(pb::Dataset {
        source: Some(pb::dataset::Source::Arrays(pb::ArrayDataset {
            format: format as i32,
            features_path: x.into(),
            labels_path: y.into(),
            ..Default::default()
        })),
    })
}

fn status(events: &[pb::JobEvent]) -> (i32, String) {
    match events.last().and_then(|e| e.kind.clone()) {
        Some(pb::job_event::Kind::Status(s)) => (s.status, s.message),
        other => panic!("the stream did not end with a status: {other:?}"),
    }
}

fn final_validation(events: &[pb::JobEvent]) -> pb::Metrics {
    epochs(events)
        .last()
        .and_then(|e| e.validation.clone())
        .expect("a validation split")
}

/// The table's final validation metrics, checked: its three classes by id, a quarter of
/// its 300 rows validated, and its well-separated clusters learned (which they are only if
/// features and labels were read in step).
fn learned_the_table(events: &[pb::JobEvent]) -> pb::Metrics {
    let v = final_validation(events);
    let cm = v.confusion_matrix.clone().unwrap();
    assert_eq!(cm.labels, vec!["0", "5", "9"]);
    assert_eq!(
        cm.counts.iter().sum::<u64>(),
        75,
        "a quarter of 300 rows validated"
    );
    assert!(v.accuracy > 0.9, "validation accuracy {}", v.accuracy);
    v
}

async fn server_with_arrays() -> TestServer {
    let ts = TestServer::start(1).await;
    run_reference("write_arrays.py", &[ts.data_path()]);
    ts
}

#[tokio::test]
async fn numpy_tables_train_with_their_class_ids_as_classes() {
    let ts = server_with_arrays().await;
    let mut c = ts.client().await;
    let mut s = spec(0, 0, 8);
    s.dataset = arrays(pb::ArrayFormat::Npy, "table-x.npy", "table-y.npy");
    s.validation_fraction = Some(0.25);
    let events = bounded("the .npy job", train(&mut c, s.clone())).await;
    assert_eq!(
        status(&events).0,
        pb::JobStatus::Succeeded as i32,
        "{events:?}"
    );
    let v = learned_the_table(&events);

    // The same data as one compressed .npz, float64 features, arrays named by the user.
    s.dataset = Some(pb::Dataset {
        source: Some(pb::dataset::Source::Arrays(pb::ArrayDataset {
            format: pb::ArrayFormat::Npz as i32,
            features_path: "table.npz".into(),
            features_array: "x_train".into(),
            labels_array: "y_train".into(),
            ..Default::default()
        })),
    });
    let npz = bounded("the .npz job", train(&mut c, s)).await;
    assert_eq!(status(&npz).0, pb::JobStatus::Succeeded as i32, "{npz:?}");
    let w = final_validation(&npz);
    assert_eq!(w.confusion_matrix.unwrap().labels, vec!["0", "5", "9"]);
    // float32 from .npy and float64 from .npz are the same values to f32 precision, and the
    // split and the training are seeded: the same result.
    assert_eq!(w.accuracy, v.accuracy);

    // Evaluate the first job on the archive: all 300 rows, classes matched by id.
    let evaluation = c
        .evaluate(pb::EvaluateRequest {
            job_id: events[0].job_id.clone(),
            data: Some(pb::evaluate_request::Data::Arrays(pb::ArrayDataset {
                format: pb::ArrayFormat::Npz as i32,
                features_path: "table.npz".into(),
                features_array: "x_train".into(),
                labels_array: "y_train".into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let m = evaluation.metrics.unwrap();
    assert_eq!(m.confusion_matrix.unwrap().counts.iter().sum::<u64>(), 300);
    assert!(m.accuracy > 0.9, "accuracy on every row {}", m.accuracy);
    let err = c
        .evaluate(pb::EvaluateRequest {
            job_id: events[0].job_id.clone(),
            data: Some(pb::evaluate_request::Data::Arrays(pb::ArrayDataset {
                format: pb::ArrayFormat::Npy as i32,
                features_path: "nan-x.npy".into(),
                labels_path: "table-y.npy".into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("nan-x.npy: features[17, 2]"),
        "{err:?}"
    );
}

#[tokio::test]
async fn idx_and_npy_images_train_a_cnn() {
    let ts = server_with_arrays().await;
    let mut c = ts.client().await;
    let mut s = spec(0, 0, 4);
    s.validation_fraction = Some(0.25);
    s.model = Some(pb::Model {
        kind: Some(pb::model::Kind::Cnn(pb::Cnn {
            channels: 1,
            height: 8,
            width: 8,
            blocks: vec![pb::ConvBlock {
                channels: 4,
                kernel_size: 3,
                padding: 1,
                pool: pb::PoolKind::Max as i32,
                ..Default::default()
            }],
            dense: Some(pb::Mlp {
                hidden_layers: vec![16],
                ..Default::default()
            }),
            ..Default::default()
        })),
    });
    for (format, x, y) in [
        (
            pb::ArrayFormat::Idx,
            "images-idx3-ubyte",
            "labels-idx1-ubyte",
        ),
        (pb::ArrayFormat::Npy, "images-x.npy", "images-y.npy"),
    ] {
        s.dataset = arrays(format, x, y);
        let events = bounded("the image job", train(&mut c, s.clone())).await;
        assert_eq!(
            status(&events).0,
            pb::JobStatus::Succeeded as i32,
            "{x}: {events:?}"
        );
        let v = final_validation(&events);
        assert_eq!(v.confusion_matrix.unwrap().labels, vec!["0", "1"]);
        assert!(v.accuracy > 0.9, "{x}: validation accuracy {}", v.accuracy);
    }
}

#[tokio::test]
async fn malformed_arrays_fail_naming_the_file_array_and_index() {
    let ts = server_with_arrays().await;
    let mut c = ts.client().await;
    let cases: [(Option<pb::Dataset>, &[&str]); 9] = [
        (
            arrays(pb::ArrayFormat::Npy, "nan-x.npy", "table-y.npy"),
            &["nan-x.npy: features[17, 2]: NaN is not a finite number"],
        ),
        (
            arrays(pb::ArrayFormat::Npy, "fortran-x.npy", "table-y.npy"),
            &["fortran-x.npy", "Fortran order", "ascontiguousarray"],
        ),
        (
            arrays(pb::ArrayFormat::Npy, "truncated-x.npy", "table-y.npy"),
            &["truncated-x.npy", "holds", "the file is truncated"],
        ),
        (
            arrays(pb::ArrayFormat::Npy, "table-x.npy", "images-y.npy"),
            &[
                "images-y.npy",
                "has 400 rows but 'features' (table-x.npy) has 300",
            ],
        ),
        (
            arrays(pb::ArrayFormat::Idx, "table-x.npy", "labels-idx1-ubyte"),
            &["table-x.npy", "is not an IDX file"],
        ),
        (
            arrays(pb::ArrayFormat::Npz, "table.npz", ""),
            &["table.npz", "no array 'features'", "x_train.npy"],
        ),
        // Fields left out or wrong are named.
        (
            arrays(pb::ArrayFormat::Unspecified, "table-x.npy", "table-y.npy"),
            &["spec.dataset.arrays.format", "ARRAY_FORMAT_NPY"],
        ),
        (
            arrays(pb::ArrayFormat::Npy, "table-x.npy", ""),
            &["spec.dataset.arrays.labels_path", "is empty"],
        ),
        (
            arrays(pb::ArrayFormat::Npy, "table-x.npy", "missing.npy"),
            &[
                "spec.dataset.arrays.labels_path",
                "'missing.npy' cannot be opened",
            ],
        ),
    ];
    for (dataset, expected) in cases {
        let mut s = spec(0, 0, 1);
        s.dataset = dataset;
        let err = c.submit_job(request(s)).await.unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{expected:?}: {err:?}"
        );
        for part in expected {
            assert!(
                err.message().contains(part),
                "{part:?} not in {:?}",
                err.message()
            );
        }
    }
}

/// Statuses with their messages, in order.
fn statuses(events: &[pb::JobEvent]) -> Vec<(i32, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(pb::job_event::Kind::Status(s)) => Some((s.status, s.message.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_dataset_larger_than_memory_allows_is_streamed_from_its_stored_copy() {
    // 300 rows x 4 features = 4,800 bytes: above a 2 KiB limit, so streamed; its shuffle
    // buffer and validation split, (32 + 75) rows x 16 bytes, fit.
    let ts = TestServer::start_with(|c| c.max_in_memory_dataset_bytes = 2048).await;
    run_reference("write_arrays.py", &[ts.data_path()]);
    let mut c = ts.client().await;
    let mut s = spec(0, 0, 8);
    s.dataset = arrays(pb::ArrayFormat::Npy, "table-x.npy", "table-y.npy");
    s.validation_fraction = Some(0.25);
    s.shuffle_buffer = Some(32);
    let job = c.submit_job(request(s.clone())).await.unwrap().into_inner();
    // The job reads only the server's stored copy: the source files can go.
    for f in ["table-x.npy", "table-y.npy"] {
        std::fs::remove_file(ts.data_path().join(f)).unwrap();
    }
    let events = bounded("the streamed job", common::watch(&mut c, &job.id, 0)).await;
    let st = statuses(&events);
    assert_eq!(
        st.last().unwrap().0,
        pb::JobStatus::Succeeded as i32,
        "{st:?}"
    );
    assert!(
        st.iter()
            .any(|(_, m)| m.contains("streaming 300 rows") && m.contains("shuffle buffer 32 rows")),
        "the RUNNING message says the job streams: {st:?}"
    );
    learned_the_table(&events);
    // The spec says which stored copy it trained on.
    let got = common::get_job(&mut c, &job.id).await;
    match got.spec.and_then(|s| s.dataset).and_then(|d| d.source) {
        Some(pb::dataset::Source::Arrays(a)) => assert_eq!(a.stored.len(), 64, "{a:?}"),
        other => panic!("{other:?}"),
    }

    // What needs every training row at once is refused, naming the field.
    run_reference("write_arrays.py", &[ts.data_path()]);
    let mut r = s.clone();
    r.resampling = Some(pb::Resampling {
        method: pb::ResamplingMethod::RandomOversample as i32,
        ..Default::default()
    });
    let err = c.submit_job(request(r)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let mut big = s.clone();
    big.shuffle_buffer = Some(1000);
    let e = c.submit_job(request(big)).await.unwrap_err();
    assert!(
        e.message().contains("spec.shuffle_buffer") && e.message().contains("(225 rows)"),
        "a buffer that does not fit the memory limit is refused: {e:?}"
    );
    assert!(
        err.message().contains("spec.resampling")
            && err.message().contains("--max-in-memory-dataset-bytes"),
        "{err:?}"
    );
}

//! ONNX Runtime is found without environment variables, runs a graph, and model directories are
//! validated with clear messages. Needs `scripts/setup.sh` (run by `./test.sh`) to have put the
//! library in `.ort/lib`.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::runtime::{
    self, ExecutionProvider, GraphSpec, Manifest, ModelKind, RuntimeError, SessionOptions,
    TensorSpec,
};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

fn spec(name: &str, dtype: &str, shape: serde_json::Value) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype: dtype.into(),
        shape: shape.as_array().cloned().unwrap_or_default(),
    }
}

fn add_spec() -> GraphSpec {
    GraphSpec {
        file: "add.onnx".into(),
        inputs: vec![
            spec("a", "float32", serde_json::json!(["n", 3])),
            spec("b", "float32", serde_json::json!(["n", 3])),
        ],
        outputs: vec![spec("c", "float32", serde_json::json!(["n", 3]))],
        external_data: None,
    }
}

#[test]
fn onnxruntime_is_found_without_environment_variables() {
    // ORT_DYLIB_PATH is not set by test.sh; the library must come from the search list.
    let info = runtime::ensure_initialized().expect("ONNX Runtime loads (run ./test.sh)");
    assert!(info.library.is_file());
    assert!(
        info.build_info.contains("ORT Build Info"),
        "unexpected build info {}",
        info.build_info
    );
    // The set-up script installs the wheel's versioned library behind a symlink.
    assert_eq!(info.version.as_deref(), Some("1.31.1"));
    // every session allocates from one CPU arena registered in the environment
    assert!(info.shared_arena, "the shared CPU arena was not registered");
}

/// Sessions that sleep between parallel sections (SAM 2's) and sessions from the shared arena
/// run and give the same numbers, run after run.
#[test]
fn sleeping_and_spinning_sessions_share_the_arena_and_agree() {
    let file = fixture("add.onnx");
    let run = |spin: bool| {
        let (mut session, _, _) =
            runtime::build_session_with(&file, &SessionOptions::default(), spin).unwrap();
        (0..3)
            .map(|k| {
                let a =
                    ort::value::Tensor::from_array(([1usize, 3], vec![k as f32, 2., 3.])).unwrap();
                let b = ort::value::Tensor::from_array(([1usize, 3], vec![0.5f32; 3])).unwrap();
                let out = session.run(ort::inputs!["a" => a, "b" => b]).unwrap();
                out["c"].try_extract_tensor::<f32>().unwrap().1.to_vec()
            })
            .collect::<Vec<_>>()
    };
    let (sleeping, spinning) = (run(false), run(true));
    assert_eq!(sleeping, spinning);
    assert_eq!(sleeping[2], vec![2.5, 2.5, 3.5]);
}

#[test]
fn a_graph_runs_on_the_cpu_and_its_interface_validates() {
    let file = fixture("add.onnx");
    let (mut session, provider, warning) =
        runtime::build_session(&file, &SessionOptions::default()).expect("session");
    assert_eq!(provider, ExecutionProvider::Cpu);
    assert!(warning.is_none());
    runtime::validate_io(&session, &file, &add_spec()).expect("interface matches");

    let a = ort::value::Tensor::from_array(([2usize, 3], vec![1f32, 2., 3., 4., 5., 6.])).unwrap();
    let b = ort::value::Tensor::from_array(([2usize, 3], vec![10f32; 6])).unwrap();
    let outputs = session.run(ort::inputs!["a" => a, "b" => b]).unwrap();
    let (shape, data) = outputs["c"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(shape.to_vec(), vec![2, 3]);
    assert_eq!(data, &[11., 12., 13., 14., 15., 16.]);
}

#[test]
fn a_mismatched_interface_names_the_file_and_tensor() {
    let file = fixture("add.onnx");
    let (session, _, _) = runtime::build_session(&file, &SessionOptions::default()).unwrap();

    let mut wrong_type = add_spec();
    wrong_type.inputs[1].dtype = "int64".into();
    let err = runtime::validate_io(&session, &file, &wrong_type).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("add.onnx") && msg.contains("`b`") && msg.contains("int64"),
        "{msg}"
    );

    let mut wrong_rank = add_spec();
    wrong_rank.outputs[0].shape.push(serde_json::json!(1));
    let msg = runtime::validate_io(&session, &file, &wrong_rank)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`c`") && msg.contains("rank 2"), "{msg}");

    let mut wrong_dim = add_spec();
    wrong_dim.inputs[0].shape[1] = serde_json::json!(4);
    let msg = runtime::validate_io(&session, &file, &wrong_dim)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`a`") && msg.contains("axis 1"), "{msg}");

    let mut missing = add_spec();
    missing.inputs[0].name = "x".into();
    let msg = runtime::validate_io(&session, &file, &missing)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`x`") && msg.contains("not an input"), "{msg}");
}

#[test]
fn cuda_request_without_cuda_falls_back_to_cpu_with_a_warning() {
    // The CPU-only ONNX Runtime wheel has no CUDA provider: the session must still be built, on
    // the CPU, and the fallback must be reported.
    let options = SessionOptions {
        provider: ExecutionProvider::Cuda,
        intra_threads: 1,
        remote: None,
    };
    let (_, provider, warning) = runtime::build_session(&fixture("add.onnx"), &options).unwrap();
    if provider == ExecutionProvider::Cpu {
        assert!(
            warning.is_some(),
            "a CUDA fallback must come with a warning"
        );
    }
}

fn write_model_dir(dir: &Path, kind: &str, tamper: bool) {
    std::fs::copy(fixture("add.onnx"), dir.join("add.onnx")).unwrap();
    let sha = runtime_sha(&dir.join("add.onnx"));
    let manifest = serde_json::json!({
        "format": "pixelrefer-studio-model", "version": 1, "kind": kind, "variant": "test",
        "graphs": {"adder": add_spec()},
        "constants": {"answer": 42},
        "files": {"add.onnx": sha},
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    if tamper {
        let mut bytes = std::fs::read(dir.join("add.onnx")).unwrap();
        bytes.push(0);
        std::fs::write(dir.join("add.onnx"), bytes).unwrap();
    }
}

fn runtime_sha(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn manifests_are_checked_for_kind_constants_and_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    write_model_dir(tmp.path(), "sam2", false);
    let m = Manifest::load(tmp.path()).unwrap();
    assert_eq!(m.kind, ModelKind::Sam2);
    m.verify_files(tmp.path()).unwrap();
    assert_eq!(m.constant_f64(tmp.path(), "answer").unwrap(), 42.0);
    assert!(m.constant_f64(tmp.path(), "missing").is_err());
    assert!(m.graph(tmp.path(), "adder").is_ok());
    let err = m
        .expect_kind(
            tmp.path(),
            &[ModelKind::PixelRefer, ModelKind::PixelReferLite],
        )
        .unwrap_err();
    assert!(matches!(err, RuntimeError::WrongKind { .. }));
    assert!(err.to_string().contains("sam2 model"), "{err}");

    let tampered = tempfile::tempdir().unwrap();
    write_model_dir(tampered.path(), "pixelrefer", true);
    let m = Manifest::load(tampered.path()).unwrap();
    let msg = m.verify_files(tampered.path()).unwrap_err().to_string();
    assert!(msg.contains("add.onnx") && msg.contains("sha256"), "{msg}");
}

#[test]
fn bad_model_directories_get_one_clear_sentence() {
    let empty = tempfile::tempdir().unwrap();
    let msg = Manifest::load(empty.path()).unwrap_err().to_string();
    assert!(
        msg.contains("not a model directory") && msg.contains("manifest.json"),
        "{msg}"
    );

    std::fs::write(empty.path().join("manifest.json"), "{not json").unwrap();
    let msg = Manifest::load(empty.path()).unwrap_err().to_string();
    assert!(msg.contains("invalid"), "{msg}");

    let missing = empty.path().join("nope");
    let msg = Manifest::load(&missing).unwrap_err().to_string();
    assert!(msg.contains("does not exist"), "{msg}");

    let unknown_kind = tempfile::tempdir().unwrap();
    write_model_dir(unknown_kind.path(), "yolo", false);
    assert!(Manifest::load(unknown_kind.path()).is_err());

    // Edits of a valid manifest: each refused at load, in one sentence.
    let edited = |edit: &dyn Fn(&mut serde_json::Value), says: &str| {
        let dir = tempfile::tempdir().unwrap();
        write_model_dir(dir.path(), "sam2", false);
        let path = dir.path().join("manifest.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
        let msg = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains(says), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    };
    edited(&|v| v["version"] = 2.into(), "schema version 2");
    edited(&|v| v["version"] = 0.into(), "schema version 0");
    // A graph without a recorded sha256 (another model's graph, put in by hand).
    edited(
        &|v| v["files"] = serde_json::json!({}),
        "no sha256 for add.onnx",
    );
    edited(
        &|v| {
            v.as_object_mut().unwrap().remove("files");
        },
        "no sha256 for add.onnx",
    );

    // What is not a regular file is refused before it is read: a FIFO would block, an
    // endless device would be read until memory runs out.
    #[cfg(unix)]
    {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("manifest.json")).unwrap();
        let msg = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
        let fifo = tempfile::tempdir().unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(fifo.path().join("manifest.json"))
            .status();
        if made.is_ok_and(|s| s.success()) {
            let msg = Manifest::load(fifo.path()).unwrap_err().to_string();
            assert!(msg.contains("not a regular file"), "{msg}");
        }
        let tensors = dir.path().join("t.safetensors");
        std::os::unix::fs::symlink("/dev/zero", &tensors).unwrap();
        let msg = runtime::safetensors::read_safetensors(&tensors).unwrap_err();
        assert!(msg.contains("not a regular file"), "{msg}");
    }
}

#[test]
fn model_dirs_are_found_in_search_order() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    std::fs::create_dir(&a).unwrap();
    write_model_dir(&a, "sam2", false);
    let found = runtime::find_model_dirs(Some(root.path()));
    assert_eq!(found.first().map(|(p, _)| p.clone()), Some(a.clone()));
    assert_eq!(
        runtime::model_search_dirs(Some(root.path()))[0],
        root.path()
    );
}

#[test]
fn verified_files_are_not_hashed_again_until_they_change() {
    let tmp = tempfile::tempdir().unwrap();
    write_model_dir(tmp.path(), "pixelrefer", false);
    let m = Manifest::load(tmp.path()).unwrap();
    let cache = tmp.path().join("cache/verified.json");
    let verify = || runtime::verify_files_with_cache(tmp.path(), &m.files, Some(cache.as_path()));
    let first = verify().unwrap();
    assert_eq!((first.hashed, first.cached), (1, 0));
    let second = verify().unwrap();
    assert_eq!((second.hashed, second.cached), (0, 1));
    // The same size, one byte different: hashed again and refused, cache or not.
    let path = tmp.path().join("add.onnx");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let msg = verify().unwrap_err().to_string();
    assert!(msg.contains("add.onnx") && msg.contains("sha256"), "{msg}");
    // Put back: verified by hashing, not from the stale entry.
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(verify().unwrap().hashed, 1);
    // A manifest naming a file outside its directory is refused.
    let mut files = m.files.clone();
    files.insert("../add.onnx".into(), "00".into());
    let msg = runtime::verify_files_with_cache(tmp.path(), &files, None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("not a file name inside the directory"),
        "{msg}"
    );
}

#[test]
fn thread_counts_are_checked_before_a_session_is_built() {
    let max = runtime::max_intra_threads();
    assert!(max >= 4);
    for (threads, ok) in [
        (0, true),
        (1, true),
        (max, true),
        (max + 1, false),
        (100_000, false),
    ] {
        let options = SessionOptions {
            provider: ExecutionProvider::Cpu,
            intra_threads: threads,
            remote: None,
        };
        assert_eq!(options.validate().is_ok(), ok, "{threads}");
    }
    let options = SessionOptions {
        provider: ExecutionProvider::Cpu,
        intra_threads: 100_000,
        remote: None,
    };
    let t0 = std::time::Instant::now();
    let Err(err) = runtime::build_session(&fixture("add.onnx"), &options) else {
        panic!("100000 threads must be refused");
    };
    assert!(t0.elapsed() < std::time::Duration::from_secs(1));
    assert!(
        matches!(
            err,
            RuntimeError::Threads {
                requested: 100_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("give 0 (one per core)"), "{err}");
}

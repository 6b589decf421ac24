//! PixelRefer / PixelRefer-Lite engine against the PyTorch reference (tiny random models).
//!
//! Fixtures (./test.sh makes them; see `tests/refer_common/mod.rs`):
//! `PY=~/.cache/pixelrefer-studio/venv/bin/python`
//! `$PY onnx/export_pixelrefer.py --tiny-random .fixtures/models/pixelrefer-tiny --variant full`
//! `$PY onnx/export_pixelrefer.py --tiny-random .fixtures/models/pixelrefer-lite-tiny --variant lite`
//!
//! What is exact and what has a tolerance:
//! * exact: prompt ids (`turn*.input_ids`), greedy ids (`turn*.generated_ids`), crop sizes,
//!   mask-grid selections, image/frame patches (PIL bicubic port), video keep mask, token counts;
//! * exact too: the object crops and the Lite 336 / 224 images (our OpenCV `INTER_LINEAR` /
//!   `INTER_AREA` ports are bit-exact with `cv2.resize`, see `refer_cv2.rs`). Each case still
//!   runs twice: with the reference crops fed in (every check below), and from the raw inputs end
//!   to end; both must give the reference ids;
//! * graph outputs (ONNX Runtime here vs PyTorch in the reference): vision features, features
//!   with positions, object tokens, projected tokens, inputs_embeds ≤ 1e-4 abs; k-means tokens
//!   ≤ 1e-4 abs; first-step logits ≤ 2e-4 abs.
#![allow(clippy::unwrap_used)]

mod refer_common;

use image::RgbImage;
use pixelrefer_studio::mask::Mask;
use pixelrefer_studio::refer::{
    CancelToken, FrameMask, GenerationOptions, Media, ObjectMasks, PixelRefer, ReferError, Request,
    Turn,
};
use pixelrefer_studio::runtime::SessionOptions;
use refer_common::{StTensor, assert_close, fixture, load, reference_case, simple_request};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const TOL_FEATURES: f32 = 1e-4;
const TOL_LOGITS: f32 = 2e-4;

/// The raw question of turn `turn` (`turns[i].question` of cases.json).
fn question(case: &Case, turn: usize) -> String {
    case.meta["turns"][turn]["question"]
        .as_str()
        .expect("cases.json stores each turn's question: re-run ./test.sh")
        .to_string()
}

struct Case {
    meta: Value,
    st: HashMap<String, StTensor>,
}

fn load_case(dir: &Path, name: &str) -> Case {
    let (meta, st) = reference_case(dir, name);
    Case { meta, st }
}

fn rgb(t: &StTensor) -> RgbImage {
    RgbImage::from_raw(t.shape[1] as u32, t.shape[0] as u32, t.u8()).unwrap()
}

fn request(case: &Case, turn: usize, history: Vec<Turn>) -> Request {
    let n_frames = case.meta["n_frames"].as_u64().unwrap() as usize;
    let frames: Vec<RgbImage> = (0..n_frames)
        .map(|i| rgb(&case.st[&format!("input.frame{i}")]))
        .collect();
    let media = if case.meta["modal"] == "video" {
        let ts = case.meta["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        Media::Video {
            frames,
            timestamps_secs: ts,
        }
    } else {
        Media::Image(frames.into_iter().next().unwrap())
    };
    let objects = case.meta["objects_masks"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(oi, fr)| ObjectMasks {
            tag_id: oi as u32,
            masks: fr
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(mi, f)| {
                    let t = &case.st[&format!("input.obj{oi}.mask{mi}")];
                    FrameMask {
                        frame: f.as_u64().unwrap() as usize,
                        mask: Mask::from_raw(t.shape[1] as u32, t.shape[0] as u32, t.u8()).unwrap(),
                    }
                })
                .collect(),
        })
        .collect();
    Request {
        media,
        objects,
        history,
        question: question(case, turn),
        options: GenerationOptions {
            max_new_tokens: Some(case.meta["max_new_tokens"].as_u64().unwrap() as usize),
            ..GenerationOptions::default()
        },
    }
}

fn ids_u32(t: &StTensor) -> Vec<u32> {
    t.i64().into_iter().map(|v| v as u32).collect()
}

/// Checks one case: our crops equal the reference's, intermediates with the reference crops fed
/// in, then the exact ids of every turn; returns whether the run from raw inputs (our OpenCV
/// ports) gives the same ids too.
fn check_case(model: &mut PixelRefer, case_name: &str, dir: &Path) -> bool {
    let case = load_case(dir, case_name);
    let st = &case.st;
    let cancel = CancelToken::new();
    let lite = model.variant() == pixelrefer_studio::refer::Variant::Lite;
    let turns = case.meta["turns"].as_array().unwrap().clone();
    let mut history: Vec<Turn> = Vec::new();
    let mut raw_same = true;
    for (t, turn_meta) in turns.iter().enumerate() {
        let req = request(&case, t, history.clone());
        let mut prepared = model.prepare(&req).unwrap();
        // Image/frame patches: exact (PIL bicubic port).
        for (i, p) in prepared.frames.iter().enumerate() {
            let key = if case.meta["modal"] == "video" {
                format!("frame{i}.patches")
            } else {
                "image.patches".to_string()
            };
            assert!(p.data == st[&key].f32(), "{case_name}: {key} differ");
        }
        // Object crops: sizes, grids and pixels exact (bit-exact OpenCV ports); the reference's
        // pixels are fed in from here on all the same.
        for (k, pm) in prepared.masks.iter_mut().enumerate() {
            let want = rgb(&st[&format!("obj{k}.crop")]);
            assert_eq!(
                pm.saot.crop.dimensions(),
                want.dimensions(),
                "{case_name} obj{k} crop size"
            );
            let grid = st[&format!("obj{k}.mask_grid")].f32();
            let sel: Vec<bool> = pm.saot.mask_grid.2.iter().map(|&v| v > 0.0).collect();
            assert_eq!(
                sel,
                grid.iter().map(|&v| v > 0.0).collect::<Vec<_>>(),
                "{case_name} obj{k} grid"
            );
            assert!(pm.saot.crop == want, "{case_name} obj{k} crop pixels");
            pm.saot.crop = want;
            if lite {
                let global = rgb(&st[&format!("obj{k}.global_image")]);
                let local = rgb(&st[&format!("obj{k}.local_image")]);
                assert!(
                    pm.global_image.as_ref() == Some(&global),
                    "{case_name} obj{k} global image pixels"
                );
                assert!(
                    pm.local_image.as_ref() == Some(&local),
                    "{case_name} obj{k} local image pixels"
                );
                pm.global_image = Some(global);
                pm.local_image = Some(local);
            }
        }
        if t == 0 {
            let n = prepared.masks.len();
            for (k, pm) in prepared.masks.iter().enumerate() {
                let tr = model.encode_mask(pm, n, &cancel).unwrap();
                let p = format!("{case_name} obj{k}");
                assert!(
                    tr.crop_patches == st[&format!("obj{k}.crop_patches")].f32(),
                    "{p} crop patches"
                );
                assert_close(
                    &format!("{p} crop_features"),
                    &tr.crop_features,
                    &st[&format!("obj{k}.crop_features")].f32(),
                    TOL_FEATURES,
                );
                assert_close(
                    &format!("{p} features_with_pos"),
                    &tr.features_with_pos,
                    &st[&format!("obj{k}.features_with_pos")].f32(),
                    TOL_FEATURES,
                );
                let sel_key = if lite {
                    "padded_tokens"
                } else {
                    "selected_or_kmeans"
                };
                assert_close(
                    &format!("{p} {sel_key}"),
                    &tr.selected,
                    &st[&format!("obj{k}.{sel_key}")].f32(),
                    TOL_FEATURES,
                );
                if lite {
                    assert_close(
                        &format!("{p} oci"),
                        &tr.oci_tokens,
                        &st[&format!("obj{k}.oci_tokens")].f32(),
                        TOL_FEATURES,
                    );
                }
                assert_close(
                    &format!("{p} object_tokens"),
                    &tr.object_tokens,
                    &st[&format!("obj{k}.object_tokens")].f32(),
                    TOL_FEATURES,
                );
            }
            for (i, f) in prepared.frames.iter().enumerate() {
                let tr = model.encode_frame(f, &cancel).unwrap();
                let pre = if case.meta["modal"] == "video" {
                    format!("frame{i}")
                } else {
                    "image".into()
                };
                assert_close(
                    &format!("{case_name} {pre}.vision_features"),
                    &tr.features,
                    &st[&format!("{pre}.vision_features")].f32(),
                    TOL_FEATURES,
                );
                assert_close(
                    &format!("{case_name} {pre}.projected"),
                    &tr.projected,
                    &st[&format!("{pre}.projected")].f32(),
                    TOL_FEATURES,
                );
            }
        }
        // Prompt ids exact, embeddings and first logits within tolerance.
        model.clear_cache();
        let prompt = model.build_prompt(&req, &prepared, &cancel).unwrap();
        assert_eq!(
            prompt.text,
            turn_meta["prompt"].as_str().unwrap(),
            "{case_name} turn {t} prompt"
        );
        assert_eq!(
            prompt.ids,
            st[&format!("turn{t}.input_ids")].i64(),
            "{case_name} turn {t} input ids"
        );
        assert_close(
            &format!("{case_name} turn{t} inputs_embeds"),
            &prompt.embeds,
            &st[&format!("turn{t}.inputs_embeds")].f32(),
            TOL_FEATURES,
        );
        let (logits, _) = model.prefill(prompt.embeds.clone(), &cancel).unwrap();
        assert_close(
            &format!("{case_name} turn{t} first logits"),
            &logits,
            &st[&format!("turn{t}.first_logits")].f32(),
            TOL_LOGITS,
        );
        // Greedy ids: exact.
        let mut streamed = String::new();
        let answer = model
            .ask_prepared(&req, &prepared, &mut |s| streamed.push_str(s), &cancel)
            .unwrap();
        let want = ids_u32(&st[&format!("turn{t}.generated_ids")]);
        assert_eq!(answer.token_ids, want, "{case_name} turn {t} generated ids");
        assert_eq!(
            answer.text,
            turn_meta["answer"].as_str().unwrap(),
            "{case_name} turn {t} answer"
        );
        assert_eq!(
            streamed.trim(),
            answer.text,
            "{case_name}: streamed text = answer"
        );
        assert_eq!(answer.prompt_tokens, prompt.ids.len());
        assert_eq!(answer.generated_tokens, want.len());
        // From raw inputs, our own crops.
        model.clear_cache();
        let raw = model.ask(&req, &mut |_| {}, &cancel).unwrap();
        raw_same &= raw.token_ids == want;
        history.push(Turn {
            question: req.question.clone(),
            answer: answer.text.clone(),
        });
    }
    raw_same
}

#[test]
fn full_image_1obj_parity() {
    let (mut m, dir) = load("pixelrefer-tiny");
    let raw = check_case(&mut m, "image_1obj", &dir);
    assert!(
        raw,
        "image_1obj: from raw inputs (our OpenCV ports) the ids differ"
    );
}

#[test]
fn full_image_3obj_thin_and_whole_masks_parity() {
    let (mut m, dir) = load("pixelrefer-tiny");
    let raw = check_case(&mut m, "image_3obj", &dir);
    assert!(
        raw,
        "image_3obj: from raw inputs (our OpenCV ports) the ids differ"
    );
}

#[test]
fn full_video_2obj_4frames_parity() {
    let (mut m, dir) = load("pixelrefer-tiny");
    let raw = check_case(&mut m, "video_2obj", &dir);
    assert!(
        raw,
        "video_2obj: from raw inputs (our OpenCV ports) the ids differ"
    );
}

#[test]
fn full_two_turn_parity() {
    let (mut m, dir) = load("pixelrefer-tiny");
    let raw = check_case(&mut m, "two_turn", &dir);
    assert!(
        raw,
        "two_turn: from raw inputs (our OpenCV ports) the ids differ"
    );
}

#[test]
fn lite_image_parity() {
    let (mut m, dir) = load("pixelrefer-lite-tiny");
    let raw = check_case(&mut m, "lite_image", &dir);
    assert!(
        raw,
        "lite_image: from raw inputs (our OpenCV ports) the ids differ"
    );
}

#[test]
fn lite_video_parity() {
    let (mut m, dir) = load("pixelrefer-lite-tiny");
    let raw = check_case(&mut m, "lite_video", &dir);
    assert!(
        raw,
        "lite_video: from raw inputs (our OpenCV ports) the ids differ"
    );
}

#[test]
fn lite_two_turn_parity() {
    let (mut m, dir) = load("pixelrefer-lite-tiny");
    let raw = check_case(&mut m, "lite_two_turn", &dir);
    assert!(
        raw,
        "lite_two_turn: from raw inputs (our OpenCV ports) the ids differ"
    );
}

#[test]
fn bad_inputs_give_typed_errors() {
    let (mut m, dir) = load("pixelrefer-tiny");
    let cancel = CancelToken::new();
    let mut ask = |req: &Request| m.ask(req, &mut |_| {}, &cancel);
    // Empty mask.
    let mut req = simple_request(64, 48);
    req.objects[0].masks[0].mask = Mask::new(64, 48);
    assert!(matches!(
        ask(&req),
        Err(ReferError::EmptyMask {
            tag_id: 0,
            frame: 0
        })
    ));
    // Mask of the wrong size.
    let mut req = simple_request(64, 48);
    req.objects[0].masks[0].mask = Mask::from_raw(10, 10, vec![1; 100]).unwrap();
    let err = ask(&req).unwrap_err();
    assert!(
        matches!(
            err,
            ReferError::MaskSize {
                mask_w: 10,
                frame_w: 64,
                ..
            }
        ),
        "{err}"
    );
    // A tag without an object.
    let mut req = simple_request(64, 48);
    req.question = "Is <object0> next to <object7>?".into();
    match ask(&req) {
        Err(ReferError::UnknownTag { tag }) => assert_eq!(tag, "<object7>"),
        other => panic!("expected UnknownTag, got {other:?}"),
    }
    // No objects; a mask on a frame the media does not have.
    let mut req = simple_request(64, 48);
    req.objects.clear();
    assert!(matches!(ask(&req), Err(ReferError::InvalidRequest(_))));
    let mut req = simple_request(64, 48);
    req.objects[0].masks[0].frame = 3;
    assert!(matches!(ask(&req), Err(ReferError::InvalidRequest(_))));
    // A question longer than the context (32768 tokens).
    let mut req = simple_request(64, 48);
    req.question = "a b c d e f g h ".repeat(6000);
    let err = ask(&req).unwrap_err();
    assert!(
        matches!(err, ReferError::ContextTooLong { limit: 32768, .. }),
        "{err}"
    );
    // The good request still works afterwards.
    let ok = ask(&simple_request(64, 48)).unwrap();
    assert!(ok.generated_tokens >= 1 && ok.generated_tokens <= 4);

    // A model directory of the wrong kind; one without a tokenizer.
    let tmp = tempfile::tempdir().unwrap();
    let copy_model = |to: &Path, skip: &str, kind: Option<&str>| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if p.is_file() && name != skip {
                std::fs::copy(&p, to.join(&name)).unwrap();
            }
        }
        if let Some(k) = kind {
            let mp = to.join("manifest.json");
            let mut v: Value =
                serde_json::from_str(&std::fs::read_to_string(&mp).unwrap()).unwrap();
            v["kind"] = Value::String(k.into());
            std::fs::write(&mp, v.to_string()).unwrap();
        }
    };
    let wrong = tmp.path().join("sam");
    copy_model(&wrong, "", Some("sam2"));
    let err = PixelRefer::load(&wrong, &SessionOptions::default()).unwrap_err();
    assert!(err.to_string().contains("sam2"), "{err}");
    let no_tok = tmp.path().join("notok");
    copy_model(&no_tok, "tokenizer.json", None);
    let err = PixelRefer::load(&no_tok, &SessionOptions::default()).unwrap_err();
    // The manifest lists tokenizer.json with its sha256, so the file check finds it missing
    // before the tokenizer is read.
    assert!(
        matches!(err, ReferError::Tokenizer { .. } | ReferError::Runtime(_)),
        "{err}"
    );
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn cancel_between_tokens_returns_quickly() {
    let (mut m, dir) = load("pixelrefer-tiny");
    let case = load_case(&dir, "image_3obj");
    let mut req = request(&case, 0, vec![]);
    req.options.max_new_tokens = Some(500);
    req.options.repetition_penalty = Some(1.0);
    // Cancelled before it starts: no graph runs.
    let pre = CancelToken::new();
    pre.cancel();
    let t = Instant::now();
    assert!(matches!(
        m.ask(&req, &mut |_| {}, &pre),
        Err(ReferError::Cancelled)
    ));
    assert!(t.elapsed() < Duration::from_millis(500));
    // Cancelled from the streaming callback (as the UI's stop button would, from a job).
    let cancel = CancelToken::new();
    let mut pieces = 0;
    let mut at: Option<Instant> = None;
    let c2 = cancel.clone();
    let res = m.ask(
        &req,
        &mut |_| {
            pieces += 1;
            if pieces == 2 {
                c2.cancel();
                at = Some(Instant::now());
            }
        },
        &cancel,
    );
    assert!(matches!(res, Err(ReferError::Cancelled)), "{res:?}");
    assert_eq!(pieces, 2, "no token after cancel");
    let after = at.unwrap().elapsed();
    assert!(
        after < Duration::from_millis(200),
        "returned {after:?} after cancel"
    );
}

#[test]
fn region_cache_reuses_encodings_across_turns() {
    let (mut m, dir) = load("pixelrefer-tiny");
    let case = load_case(&dir, "image_1obj");
    let req = request(&case, 0, vec![]);
    let cancel = CancelToken::new();
    let a = m.ask(&req, &mut |_| {}, &cancel).unwrap();
    assert_eq!(m.cache_len(), (1, 1));
    let again = m.ask(&req, &mut |_| {}, &cancel).unwrap();
    assert_eq!(a.token_ids, again.token_ids);
    assert_eq!(m.cache_len(), (1, 1), "same frame and mask: cache hit");
    let mut other = req.clone();
    other.objects[0].masks[0].mask = Mask::from_raw(120, 90, {
        let mut b = vec![0u8; 120 * 90];
        b[45 * 120 + 60] = 1;
        b
    })
    .unwrap();
    m.ask(&other, &mut |_| {}, &cancel).unwrap();
    assert_eq!(
        m.cache_len(),
        (1, 2),
        "another mask: new region entry, same frame entry"
    );
}

#[test]
fn ask_cli_image_json_matches_reference_ids() {
    let dir = fixture("pixelrefer-tiny");
    let case = load_case(&dir, "image_1obj");
    let tmp = tempfile::tempdir().unwrap();
    let img_path = tmp.path().join("frame.png");
    rgb(&case.st["input.frame0"]).save(&img_path).unwrap();
    let m = &case.st["input.obj0.mask0"];
    let mask_img = image::GrayImage::from_raw(
        m.shape[1] as u32,
        m.shape[0] as u32,
        m.u8().into_iter().map(|v| v * 255).collect(),
    )
    .unwrap();
    let mask_path = tmp.path().join("m0.png");
    mask_img.save(&mask_path).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .args(["ask", "--model"])
        .arg(&dir)
        .arg("--image")
        .arg(&img_path)
        .arg("--mask")
        .arg(&mask_path)
        .args([
            "--json",
            "--max-new-tokens",
            "12",
            "What is <object0> doing?",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u32> = v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, ids_u32(&case.st["turn0.generated_ids"]));
    assert_eq!(v["prompt_tokens"], case.meta["turns"][0]["n_input"]);
    assert!(v["timings"]["time_to_first_token_secs"].as_f64().unwrap() > 0.0);
    // A mask of the wrong size is a one-line error, not a panic.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .args(["ask", "--model"])
        .arg(&dir)
        .arg("--image")
        .arg(&img_path)
        .arg("--mask")
        .arg(img_path.with_file_name("nope.png"))
        .arg("Q <object0>?")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error:") && last.contains("nope.png"),
        "{stderr}"
    );
}

#[test]
fn streaming_into_a_bounded_channel() {
    let (mut m, dir) = load("pixelrefer-lite-tiny");
    let case = load_case(&dir, "lite_video");
    let req = request(&case, 0, vec![]);
    let (tx, rx) = crossbeam_channel::bounded::<String>(2);
    let reader = std::thread::Builder::new()
        .name("stream-reader".into())
        .spawn(move || rx.iter().collect::<Vec<String>>())
        .unwrap();
    let answer = m.ask_streaming(&req, &tx, &CancelToken::new()).unwrap();
    drop(tx);
    let pieces = reader.join().unwrap();
    assert!(!pieces.is_empty());
    assert_eq!(pieces.concat().trim(), answer.text);
    assert_eq!(answer.token_ids, ids_u32(&case.st["turn0.generated_ids"]));
}

/// `ask --video V --regions R` end to end on the demo video (decoded by the media module) with
/// the Lite model: masks as COCO RLE on frames 0 and 2, one answer as JSON.
#[test]
fn ask_cli_video_with_regions() {
    let dir = fixture("pixelrefer-lite-tiny");
    let video = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.mp4");
    let info = pixelrefer_studio::media::open(&video)
        .unwrap()
        .item_info(0)
        .unwrap();
    let (w, h) = (info.width as u64, info.height as u64);
    // A box of columns [w/4, w/2) and rows [h/4, h/2), column-major runs.
    let counts = |x0: u64, x1: u64| {
        let mut c = vec![x0 * h + h / 4];
        for col in x0..x1 {
            c.push(h / 2 - h / 4);
            c.push(if col + 1 < x1 {
                h - (h / 2 - h / 4)
            } else {
                (w - x1) * h + (h - h / 2)
            });
        }
        c
    };
    let rle = |x0, x1| serde_json::json!({"size": [h, w], "counts": counts(x0, x1)});
    let regions = serde_json::json!({
        "items": [{"fps": info.fps, "objects": [
            {"tag": "<object0>", "frames": [{"index": 0, "rle": rle(w / 4, w / 2)}, {"index": 2, "rle": rle(w / 4 + 2, w / 2 + 2)}]},
            {"tag": "<object1>", "frames": [{"index": 2, "rle": rle(w / 2, w * 3 / 4)}]}
        ]}]
    });
    let tmp = tempfile::tempdir().unwrap();
    let rpath = tmp.path().join("demo.regions.json");
    std::fs::write(&rpath, regions.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .args(["ask", "--model"])
        .arg(&dir)
        .arg("--video")
        .arg(&video)
        .arg("--regions")
        .arg(&rpath)
        .args([
            "--json",
            "--max-new-tokens",
            "4",
            "Does <object0> touch <object1>?",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Lite: 3 masks x 32 object tokens in the prompt.
    assert!(v["prompt_tokens"].as_u64().unwrap() > 96, "{v}");
    let n = v["generated_tokens"].as_u64().unwrap();
    assert!((1..=4).contains(&n), "{v}");
}

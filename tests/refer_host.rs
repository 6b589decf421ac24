//! Host steps of the PixelRefer engine against `reference/host_vectors.json` (written by
//! `onnx/pixelrefer_export/host_vectors.py` from the numpy reference), plus the generation pieces.
//! Fixtures: see `tests/refer_common/mod.rs` (./test.sh makes them).
#![allow(clippy::unwrap_used)]

mod refer_common;

use image::RgbImage;
use pixelrefer_studio::refer::generation::{
    LogitsProcessor, Sampling, apply_repetition_penalty, argmax,
};
use pixelrefer_studio::refer::preprocess::{
    merge_tokens, patchify_chw, processor_max_pixels, round_to_dtype, smart_resize,
    video_keep_mask, vision_rope,
};
use pixelrefer_studio::refer::prompt::{self, Modal};
use pixelrefer_studio::refer::resize::{
    cv2_area_u8, cv2_linear_f32, cv2_linear_u8, pil_bicubic, torch_uint8_bilinear,
};
use pixelrefer_studio::refer::saot::{kmeans, kmeans_init_indices, region_position};
use pixelrefer_studio::refer::{ReferConfig, ReferError, TokenOutputStream};
use refer_common::{assert_close, fixture, read_safetensors};
use serde_json::Value;

fn vectors() -> Value {
    let p = fixture("pixelrefer-tiny").join("reference/host_vectors.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn config() -> ReferConfig {
    let dir = fixture("pixelrefer-tiny");
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    ReferConfig::from_constants(&dir, &m["constants"]).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    walk(v, &mut out);
    out
}

fn u8s(v: &Value) -> Vec<u8> {
    f32s(v).into_iter().map(|x| x as u8).collect()
}

fn usz(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

#[test]
fn smart_resize_and_budget_match_reference_exactly() {
    let hv = vectors();
    for c in hv["smart_resize"].as_array().unwrap() {
        let out = smart_resize(
            usz(&c["h"]),
            usz(&c["w"]),
            usz(&c["factor"]),
            usz(&c["min_pixels"]),
            usz(&c["max_pixels"]),
        );
        assert_eq!(
            [out.0, out.1],
            [usz(&c["out"][0]), usz(&c["out"][1])],
            "{c}"
        );
    }
    let cfg = config();
    for c in hv["processor_max_pixels"].as_array().unwrap() {
        assert_eq!(
            processor_max_pixels(&cfg, usz(&c["d"]), usz(&c["num_images"])),
            usz(&c["out"])
        );
    }
}

#[test]
fn timestamps_render_like_python_round() {
    for c in vectors()["round1"].as_array().unwrap() {
        assert_eq!(
            prompt::round1(c["t"].as_f64().unwrap()),
            c["out"].as_str().unwrap()
        );
    }
}

#[test]
fn mask_grid_resizes_match_reference_exactly() {
    let hv = vectors();
    for c in hv["torch_uint8_bilinear"].as_array().unwrap() {
        let m = &c["mask"];
        let (h, w) = (m.as_array().unwrap().len(), m[0].as_array().unwrap().len());
        let got = torch_uint8_bilinear(&u8s(m), h, w, usz(&c["out_h"]), usz(&c["out_w"]));
        assert_eq!(got, u8s(&c["out"]));
    }
    for c in hv["cv2_linear_f32_selected"].as_array().unwrap() {
        let m = &c["mask"];
        let (h, w) = (m.as_array().unwrap().len(), m[0].as_array().unwrap().len());
        let got: Vec<u8> = cv2_linear_f32(&u8s(m), h, w, usz(&c["out_h"]), usz(&c["out_w"]))
            .into_iter()
            .map(|v| u8::from(v > 0.0))
            .collect();
        assert_eq!(got, u8s(&c["selected"]));
    }
}

#[test]
fn vision_rope_patch_order_positions_merge() {
    let hv = vectors();
    let r = &hv["vision_rope"];
    let (cos, sin) = vision_rope(
        usz(&r["grid_h"]),
        usz(&r["grid_w"]),
        usz(&r["d"]),
        usz(&r["head_dim"]),
        r["theta"].as_f64().unwrap(),
    );
    // numpy's float32 cos/sin may differ from libm's in the last ulp: 1e-6 abs.
    assert_close("rope cos", &cos, &f32s(&r["cos"]), 1e-6);
    assert_close("rope sin", &sin, &f32s(&r["sin"]), 1e-6);

    let p = &hv["patchify_first_rows"];
    let chw: Vec<f32> = (0..3 * 28 * 56).map(|x| x as f32).collect();
    let patches = patchify_chw(&chw, 3, 28, 56, 14, usz(&p["d"]));
    let first: Vec<f32> = patches.chunks(588).map(|r| r[0]).collect();
    assert_eq!(first, f32s(&p["patch_pixel0_of_each_patch"]));

    let rp = &hv["region_position"];
    let b = f32s(&rp["bbox"]);
    let pos = region_position(
        usz(&rp["gh"]),
        usz(&rp["gw"]),
        (b[0] as usize, b[1] as usize, b[2] as usize, b[3] as usize),
        usz(&rp["H"]),
        usz(&rp["W"]),
    );
    assert_eq!(pos, f32s(&rp["out"]), "region positions are exact float32");

    let mt = &hv["merge_tokens"];
    let merged = merge_tokens(&f32s(&mt["features_block_order"]), 3, usz(&mt["d"]));
    // numpy's mean over two axes may sum in another order: 1e-6 abs.
    assert_close("merge", &merged, &f32s(&mt["out_raster"]), 1e-6);
}

#[test]
fn video_pruning_and_bf16_rounding_match_reference_exactly() {
    let hv = vectors();
    for c in hv["round_to_bfloat16"].as_array().unwrap() {
        let x = c["x"].as_f64().unwrap() as f32;
        assert_eq!(
            round_to_dtype(x, "bfloat16"),
            c["out"].as_f64().unwrap() as f32,
            "{x}"
        );
    }
    let v = &hv["video_keep_mask"];
    let frames: Vec<Vec<f32>> = v["frames"].as_array().unwrap().iter().map(f32s).collect();
    let refs: Vec<&[f32]> = frames.iter().map(Vec::as_slice).collect();
    let keep = video_keep_mask(
        &refs,
        usz(&v["d"]),
        12,
        v["dtype"].as_str().unwrap(),
        0.1,
        1,
    );
    let got: Vec<u8> = keep.concat().into_iter().map(u8::from).collect();
    assert_eq!(got, u8s(&v["out"]));
}

#[test]
fn kmeans_matches_reference() {
    let k = &vectors()["kmeans"];
    let toks = f32s(&k["tokens"]);
    let (kk, iters) = (usz(&k["k"]), usz(&k["iters"]));
    let init: Vec<usize> = f32s(&k["init_indices"])
        .into_iter()
        .map(|x| x as usize)
        .collect();
    assert_eq!(kmeans_init_indices(toks.len() / 4, kk), init);
    let out = kmeans(&toks, 4, kk, iters, 1e-5, 1e-6);
    // torch's float32 reductions may differ in the last ulp: 1e-5 abs (notes §12).
    assert_close("kmeans", &out, &f32s(&k["out"]), 1e-5);
}

#[test]
fn prompt_pieces_match_reference_exactly() {
    let p = &vectors()["prompt"];
    let s = |k: &str| p[k].as_str().unwrap().to_string();
    let q = prompt::region_question("What is <region1> doing?", &[0, 1], false);
    assert_eq!(q, s("region_question_image_2"));
    assert_eq!(
        prompt::region_question("Q?", &[0], true),
        s("region_question_video_1")
    );
    let filled = prompt::region_fill(&q, &[vec![(None, 3)], vec![(None, 2)]], false).unwrap();
    assert_eq!(filled, s("region_fill_full"));
    let lite = prompt::region_fill(
        "A <region> B",
        &[vec![(Some(0.0), 2), (Some(0.4), 2)]],
        true,
    )
    .unwrap();
    assert_eq!(lite, s("region_fill_lite_video"));
    let one = prompt::region_fill(&q, &[vec![(None, 1)], vec![(None, 1)]], false).unwrap();
    assert_eq!(
        prompt::user_content(&one, Modal::Image, &[]),
        s("user_content_image")
    );
    assert_eq!(
        prompt::user_content("<video>\nQ?", Modal::Video, &[0.0, 1.0, 2.0]),
        s("user_content_video")
    );
    assert_eq!(
        prompt::chat_prompt(&[("user", "<image>\nQ1"), ("assistant", "A1"), ("user", "Q2")]),
        s("chat_prompt_two_turns")
    );
}

#[test]
fn question_tags_are_checked_and_written_per_modality() {
    assert_eq!(
        prompt::normalize_question("Is <object1> left of <object0>?", &[0, 1], false).unwrap(),
        "Is <region1> left of <region0>?"
    );
    assert_eq!(
        prompt::normalize_question("Does <region0> move?<image>", &[0], true).unwrap(),
        "Does <object0> move?"
    );
    assert_eq!(
        prompt::normalize_question("a < b <objectx>", &[0], true).unwrap(),
        "a < b <objectx>"
    );
    match prompt::normalize_question("What about <object3>?", &[0, 1], false) {
        Err(ReferError::UnknownTag { tag }) => assert_eq!(tag, "<object3>"),
        other => panic!("expected UnknownTag, got {other:?}"),
    }
}

#[test]
fn logits_processor_exact_tokens() {
    let logits = [0.1f32, 2.0, -1.0, 2.0, 0.5];
    // Greedy: first index of the maximum.
    assert_eq!(argmax(&logits), 1);
    let mut greedy = LogitsProcessor::new(7, None, None);
    assert_eq!(greedy.sampling(), Sampling::ArgMax);
    assert_eq!(greedy.sample(&logits).unwrap(), 1);
    // Temperature 0 also means greedy.
    assert_eq!(
        LogitsProcessor::new(7, Some(0.0), Some(0.5))
            .sample(&logits)
            .unwrap(),
        1
    );
    // A near-zero temperature samples the arg max.
    let mut cold = LogitsProcessor::new(1, Some(1e-4), None);
    for _ in 0..20 {
        assert!(matches!(cold.sample(&[0.0, 5.0, 4.0]).unwrap(), 1));
    }
    // Top-p small enough keeps only the best token.
    let mut nucleus = LogitsProcessor::new(3, Some(1.0), Some(0.1));
    for _ in 0..20 {
        assert_eq!(nucleus.sample(&[0.0, 1.0, 3.0, 0.5]).unwrap(), 2);
    }
    // Same seed, same tokens; the sequence for seed 42 is pinned.
    let draw = |seed| {
        let mut lp = LogitsProcessor::new(seed, Some(1.0), None);
        (0..8)
            .map(|_| lp.sample(&[1.0, 1.0, 1.0, 1.0]).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42), draw(43));
    assert!(draw(42).iter().all(|&t| t < 4));
    // Top-p 0.6 over probabilities [0.5, 0.3, 0.2] keeps tokens 0 and 1 only.
    let lg: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
    let mut lp = LogitsProcessor::new(9, Some(1.0), Some(0.6));
    let mut seen = [0usize; 3];
    for _ in 0..400 {
        seen[lp.sample(&lg).unwrap() as usize] += 1;
    }
    assert_eq!(seen[2], 0);
    assert!(seen[0] > seen[1] && seen[1] > 0, "{seen:?}");
}

#[test]
fn repetition_penalty_like_hf() {
    let mut l = vec![2.0f32, -2.0, 1.0, 0.5];
    apply_repetition_penalty(&mut l, &[0, 1, 0], 2.0);
    // Each distinct generated id once: positive divided, negative multiplied.
    assert_eq!(l, vec![1.0, -4.0, 1.0, 0.5]);
    let mut same = vec![1.0f32, 2.0];
    apply_repetition_penalty(&mut same, &[1], 1.0);
    assert_eq!(same, vec![1.0, 2.0]);
}

#[test]
fn token_output_stream_emits_the_decoded_text() {
    let dir = fixture("pixelrefer-tiny");
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let text = "Hello wörld, the cat 🐈 sits.";
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    assert!(ids.len() > 3);
    let mut stream = TokenOutputStream::new(&tok);
    let mut pieces = Vec::new();
    for &id in &ids {
        if let Some(p) = stream.next_token(id).unwrap() {
            pieces.push(p);
        }
    }
    if let Some(rest) = stream.decode_rest().unwrap() {
        pieces.push(rest);
    }
    assert!(pieces.len() > 1, "should stream in pieces: {pieces:?}");
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    assert_eq!(pieces.concat(), tok.decode(&ids, true).unwrap());
}

/// PIL bicubic is ported bit-exactly: the reference's resized+normalised image patches are
/// reproduced exactly from the raw frame (image 90×120 → 84×126).
#[test]
fn pil_bicubic_port_is_bit_exact_on_reference_image() {
    let dir = fixture("pixelrefer-tiny");
    let cfg = config();
    let st = read_safetensors(&dir.join("reference/image_1obj.safetensors"));
    let f = &st["input.frame0"];
    let img = RgbImage::from_raw(f.shape[1] as u32, f.shape[0] as u32, f.u8()).unwrap();
    let (resized, patches) = pixelrefer_studio::refer::preprocess::preprocess(&img, &cfg, 1, 1);
    assert_eq!((resized.width(), resized.height()), (126, 84));
    assert!(
        patches.data == st["image.patches"].f32(),
        "image patches differ"
    );
    // Downscaling and upscaling of a larger crop.
    let c = &st["obj0.crop"];
    let crop = RgbImage::from_raw(c.shape[1] as u32, c.shape[0] as u32, c.u8()).unwrap();
    let (_, p) = pixelrefer_studio::refer::preprocess::preprocess(&crop, &cfg, 1, 1);
    assert!(
        p.data == st["obj0.crop_patches"].f32(),
        "crop patches differ"
    );
    // Same size: an exact copy.
    assert_eq!(
        pil_bicubic(&crop, crop.width() as usize, crop.height() as usize),
        crop
    );
}

/// An `image` buffer may be longer than its pixels (`RgbImage::from_raw` accepts that); the
/// host steps read only the pixels, so they give what the exact buffer gives.
#[test]
fn host_steps_ignore_bytes_past_the_pixels() {
    let cfg = config();
    let exact = RgbImage::from_fn(61, 37, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 6) as u8, ((x + y) * 3) as u8])
    });
    let mut raw = exact.clone().into_raw();
    raw.extend_from_slice(&[255; 29]);
    let longer = RgbImage::from_raw(61, 37, raw).unwrap();
    let (ra, pa) = pixelrefer_studio::refer::preprocess::preprocess(&exact, &cfg, 1, 1);
    let (rb, pb) = pixelrefer_studio::refer::preprocess::preprocess(&longer, &cfg, 1, 1);
    assert_eq!(ra, rb);
    assert!(pa.data == pb.data, "patches differ");
    let normalize = pixelrefer_studio::refer::preprocess::normalize;
    assert!(normalize(&exact, &cfg) == normalize(&longer, &cfg));
    assert_eq!(pil_bicubic(&exact, 40, 50), pil_bicubic(&longer, 40, 50));
    assert_eq!(cv2_area_u8(&exact, 20, 12), cv2_area_u8(&longer, 20, 12));
    assert_eq!(
        cv2_linear_u8(&exact, 90, 20),
        cv2_linear_u8(&longer, 90, 20)
    );
    let mask: Vec<u8> = (0..61 * 37)
        .map(|i| u8::from(i % 61 > 20 && i / 61 > 10))
        .collect();
    let variant = pixelrefer_studio::refer::Variant::Full;
    let g = pixelrefer_studio::refer::saot::geometry(variant, &mask, 37, 61, &cfg).unwrap();
    let ca = pixelrefer_studio::refer::saot::crop(variant, &exact, &mask, &g, &cfg);
    let cb = pixelrefer_studio::refer::saot::crop(variant, &longer, &mask, &g, &cfg);
    assert_eq!(ca.crop, cb.crop);
}

/// The object crops (`cv2.resize` INTER_LINEAR / INTER_AREA) and the Lite 336 global image
/// (INTER_AREA) equal the reference's bit for bit: the OpenCV ports are exact (`refer_cv2.rs`
/// compares them with `cv2.resize` over many sizes).
#[test]
fn cv2_crop_resizes_match_reference_exactly() {
    for (model, case) in [
        ("pixelrefer-tiny", "image_3obj"),
        ("pixelrefer-lite-tiny", "lite_image"),
        ("pixelrefer-lite-tiny", "lite_video"),
    ] {
        let dir = fixture(model);
        let cases: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("reference/cases.json")).unwrap(),
        )
        .unwrap();
        let meta = cases["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == case)
            .unwrap();
        let st = read_safetensors(&dir.join(format!("reference/{case}.safetensors")));
        let lite = model.contains("lite");
        let cfg_json: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let cfg = ReferConfig::from_constants(&dir, &cfg_json["constants"]).unwrap();
        let variant = if lite {
            pixelrefer_studio::refer::Variant::Lite
        } else {
            pixelrefer_studio::refer::Variant::Full
        };
        let mut k = 0;
        for (oi, frames) in meta["objects_masks"].as_array().unwrap().iter().enumerate() {
            for (mi, fi) in frames.as_array().unwrap().iter().enumerate() {
                let f = &st[&format!("input.frame{}", fi.as_u64().unwrap())];
                let img = RgbImage::from_raw(f.shape[1] as u32, f.shape[0] as u32, f.u8()).unwrap();
                let mask = st[&format!("input.obj{oi}.mask{mi}")].u8();
                let (h, w) = (f.shape[0], f.shape[1]);
                let g =
                    pixelrefer_studio::refer::saot::geometry(variant, &mask, h, w, &cfg).unwrap();
                let crop = pixelrefer_studio::refer::saot::crop(variant, &img, &mask, &g, &cfg);
                let want = &st[&format!("obj{k}.crop")];
                assert_eq!(
                    (crop.crop.height() as usize, crop.crop.width() as usize),
                    (want.shape[0], want.shape[1]),
                    "{case} obj{k}: crop size is exact"
                );
                let (gh, gw, grid) = &crop.mask_grid;
                let wg = st[&format!("obj{k}.mask_grid")].f32();
                assert_eq!(wg.len(), gh * gw);
                let sel: Vec<bool> = grid.iter().map(|&v| v > 0.0).collect();
                let wsel: Vec<bool> = wg.iter().map(|&v| v > 0.0).collect();
                assert_eq!(sel, wsel, "{case} obj{k}: mask grid selection is exact");
                assert!(
                    crop.crop.as_raw() == &want.u8(),
                    "{case} obj{k}: crop pixels differ"
                );
                if lite {
                    let gimg = cv2_area_u8(&img, 336, 336);
                    assert!(
                        gimg.as_raw() == &st[&format!("obj{k}.global_image")].u8(),
                        "{case} obj{k}: global 336 pixels differ"
                    );
                }
                k += 1;
            }
        }
    }
}

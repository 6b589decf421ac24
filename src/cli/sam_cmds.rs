//! `models verify` and `track`: the SAM 2 engine from the command line.

use crate::mask::{Mask, Rle};
use crate::media::{self, MediaSource, SourceKind};
use crate::runtime::{ExecutionProvider, Manifest, ModelKind, SessionOptions};
use crate::segment::reference::{Tolerances, run_reference};
use crate::segment::{
    Direction, FrameSource, ObjectFrame, Point, Prompts, RgbImage, Sam2Model, SegmentError,
    TrackerOptions, VideoTracker,
};
use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// CUDA when available (with a warning when it is not), else the CPU.
    Auto,
    /// The CPU only.
    Cpu,
    /// CUDA (falls back to the CPU with a warning).
    Cuda,
}

/// Session options from the command line.
pub fn session_options(device: Device, threads: usize) -> SessionOptions {
    SessionOptions {
        provider: match device {
            Device::Cpu => ExecutionProvider::Cpu,
            Device::Auto | Device::Cuda => ExecutionProvider::Cuda,
        },
        intra_threads: threads,
    }
}

fn load_sam2(dir: &Path, options: &SessionOptions) -> anyhow::Result<Arc<Sam2Model>> {
    let model = Sam2Model::load(dir, options).map_err(|e| anyhow!("{e}"))?;
    for w in model.warnings() {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "[sam2] {} ({}) on {}",
        dir.display(),
        model.variant(),
        model.provider()
    );
    Ok(Arc::new(model))
}

/// `pixelrefer-studio models verify DIR`: replays the directory's bundled `reference/` inputs
/// through the Rust pipeline, prints the differences, and fails beyond the tolerances
/// (SAM 2: image mask IoU ≥ 0.99 and low-res logits max|diff| ≤ 1e-3; video mask IoU ≥ 0.98 on
/// every frame, object, direction and correction).
pub fn verify(dir: &Path, options: &SessionOptions) -> anyhow::Result<()> {
    let manifest = Manifest::load(dir).map_err(|e| anyhow!("{e}"))?;
    match manifest.kind {
        ModelKind::Sam2 => verify_sam2(dir, options),
        ModelKind::PixelRefer | ModelKind::PixelReferLite => {
            verify_pixelrefer(dir, &manifest, options)
        }
    }
}

/// Reference check of a PixelRefer / PixelRefer-Lite directory: not supported yet (the `refer`
/// engine's owner fills this in).
pub fn verify_pixelrefer(
    dir: &Path,
    manifest: &Manifest,
    _options: &SessionOptions,
) -> anyhow::Result<()> {
    bail!(
        "{}: verifying {} model directories is not supported yet (only sam2 for now)",
        dir.display(),
        manifest.kind
    )
}

fn verify_sam2(dir: &Path, options: &SessionOptions) -> anyhow::Result<()> {
    let model = load_sam2(dir, options)?;
    let report =
        run_reference(model, &mut |line| println!("{line}")).map_err(|e| anyhow!("{e}"))?;
    let tol = Tolerances::default();
    println!(
        "[summary] image: min mask IoU {:.4} (≥ {}), logits max|diff| {:.2e} (≤ {:.0e}); video: min mask IoU {:.4} (≥ {}) over {} frame-objects, object score max|diff| {:.2e}, pooled logits max|diff| {:.2e}, memory-bank mismatches {}",
        report.image_min_iou(),
        tol.image_min_iou,
        report.image_logits_max_abs_diff(),
        tol.image_logits_max_abs_diff,
        report.video_min_iou(),
        tol.video_min_iou,
        report.video_comparisons(),
        report.video_score_max_abs_diff(),
        report.video_logits_pool4_max_abs_diff(),
        report.bank_mismatches()
    );
    let failures = report.failures(&tol);
    if failures.is_empty() {
        println!("PASS");
        Ok(())
    } else {
        bail!(
            "{} does not match its reference: {}",
            dir.display(),
            failures.join("; ")
        )
    }
}

// ---- track ------------------------------------------------------------------------------------

/// The prompts file of `track`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptFile {
    /// Objects to track.
    pub objects: Vec<PromptObject>,
}

/// One object of the prompts file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptObject {
    /// Object id (its tag is `<object{id}>`).
    pub id: u32,
    /// Free-text label.
    #[serde(default)]
    pub label: String,
    /// Prompts on one or more frames.
    pub prompts: Vec<FramePrompt>,
}

/// Prompts for one object on one frame.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FramePrompt {
    /// Frame index (0-based).
    pub frame: usize,
    /// Clicks `[x, y, label]` in frame pixels; label 1 positive, 0 negative.
    #[serde(default)]
    pub points: Vec<[f32; 3]>,
    /// Box `[x0, y0, x1, y1]` in frame pixels.
    #[serde(default, rename = "box")]
    pub bbox: Option<[f32; 4]>,
}

/// Frames of a media source for the tracker: a video's frames, or a folder's images in order.
struct MediaFrames {
    source: MediaSource,
    folder: bool,
    count: usize,
}

impl FrameSource for MediaFrames {
    fn frame_count(&self) -> usize {
        self.count
    }
    fn frame(&mut self, index: usize) -> Result<RgbImage, SegmentError> {
        let (item, idx) = if self.folder {
            (index, 0)
        } else {
            (0, index as u64)
        };
        let f = self
            .source
            .frame(item, idx)
            .map_err(|e| SegmentError::Media {
                index,
                reason: e.to_string(),
            })?;
        RgbImage::from_rgba(f.width, f.height, &f.rgba)
    }
}

/// COCO RLE of a mask: column-major runs starting with zeros (pycocotools `maskApi.c`).
fn mask_to_rle(mask: &Mask) -> Rle {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let data = mask.data();
    let mut counts = Vec::new();
    let mut cur = 0u8;
    let mut run = 0u32;
    for x in 0..w {
        for y in 0..h {
            let v = u8::from(data[y * w + x] != 0);
            if v != cur {
                counts.push(run);
                run = 0;
                cur = v;
            }
            run += 1;
        }
    }
    counts.push(run);
    Rle {
        size: [mask.height(), mask.width()],
        counts,
    }
}

/// COCO `[x, y, w, h]` of the set pixels, `None` when empty.
fn mask_bbox(mask: &Mask) -> Option<[u32; 4]> {
    let w = mask.width() as usize;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for (i, &v) in mask.data().iter().enumerate() {
        if v != 0 {
            let (x, y) = (i % w, i / w);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    (x0 != usize::MAX).then(|| {
        [
            x0 as u32,
            y0 as u32,
            (x1 - x0 + 1) as u32,
            (y1 - y0 + 1) as u32,
        ]
    })
}

#[derive(Debug, Serialize)]
struct RegionFrame {
    index: usize,
    timestamp_secs: f64,
    visible: bool,
    score: f32,
    source: &'static str,
    bbox: Option<[u32; 4]>,
    area: u64,
    rle: Rle,
}

#[derive(Debug, Serialize)]
struct RegionObject {
    id: u32,
    tag: String,
    label: String,
    caption: Option<String>,
    qa: Vec<serde_json::Value>,
    frames: Vec<RegionFrame>,
}

#[derive(Debug, Serialize)]
struct RegionsFile {
    format: &'static str,
    version: u32,
    media: PathBuf,
    width: u32,
    height: u32,
    frame_count: usize,
    fps: f64,
    model: serde_json::Value,
    rle_encoding: &'static str,
    objects: Vec<RegionObject>,
}

/// `pixelrefer-studio track VIDEO --model DIR --prompts P.json --out R.regions.json`.
///
/// Adds every prompt of `P.json`, propagates forward from the earliest prompted frame to the
/// end, then backward from it to the first frame, and writes a regions file (DESIGN.md §5): per
/// object its tag `<objectN>`, label, and per frame index, timestamp, visibility, score, source
/// (`clicked` on prompted frames, else `propagated`), COCO bbox `[x, y, w, h]`, area and RLE.
/// Progress goes to stderr.
pub fn track(
    media_path: &Path,
    model_dir: &Path,
    prompts_path: &Path,
    out: &Path,
    options: &SessionOptions,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(prompts_path)
        .with_context(|| format!("cannot read {}", prompts_path.display()))?;
    let prompts: PromptFile = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: not a prompts file: {e}", prompts_path.display()))?;
    if prompts.objects.is_empty() || prompts.objects.iter().any(|o| o.prompts.is_empty()) {
        bail!(
            "{}: every object needs at least one prompt, and at least one object is needed",
            prompts_path.display()
        );
    }
    let source = media::open(media_path).map_err(|e| anyhow!("{e}"))?;
    let folder = source.kind() == SourceKind::Folder;
    let info = source.item_info(0).map_err(|e| anyhow!("{e}"))?;
    let count = if folder {
        source.item_count()
    } else {
        usize::try_from(info.frame_count).unwrap_or(usize::MAX)
    };
    let fps = info.fps;
    let mut frames = MediaFrames {
        source,
        folder,
        count,
    };
    let model = load_sam2(model_dir, options)?;
    let variant = model.variant().to_string();
    let tracker_options = TrackerOptions {
        // corrections on tracked frames stick when propagating again
        add_all_frames_to_correct_as_cond: Some(true),
        ..TrackerOptions::default()
    };
    let mut tracker = VideoTracker::new(model, count, info.width, info.height, tracker_options)
        .map_err(|e| anyhow!("{}: {e}", media_path.display()))?;
    let mut first = usize::MAX;
    for obj in &prompts.objects {
        for p in &obj.prompts {
            let pr = Prompts {
                points: p
                    .points
                    .iter()
                    .map(|[x, y, l]| Point {
                        x: *x,
                        y: *y,
                        positive: *l > 0.5,
                    })
                    .collect(),
                bbox: p.bbox,
            };
            tracker
                .add_prompts(&mut frames, p.frame, obj.id, &pr, true, None)
                .map_err(|e| anyhow!("object {} frame {}: {e}", obj.id, p.frame))?;
            first = first.min(p.frame);
            eprintln!("[track] object {} prompted on frame {}", obj.id, p.frame);
        }
    }
    let mut results: BTreeMap<(u32, usize), RegionFrame> = BTreeMap::new();
    let started = std::time::Instant::now();
    for direction in [Direction::Forward, Direction::Backward] {
        tracker
            .propagate(
                &mut frames,
                Some(first),
                direction,
                None,
                None,
                &mut |p, objs| {
                    eprint!(
                        "\r[track] {:?} frame {} ({}/{})    ",
                        p.direction, p.frame, p.done, p.total
                    );
                    for o in objs {
                        results.insert(
                            (o.obj_id, o.frame),
                            region_frame(&o, frames_time(fps, o.frame)),
                        );
                    }
                },
            )
            .map_err(|e| anyhow!("propagation failed: {e}"))?;
        eprintln!();
    }
    eprintln!(
        "[track] {} frames, {} objects in {:.1}s",
        count,
        prompts.objects.len(),
        started.elapsed().as_secs_f64()
    );
    let mut per_object: BTreeMap<u32, Vec<RegionFrame>> = BTreeMap::new();
    for ((id, _), r) in results {
        per_object.entry(id).or_default().push(r); // frames in order (BTreeMap key order)
    }
    let objects = prompts
        .objects
        .iter()
        .map(|o| RegionObject {
            id: o.id,
            tag: format!("<object{}>", o.id),
            label: o.label.clone(),
            caption: None,
            qa: Vec::new(),
            frames: per_object.remove(&o.id).unwrap_or_default(),
        })
        .collect();
    let file = RegionsFile {
        format: "pixelrefer-studio-regions",
        version: 1,
        media: media_path.to_path_buf(),
        width: info.width,
        height: info.height,
        frame_count: count,
        fps,
        model: serde_json::json!({"kind": "sam2", "dir": model_dir, "variant": variant}),
        // Rle::to_coco_string is not merged yet: counts are written uncompressed
        rle_encoding: "coco-uncompressed-counts",
        objects,
    };
    let json = serde_json::to_vec_pretty(&file)?;
    let tmp = out.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("[track] wrote {}", out.display());
    Ok(())
}

fn frames_time(fps: f64, frame: usize) -> f64 {
    if fps > 0.0 { frame as f64 / fps } else { 0.0 }
}

fn region_frame(o: &ObjectFrame, timestamp_secs: f64) -> RegionFrame {
    RegionFrame {
        index: o.frame,
        timestamp_secs,
        visible: o.visible,
        score: o.score,
        source: if o.conditioning {
            "clicked"
        } else {
            "propagated"
        },
        bbox: mask_bbox(&o.mask),
        area: o.mask.area(),
        rle: mask_to_rle(&o.mask),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rle_is_column_major_and_starts_with_zeros() {
        let mut m = Mask::new(3, 2);
        m.set(0, 0, true);
        m.set(2, 1, true);
        // column-major: (0,0)=1 (0,1)=0 (1,0)=0 (1,1)=0 (2,0)=0 (2,1)=1
        assert_eq!(mask_to_rle(&m).counts, vec![0, 1, 4, 1]);
        assert_eq!(mask_bbox(&m), Some([0, 0, 3, 2]));
        assert_eq!(mask_bbox(&Mask::new(4, 4)), None);
    }

    #[test]
    fn prompt_file_format() {
        let p: PromptFile = serde_json::from_str(
            r#"{"objects":[{"id":0,"label":"dog","prompts":[{"frame":0,"points":[[10,20,1]],"box":null}]}]}"#,
        )
        .unwrap();
        assert_eq!(p.objects[0].prompts[0].points[0], [10.0, 20.0, 1.0]);
        assert!(
            serde_json::from_str::<PromptFile>(r#"{"objects":[{"id":0,"prompt":[]}]}"#).is_err()
        );
    }
}

//! `models verify` (SAM 2, PixelRefer and PixelRefer-Lite directories) and `track` (SAM 2) from
//! the command line.

use crate::jobs;
use crate::mask::Rle;
use crate::project::{self, Document, FrameAnnotation, MaskSource, ModelRecord, Object, PALETTE};
use crate::runtime::{Manifest, SessionOptions};
use crate::segment::{
    Direction, ObjectFrame, Point, Prompts, Sam2Model, SegmentError, TrackInput, TrackerOptions,
    VideoTracker,
};
use anyhow::{anyhow, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Model id recorded on masks and in the document's model list.
const MODEL_ID: &str = "sam2";

pub fn load_sam2(dir: &Path, options: &SessionOptions) -> anyhow::Result<Arc<Sam2Model>> {
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
/// through the Rust pipeline ([`jobs::verify_model`]), prints a line per case, the summary and
/// `PASS`, and fails beyond the tolerances.
pub fn verify(dir: &Path, options: &SessionOptions) -> anyhow::Result<()> {
    let summary = jobs::verify_model(dir, options, &mut |line| println!("{line}"), &mut |note| {
        eprintln!("{note}")
    })?;
    println!("{summary}");
    println!("PASS");
    Ok(())
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
    #[serde(default, deserialize_with = "crate::project::wide_f32::points3")]
    pub points: Vec<[f32; 3]>,
    /// Box `[x0, y0, x1, y1]` in frame pixels.
    #[serde(
        default,
        rename = "box",
        deserialize_with = "crate::project::wide_f32::bbox"
    )]
    pub bbox: Option<[f32; 4]>,
    /// A mask image of the frame's size that is the object on this frame (SAM 2's
    /// `add_new_mask`), instead of points and a box; relative paths start at the prompts file's
    /// folder.
    #[serde(default)]
    pub mask: Option<PathBuf>,
}

/// `pixelrefer-studio track VIDEO --model DIR --prompts P.json --out R.regions.json`.
///
/// Adds every prompt of `P.json`, propagates forward from the earliest prompted frame to the
/// end, then backward from it to the first frame, and writes a regions file (DESIGN.md §5): per
/// object its tag `<objectN>`, label, and per frame index, timestamp, visibility, score, source
/// (`clicked` on prompted frames, `imported` on frames given as a mask, which keep that mask, else
/// `propagated`), COCO bbox `[x, y, w, h]`, area and RLE —
/// the same regions export the app writes (`project::export_regions`). Progress goes to stderr.
pub fn track(
    media_path: &Path,
    model_dir: &Path,
    prompts_path: &Path,
    out: &Path,
    options: &SessionOptions,
) -> anyhow::Result<()> {
    // Everything that can be checked is checked before the model loads and the video is decoded:
    // a bad prompt or output path costs nothing, and never a finished propagation.
    project::check_output_path(out, &[media_path, prompts_path, model_dir])?;
    if let Some(parent) = out.parent()
        && !parent.as_os_str().is_empty()
        && project::same_file(parent, model_dir)
    {
        bail!(
            "refusing to write {}: it is inside the model folder; choose another output path",
            out.display()
        );
    }
    check_output_writable(out)?;
    let (prompts, checked) = read_prompt_file(prompts_path)?;
    // the mask files are inputs too: never written over
    project::check_output_path(out, &mask_files(&checked))?;
    let frames = jobs::MediaFrames::open(media_path).map_err(|e| anyhow!("{e}"))?;
    check_prompts_fit(
        &checked,
        frames.count,
        frames.info.width,
        frames.info.height,
    )
    .map_err(|e| anyhow!("{}: {e}", prompts_path.display()))?;
    let model = load_sam2(model_dir, options)?;
    // Ctrl-C stops the propagation and writes the masks tracked so far.
    let cancel = super::cancel_on_ctrl_c("the tracking");
    let tracked = track_loaded(&model, media_path, frames, &prompts, &checked, &cancel)?;
    project::export_regions(&tracked.doc, out)?;
    if let Some(why) = tracked.failure {
        bail!(
            "{why}; the {} masks tracked before it are in {}",
            tracked.masks,
            out.display()
        );
    }
    eprintln!("[track] wrote {}", out.display());
    Ok(())
}

/// One object's checked input on one frame.
#[derive(Debug, Clone)]
pub struct CheckedPrompt {
    /// Object id.
    pub id: u32,
    /// Frame index.
    pub frame: usize,
    /// Clicks and/or a box, or a mask.
    pub input: TrackInput,
    /// The file a mask was read from (for messages; None for clicks).
    pub mask_file: Option<PathBuf>,
}

impl CheckedPrompt {
    /// `object N frame F` and, for a mask, its file: where a message is about.
    fn place(&self) -> String {
        let (id, frame) = (self.id, self.frame);
        match &self.mask_file {
            Some(path) => format!("object {id} frame {frame} ({})", path.display()),
            None => format!("object {id} frame {frame}"),
        }
    }
}

/// The mask files the checked prompts read (inputs that no output may write over).
pub fn mask_files(checked: &[CheckedPrompt]) -> Vec<&Path> {
    checked
        .iter()
        .filter_map(|p| p.mask_file.as_deref())
        .collect()
}

/// Reads and checks a prompts file ([`check_prompt_file`]).
pub fn read_prompt_file(prompts_path: &Path) -> anyhow::Result<(PromptFile, Vec<CheckedPrompt>)> {
    let text = read_prompt_text(prompts_path)?;
    let prompts: PromptFile = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: not a prompts file: {e}", prompts_path.display()))?;
    let base = prompts_path.parent().unwrap_or(Path::new(""));
    let checked = check_prompt_file(&prompts, base)
        .map_err(|e| anyhow!("{}: {e}", prompts_path.display()))?;
    Ok((prompts, checked))
}

/// Tracks the checked prompts through `frames` with a loaded model (forward from the earliest
/// prompted frame, then backward) and returns the document of masks. A propagation that fails
/// midway or is cancelled keeps the masks tracked before it ([`Tracked::failure`] says why).
pub fn track_loaded(
    model: &Arc<Sam2Model>,
    media_path: &Path,
    mut frames: jobs::MediaFrames,
    prompts: &PromptFile,
    checked: &[CheckedPrompt],
    cancel: &crate::runtime::CancelToken,
) -> anyhow::Result<Tracked> {
    let (count, info) = (frames.count, frames.info.clone());
    // A folder of frames is one sequence item: a frame per image.
    let mut doc = jobs::new_document(&frames.source).map_err(|e| anyhow!("{e}"))?;
    let variant = model.variant().to_string();
    let manifest_files = Manifest::load(model.dir())
        .map(|m| m.files)
        .map_err(|e| anyhow!("{e}"))?;
    let tracker_options = TrackerOptions {
        // corrections on tracked frames stick when propagating again
        add_all_frames_to_correct_as_cond: Some(true),
        ..TrackerOptions::default()
    };
    let mut tracker = VideoTracker::new(
        model.clone(),
        count,
        info.width,
        info.height,
        tracker_options,
    )
    .map_err(|e| anyhow!("{}: {e}", media_path.display()))?;
    let mut first = usize::MAX;
    let mut placed: BTreeMap<(u32, usize), project::Prompts> = BTreeMap::new();
    let mut given: BTreeMap<(u32, usize), FrameAnnotation> = BTreeMap::new();
    for p in checked {
        let (id, frame) = (p.id, p.frame);
        tracker
            .add_input(&mut frames, frame, id, &p.input, Some(cancel))
            .map_err(|e| anyhow!("{}: {e}", p.place()))?;
        match &p.input {
            TrackInput::Mask(mask) => {
                given.insert(
                    (id, frame),
                    FrameAnnotation::from_mask(Rle::from_mask(mask), MaskSource::Imported),
                );
                eprintln!("[track] object {id} given as a mask on frame {frame}");
            }
            TrackInput::Clicks(pr) => {
                placed.insert((id, frame), pr.to_project());
                eprintln!("[track] object {id} prompted on frame {frame}");
            }
        }
        first = first.min(frame);
    }
    let mut results: BTreeMap<(u32, usize), FrameAnnotation> = BTreeMap::new();
    let started = std::time::Instant::now();
    let mut failure = None;
    for direction in [Direction::Forward, Direction::Backward] {
        if let Err(e) = tracker.propagate(
            &mut frames,
            Some(first),
            direction,
            None,
            Some(cancel),
            &mut |p, objs| {
                eprint!(
                    "\r[track] {:?} frame {} ({}/{})    ",
                    p.direction, p.frame, p.done, p.total
                );
                for o in objs {
                    let key = (o.obj_id, o.frame);
                    // a frame given as a mask keeps that mask
                    let a = match given.get(&key) {
                        Some(g) => FrameAnnotation {
                            score: Some(o.score),
                            model: Some(MODEL_ID.to_string()),
                            ..g.clone()
                        },
                        None => annotation(&o, placed.get(&key)),
                    };
                    results.insert(key, a);
                }
            },
        ) {
            // Every mask tracked so far is kept (a server lost mid-propagation costs only
            // the frames after it).
            eprintln!();
            failure = Some(match e {
                SegmentError::Cancelled => "tracking was cancelled".to_string(),
                e => format!("propagation stopped: {e}"),
            });
            break;
        }
        eprintln!();
    }
    eprintln!(
        "[track] {} frames, {} objects in {:.1}s",
        count,
        prompts.objects.len(),
        started.elapsed().as_secs_f64()
    );
    let item = doc
        .items
        .first_mut()
        .ok_or_else(|| anyhow!("{} has no frames", media_path.display()))?;
    for (n, o) in prompts.objects.iter().enumerate() {
        let mut object = Object::new(o.id, o.label.clone(), PALETTE[n % PALETTE.len()]);
        object.frames = results
            .range((o.id, 0)..=(o.id, usize::MAX))
            .map(|(&(_, frame), a)| (frame as u64, a.clone()))
            .collect();
        item.next_object_id = item.next_object_id.max(o.id.saturating_add(1));
        item.objects.push(object);
    }
    doc.models.push(ModelRecord {
        id: MODEL_ID.to_string(),
        kind: "sam2".into(),
        variant,
        files: manifest_files,
    });
    Ok(Tracked {
        doc,
        masks: results.len(),
        failure,
    })
}

/// What [`track_loaded`] produced: every mask tracked, and why it stopped early if it did.
pub struct Tracked {
    /// The document with the masks.
    pub doc: Document,
    /// Masks tracked (object × frame).
    pub masks: usize,
    /// Why propagation stopped before the end (the masks up to there are in `doc`).
    pub failure: Option<String>,
}

/// Largest prompts file read (a file of clicks and boxes; 64 MiB is millions of prompts).
const MAX_PROMPTS_BYTES: u64 = 64 << 20;

/// Reads the prompts file: a regular file (not a FIFO or a device, which could block or never
/// end) of at most [`MAX_PROMPTS_BYTES`].
fn read_prompt_text(path: &Path) -> anyhow::Result<String> {
    let bytes = project::read_bounded(path, MAX_PROMPTS_BYTES)?;
    String::from_utf8(bytes).map_err(|_| anyhow!("{} is not UTF-8 text", path.display()))
}

/// Checks the prompts file on its own (no media needed; mask files are read, relative to
/// `base`) and returns its prompts in file order. Refused: no
/// objects, an object without prompts, an id used twice (two objects would share one
/// `<objectN>` tag), two prompts of one object on one frame (the second would silently replace
/// the first), a point label other than 0 or 1, a non-finite coordinate, a box with swapped
/// corners, a prompt with neither points, a box nor a mask, a mask together with points or a
/// box, and a mask file that is unreadable or empty.
pub fn check_prompt_file(file: &PromptFile, base: &Path) -> Result<Vec<CheckedPrompt>, String> {
    if file.objects.is_empty() {
        return Err(
            "the objects list is empty: at least one object with a prompt is needed".into(),
        );
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for obj in &file.objects {
        let id = obj.id;
        if !ids.insert(id) {
            return Err(format!(
                "object id {id} is used twice (each object needs its own id)"
            ));
        }
        if obj.prompts.is_empty() {
            return Err(format!(
                "object {id} has no prompts (every object needs a click or a box on some frame)"
            ));
        }
        let mut frames = std::collections::BTreeSet::new();
        for p in &obj.prompts {
            let frame = p.frame;
            if !frames.insert(frame) {
                return Err(format!(
                    "object {id} has two prompts on frame {frame} (put all its clicks of that frame in one prompt)"
                ));
            }
            let at = |what: String| format!("object {id} frame {frame}: {what}");
            if let Some(rel) = &p.mask {
                if !p.points.is_empty() || p.bbox.is_some() {
                    return Err(at(
                        "a prompt gives either a mask or points and a box, not both".into(),
                    ));
                }
                let path = base.join(rel);
                let mask = crate::refer::mask_file::read_mask_file(&path)
                    .map_err(|e| at(e.to_string()))?;
                out.push(CheckedPrompt {
                    id,
                    frame,
                    input: TrackInput::Mask(mask),
                    mask_file: Some(path),
                });
                continue;
            }
            let mut points = Vec::with_capacity(p.points.len());
            for &[x, y, label] in &p.points {
                if !x.is_finite() || !y.is_finite() {
                    return Err(at(format!("point ({x}, {y}) is not a finite position")));
                }
                let positive = if label == 1.0 {
                    true
                } else if label == 0.0 {
                    false
                } else {
                    return Err(at(format!(
                        "point ({x}, {y}) has label {label} (1 is a positive click, 0 a negative one)"
                    )));
                };
                points.push(Point { x, y, positive });
            }
            if let Some([x0, y0, x1, y1]) = p.bbox {
                if [x0, y0, x1, y1].iter().any(|v| !v.is_finite()) {
                    return Err(at(format!(
                        "box [{x0}, {y0}, {x1}, {y1}] is not made of finite numbers"
                    )));
                }
                if x1 < x0 || y1 < y0 {
                    return Err(at(format!(
                        "box [{x0}, {y0}, {x1}, {y1}] has swapped corners (expected x0 <= x1 and y0 <= y1)"
                    )));
                }
            }
            let prompts = Prompts {
                points,
                bbox: p.bbox,
            };
            if prompts.is_empty() {
                return Err(at("the prompt has neither points, a box nor a mask".into()));
            }
            out.push(CheckedPrompt {
                id,
                frame,
                input: TrackInput::Clicks(prompts),
                mask_file: None,
            });
        }
    }
    Ok(out)
}

/// Checks checked prompts against the video: every frame inside it, every point and box corner
/// inside the `width × height` frame, every mask of that size.
pub fn check_prompts_fit(
    prompts: &[CheckedPrompt],
    count: usize,
    width: u32,
    height: u32,
) -> Result<(), String> {
    for p in prompts {
        let (id, frame) = (p.id, p.frame);
        if frame >= count {
            return Err(format!(
                "object {id}: frame {frame} is outside the video ({count} frames, 0 to {})",
                count.saturating_sub(1)
            ));
        }
        match &p.input {
            TrackInput::Clicks(c) => {
                c.to_points(width, height)
                    .map_err(|e| format!("{}: {e}", p.place()))?;
            }
            TrackInput::Mask(m) if (m.width(), m.height()) != (width, height) => {
                let file = p.mask_file.as_deref().unwrap_or(Path::new("given"));
                return Err(format!(
                    "object {id} frame {frame}: the mask {} is {}x{} but the video is {width}x{height}",
                    file.display(),
                    m.width(),
                    m.height()
                ));
            }
            TrackInput::Mask(_) => {}
        }
    }
    Ok(())
}

/// Refuses an output path that cannot be written, before any work is done: an existing folder,
/// a parent folder that does not exist or is not a folder, or a folder where no file can be
/// created (checked by creating and removing a temporary file there).
pub fn check_output_writable(out: &Path) -> anyhow::Result<()> {
    if out.as_os_str().is_empty() {
        bail!("the output path is empty");
    }
    if out.is_dir() {
        bail!("{} is a folder, not a file to write", out.display());
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.exists() {
        bail!(
            "cannot write {}: the folder {} does not exist",
            out.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "cannot write {}: {} is not a folder",
            out.display(),
            dir.display()
        );
    }
    tempfile::Builder::new()
        .prefix(".pixelrefer-write-check.")
        .tempfile_in(&dir)
        .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))?;
    Ok(())
}

/// The document annotation for one tracked object on one frame: the mask as RLE right away, so
/// a long video never holds full-size masks.
fn annotation(o: &ObjectFrame, prompts: Option<&project::Prompts>) -> FrameAnnotation {
    FrameAnnotation {
        mask: Some(Rle::from_mask(&o.mask)),
        source: if o.conditioning {
            MaskSource::Clicked
        } else {
            MaskSource::Propagated
        },
        score: Some(o.score),
        prompts: prompts.cloned().unwrap_or_default(),
        model: Some(MODEL_ID.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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

//! `pixelrefer-studio ask`: one question about regions of an image or video, answered by
//! PixelRefer / PixelRefer-Lite, streamed to stdout (or printed as JSON with `--json`).

use crate::mask::Mask;
use crate::refer::{
    CancelToken, FrameMask, GenerationOptions, Media, ObjectMasks, PixelRefer, Request, Variant,
};
use crate::runtime::{ExecutionProvider, SessionOptions};
use anyhow::{Context, Result, bail};
use image::RgbImage;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `ask`.
#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// PixelRefer or PixelRefer-Lite model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The image.
    #[arg(long, conflicts_with = "video")]
    pub image: Option<PathBuf>,
    /// The video file (or a folder of frame images; see --fps).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Mask PNG of the image's size (non-zero = set); the n-th is `<object{n-1}>`. Repeatable.
    #[arg(long = "mask")]
    pub masks: Vec<PathBuf>,
    /// A `*.regions.json` export with the objects' masks (COCO RLE), for images and videos.
    #[arg(long)]
    pub regions: Option<PathBuf>,
    /// Frames per second of a frame folder given as --video (default: the regions file's fps, else 1).
    #[arg(long)]
    pub fps: Option<f64>,
    /// PixelRefer video: frames sampled at 1 fps, at most this many (plus the annotated frames).
    #[arg(long, default_value_t = 16)]
    pub max_frames: usize,
    /// The question; `<object0>`, `<object1>`… name the objects.
    pub question: String,
    /// Print one JSON object (answer, token counts, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Token budget.
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// Sampling temperature (default: greedy).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = ProviderArg::Cpu)]
    pub provider: ProviderArg,
    /// Intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// `--provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderArg {
    /// CPU.
    Cpu,
    /// CUDA (falls back to the CPU with a warning).
    Cuda,
}

/// Frames of a video, by index (implemented for frame folders here; the media module's
/// `MediaSource` plugs in the same way).
pub trait FrameProvider {
    /// Number of frames.
    fn frame_count(&self) -> u64;
    /// Presentation time of a frame, seconds.
    fn frame_time_secs(&self, index: u64) -> f64;
    /// Average frames per second.
    fn fps(&self) -> f64;
    /// One frame as RGB.
    fn frame_rgb(&mut self, index: u64) -> Result<RgbImage>;
}

/// A folder of frame images in natural name order at a fixed rate.
pub struct FrameFolder {
    paths: Vec<PathBuf>,
    fps: f64,
}

impl FrameFolder {
    /// Lists the images in `dir`.
    pub fn open(dir: &Path, fps: f64) -> Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(
                        e.to_ascii_lowercase().as_str(),
                        "png" | "jpg" | "jpeg" | "bmp" | "webp"
                    )
                })
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!("{} contains no frame images", dir.display());
        }
        if fps <= 0.0 {
            bail!("--fps must be positive");
        }
        Ok(Self { paths, fps })
    }
}

impl FrameProvider for FrameFolder {
    fn frame_count(&self) -> u64 {
        self.paths.len() as u64
    }
    fn frame_time_secs(&self, index: u64) -> f64 {
        index as f64 / self.fps
    }
    fn fps(&self) -> f64 {
        self.fps
    }
    fn frame_rgb(&mut self, index: u64) -> Result<RgbImage> {
        let p = self.paths.get(index as usize).with_context(|| {
            format!(
                "frame {index} is outside the folder ({} frames)",
                self.paths.len()
            )
        })?;
        load_rgb(p)
    }
}

/// A decoded video (`media::open`), item 0.
pub struct MediaFrames {
    source: crate::media::MediaSource,
    count: u64,
    fps: f64,
}

impl MediaFrames {
    /// Opens a video file.
    pub fn open(path: &Path) -> Result<Self> {
        let source = crate::media::open(path)?;
        let info = source.item_info(0)?;
        Ok(Self {
            source,
            count: info.frame_count,
            fps: if info.fps > 0.0 { info.fps } else { 1.0 },
        })
    }
}

impl FrameProvider for MediaFrames {
    fn frame_count(&self) -> u64 {
        self.count
    }
    fn frame_time_secs(&self, index: u64) -> f64 {
        self.source.frame_time_secs(0, index)
    }
    fn fps(&self) -> f64 {
        self.fps
    }
    fn frame_rgb(&mut self, index: u64) -> Result<RgbImage> {
        let f = self.source.frame(0, index)?;
        let rgb: Vec<u8> = f
            .rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        RgbImage::from_raw(f.width, f.height, rgb).context("frame buffer has the wrong size")
    }
}

fn load_rgb(path: &Path) -> Result<RgbImage> {
    Ok(image::open(path)
        .with_context(|| format!("cannot decode {}", path.display()))?
        .to_rgb8())
}

fn load_mask_png(path: &Path, w: u32, h: u32) -> Result<Mask> {
    let img = image::open(path)
        .with_context(|| format!("cannot decode mask {}", path.display()))?
        .to_luma8();
    if img.width() != w || img.height() != h {
        bail!(
            "mask {} is {}x{} but the image is {w}x{h}",
            path.display(),
            img.width(),
            img.height()
        );
    }
    Ok(Mask::from_raw(w, h, img.into_raw())?)
}

/// Decodes a COCO compressed RLE string (pycocotools `rleFrString`) into run lengths.
fn coco_counts(s: &str) -> Result<Vec<u64>> {
    let b = s.as_bytes();
    let mut counts: Vec<i64> = Vec::new();
    let mut p = 0;
    while p < b.len() {
        let (mut x, mut k, mut more) = (0i64, 0u32, true);
        while more {
            let Some(&ch) = b.get(p) else {
                bail!("truncated RLE string");
            };
            let c = i64::from(ch) - 48;
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && c & 0x10 != 0 {
                x |= -1i64 << (5 * k);
            }
        }
        if counts.len() > 2 {
            x += counts[counts.len() - 2];
        }
        counts.push(x);
    }
    counts
        .into_iter()
        .map(|c| u64::try_from(c).context("negative RLE run"))
        .collect()
}

/// Column-major COCO RLE → row-major mask.
fn rle_to_mask(rle: &serde_json::Value, w: u32, h: u32) -> Result<Mask> {
    let size = rle["size"].as_array().context("RLE without size")?;
    let (rh, rw) = (
        size.first().and_then(|v| v.as_u64()).unwrap_or(0) as u32,
        size.get(1).and_then(|v| v.as_u64()).unwrap_or(0) as u32,
    );
    if (rw, rh) != (w, h) {
        bail!("an RLE mask is {rw}x{rh} but the frame is {w}x{h}");
    }
    let counts = match &rle["counts"] {
        serde_json::Value::String(s) => coco_counts(s)?,
        serde_json::Value::Array(a) => a.iter().map(|v| v.as_u64().unwrap_or(0)).collect(),
        _ => bail!("RLE counts must be a string or a list"),
    };
    let n = (w as usize) * (h as usize);
    let mut data = vec![0u8; n];
    let (mut pos, mut val) = (0usize, 0u8);
    for c in counts {
        let end = pos + c as usize;
        if end > n {
            bail!("RLE runs exceed the mask size");
        }
        if val == 1 {
            for i in pos..end {
                let (col, row) = (i / h as usize, i % h as usize);
                data[row * w as usize + col] = 1;
            }
        }
        pos = end;
        val ^= 1;
    }
    Ok(Mask::from_raw(w, h, data)?)
}

/// Per object tag number, its annotated frames: `(frame index, RLE JSON)`.
pub type RegionFrames = BTreeMap<u32, Vec<(u64, serde_json::Value)>>;

/// Objects of a regions export (first item) and the item's fps.
fn regions_objects(path: &Path) -> Result<(Option<f64>, RegionFrames)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let item = v["items"]
        .as_array()
        .and_then(|a| a.first())
        .with_context(|| format!("{} has no items", path.display()))?;
    let mut out = BTreeMap::new();
    for o in item["objects"].as_array().into_iter().flatten() {
        let tag = o["tag"].as_str().unwrap_or_default();
        let Some(id) = tag
            .strip_prefix("<object")
            .and_then(|t| t.strip_suffix('>'))
            .and_then(|t| t.parse::<u32>().ok())
        else {
            bail!("{}: object tag `{tag}` is not <objectN>", path.display());
        };
        let frames = o["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| Some((f["index"].as_u64()?, f["rle"].clone())))
            .collect();
        out.insert(id, frames);
    }
    Ok((item["fps"].as_f64().filter(|f| *f > 0.0), out))
}

fn build_request(args: &AskArgs, variant: Variant) -> Result<Request> {
    let options = GenerationOptions {
        max_new_tokens: Some(args.max_new_tokens),
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        repetition_penalty: None,
    };
    if let Some(path) = &args.image {
        let img = load_rgb(path)?;
        let (w, h) = img.dimensions();
        let mut objects: Vec<ObjectMasks> = args
            .masks
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(ObjectMasks {
                    tag_id: i as u32,
                    masks: vec![FrameMask {
                        frame: 0,
                        mask: load_mask_png(p, w, h)?,
                    }],
                })
            })
            .collect::<Result<_>>()?;
        if let Some(r) = &args.regions {
            let (_, objs) = regions_objects(r)?;
            for (id, frames) in objs {
                if let Some((_, rle)) = frames.first() {
                    objects.push(ObjectMasks {
                        tag_id: id,
                        masks: vec![FrameMask {
                            frame: 0,
                            mask: rle_to_mask(rle, w, h)?,
                        }],
                    });
                }
            }
        }
        if objects.is_empty() {
            bail!("give at least one --mask PNG or a --regions file");
        }
        return Ok(Request {
            media: Media::Image(img),
            objects,
            history: Vec::new(),
            question: args.question.clone(),
            options,
        });
    }
    let Some(video) = &args.video else {
        bail!("give --image or --video");
    };
    let Some(regions) = &args.regions else {
        bail!("a video question needs --regions R.regions.json with the objects' masks");
    };
    let (regions_fps, objs) = regions_objects(regions)?;
    let mut provider: Box<dyn FrameProvider> = if video.is_dir() {
        Box::new(FrameFolder::open(
            video,
            args.fps.or(regions_fps).unwrap_or(1.0),
        )?)
    } else {
        Box::new(MediaFrames::open(video)?)
    };
    video_request(
        provider.as_mut(),
        objs,
        variant,
        args.max_frames,
        &args.question,
        options,
    )
}

/// Builds a video request: Lite uses only the annotated frames (upstream
/// `load_video_from_specific_ids`); PixelRefer samples 1 fps (at most `max_frames`, evenly) and
/// adds the annotated frames, each object using its first annotated frame.
pub fn video_request(
    provider: &mut dyn FrameProvider,
    objs: RegionFrames,
    variant: Variant,
    max_frames: usize,
    question: &str,
    options: GenerationOptions,
) -> Result<Request> {
    let n = provider.frame_count();
    let mut wanted: Vec<u64> = objs
        .values()
        .flat_map(|f| {
            let take = if variant == Variant::Full { 1 } else { f.len() };
            f.iter().take(take).map(|(i, _)| *i)
        })
        .collect();
    if variant == Variant::Full {
        let step = provider.fps().round().max(1.0) as u64;
        let sampled: Vec<u64> = (0..n).step_by(step as usize).collect();
        let k = sampled.len().min(max_frames.max(1));
        for j in 0..k {
            // numpy linspace(0, T-1, k).astype(int) (mm_utils.py load_video).
            let idx = if k > 1 {
                j * (sampled.len() - 1) / (k - 1)
            } else {
                0
            };
            wanted.push(sampled[idx]);
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    if let Some(&bad) = wanted.iter().find(|&&i| i >= n) {
        bail!("the regions file annotates frame {bad} but the video has {n} frames");
    }
    let mut frames = Vec::with_capacity(wanted.len());
    let mut timestamps_secs = Vec::with_capacity(wanted.len());
    for &i in &wanted {
        frames.push(provider.frame_rgb(i)?);
        timestamps_secs.push(provider.frame_time_secs(i));
    }
    let (w, h) = frames
        .first()
        .map(|f| f.dimensions())
        .context("no frames")?;
    let mut objects = Vec::new();
    for (id, fr) in objs {
        let mut masks = Vec::new();
        for (i, rle) in fr {
            let Some(pos) = wanted.iter().position(|&x| x == i) else {
                continue;
            };
            masks.push(FrameMask {
                frame: pos,
                mask: rle_to_mask(&rle, w, h)?,
            });
        }
        if !masks.is_empty() {
            objects.push(ObjectMasks { tag_id: id, masks });
        }
    }
    Ok(Request {
        media: Media::Video {
            frames,
            timestamps_secs,
        },
        objects,
        history: Vec::new(),
        question: question.to_string(),
        options,
    })
}

/// Runs `ask`.
pub fn run(args: &AskArgs) -> Result<()> {
    let options = SessionOptions {
        provider: match args.provider {
            ProviderArg::Cpu => ExecutionProvider::Cpu,
            ProviderArg::Cuda => ExecutionProvider::Cuda,
        },
        intra_threads: args.threads,
    };
    let mut model = PixelRefer::load(&args.model, &options)
        .with_context(|| format!("cannot load the model in {}", args.model.display()))?;
    for w in model.warnings() {
        eprintln!("warning: {w}");
    }
    let req = build_request(args, model.variant())?;
    let cancel = CancelToken::new();
    let stdout = std::io::stdout();
    let json = args.json;
    let mut on_token = |piece: &str| {
        if !json {
            let mut out = stdout.lock();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
    };
    let answer = model.ask(&req, &mut on_token, &cancel)?;
    if json {
        let v = serde_json::json!({
            "model": args.model,
            "variant": match model.variant() { Variant::Full => "pixelrefer", Variant::Lite => "pixelrefer-lite" },
            "provider": model.provider().to_string(),
            "answer": answer.text,
            "token_ids": answer.token_ids,
            "prompt_tokens": answer.prompt_tokens,
            "generated_tokens": answer.generated_tokens,
            "stop": answer.stop,
            "timings": answer.timings,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn coco_string_rle_round_trip() {
        // pycocotools: a 3x2 mask [[1,0],[1,1],[0,1]] (column-major 1,1,0,0,1,1) -> counts [0,2,2,2].
        let rle = serde_json::json!({"size": [3, 2], "counts": [0, 2, 2, 2]});
        let m = rle_to_mask(&rle, 2, 3).unwrap();
        assert_eq!(m.data(), &[1, 0, 1, 1, 0, 1]);
        // The compressed string of [0, 2, 2, 2] is "0220" (from the 4th on, deltas to the count two back; small values are one char + 48).
        assert_eq!(coco_counts("0220").unwrap(), vec![0, 2, 2, 2]);
    }
}

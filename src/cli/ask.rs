//! `pixelrefer-studio ask`: one question about regions of an image or video, answered by
//! PixelRefer / PixelRefer-Lite, streamed to stdout (or printed as JSON with `--json`).
//!
//! The media is opened by the media module (any image, video or frame folder it reads); the
//! objects come from mask PNGs, a `*.regions.json` export or a project file; the request is
//! built by [`crate::refer::build_request`], as the app's chat panel builds it.

use super::Device;
use crate::mask::Rle;
use crate::media::MediaSource;
use crate::refer::{
    AnnotatedObject, CancelToken, GenerationOptions, PixelRefer, ReferError, Request,
    RequestFrames, Variant,
};
use anyhow::{Context, Result, bail};
use image::RgbImage;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `ask`.
#[derive(Debug, Clone, clap::Args)]
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
    /// A project file (`*.prj.json`): its objects' masks, and its media unless --image or
    /// --video is given.
    #[arg(long, conflicts_with = "regions")]
    pub project: Option<PathBuf>,
    /// Item of a project or regions file (an image of a folder); 0 for a single video or image.
    #[arg(long, default_value_t = 0)]
    pub item: usize,
    /// Mask PNG of the image's size (non-zero = set); the n-th is `<object{n-1}>`. Repeatable.
    #[arg(long = "mask")]
    pub masks: Vec<PathBuf>,
    /// A `*.regions.json` export with the objects' masks (COCO RLE), for images and videos.
    #[arg(long)]
    pub regions: Option<PathBuf>,
    /// Frames per second of a frame folder given as --video (default: the regions file's fps, else 1).
    #[arg(long)]
    pub fps: Option<f64>,
    /// PixelRefer video: frames sampled at 1 fps, at most this many (plus the annotated frames;
    /// 1 to 180).
    #[arg(long, default_value_t = crate::refer::DEFAULT_MAX_VIDEO_FRAMES)]
    pub max_frames: usize,
    /// The question; `<object0>`, `<object1>`… name the objects.
    pub question: String,
    /// Print one JSON object (answer, token counts, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Token budget (at least 1).
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// Sampling temperature, ≥ 0 (default and 0: greedy).
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold in (0, 1].
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to run the model (auto: CUDA when this ONNX Runtime has it, else the CPU).
    #[arg(long, alias = "provider", value_enum, default_value = "auto")]
    pub device: Device,
    /// Intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Run the model on this inference server instead (grpc://HOST:PORT).
    #[arg(long)]
    pub remote: Option<String>,
}

/// One item of opened media as the request builder reads it. A frame folder asked about as a
/// video (or a project tracked over one) is opened as frames ([`crate::media::open_frames`]):
/// frame N is the folder's image N.
struct ItemFrames {
    source: MediaSource,
    item: usize,
    count: u64,
    fps: f64,
}

impl ItemFrames {
    /// Opens `path`; `sequence_fps` opens a folder as the frames of one video at that rate.
    fn open(path: &Path, item: usize, sequence_fps: Option<f64>) -> Result<Self> {
        let (source, item) = match sequence_fps {
            Some(fps) if path.is_dir() => {
                if fps <= 0.0 || !fps.is_finite() {
                    bail!("--fps must be positive");
                }
                (crate::media::open_frames(path, fps)?, 0)
            }
            _ => (crate::media::open(path)?, item),
        };
        if item >= source.item_count() {
            bail!(
                "{} has {} item(s); there is no item {item}",
                path.display(),
                source.item_count()
            );
        }
        let info = source.item_info(item)?;
        Ok(Self {
            source,
            item,
            count: info.frame_count.max(1),
            fps: info.fps,
        })
    }
}

impl RequestFrames for ItemFrames {
    fn frame_count(&self) -> u64 {
        self.count
    }
    fn fps(&self) -> f64 {
        self.fps
    }
    fn time_secs(&self, index: u64) -> f64 {
        self.source.frame_time_secs(self.item, index)
    }
    fn frame(&mut self, index: u64) -> Result<RgbImage, ReferError> {
        let f = self
            .source
            .frame(self.item, index)
            .map_err(|e| ReferError::InvalidRequest(format!("frame {index}: {e}")))?;
        f.to_rgb_image()
            .map_err(|e| ReferError::InvalidRequest(format!("frame {index}: {e}")))
    }
}

/// The largest `--regions` file read (1 GiB): compressed RLE of 100 objects over 10 000
/// frames is well under it, and parsing it already takes several times its size in memory.
const MAX_REGIONS_BYTES: u64 = 1 << 30;

/// Objects of item `item` of a regions export, and the item's fps.
fn regions_objects(path: &Path, item: usize) -> Result<(Option<f64>, Vec<AnnotatedObject>)> {
    let bytes = crate::project::read_bounded(path, MAX_REGIONS_BYTES)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    // A regions export of this program or a hand-written file without the header; another
    // format, or a newer version of this one, is refused rather than half understood.
    if let Some(format) = v.get("format")
        && format.as_str() != Some(crate::project::REGIONS_FORMAT)
    {
        bail!(
            "{} is of format {format}, not a regions export (`{}`)",
            path.display(),
            crate::project::REGIONS_FORMAT
        );
    }
    if let Some(version) = v.get("version") {
        match version.as_u64() {
            Some(n) if (1..=u64::from(crate::project::REGIONS_VERSION)).contains(&n) => {}
            _ => bail!(
                "{} is a regions export of version {version}; this build reads versions 1 to {}",
                path.display(),
                crate::project::REGIONS_VERSION
            ),
        }
    }
    let entry = v["items"]
        .as_array()
        .and_then(|a| a.get(item))
        .with_context(|| format!("{} has no item {item}", path.display()))?;
    let mut out = Vec::new();
    for o in entry["objects"].as_array().into_iter().flatten() {
        let tag = o["tag"].as_str().unwrap_or_default();
        let Some(id) = tag
            .strip_prefix("<object")
            .and_then(|t| t.strip_suffix('>'))
            .and_then(|t| t.parse::<u32>().ok())
        else {
            bail!("{}: object tag `{tag}` is not <objectN>", path.display());
        };
        let mut masks = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for f in o["frames"].as_array().into_iter().flatten() {
            let index = f["index"].as_u64().with_context(|| {
                format!(
                    "{}: {tag} has a frame whose index is not a whole number >= 0 ({})",
                    path.display(),
                    f["index"]
                )
            })?;
            if !seen.insert(index) {
                bail!("{}: {tag} gives frame {index} twice", path.display());
            }
            let rle: Rle = serde_json::from_value(f["rle"].clone()).with_context(|| {
                format!("{}: {tag} frame {index}: not a COCO RLE", path.display())
            })?;
            rle.validate()
                .with_context(|| format!("{}: {tag} frame {index}", path.display()))?;
            masks.push((index, rle));
        }
        out.push(AnnotatedObject { tag_id: id, masks });
    }
    Ok((entry["fps"].as_f64().filter(|f| *f > 0.0), out))
}

/// Objects of item `item` of a project, the project's media path, and the frame rate when the
/// item is a frame folder tracked as one sequence.
fn project_objects(
    path: &Path,
    item: usize,
) -> Result<(PathBuf, Option<f64>, Vec<AnnotatedObject>)> {
    let mut doc = crate::project::load_project(path)?;
    crate::jobs::check_project_media(&mut doc, path)?;
    let entry = doc.items.get(item).with_context(|| {
        format!(
            "{} has {} item(s); there is no item {item}",
            path.display(),
            doc.items.len()
        )
    })?;
    // load_project resolves a media path stored relative to the project's folder.
    let media = doc.media.path.clone();
    let sequence = doc
        .is_frame_sequence()
        .then_some(if entry.fps > 0.0 { entry.fps } else { 1.0 });
    let objects = entry
        .objects
        .iter()
        .map(|o| AnnotatedObject {
            tag_id: o.id,
            masks: o.masks(),
        })
        .collect();
    Ok((media, sequence, objects))
}

/// The decoding options of `args`, checked ([`GenerationOptions::validate`]).
fn generation_options(args: &AskArgs) -> Result<GenerationOptions> {
    let options = GenerationOptions {
        max_new_tokens: Some(args.max_new_tokens),
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        repetition_penalty: None,
    };
    options.validate()?;
    Ok(options)
}

/// The media and the objects of a question, read and checked before the model is loaded, so a
/// bad input is refused in a moment rather than after a long load.
struct Prepared {
    frames: ItemFrames,
    objects: Vec<AnnotatedObject>,
}

fn prepare(args: &AskArgs) -> Result<Prepared> {
    crate::refer::check_max_frames(args.max_frames)?;
    if args.question.trim().is_empty() {
        bail!("the question is empty: ask something about the objects");
    }
    let mut objects: Vec<AnnotatedObject> = Vec::new();
    let mut media = args.image.clone().or_else(|| args.video.clone());
    let mut sequence_fps = None;
    if let Some(project) = &args.project {
        let (path, fps, objs) = project_objects(project, args.item)?;
        media = media.or(Some(path));
        sequence_fps = fps;
        objects = objs;
    }
    if let Some(regions) = &args.regions {
        let (fps, objs) = regions_objects(regions, args.item)?;
        sequence_fps = fps;
        objects = objs;
    }
    let Some(media) = media else {
        bail!("give --image, --video or --project");
    };
    if args.video.is_some() {
        sequence_fps = args.fps.or(sequence_fps).or(Some(1.0));
    }
    let frames = ItemFrames::open(&media, args.item, sequence_fps)?;
    // The displayed size of the image, the video or the folder's frames (which share one).
    let size = {
        let info = frames.source.item_info(frames.item)?;
        (info.width, info.height)
    };
    if !args.masks.is_empty() {
        if frames.count > 1 {
            bail!("--mask PNGs are for images; give a video's masks with --regions or --project");
        }
        for (i, p) in args.masks.iter().enumerate() {
            let mask = crate::refer::mask_file::read_mask_file(p)?;
            let (w, h) = size;
            if (mask.width(), mask.height()) != size {
                bail!(
                    "mask {} is {}x{} but {} is {w}x{h}: give a mask of the image's size",
                    p.display(),
                    mask.width(),
                    mask.height(),
                    media.display()
                );
            }
            objects.push(AnnotatedObject {
                tag_id: u32::try_from(i).unwrap_or(u32::MAX),
                masks: vec![(0, Rle::from_mask(&mask))],
            });
        }
    }
    // Only the objects the question names (all of them when it names none).
    let named = crate::jobs::refer_job::mentioned_tags([args.question.as_str()]);
    if let Some(missing) = named
        .iter()
        .find(|&&t| !objects.iter().any(|o| o.tag_id == t))
    {
        let known: Vec<String> = objects
            .iter()
            .map(|o| format!("<object{}>", o.tag_id))
            .collect();
        bail!(
            "the question names <object{missing}>, but there is no such object (objects: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    if !named.is_empty() {
        objects.retain(|o| named.contains(&o.tag_id));
        objects.sort_by_key(|o| named.iter().position(|&t| t == o.tag_id));
    }
    if objects.is_empty() {
        bail!("no objects: give --mask PNGs, a --regions file or a --project with masks");
    }
    check_objects(&objects, &frames, size)?;
    Ok(Prepared { frames, objects })
}

/// Refuses the objects asked about when one cannot be, naming it: two objects with one tag, an
/// object whose every mask is empty, a mask on a frame past the media's end, a mask of another
/// size than the media's frames (`size`).
fn check_objects(
    objects: &[AnnotatedObject],
    frames: &ItemFrames,
    (w, h): (u32, u32),
) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for o in objects {
        if !seen.insert(o.tag_id) {
            bail!(
                "two objects are <object{}>: give each object its own number",
                o.tag_id
            );
        }
        if o.masks.iter().all(|(_, rle)| rle.is_empty()) {
            bail!(
                "<object{}> has no mask: every mask given for it is empty",
                o.tag_id
            );
        }
        for (f, rle) in &o.masks {
            if *f >= frames.count.max(1) {
                bail!(
                    "<object{}> has a mask on frame {f}, but the media has {} frame(s)",
                    o.tag_id,
                    frames.count
                );
            }
            if (rle.width(), rle.height()) != (w, h) {
                bail!(
                    "the mask of <object{}> on frame {f} is {}x{} but the media is {w}x{h}",
                    o.tag_id,
                    rle.width(),
                    rle.height()
                );
            }
        }
    }
    Ok(())
}

/// Runs `ask`.
pub fn run(args: &AskArgs) -> Result<()> {
    // Every argument is checked before the (slow) model load.
    let options = super::session_options(args.device, args.threads, args.remote.as_deref())?;
    let generation = generation_options(args)?;
    let prepared = prepare(args)?;
    let mut model = PixelRefer::load(&args.model, &options)
        .with_context(|| format!("cannot load the model in {}", args.model.display()))?;
    for w in model.warnings() {
        eprintln!("warning: {w}");
    }
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
    let answer = answer_prepared(
        &mut model,
        args,
        prepared,
        generation,
        &mut on_token,
        &cancel,
    )?;
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

/// Answers `args.question` with a loaded model (the media, objects and options of `args`; the
/// model, device and thread fields are not read). Used by `batch`.
pub fn answer_with(
    model: &mut PixelRefer,
    args: &AskArgs,
    cancel: &CancelToken,
) -> Result<crate::refer::Answer> {
    let generation = generation_options(args)?;
    let prepared = prepare(args)?;
    answer_prepared(model, args, prepared, generation, &mut |_| {}, cancel)
}

fn answer_prepared(
    model: &mut PixelRefer,
    args: &AskArgs,
    prepared: Prepared,
    generation: GenerationOptions,
    on_token: &mut dyn FnMut(&str),
    cancel: &CancelToken,
) -> Result<crate::refer::Answer> {
    let Prepared {
        mut frames,
        objects,
    } = prepared;
    let req: Request = crate::refer::build_request(
        &mut frames,
        model.variant(),
        args.max_frames,
        &objects,
        &args.question,
        generation,
    )?;
    Ok(model.ask(&req, on_token, cancel)?)
}

//! Decoding images, image folders and videos (FFmpeg) into displayed RGBA frames, with
//! frame-accurate seeking and a byte-bounded frame cache.
//!
//! Frames are always in *display* orientation: EXIF orientation and video rotation metadata are
//! applied, and anamorphic video is scaled to square pixels.

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod animation;
mod cache;
mod orient;
pub mod resample;
mod still;
mod tiff_pages;
mod video;

pub use animation::MAX_ANIMATION_BYTES;
pub use cache::{DEFAULT_CACHE_BUDGET_BYTES, FrameCache};
pub use orient::Orientation;
pub use still::{MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE};
pub use tiff_pages::grey_first_page;

/// Errors from opening or decoding media. Messages are one clear sentence naming the file.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The path does not exist or cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not an image or video format this build can decode.
    #[error("{path} is not a supported image or video ({reason})")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Details.
        reason: String,
    },
    /// The file is damaged, truncated or empty.
    #[error("{path} is damaged or truncated: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Details.
        reason: String,
    },
    /// A frame index or item index outside the media.
    #[error("frame {index} is outside {path} ({count} frames)")]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// Requested index.
        index: u64,
        /// Number of frames (or items).
        count: u64,
    },
    /// A folder that cannot open as the frames of one video ([`open_frames`]): a file, a bad
    /// frame rate, or images of different sizes.
    #[error("{path} cannot open as a video: {reason}")]
    NotFrames {
        /// The folder.
        path: PathBuf,
        /// Why, naming the images.
        reason: String,
    },
    /// A folder without any supported image.
    #[error("{path} contains no supported images")]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
    },
}

/// What was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A still image.
    Image,
    /// A video file.
    Video,
    /// A folder of still images.
    Folder,
    /// A folder of images opened as the frames of one video ([`open_frames`]): one item whose
    /// frame N is the folder's image N in natural order (SAM 2's frame-folder input).
    Frames,
}

/// One decoded frame in display orientation, RGBA8, row-major, premultiplied = false.
#[derive(Clone)]
pub struct Frame {
    /// Displayed width.
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

impl Frame {
    /// The frame as 8-bit RGB (alpha dropped); an error when the buffer is too short for the
    /// size.
    pub fn to_rgb_image(&self) -> Result<image::RgbImage, String> {
        let rgb: Vec<u8> = self
            .rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        image::RgbImage::from_raw(self.width, self.height, rgb).ok_or_else(|| {
            format!(
                "{} RGBA bytes for a {}x{} frame",
                self.rgba.len(),
                self.width,
                self.height
            )
        })
    }
}

/// The image's `width * height * 3` bytes, row-major: an `image` buffer may hold more than its
/// pixels (`ImageBuffer::from_raw` accepts a longer vector), and readers must not see the rest.
pub fn rgb_pixels(img: &image::RgbImage) -> &[u8] {
    let n = img.width() as usize * img.height() as usize * 3;
    // ImageBuffer's constructors guarantee at least n bytes; `get` keeps this panic-free.
    img.as_raw().get(..n).unwrap_or(&[])
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}x{})", self.width, self.height)
    }
}

/// Facts about one item (the image, the video, or one image of a folder).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemInfo {
    /// File name (folders) or the file's own name.
    pub name: String,
    /// Displayed width after rotation and aspect correction.
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// Frame count (1 for images).
    pub frame_count: u64,
    /// Average frames per second (0 for images).
    pub fps: f64,
    /// Duration in seconds (0 for images).
    pub duration_secs: f64,
    /// Codec or image format name (`h264`, `vp9`, `png`…).
    pub codec: String,
    /// Clockwise rotation applied for display, degrees (0, 90, 180, 270).
    pub rotation_degrees: u32,
}

/// Opens media for display.
///
/// * a directory → [`SourceKind::Folder`]: its supported images (sniffed by content, hidden
///   files skipped), in natural order (`img2` before `img10`);
/// * a file whose first bytes are PNG, JPEG, WebP, TIFF, BMP, GIF or PNM (PPM, PGM, PBM) →
///   [`SourceKind::Image`], except an animated GIF or PNG (APNG), which FFmpeg opens as a
///   [`SourceKind::Video`], and an animated WebP, a [`SourceKind::Video`] decoded whole at open
///   (`animation`, within [`MAX_ANIMATION_BYTES`]; FFmpeg 5.1 cannot decode it);
/// * a HEIC/HEIF image → [`MediaError::Unsupported`] with a sentence saying so (in a folder,
///   such images are left out with a warning);
/// * any other file → [`SourceKind::Video`] through FFmpeg.
///
/// Empty, damaged, truncated or unsupported files give a [`MediaError`]; nothing panics.
/// Images wider or taller than [`MAX_IMAGE_SIDE`] or above [`MAX_IMAGE_PIXELS`] are refused with
/// [`MediaError::Unsupported`] (not downscaled). Videos are indexed at open by reading every
/// packet of the video stream (no decoding), so opening costs about one read of the file.
pub fn open(path: &Path) -> Result<MediaSource, MediaError> {
    let meta = std::fs::metadata(path).map_err(|source| MediaError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut source = MediaSource {
        path: path.to_owned(),
        backend: Backend::Folder(Vec::new()),
        cache: FrameCache::default(),
    };
    if meta.is_dir() {
        let items = list_folder(path)?;
        source.backend = Backend::Folder(items);
        return Ok(source);
    }
    if !meta.is_file() {
        // A FIFO or device would block or never end.
        return Err(MediaError::Unsupported {
            path: path.to_owned(),
            reason: "it is not a regular file (a FIFO, device or socket); give the path of a file"
                .into(),
        });
    }
    if meta.len() == 0 {
        return Err(MediaError::Corrupt {
            path: path.to_owned(),
            reason: "the file is empty".into(),
        });
    }
    if let Some(format) = still::sniff_file(path)? {
        if format == image::ImageFormat::Tiff
            && let Some(pages) = tiff_pages::TiffPages::open(path)?
        {
            let (width, height) = pages.size();
            let info = sequence_info(
                file_name(path),
                (width, height),
                pages.len(),
                pages.fps(),
                pages.codec().to_owned(),
                pages.rotation_degrees(),
            );
            source.backend = Backend::Pages(Box::new(pages), info);
            return Ok(source);
        }
        // The header first: an animation's canvas is checked against the size limits before
        // any frame is decoded (a GIF of a few bytes can declare a 65535x65535 canvas).
        if matches!(
            format,
            image::ImageFormat::Gif | image::ImageFormat::Png | image::ImageFormat::WebP
        ) {
            still::read_header(path)?;
        }
        if !open_animation(&mut source, format)? {
            let (frame, header) = still::decode(path)?;
            let info = image_info(path, &header);
            source.cache.insert(0, 0, Arc::new(frame));
            source.backend = Backend::Image(info);
        }
        return Ok(source);
    }
    let (video, first) = video::Video::open(path)?;
    let v = video.info();
    if v.still_image {
        // AVIF, TGA, QOI, OpenEXR…: decoded once by FFmpeg and held.
        let info = picture_info(
            path,
            (v.width, v.height),
            v.codec.clone(),
            v.rotation_degrees,
        );
        source.backend = Backend::Still(info, Arc::new(first));
        return Ok(source);
    }
    source.cache.insert(0, 0, Arc::new(first));
    source.backend = Backend::Video(Box::new(video));
    Ok(source)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn image_info(path: &Path, header: &still::ImageHeader) -> ItemInfo {
    picture_info(
        path,
        (header.width, header.height),
        still::format_name(header.format),
        header.rotation_degrees,
    )
}

/// Facts about a picture: one frame, no rate or duration.
fn picture_info(
    path: &Path,
    (width, height): (u32, u32),
    codec: String,
    rotation: u32,
) -> ItemInfo {
    ItemInfo {
        name: file_name(path),
        width,
        height,
        frame_count: 1,
        fps: 0.0,
        duration_secs: 0.0,
        codec,
        rotation_degrees: rotation,
    }
}

/// Opens an animated GIF, PNG or WebP of `source` (sniffed as `format`) as a video and answers
/// true; false for a still picture, which the caller decodes. GIF and APNG go to FFmpeg, which
/// composes each frame onto the last (a failure shows the first frame as a still, with a
/// warning); WebP is read by `animation` (FFmpeg 5.1 cannot decode it), and an animation of
/// one frame is a picture.
fn open_animation(
    source: &mut MediaSource,
    format: image::ImageFormat,
) -> Result<bool, MediaError> {
    let path = source.path.clone();
    if !still::is_animated(&path, format) {
        return Ok(false);
    }
    if format == image::ImageFormat::WebP {
        let animation = animation::Animation::decode_webp(&path, MAX_ANIMATION_BYTES)?;
        source.backend = match animation.frame(0) {
            Some(frame) if animation.len() == 1 => {
                let info = picture_info(&path, animation.size(), "webp".into(), 0);
                Backend::Still(info, frame)
            }
            _ => Backend::Animation(Box::new(animation)),
        };
        return Ok(true);
    }
    match video::Video::open(&path) {
        Ok((video, first)) if video.info().frame_count > 1 => {
            source.cache.insert(0, 0, Arc::new(first));
            source.backend = Backend::Video(Box::new(video));
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) => {
            log::warn!("{e}; showing its first frame as a still image");
            Ok(false)
        }
    }
}

/// One image of a folder; its header is read on first use.
#[derive(Debug)]
struct FolderItem {
    path: PathBuf,
    info: std::sync::OnceLock<ItemInfo>,
}

impl FolderItem {
    /// Facts about the image, its header read once.
    fn info(&self) -> Result<ItemInfo, MediaError> {
        if let Some(info) = self.info.get() {
            return Ok(info.clone());
        }
        let header = still::read_header(&self.path)?;
        let info = image_info(&self.path, &header);
        Ok(self.info.get_or_init(|| info).clone())
    }

    /// The image in display orientation (its facts kept too).
    fn decode(&self) -> Result<Frame, MediaError> {
        let (frame, header) = still::decode(&self.path)?;
        let _ = self.info.set(image_info(&self.path, &header));
        Ok(frame)
    }
}

/// The largest frame rate a folder of frames (or a clip whose rate is a setting) may be given:
/// far above any camera's, and keeps `index / fps` meaningful.
pub const MAX_FRAMES_FPS: f64 = 1000.0;

/// Whether `fps` may be given as a frame rate: finite, from 0 (unknown) to [`MAX_FRAMES_FPS`];
/// the sentence saying why not otherwise.
pub fn check_frame_rate(fps: f64) -> Result<(), String> {
    if fps.is_finite() && (0.0..=MAX_FRAMES_FPS).contains(&fps) {
        return Ok(());
    }
    Err(format!(
        "{fps} frames per second is not a frame rate; give one from 0 (unknown) to \
         {MAX_FRAMES_FPS}"
    ))
}

/// The facts of a clip of `frame_count` frames at `fps` (0: unknown) whose rate is a setting
/// rather than timestamps: a folder of frames, the pages of a TIFF.
fn sequence_info(
    name: String,
    (width, height): (u32, u32),
    frame_count: u64,
    fps: f64,
    codec: String,
    rotation_degrees: u32,
) -> ItemInfo {
    ItemInfo {
        name,
        width,
        height,
        frame_count,
        fps,
        duration_secs: if fps > 0.0 {
            frame_count as f64 / fps
        } else {
            0.0
        },
        codec,
        rotation_degrees,
    }
}

/// Opens the images of folder `dir` (as [`open`] lists them: sniffed by content, hidden files
/// skipped, natural order) as the frames of one video at `fps` frames per second (0: rate
/// unknown, every frame time 0), the way SAM 2 reads a video (a folder of JPEG frames).
///
/// Every image's header is read now: the frames of a video share one size, so an image of
/// another displayed size than the first is [`MediaError::NotFrames`] naming both. Frame N is
/// decoded on request and cached like a video's.
pub fn open_frames(dir: &Path, fps: f64) -> Result<MediaSource, MediaError> {
    if let Err(reason) = check_frame_rate(fps) {
        return Err(MediaError::NotFrames {
            path: dir.to_owned(),
            reason,
        });
    }
    let meta = std::fs::metadata(dir).map_err(|source| MediaError::Io {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(MediaError::NotFrames {
            path: dir.to_owned(),
            reason: "it is a file, and only a folder of images opens as the frames of one video"
                .into(),
        });
    }
    let items = list_folder(dir)?;
    let Some((head, rest)) = items.split_first() else {
        return Err(MediaError::EmptyFolder {
            path: dir.to_owned(),
        });
    };
    let first = head.info()?;
    for item in rest {
        let info = item.info()?;
        if (info.width, info.height) != (first.width, first.height) {
            return Err(MediaError::NotFrames {
                path: dir.to_owned(),
                reason: format!(
                    "its images are of different sizes, and the frames of a video share one: {} is {}x{} but {} is {}x{}",
                    info.name, info.width, info.height, first.name, first.width, first.height
                ),
            });
        }
    }
    let info = sequence_info(
        file_name(dir),
        (first.width, first.height),
        items.len() as u64,
        fps,
        first.codec,
        0,
    );
    Ok(MediaSource {
        path: dir.to_owned(),
        backend: Backend::Frames(items, info),
        cache: FrameCache::default(),
    })
}

enum Backend {
    Image(ItemInfo),
    /// A folder's images as the frames of one item of this size and rate.
    Frames(Vec<FolderItem>, ItemInfo),
    /// An image only FFmpeg decodes, or a one-frame animation: the frame held decoded.
    Still(ItemInfo, Arc<Frame>),
    Video(Box<video::Video>),
    Animation(Box<animation::Animation>),
    /// The pages of a multi-page TIFF, decoded on request, and their facts.
    Pages(Box<tiff_pages::TiffPages>, ItemInfo),
    Folder(Vec<FolderItem>),
}

/// An opened image, image folder or video. Frames come back in display orientation, RGBA8,
/// and are kept in a byte-bounded LRU cache.
pub struct MediaSource {
    path: PathBuf,
    backend: Backend,
    cache: FrameCache,
}

impl std::fmt::Debug for MediaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSource")
            .field("path", &self.path)
            .field("kind", &self.kind())
            .field("items", &self.item_count())
            .finish()
    }
}

impl MediaSource {
    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Image, video or folder.
    pub fn kind(&self) -> SourceKind {
        match self.backend {
            Backend::Image(_) | Backend::Still(..) => SourceKind::Image,
            Backend::Video(_) | Backend::Animation(_) | Backend::Pages(..) => SourceKind::Video,
            Backend::Folder(_) => SourceKind::Folder,
            Backend::Frames(..) => SourceKind::Frames,
        }
    }

    /// Number of items: 1 for an image or a video, the number of images for a folder.
    pub fn item_count(&self) -> usize {
        match &self.backend {
            Backend::Folder(items) => items.len(),
            _ => 1,
        }
    }

    fn out_of_range(&self, index: u64, count: usize) -> MediaError {
        MediaError::OutOfRange {
            path: self.path.clone(),
            index,
            count: count as u64,
        }
    }

    fn check_item(&self, item: usize) -> Result<(), MediaError> {
        let count = self.item_count();
        if item < count {
            Ok(())
        } else {
            Err(self.out_of_range(item as u64, count))
        }
    }

    /// Facts about one item. Folder images have their header read on first request.
    pub fn item_info(&self, item: usize) -> Result<ItemInfo, MediaError> {
        self.check_item(item)?;
        match &self.backend {
            Backend::Image(info)
            | Backend::Still(info, _)
            | Backend::Frames(_, info)
            | Backend::Pages(_, info) => Ok(info.clone()),
            Backend::Video(video) => {
                let v = video.info();
                Ok(ItemInfo {
                    name: file_name(&self.path),
                    width: v.width,
                    height: v.height,
                    frame_count: v.frame_count,
                    fps: v.fps,
                    duration_secs: v.duration_secs,
                    codec: v.codec.clone(),
                    rotation_degrees: v.rotation_degrees,
                })
            }
            Backend::Animation(animation) => {
                let (width, height) = animation.size();
                Ok(ItemInfo {
                    name: file_name(&self.path),
                    width,
                    height,
                    frame_count: animation.len(),
                    fps: animation.fps(),
                    duration_secs: animation.duration_secs(),
                    codec: "webp".into(),
                    rotation_degrees: 0,
                })
            }
            Backend::Folder(items) => items[item].info(),
        }
    }

    /// The file name of each frame of a folder of frames ([`open_frames`]), in frame order;
    /// empty for other media.
    pub fn frame_files(&self) -> Vec<String> {
        match &self.backend {
            Backend::Frames(items, _) => items.iter().map(|i| file_name(&i.path)).collect(),
            _ => Vec::new(),
        }
    }

    /// The file behind an item (the source itself for an image or a video).
    pub fn item_path(&self, item: usize) -> Result<PathBuf, MediaError> {
        self.check_item(item)?;
        match &self.backend {
            Backend::Folder(items) => Ok(items[item].path.clone()),
            _ => Ok(self.path.clone()),
        }
    }

    /// Frame `index` of `item` in display orientation. For an image or a folder image the only
    /// frame is 0. Served from the cache when possible; videos decode on demand with
    /// frame-accurate seeking, and asking for the next frame continues without a seek.
    pub fn frame(&mut self, item: usize, index: u64) -> Result<Arc<Frame>, MediaError> {
        self.check_item(item)?;
        if let Some(frame) = self.cache.get(item, index) {
            return Ok(frame);
        }
        let frame = match &mut self.backend {
            Backend::Image(_) => {
                if index != 0 {
                    return Err(self.out_of_range(index, 1));
                }
                // Evicted from the cache: decode again.
                still::decode(&self.path)?.0
            }
            Backend::Folder(items) => {
                if index != 0 {
                    return Err(self.out_of_range(index, 1));
                }
                items[item].decode()?
            }
            Backend::Frames(items, info) => {
                let entry = usize::try_from(index)
                    .ok()
                    .and_then(|i| items.get(i))
                    .ok_or(MediaError::OutOfRange {
                        path: self.path.clone(),
                        index,
                        count: info.frame_count,
                    })?;
                let frame = entry.decode()?;
                if (frame.width, frame.height) != (info.width, info.height) {
                    // Replaced since it was opened: the frames of a video share one size.
                    return Err(MediaError::Corrupt {
                        path: entry.path.clone(),
                        reason: format!(
                            "it is {}x{} now, not {}x{} like the other frames",
                            frame.width, frame.height, info.width, info.height
                        ),
                    });
                }
                frame
            }
            Backend::Still(..) if index != 0 => return Err(self.out_of_range(index, 1)),
            // Held decoded already: not cached, which would only count them twice.
            Backend::Still(_, frame) => return Ok(Arc::clone(frame)),
            Backend::Animation(animation) => {
                return animation.frame(index).ok_or(MediaError::OutOfRange {
                    path: self.path.clone(),
                    index,
                    count: animation.len(),
                });
            }
            Backend::Pages(pages, info) => {
                let count = info.frame_count;
                pages
                    .frame(&self.path, index)
                    .ok_or(MediaError::OutOfRange {
                        path: self.path.clone(),
                        index,
                        count,
                    })??
            }
            Backend::Video(video) => {
                // Stepping backwards: keep up to a quarter of the budget of the frames decoded
                // on the way (at most 16), so the next steps back are cache hits.
                let frame_bytes = self.cache.last_frame_bytes().max(1);
                let prefetch = (self.cache.budget_bytes() / 4 / frame_bytes).min(16);
                let (frame, before) = video.frame(index, prefetch)?;
                for (i, f) in before {
                    self.cache.insert(item, i, Arc::new(f));
                }
                frame
            }
        };
        let frame = Arc::new(frame);
        self.cache.insert(item, index, Arc::clone(&frame));
        Ok(frame)
    }

    /// Presentation time of frame `index` of `item` in seconds from the first frame (0 for
    /// images; the last frame's time for indices past the end).
    pub fn frame_time_secs(&self, item: usize, index: u64) -> f64 {
        match &self.backend {
            Backend::Video(video) if item == 0 => video.frame_time_secs(index),
            Backend::Animation(animation) if item == 0 => animation.frame_time_secs(index),
            Backend::Frames(_, info) | Backend::Pages(_, info) if item == 0 && info.fps > 0.0 => {
                index.min(info.frame_count.saturating_sub(1)) as f64 / info.fps
            }
            _ => 0.0,
        }
    }

    /// Whether the frame rate is a setting rather than the media's own timing: a folder of
    /// frames, the pages of a TIFF, or a clip of unknown rate (0). A project keeps the rate a
    /// person sets for such media.
    pub fn rate_is_settable(&self) -> bool {
        match &self.backend {
            Backend::Frames(..) | Backend::Pages(..) => true,
            Backend::Video(_) | Backend::Animation(_) => {
                self.item_info(0).is_ok_and(|info| info.fps <= 0.0)
            }
            Backend::Image(_) | Backend::Still(..) | Backend::Folder(_) => false,
        }
    }

    /// Sets the frame cache budget in bytes (default [`DEFAULT_CACHE_BUDGET_BYTES`]), evicting
    /// frames to fit.
    pub fn set_cache_budget_bytes(&mut self, bytes: usize) {
        self.cache.set_budget_bytes(bytes);
    }

    /// Bytes of pixels held by the frame cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.used_bytes()
    }
}

/// Lists a folder's supported images (sniffed by content) in natural order.
fn list_folder(dir: &Path) -> Result<Vec<FolderItem>, MediaError> {
    let io = |source| MediaError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    let mut heif = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks; unreadable entries are skipped like non-images.
        if !path.is_file() {
            continue;
        }
        match still::sniff_file(&path) {
            Ok(Some(_)) => paths.push(path),
            // sniff_file's one Unsupported answer: a HEIF image.
            Err(MediaError::Unsupported { .. }) => heif += 1,
            _ => {}
        }
    }
    let heif_sentence = format!(
        "HEIC/HEIF, which this build cannot decode; convert them to {}",
        still::HEIF_CONVERSION
    );
    if paths.is_empty() {
        if heif > 0 {
            return Err(MediaError::Unsupported {
                path: dir.to_owned(),
                reason: format!("its {heif} image(s) are {heif_sentence}"),
            });
        }
        return Err(MediaError::EmptyFolder {
            path: dir.to_owned(),
        });
    }
    if heif > 0 {
        log::warn!(
            "{}: {heif} image(s) left out, as they are {heif_sentence}",
            dir.display()
        );
    }
    paths.sort_by(|a, b| natural_cmp(&file_name(a), &file_name(b)));
    Ok(paths
        .into_iter()
        .map(|path| FolderItem {
            path,
            info: std::sync::OnceLock::new(),
        })
        .collect())
}

/// Natural ("human") order of file names: runs of digits compare by value, other text
/// case-insensitively, so `frame2.png` < `frame10.png` < `Frame11.png`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut a_it, mut b_it) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (a_it.peek().copied(), b_it.peek().copied()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let take = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                    let mut digits = String::new();
                    while let Some(c) = it.peek().copied().filter(char::is_ascii_digit) {
                        digits.push(c);
                        it.next();
                    }
                    digits
                };
                let (da, db) = (take(&mut a_it), take(&mut b_it));
                let (ta, tb) = (da.trim_start_matches('0'), db.trim_start_matches('0'));
                let ord = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then_with(|| da.len().cmp(&db.len()));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            (Some(x), Some(y)) => {
                let ord = x.to_lowercase().cmp(y.to_lowercase());
                if ord != Ordering::Equal {
                    return ord;
                }
                a_it.next();
                b_it.next();
            }
        }
    }
}

/// Size and content fingerprint of a file: `(size_bytes, sha256 hex of size ‖ first MiB ‖
/// last MiB)`, the size as 8 little-endian bytes. Cheap for huge videos; used to notice that a
/// project's media changed.
pub fn fingerprint_file(path: &Path) -> Result<(u64, String), MediaError> {
    use sha2::Digest;
    use std::io::{Read, Seek, SeekFrom};
    const MIB: u64 = 1 << 20;
    let io = |source| MediaError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut hasher = sha2::Sha256::new();
    hasher.update(size.to_le_bytes());
    let mut buf = Vec::with_capacity(MIB as usize);
    (&mut file).take(MIB).read_to_end(&mut buf).map_err(io)?;
    hasher.update(&buf);
    buf.clear();
    file.seek(SeekFrom::Start(size.saturating_sub(MIB)))
        .map_err(io)?;
    file.take(MIB).read_to_end(&mut buf).map_err(io)?;
    hasher.update(&buf);
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn natural_sort_orders_numbers_by_value() {
        let mut names = vec![
            "img10.png",
            "img2.png",
            "Img1.png",
            "img02.png",
            "img1b.png",
            "a.png",
            "img100.png",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            vec![
                "a.png",
                "Img1.png",
                "img1b.png",
                "img2.png",
                "img02.png",
                "img10.png",
                "img100.png"
            ]
        );
    }

    #[test]
    fn media_source_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<MediaSource>();
    }

    #[test]
    fn fingerprint_covers_size_head_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        let mut data = vec![7u8; 3 << 20];
        std::fs::write(&a, &data).unwrap();
        let (size, hash) = fingerprint_file(&a).unwrap();
        assert_eq!(size, 3 << 20);
        assert_eq!(hash.len(), 64);
        // A change in the middle is not seen; one in the tail is.
        data[(3 << 20) / 2] = 0;
        std::fs::write(&a, &data).unwrap();
        assert_eq!(fingerprint_file(&a).unwrap().1, hash);
        let last = data.len() - 1;
        data[last] = 0;
        std::fs::write(&a, &data).unwrap();
        assert_ne!(fingerprint_file(&a).unwrap().1, hash);
        assert!(fingerprint_file(&dir.path().join("missing")).is_err());
    }
}

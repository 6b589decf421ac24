//! Videos through FFmpeg: a demux-only frame index built at open, frame-accurate seeking,
//! and conversion of any pixel format to display-oriented RGBA8.
//!
//! Frame `n` is the packet with the `n`-th smallest presentation timestamp (packets the
//! container marks as discarded, e.g. by an edit list, are left out). To show frame `n` the
//! decoder seeks to the last keyframe whose *presentation* time is not after the target (so the
//! target is never an open-GOP leading picture of that keyframe), then decodes forward until a
//! frame with the target timestamp comes out. If the first decoded frame is already past the
//! target, it retries from an earlier keyframe. Asking for the next frame continues decoding
//! without a seek. Streams without usable timestamps are counted by decode order instead.

use std::path::{Path, PathBuf};
use std::sync::Once;

use ffmpeg::codec::packet::Ref as _;
use ffmpeg::ffi;
use ffmpeg::format::Pixel;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;

use super::orient::Orientation;
use super::{Frame, MediaError};

/// Decoder threads per open video.
const DECODER_THREADS: usize = 4;
/// Failed decode calls tolerated while looking for one frame before giving up.
const MAX_DECODE_ERRORS: usize = 256;
/// A backward request at most this many frames before the previous one counts as stepping
/// back, which prefetches the frames decoded on the way.
const BACKWARD_STEP_FRAMES: usize = 8;
/// Earlier keyframes tried when a seek lands past the target, before decoding from the start.
const MAX_SEEK_RETRIES: usize = 3;

static INIT: Once = Once::new();

fn init_ffmpeg() {
    INIT.call_once(|| {
        // `ffmpeg::init` only registers devices in FFmpeg ≥ 5; it cannot fail in a way that
        // stops demuxing, so its error is ignored.
        let _ = ffmpeg::init();
        // Decoders log every damaged macroblock; errors reach the user as `MediaError`.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// Facts about an opened video.
#[derive(Debug, Clone)]
pub(crate) struct VideoInfo {
    /// Displayed width (square pixels, rotation applied).
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// Number of frames in the index.
    pub frame_count: u64,
    /// Average frame rate.
    pub fps: f64,
    /// Duration in seconds.
    pub duration_secs: f64,
    /// FFmpeg codec name.
    pub codec: String,
    /// Clockwise rotation applied for display.
    pub rotation_degrees: u32,
    /// One picture in an image container (FFmpeg's image demuxers, an AVIF or other HEIF-brand
    /// file): an image, not a one-frame video.
    pub still_image: bool,
}

/// Whether FFmpeg opened `input` as a picture file rather than a video: its image demuxers
/// (`image2`, `png_pipe`, `ppm_pipe`…) or an ISO-BMFF file whose major brand is an image's
/// (`avif`, `mif1`, `miaf`).
fn image_container(input: &ffmpeg::format::context::Input) -> bool {
    let name = input.format().name().to_owned();
    let brand = input.metadata().get("major_brand").map(str::to_owned);
    name == "image2"
        || name.ends_with("_pipe")
        || brand.is_some_and(|b| matches!(b.as_str(), "avif" | "mif1" | "miaf"))
}

/// Where decoding restarts for a seek.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeekPoint {
    /// The beginning of the stream.
    Start,
    /// A keyframe: `av_seek_frame(…, ts, AVSEEK_FLAG_BACKWARD)` lands on it or earlier.
    Timestamp(i64),
}

#[derive(Debug, Clone, Copy)]
struct KeyPoint {
    /// Presentation timestamp of the keyframe (`i64::MIN` for the stream start).
    pts: i64,
    seek: SeekPoint,
}

/// The frame index.
#[derive(Debug, Default)]
struct Timeline {
    /// Timestamps of all frames in presentation order (decode-order counters when `ordinal`).
    ts: Vec<i64>,
    /// Keyframes in presentation order, first entry at or before the first frame.
    keys: Vec<KeyPoint>,
    /// No presentation timestamps (e.g. AVI with B-frames): frames are numbered in output
    /// order. A decoded frame's number is the decode-order position of the packet whose
    /// decoding released it (`pkt_dts`) minus the decoder's constant output delay, measured at
    /// open; keyframes are entered at their decode position plus that delay, which is never
    /// before their display position.
    ordinal: bool,
    /// Ordinal timelines: decode timestamps in decode order (empty when some packets lack
    /// them; only the start is then a seek point).
    decode_dts: Vec<i64>,
    /// Ordinal timelines: packets the decoder takes before it outputs the first frame.
    output_delay: i64,
    /// How long the last frame is shown, in stream time base units (its packet's duration; 0
    /// when the container does not say).
    last_duration: i64,
}

impl Timeline {
    /// Index into `keys` of the last keyframe not after `target`.
    fn key_for(&self, target: i64) -> usize {
        self.keys
            .partition_point(|k| k.pts <= target)
            .saturating_sub(1)
    }

    /// Index of the frame with timestamp `ts` (or of the last one before it).
    fn index_of(&self, ts: i64) -> usize {
        self.ts.partition_point(|t| *t <= ts).saturating_sub(1)
    }
}

struct ScalerState {
    key: (Pixel, u32, u32, u32, u32, i32, bool),
    ctx: ffmpeg::software::scaling::Context,
}

/// An open video file with its decoder and frame index.
pub(crate) struct Video {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    stream_index: usize,
    decoder: ffmpeg::decoder::Video,
    timeline: Timeline,
    orientation: Orientation,
    time_base_secs: f64,
    info: VideoInfo,
    scaler: Option<ScalerState>,
    /// Timestamp of the last frame taken from the decoder (returned, skipped or held).
    last_ts: Option<i64>,
    /// A decoded frame that came after the one asked for and has not been shown yet.
    held: Option<(i64, VideoFrame)>,
    /// Drop packets until the next keyframe (after a seek into the middle).
    need_key: bool,
    eof_sent: bool,
    /// Number of the next frame to come out of the decoder (ordinal timelines).
    ordinal_counter: i64,
    /// The index of the last request, to notice backward stepping.
    last_requested: Option<usize>,
    /// A picture file (see `image_container`): FFmpeg's image demuxers may report a seek as
    /// done and then read nothing (a TGA after the index scan), so every seek opens the file
    /// again, which starts at its one picture.
    reopen_to_rewind: bool,
}

// SAFETY: every FFmpeg object in `Video` (format context, codec context, frames, scaler) is
// owned exclusively by it and only used through `&mut self`; FFmpeg allows such objects to move
// between threads as long as they are not used concurrently.
unsafe impl Send for Video {}

fn ffmpeg_error(path: &Path, what: &str, err: ffmpeg::Error) -> MediaError {
    MediaError::Corrupt {
        path: path.to_owned(),
        reason: format!("{what}: {err}"),
    }
}

/// Content-only probe of a file's first bytes: the container FFmpeg recognises, if any.
fn probe_container(head: &[u8]) -> Option<String> {
    let mut buf = head.to_vec();
    buf.extend(std::iter::repeat_n(0u8, ffi::AVPROBE_PADDING_SIZE as usize));
    let pd = ffi::AVProbeData {
        filename: c"".as_ptr(),
        buf: buf.as_mut_ptr(),
        buf_size: i32::try_from(head.len()).unwrap_or(0),
        mime_type: std::ptr::null(),
    };
    let mut score = 0;
    // SAFETY: `pd` points into `buf`, which outlives the call and carries the required zero
    // padding; FFmpeg only reads from it.
    let format = unsafe { ffi::av_probe_input_format3(&pd, 1, &mut score) };
    if format.is_null() || score <= ffi::AVPROBE_SCORE_EXTENSION {
        return None;
    }
    // SAFETY: a non-null `AVInputFormat` is a static with a valid C string name.
    let name = unsafe { std::ffi::CStr::from_ptr((*format).name) };
    Some(name.to_string_lossy().into_owned())
}

fn open_input(path: &Path) -> Result<ffmpeg::format::context::Input, MediaError> {
    // `ffmpeg-next` panics on paths that are not UTF-8 or contain NUL.
    match path.to_str() {
        Some(s) if !s.contains('\0') => {}
        _ => {
            return Err(MediaError::Unsupported {
                path: path.to_owned(),
                reason: "FFmpeg needs a UTF-8 file name".into(),
            });
        }
    }
    ffmpeg::format::input(path).map_err(|err| {
        let mut head = Vec::new();
        let _ = std::fs::File::open(path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut head));
        match probe_container(&head) {
            Some(container) => MediaError::Corrupt {
                path: path.to_owned(),
                reason: format!("FFmpeg cannot read this {container} file: {err}"),
            },
            None => MediaError::Unsupported {
                path: path.to_owned(),
                reason: format!("FFmpeg does not recognise its content: {err}"),
            },
        }
    })
}

/// Picks the video stream: FFmpeg's best one unless it is cover art.
fn pick_stream(input: &ffmpeg::format::context::Input) -> Option<usize> {
    let is_picture = |s: &ffmpeg::format::stream::Stream| {
        s.parameters().medium() == ffmpeg::media::Type::Video
            && !s
                .disposition()
                .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
    };
    if let Some(best) = input.streams().best(ffmpeg::media::Type::Video)
        && is_picture(&best)
    {
        return Some(best.index());
    }
    input.streams().find(is_picture).map(|s| s.index())
}

fn stream_ptr(input: &mut ffmpeg::format::context::Input, index: usize) -> *mut ffi::AVStream {
    // SAFETY: `index` comes from the context's own stream list, so the array has that entry.
    unsafe { *(*input.as_mut_ptr()).streams.add(index) }
}

/// Orientation from the stream's display matrix side data.
fn stream_orientation(input: &mut ffmpeg::format::context::Input, index: usize) -> Orientation {
    let st = stream_ptr(input, index);
    let mut size: usize = 0;
    // SAFETY: `st` is a live stream; the returned pointer stays valid while the context lives
    // and is read at once.
    let data = unsafe {
        ffi::av_stream_get_side_data(
            st,
            ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
            &mut size,
        )
    };
    if data.is_null() || size < 36 {
        return Orientation::Identity;
    }
    let mut matrix = [0i32; 9];
    // SAFETY: the side data holds at least 36 bytes (nine i32), possibly unaligned.
    unsafe {
        std::ptr::copy_nonoverlapping(data, matrix.as_mut_ptr().cast::<u8>(), 36);
    }
    // SAFETY: `matrix` is nine i32 values as the function expects.
    let ccw = unsafe { ffi::av_display_rotation_get(matrix.as_ptr()) };
    if !ccw.is_finite() {
        return Orientation::Identity;
    }
    Orientation::from_display_matrix(&matrix, ccw)
}

/// Displayed (square-pixel) size of a `width` × `height` picture with sample aspect ratio
/// `sar`: a wide SAR widens the picture, a narrow one makes it taller, so no pixel is lost.
/// The result is not capped: the caller refuses a size above the limits (`still::check_size`)
/// rather than distort the picture.
pub(crate) fn square_pixel_size(width: u32, height: u32, sar: (i32, i32)) -> (u32, u32) {
    let (num, den) = sar;
    if num <= 0 || den <= 0 || num == den {
        return (width, height);
    }
    let ratio = f64::from(num) / f64::from(den);
    let clamp = |v: f64| v.round().clamp(1.0, f64::from(u32::MAX)) as u32;
    if ratio > 1.0 {
        (clamp(f64::from(width) * ratio), height)
    } else {
        (width, clamp(f64::from(height) / ratio))
    }
}

fn rational(r: ffmpeg::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| f64::from(r.numerator()) / f64::from(r.denominator()))
}

fn is_eagain(err: &ffmpeg::Error) -> bool {
    matches!(err, ffmpeg::Error::Other { errno } if *errno == ffmpeg::util::error::EAGAIN)
}

impl Video {
    /// Opens a video: finds the stream and decoder, builds the frame index by demuxing every
    /// packet (no decoding), and decodes frame 0 to prove the stream is readable.
    pub(crate) fn open(path: &Path) -> Result<(Self, Frame), MediaError> {
        init_ffmpeg();
        let mut input = open_input(path)?;
        let stream_index = pick_stream(&input).ok_or_else(|| MediaError::Unsupported {
            path: path.to_owned(),
            reason: "it has no video stream".into(),
        })?;
        let (parameters, time_base, avg_rate, real_rate) = {
            let stream = input
                .stream(stream_index)
                .ok_or_else(|| MediaError::Unsupported {
                    path: path.to_owned(),
                    reason: "it has no video stream".into(),
                })?;
            (
                stream.parameters(),
                stream.time_base(),
                stream.avg_frame_rate(),
                stream.rate(),
            )
        };
        let codec_id = parameters.id();
        let codec = codec_id.name().to_owned();
        if ffmpeg::decoder::find(codec_id).is_none() {
            return Err(MediaError::Unsupported {
                path: path.to_owned(),
                reason: format!("this FFmpeg build has no decoder for the {codec} codec"),
            });
        }
        let mut context = ffmpeg::codec::context::Context::from_parameters(parameters)
            .map_err(|e| ffmpeg_error(path, "bad codec parameters", e))?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(DECODER_THREADS);
        // SAFETY: the codec context is not opened yet; these plain fields may be set freely.
        unsafe {
            let ctx = context.as_mut_ptr();
            (*ctx).thread_count = i32::try_from(threads).unwrap_or(1);
            (*ctx).pkt_timebase = time_base.into();
        }
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| MediaError::Unsupported {
                path: path.to_owned(),
                reason: format!("FFmpeg cannot decode its {codec} video: {e}"),
            })?;
        // Refused before anything is decoded: a frame this size would need gigabytes.
        if decoder.width() > 0 && decoder.height() > 0 {
            super::still::check_size(path, decoder.width(), decoder.height())?;
        }
        let orientation = stream_orientation(&mut input, stream_index);
        let in_image_container = image_container(&input);
        let timeline = scan(path, &mut input, stream_index)?;
        let time_base_secs = rational(time_base).unwrap_or(0.0);

        let count = timeline.ts.len() as u64;
        let span_secs = match (timeline.ts.first(), timeline.ts.last()) {
            (Some(first), Some(last)) if !timeline.ordinal => {
                (*last - *first) as f64 * time_base_secs
            }
            _ => 0.0,
        };
        // Without presentation times (AVI), increasing decode times still space the frames: the
        // container's average rate can count the empty placeholder packets that stand in for
        // B-frames (twice the real rate).
        let dts_rate = match (timeline.decode_dts.first(), timeline.decode_dts.last()) {
            (Some(first), Some(last)) if count > 1 && last > first => {
                Some((count - 1) as f64 / ((*last - *first) as f64 * time_base_secs))
            }
            _ => None,
        }
        .filter(|f| f.is_finite() && *f > 0.0 && *f < 1000.0);
        let fps = dts_rate
            .or_else(|| rational(avg_rate))
            .or_else(|| rational(real_rate))
            .filter(|f| *f < 1000.0)
            .or_else(|| (count > 1 && span_secs > 0.0).then(|| (count - 1) as f64 / span_secs))
            .unwrap_or(0.0);
        // From the first frame to the end of the last: the span of the timestamps (variable
        // rates included) plus the last frame's own duration, else one frame at the mean rate.
        let last_secs = if timeline.last_duration > 0 {
            timeline.last_duration as f64 * time_base_secs
        } else if fps > 0.0 {
            1.0 / fps
        } else {
            0.0
        };
        let duration_secs = if timeline.ordinal {
            if fps > 0.0 { count as f64 / fps } else { 0.0 }
        } else {
            span_secs + last_secs
        };

        let mut video = Self {
            path: path.to_owned(),
            input,
            stream_index,
            decoder,
            timeline,
            orientation,
            time_base_secs,
            info: VideoInfo {
                width: 0,
                height: 0,
                frame_count: count,
                fps,
                duration_secs,
                codec,
                rotation_degrees: orientation.rotation_degrees(),
                still_image: in_image_container && count == 1,
            },
            scaler: None,
            last_ts: None,
            held: None,
            need_key: false,
            eof_sent: false,
            ordinal_counter: 0,
            last_requested: None,
            reopen_to_rewind: in_image_container,
        };
        video.seek(SeekPoint::Start)?;
        if video.timeline.ordinal && !video.timeline.decode_dts.is_empty() {
            video.calibrate_output_delay()?;
        }
        let (first, _) = video.frame(0, 0)?;
        video.info.width = first.width;
        video.info.height = first.height;
        Ok((video, first))
    }

    /// Measures how many packets the decoder takes before its first frame (ordinal timelines),
    /// and shifts keyframe numbers by it.
    fn calibrate_output_delay(&mut self) -> Result<(), MediaError> {
        self.timeline.output_delay = 0;
        let first = self.next_frame()?.map(|(ts, _)| ts.max(0)).unwrap_or(0);
        self.timeline.output_delay = first;
        for key in &mut self.timeline.keys {
            if key.pts != i64::MIN {
                key.pts += first;
            }
        }
        self.seek(SeekPoint::Start)
    }

    /// Facts about the video.
    pub(crate) fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Presentation time of frame `index` from the first frame, in seconds.
    pub(crate) fn frame_time_secs(&self, index: u64) -> f64 {
        let ts = &self.timeline.ts;
        if self.timeline.ordinal {
            return if self.info.fps > 0.0 {
                index as f64 / self.info.fps
            } else {
                0.0
            };
        }
        let (Some(first), Some(last)) = (ts.first(), ts.last()) else {
            return 0.0;
        };
        let t = usize::try_from(index)
            .ok()
            .and_then(|i| ts.get(i))
            .unwrap_or(last);
        (*t - *first) as f64 * self.time_base_secs
    }

    /// Decodes frame `index` (presentation order) to display-oriented RGBA.
    ///
    /// When the request steps backwards by a few frames (stepping back through a GOP decodes
    /// it from its keyframe each time), up to `prefetch_before` of the frames decoded on the way are
    /// converted too and returned with their indices, oldest first, for the cache.
    pub(crate) fn frame(
        &mut self,
        index: u64,
        prefetch_before: usize,
    ) -> Result<(Frame, Vec<(u64, Frame)>), MediaError> {
        let count = self.timeline.ts.len();
        let i = usize::try_from(index)
            .ok()
            .filter(|i| *i < count)
            .ok_or_else(|| MediaError::OutOfRange {
                path: self.path.clone(),
                index,
                count: count as u64,
            })?;
        // Stepping back a little (not a long jump back while scrubbing).
        let backwards = self
            .last_requested
            .is_some_and(|last| i < last && last - i <= BACKWARD_STEP_FRAMES);
        self.last_requested = Some(i);
        let keep = if backwards { prefetch_before } else { 0 };
        let (decoded, before) = self.decode_at(i, keep)?;
        let frame = self.convert_rgba(&decoded)?;
        let mut extras = Vec::with_capacity(before.len());
        for (ts, f) in before {
            if let Ok(j) = self.timeline.ts.binary_search(&ts)
                && j < i
            {
                extras.push((j as u64, self.convert_rgba(&f)?));
            }
        }
        Ok((frame, extras))
    }

    fn stream_ptr(&mut self) -> *mut ffi::AVStream {
        stream_ptr(&mut self.input, self.stream_index)
    }

    /// Asks FFmpeg to seek to `point`; false when it refuses.
    fn demuxer_seek(&mut self, point: SeekPoint) -> bool {
        let index = i32::try_from(self.stream_index).unwrap_or(0);
        match point {
            SeekPoint::Timestamp(ts) => {
                // SAFETY: the context is live and `index` names its video stream.
                let ret = unsafe {
                    ffi::av_seek_frame(
                        self.input.as_mut_ptr(),
                        index,
                        ts,
                        ffi::AVSEEK_FLAG_BACKWARD,
                    )
                };
                ret >= 0
            }
            SeekPoint::Start => {
                let first = self.timeline.keys.iter().find_map(|k| match k.seek {
                    SeekPoint::Timestamp(ts) => Some(ts),
                    SeekPoint::Start => None,
                });
                let target = first.unwrap_or(i64::MIN);
                // SAFETY: as above.
                let ret = unsafe {
                    ffi::avformat_seek_file(
                        self.input.as_mut_ptr(),
                        index,
                        i64::MIN,
                        target,
                        target,
                        0,
                    )
                };
                ret >= 0
            }
        }
    }

    /// Repositions the demuxer and resets the decoder.
    fn seek(&mut self, point: SeekPoint) -> Result<(), MediaError> {
        let ok = !self.reopen_to_rewind && self.demuxer_seek(point);
        if !ok {
            if point != SeekPoint::Start && !self.reopen_to_rewind {
                return self.seek(SeekPoint::Start);
            }
            // Not seekable: reopen the file, which always starts at the beginning.
            let mut input = open_input(&self.path)?;
            for i in 0..input.nb_streams() as usize {
                if i != self.stream_index {
                    discard_stream(&mut input, i);
                }
            }
            self.input = input;
        }
        self.decoder.flush();
        self.held = None;
        self.last_ts = None;
        self.eof_sent = false;
        self.need_key = point != SeekPoint::Start;
        self.ordinal_counter = 0;
        Ok(())
    }

    /// Sends the next packet of the stream to the decoder (or end of stream). Returns false
    /// when nothing more can be sent.
    fn feed(&mut self) -> bool {
        if self.eof_sent {
            return false;
        }
        let mut invalid = 0usize;
        loop {
            // A fresh packet each time: `av_read_frame` does not release what a packet holds.
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg::Error::InvalidData) if invalid < MAX_DECODE_ERRORS => {
                    invalid += 1;
                    continue;
                }
                Err(_) => {
                    // End of file, or a read error on a damaged file: drain the decoder.
                    let _ = self.decoder.send_eof();
                    self.eof_sent = true;
                    return true;
                }
            }
            if packet.stream() != self.stream_index || packet.size() == 0 {
                continue;
            }
            if self.need_key {
                if !packet.is_key() {
                    continue;
                }
                self.need_key = false;
            }
            // A damaged packet is skipped, as the ffmpeg tool does.
            let _ = self.decoder.send_packet(&packet);
            return true;
        }
    }

    /// The next decoded frame and its timestamp, or `None` at the end of the stream.
    fn next_frame(&mut self) -> Result<Option<(i64, VideoFrame)>, MediaError> {
        if let Some(held) = self.held.take() {
            return Ok(Some(held));
        }
        let mut errors = 0usize;
        loop {
            let mut frame = VideoFrame::empty();
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    let ts = if self.timeline.ordinal {
                        let released_by = frame.packet().dts;
                        match self.timeline.decode_dts.binary_search(&released_by) {
                            Ok(position) => position as i64 - self.timeline.output_delay,
                            // Frames drained at the end carry no packet timestamp.
                            Err(_) => self.ordinal_counter,
                        }
                    } else {
                        frame
                            .pts()
                            .or_else(|| frame.timestamp())
                            .or(self.last_ts)
                            .unwrap_or(i64::MIN)
                    };
                    self.ordinal_counter = ts + 1;
                    self.last_ts = Some(ts);
                    return Ok(Some((ts, frame)));
                }
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(e) if is_eagain(&e) => {
                    if !self.feed() {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    errors += 1;
                    if errors > MAX_DECODE_ERRORS {
                        return Err(ffmpeg_error(&self.path, "the video cannot be decoded", e));
                    }
                    if !self.feed() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Whether frame `target_index` is reached faster by decoding on than by seeking.
    fn can_continue(&self, target: i64, target_index: usize, key: &KeyPoint) -> bool {
        let position = match &self.held {
            Some((ts, _)) => {
                if *ts > target {
                    return false;
                }
                *ts
            }
            None => match self.last_ts {
                Some(ts) if ts < target => ts,
                _ => return false,
            },
        };
        if position >= key.pts {
            return true;
        }
        // Close enough (e.g. the next frame is a keyframe): keep the decoder warm.
        target_index.saturating_sub(self.timeline.index_of(position)) <= 2
    }

    /// Decodes the frame at `index`. Also returns up to `keep_before` of the frames decoded
    /// just before it on the way (oldest first), for the cache.
    fn decode_at(
        &mut self,
        index: usize,
        keep_before: usize,
    ) -> Result<(VideoFrame, Vec<(i64, VideoFrame)>), MediaError> {
        let target = self.timeline.ts[index];
        let mut key_index = self.timeline.key_for(target);
        let mut retries = 0usize;
        let mut seeked = false;
        if !self.can_continue(target, index, &self.timeline.keys[key_index]) {
            self.seek(self.timeline.keys[key_index].seek)?;
            seeked = true;
        }
        let keep = keep_before + 1;
        loop {
            // The last frames before the target; the newest is the fallback if the target never
            // comes out.
            let mut recent: std::collections::VecDeque<(i64, VideoFrame)> =
                std::collections::VecDeque::with_capacity(keep);
            let mut overshoot = false;
            while let Some((ts, frame)) = self.next_frame()? {
                if ts == target {
                    while recent.len() > keep_before {
                        recent.pop_front();
                    }
                    return Ok((frame, recent.into()));
                }
                if ts > target {
                    if recent.is_empty() && seeked && self.timeline.keys[key_index].pts > i64::MIN {
                        overshoot = true;
                        break;
                    }
                    match recent.pop_back() {
                        // The target never came out (a dropped or damaged frame): show the one
                        // before it and keep this one for the next request.
                        Some((_, prev)) => {
                            self.held = Some((ts, frame));
                            while recent.len() > keep_before {
                                recent.pop_front();
                            }
                            return Ok((prev, recent.into()));
                        }
                        None => return Ok((frame, Vec::new())),
                    }
                }
                if recent.len() == keep {
                    recent.pop_front();
                }
                recent.push_back((ts, frame));
            }
            if !overshoot {
                // End of stream before the target: show the last frame decoded.
                return match recent.pop_back() {
                    Some((_, last)) => Ok((last, Vec::new())),
                    None => Err(MediaError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("frame {index} could not be decoded"),
                    }),
                };
            }
            // Landed past the target: start from an earlier keyframe, finally from the start.
            retries += 1;
            let point = if retries > MAX_SEEK_RETRIES || key_index == 0 {
                key_index = 0;
                SeekPoint::Start
            } else {
                key_index -= 1;
                self.timeline.keys[key_index].seek
            };
            if point == SeekPoint::Start {
                // From the very start an overshoot means the target is unreachable; the loop
                // then returns the first frame instead of retrying again.
                self.seek(SeekPoint::Start)?;
                seeked = false;
            } else {
                self.seek(point)?;
            }
        }
    }

    /// Converts a decoded frame to display-oriented RGBA8 (square pixels, rotation applied).
    fn convert_rgba(&mut self, frame: &VideoFrame) -> Result<Frame, MediaError> {
        let (w, h, format) = (frame.width(), frame.height(), frame.format());
        if w == 0 || h == 0 || format == Pixel::None {
            return Err(MediaError::Corrupt {
                path: self.path.clone(),
                reason: "the decoder returned an empty picture".into(),
            });
        }
        let st = self.stream_ptr();
        // SAFETY: context, stream and frame are live; the function only reads them.
        let sar = unsafe {
            ffi::av_guess_sample_aspect_ratio(
                self.input.as_mut_ptr(),
                st,
                frame.as_ptr().cast_mut(),
            )
        };
        let (dw, dh) = square_pixel_size(w, h, (sar.num, sar.den));
        super::still::check_size(&self.path, dw, dh)?;
        // SAFETY: reading plain fields of a live frame.
        let (colorspace, full_range) = unsafe {
            let f = frame.as_ptr();
            (
                (*f).colorspace as i32,
                (*f).color_range == ffi::AVColorRange::AVCOL_RANGE_JPEG,
            )
        };
        let key = (format, w, h, dw, dh, colorspace, full_range);
        if self.scaler.as_ref().is_none_or(|s| s.key != key) {
            let mut ctx = ffmpeg::software::scaling::Context::get(
                format,
                w,
                h,
                Pixel::RGBA,
                dw,
                dh,
                ffmpeg::software::scaling::Flags::BICUBIC,
            )
            .map_err(|e| MediaError::Unsupported {
                path: self.path.clone(),
                reason: format!("cannot convert {format:?} pictures to RGBA: {e}"),
            })?;
            set_colorspace(&mut ctx, format, colorspace, full_range);
            self.scaler = Some(ScalerState { key, ctx });
        }
        let Some(scaler) = self.scaler.as_mut() else {
            return Err(MediaError::Corrupt {
                path: self.path.clone(),
                reason: "no colour converter".into(),
            });
        };
        let mut out = VideoFrame::empty();
        scaler
            .ctx
            .run(frame, &mut out)
            .map_err(|e| ffmpeg_error(&self.path, "colour conversion failed", e))?;
        let stride = out.stride(0);
        let row = dw as usize * 4;
        let data = out.data(0);
        let mut rgba = Vec::with_capacity(row * dh as usize);
        for y in 0..dh as usize {
            let start = y * stride;
            let Some(line) = data.get(start..start + row) else {
                return Err(MediaError::Corrupt {
                    path: self.path.clone(),
                    reason: "short colour conversion output".into(),
                });
            };
            rgba.extend_from_slice(line);
        }
        let (rgba, width, height) = self.orientation.apply_rgba(rgba, dw, dh);
        Ok(Frame {
            width,
            height,
            rgba,
        })
    }
}

/// Tells swscale the source's YUV matrix and range (it assumes BT.601 limited otherwise).
fn set_colorspace(
    ctx: &mut ffmpeg::software::scaling::Context,
    format: Pixel,
    colorspace: i32,
    full_range: bool,
) {
    use ffi::AVColorSpace as C;
    let Some(desc) = format.descriptor() else {
        return;
    };
    // SAFETY: the descriptor is a static FFmpeg table entry.
    let flags = unsafe { (*desc.as_ptr()).flags };
    if flags & (ffi::AV_PIX_FMT_FLAG_RGB as u64) != 0 || desc.nb_components() < 3 {
        return;
    }
    let table = if colorspace == C::AVCOL_SPC_BT709 as i32 {
        ffi::SWS_CS_ITU709
    } else if colorspace == C::AVCOL_SPC_FCC as i32 {
        ffi::SWS_CS_FCC
    } else if colorspace == C::AVCOL_SPC_SMPTE240M as i32 {
        ffi::SWS_CS_SMPTE240M
    } else if colorspace == C::AVCOL_SPC_BT2020_NCL as i32
        || colorspace == C::AVCOL_SPC_BT2020_CL as i32
    {
        ffi::SWS_CS_BT2020
    } else {
        ffi::SWS_CS_DEFAULT
    };
    let jpeg_format = matches!(
        format,
        Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::YUVJ440P | Pixel::YUVJ411P
    );
    // SAFETY: the scaler is live; the coefficient tables are FFmpeg statics.
    unsafe {
        let coefficients = ffi::sws_getCoefficients(table);
        let rgb = ffi::sws_getCoefficients(ffi::SWS_CS_DEFAULT);
        ffi::sws_setColorspaceDetails(
            ctx.as_mut_ptr(),
            coefficients,
            i32::from(full_range || jpeg_format),
            rgb,
            1,
            0,
            1 << 16,
            1 << 16,
        );
    }
}

fn discard_stream(input: &mut ffmpeg::format::context::Input, index: usize) {
    let st = stream_ptr(input, index);
    // SAFETY: `st` is a live stream of this context.
    unsafe {
        (*st).discard = ffi::AVDiscard::AVDISCARD_ALL;
    }
}

/// Builds the frame index by reading every packet of the video stream (other streams are
/// discarded by the demuxer).
fn scan(
    path: &Path,
    input: &mut ffmpeg::format::context::Input,
    stream_index: usize,
) -> Result<Timeline, MediaError> {
    for i in 0..input.nb_streams() as usize {
        if i != stream_index {
            discard_stream(input, i);
        }
    }
    struct Entry {
        pts: Option<i64>,
        dts: Option<i64>,
        key: bool,
        duration: i64,
    }
    let mut entries = Vec::new();
    let mut invalid = 0usize;
    loop {
        // A fresh packet each time: `av_read_frame` does not release what a packet holds.
        let mut packet = ffmpeg::Packet::empty();
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) if invalid < MAX_DECODE_ERRORS => {
                invalid += 1;
                continue;
            }
            // A read error (truncated file): index what was readable.
            Err(_) => break,
        }
        if packet.stream() != stream_index || packet.size() == 0 {
            continue;
        }
        // SAFETY: reading the flags of a live packet.
        let discard = unsafe { (*packet.as_ptr()).flags } & ffi::AV_PKT_FLAG_DISCARD != 0;
        if discard {
            continue;
        }
        entries.push(Entry {
            pts: packet.pts(),
            dts: packet.dts(),
            key: packet.is_key(),
            duration: packet.duration().max(0),
        });
    }
    // Packets before the first keyframe (a stream cut in the middle) cannot be decoded.
    if let Some(first_key) = entries.iter().position(|e| e.key) {
        entries.drain(..first_key);
    }
    if entries.is_empty() {
        return Err(MediaError::Corrupt {
            path: path.to_owned(),
            reason: "it has no readable video frames".into(),
        });
    }
    let ordinal = entries.iter().any(|e| e.pts.is_none());
    let mut timeline = Timeline {
        ordinal,
        ..Timeline::default()
    };
    if ordinal {
        timeline.ts = (0..entries.len() as i64).collect();
        let dts: Option<Vec<i64>> = entries.iter().map(|e| e.dts).collect();
        // Keyframes can be sought to only when decode timestamps exist and increase.
        if let Some(dts) = dts.filter(|d| d.windows(2).all(|w| w[0] < w[1])) {
            timeline.keys = entries
                .iter()
                .zip(&dts)
                .enumerate()
                .filter(|(_, (e, _))| e.key)
                .map(|(i, (_, d))| KeyPoint {
                    pts: i as i64,
                    seek: SeekPoint::Timestamp(*d),
                })
                .collect();
            timeline.decode_dts = dts;
        }
        if timeline.keys.first().is_none_or(|k| k.pts > 0) {
            timeline.keys.insert(
                0,
                KeyPoint {
                    pts: i64::MIN,
                    seek: SeekPoint::Start,
                },
            );
        }
        return Ok(timeline);
    }
    let ts_of = |e: &Entry| e.pts.or(e.dts).unwrap_or(0);
    timeline.last_duration = entries
        .iter()
        .max_by_key(|e| ts_of(e))
        .map_or(0, |e| e.duration);
    timeline.ts = entries.iter().map(ts_of).collect();
    timeline.ts.sort_unstable();
    timeline.keys = entries
        .iter()
        .filter(|e| e.key)
        .map(|e| {
            let pts = ts_of(e);
            KeyPoint {
                pts,
                seek: SeekPoint::Timestamp(e.dts.map_or(pts, |d| d.min(pts))),
            }
        })
        .collect();
    timeline.keys.sort_by_key(|k| k.pts);
    if timeline.keys.first().is_none_or(|k| k.pts > timeline.ts[0]) {
        timeline.keys.insert(
            0,
            KeyPoint {
                pts: i64::MIN,
                seek: SeekPoint::Start,
            },
        );
    }
    Ok(timeline)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn square_pixels_widen_or_heighten() {
        assert_eq!(square_pixel_size(720, 576, (0, 1)), (720, 576));
        assert_eq!(square_pixel_size(720, 576, (1, 1)), (720, 576));
        assert_eq!(square_pixel_size(160, 120, (2, 1)), (320, 120));
        assert_eq!(square_pixel_size(160, 120, (1, 2)), (160, 240));
        assert_eq!(square_pixel_size(720, 480, (32, 27)), (853, 480));
    }

    #[test]
    fn keyframe_lookup_uses_presentation_time() {
        let timeline = Timeline {
            ts: vec![0, 1, 2, 3, 4, 5, 6, 7],
            keys: vec![
                KeyPoint {
                    pts: 0,
                    seek: SeekPoint::Timestamp(-2),
                },
                // Open GOP: the keyframe at pts 4 has leading pictures 2 and 3.
                KeyPoint {
                    pts: 4,
                    seek: SeekPoint::Timestamp(1),
                },
            ],
            ordinal: false,
            decode_dts: Vec::new(),
            output_delay: 0,
            last_duration: 0,
        };
        assert_eq!(timeline.key_for(0), 0);
        assert_eq!(timeline.key_for(3), 0);
        assert_eq!(timeline.key_for(4), 1);
        assert_eq!(timeline.key_for(7), 1);
        assert_eq!(timeline.index_of(5), 5);
    }
}

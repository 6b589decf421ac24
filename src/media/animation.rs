//! Animated WebP (FFmpeg 5.1 decodes no WebP animation). The RIFF container is read here and
//! each frame's bitstream is decoded as a still WebP by the `image` crate; frames are composed
//! onto the canvas as libwebp's `WebPAnimDecoder` does (src/demux/anim_decode.c: a transparent
//! canvas, disposal to transparent, its blending arithmetic), which browsers and Pillow use.
//! (`image`'s own animation decoder blends opaque pixels one level darker and starts from the
//! background colour, so it is not used.) Every frame is decoded at open and held, within
//! [`MAX_ANIMATION_BYTES`]: such animations are short, and random access needs no re-decoding.
//! Container layout: <https://developers.google.com/speed/webp/docs/riff_container>.

use std::path::Path;
use std::sync::Arc;

use super::{Frame, MediaError};

/// Most bytes of decoded frames an animation may take (RGBA, every frame).
pub const MAX_ANIMATION_BYTES: u64 = 1 << 30;

/// How long a frame with no delay shows: browsers show such frames for about a tenth of a
/// second rather than skip them.
const ZERO_DELAY_SECS: f64 = 0.1;

/// A decoded animation: its frames and when each shows.
pub(crate) struct Animation {
    frames: Vec<Arc<Frame>>,
    /// Presentation time of each frame from the first, in seconds.
    times_secs: Vec<f64>,
    /// Time from the first frame to the end of the last.
    duration_secs: f64,
}

/// One `ANMF` chunk: where the frame goes, how long it shows, and its bitstream chunks.
struct AnimFrame<'a> {
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    duration_ms: u32,
    /// Blend with the canvas (else overwrite the frame's rectangle).
    blend: bool,
    /// Clear the frame's rectangle to transparent before the next frame.
    dispose: bool,
    /// The `ALPH`, `VP8 ` and `VP8L` chunks.
    bitstream: Vec<Chunk<'a>>,
}

fn u24(b: &[u8]) -> u32 {
    u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16
}

/// A RIFF chunk: its four-character code and payload.
type Chunk<'a> = ([u8; 4], &'a [u8]);

/// The whole chunks of a RIFF payload (chunks are padded to even sizes), and whether the
/// payload ends inside a chunk (a file cut short).
fn chunks(mut data: &[u8]) -> (Vec<Chunk<'_>>, bool) {
    let mut out = Vec::new();
    while data.len() >= 8 {
        let fourcc: [u8; 4] = [data[0], data[1], data[2], data[3]];
        let size = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let Some(body) = 8usize.checked_add(size).and_then(|end| data.get(8..end)) else {
            return (out, true);
        };
        out.push((fourcc, body));
        data = data.get(8 + size + (size & 1)..).unwrap_or(&[]);
    }
    let cut = !data.is_empty();
    (out, cut)
}

/// Canvas size and frames of an animated WebP file's bytes, and whether the file is cut short
/// (its whole frames are kept).
type Parsed<'a> = ((u32, u32), Vec<AnimFrame<'a>>, bool);

/// Reads the container of an animated WebP ([`Parsed`]).
fn parse(bytes: &[u8]) -> Result<Parsed<'_>, String> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return Err("it is not a WebP file".into());
    }
    let mut canvas = None;
    let mut frames = Vec::new();
    let (top, cut) = chunks(&bytes[12..]);
    for (fourcc, body) in top {
        match &fourcc {
            b"VP8X" if body.len() >= 10 => {
                canvas = Some((u24(&body[4..7]) + 1, u24(&body[7..10]) + 1));
            }
            b"ANMF" if body.len() >= 16 => {
                let flags = body[15];
                frames.push(AnimFrame {
                    x: u24(&body[0..3]) * 2,
                    y: u24(&body[3..6]) * 2,
                    width: u24(&body[6..9]) + 1,
                    height: u24(&body[9..12]) + 1,
                    duration_ms: u24(&body[12..15]),
                    blend: flags & 0b10 == 0,
                    dispose: flags & 0b1 != 0,
                    bitstream: chunks(&body[16..])
                        .0
                        .into_iter()
                        .filter(|(c, _)| matches!(c, b"ALPH" | b"VP8 " | b"VP8L"))
                        .collect(),
                });
            }
            _ => {}
        }
    }
    let canvas = canvas.ok_or("it has no VP8X header")?;
    Ok((canvas, frames, cut))
}

/// A still WebP file of one frame's bitstream chunks (a VP8X header when it has `ALPH`).
fn still_webp(frame: &AnimFrame<'_>) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], body: &[u8]) {
        out.extend_from_slice(fourcc);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(0);
        }
    }
    let mut body = b"WEBP".to_vec();
    if frame.bitstream.iter().any(|(c, _)| c == b"ALPH") {
        let mut vp8x = vec![0x10, 0, 0, 0]; // the alpha flag
        vp8x.extend_from_slice(&(frame.width - 1).to_le_bytes()[..3]);
        vp8x.extend_from_slice(&(frame.height - 1).to_le_bytes()[..3]);
        chunk(&mut body, b"VP8X", &vp8x);
    }
    for (fourcc, payload) in &frame.bitstream {
        chunk(&mut body, fourcc, payload);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// libwebp's `BlendPixelNonPremult` (src/demux/anim_decode.c): `src` over `dst`, RGBA not
/// premultiplied, for a source alpha strictly between 0 and 255.
fn blend_pixel(src: [u8; 4], dst: [u8; 4]) -> [u8; 4] {
    let src_a = u32::from(src[3]);
    let dst_factor_a = (u32::from(dst[3]) * (256 - src_a)) >> 8;
    let blend_a = src_a + dst_factor_a;
    let scale = (1u32 << 24) / blend_a;
    let channel = |i: usize| {
        let v = u32::from(src[i]) * src_a + u32::from(dst[i]) * dst_factor_a;
        ((v * scale) >> 24) as u8
    };
    [channel(0), channel(1), channel(2), blend_a as u8]
}

impl Animation {
    /// Decodes every frame of an animated WebP. An animation whose frames take more than
    /// `max_bytes` ([`MAX_ANIMATION_BYTES`] when opening media) is refused with
    /// [`MediaError::Unsupported`], before it takes more.
    pub(crate) fn decode_webp(path: &Path, max_bytes: u64) -> Result<Animation, MediaError> {
        let corrupt = |reason: String| MediaError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let io = |source| MediaError::Io {
            path: path.to_owned(),
            source,
        };
        // Decoded frames take more than the compressed file: a bigger file cannot fit.
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > max_bytes {
            return Err(MediaError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "the animation's file alone is more than the {} MiB this program holds \
                     decoded",
                    max_bytes >> 20
                ),
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let ((w, h), anim_frames, cut) = parse(&bytes).map_err(corrupt)?;
        if cut && !anim_frames.is_empty() {
            // As for a video cut short: what is there shows.
            log::warn!(
                "{} is cut short; its first {} frames are shown",
                path.display(),
                anim_frames.len()
            );
        }
        super::still::check_size(path, w, h)?;
        let frame_bytes = u64::from(w) * u64::from(h) * 4;
        // The canvas: the previous frame after its disposal, drawn over in place (each pixel
        // reads what lies under it before it is written; libwebp keeps two canvases).
        let mut canvas = vec![0u8; frame_bytes as usize];
        let mut frames: Vec<Arc<Frame>> = Vec::with_capacity(anim_frames.len());
        let mut times_secs = Vec::with_capacity(anim_frames.len());
        let mut clock = 0.0;
        let mut prev: Option<(&AnimFrame<'_>, bool)> = None; // and whether it was a key frame
        for (index, f) in anim_frames.iter().enumerate() {
            if (frames.len() as u64 + 1) * frame_bytes > max_bytes {
                return Err(MediaError::Unsupported {
                    path: path.to_owned(),
                    reason: format!(
                        "its animation of {w}x{h} pixels has more than {} frames, more than \
                         the {} MiB this program holds decoded",
                        frames.len(),
                        max_bytes >> 20
                    ),
                });
            }
            if f.x + f.width > w || f.y + f.height > h {
                return Err(corrupt(format!(
                    "its frame {index} lies outside the canvas"
                )));
            }
            let pixels =
                image::load_from_memory_with_format(&still_webp(f), image::ImageFormat::WebP)
                    .map_err(|e| corrupt(format!("its frame {index} cannot be decoded: {e}")))?
                    .into_rgba8();
            if pixels.dimensions() != (f.width, f.height) {
                return Err(corrupt(format!(
                    "its frame {index} is not the size it says"
                )));
            }
            // anim_decode.c IsKeyFrame: a key frame starts from a transparent canvas and is not
            // blended. (A frame whose pixels are all opaque composes the same with or without
            // an alpha channel, so "has alpha" is read from the pixels.)
            let full = |a: &AnimFrame<'_>| a.x == 0 && a.y == 0 && a.width == w && a.height == h;
            let has_alpha = pixels.pixels().any(|p| p[3] < 255);
            let key = match prev {
                None => true,
                Some((p, p_key)) => {
                    ((!has_alpha || !f.blend) && full(f)) || (p.dispose && (full(p) || p_key))
                }
            };
            if key {
                canvas.fill(0);
            }
            // The frame replaces its rectangle; where it is not opaque it is blended over the
            // disposed previous canvas instead, except inside a rectangle the previous frame
            // cleared (FindBlendRangeAtRow).
            let cleared = |x: u32, y: u32| {
                prev.is_some_and(|(p, _)| {
                    p.dispose
                        && (p.x..p.x + p.width).contains(&x)
                        && (p.y..p.y + p.height).contains(&y)
                })
            };
            let blend = f.blend && !key;
            for (row, src_row) in pixels
                .as_raw()
                .chunks_exact((f.width * 4) as usize)
                .enumerate()
            {
                let y = f.y + row as u32;
                let start = ((y * w + f.x) * 4) as usize;
                let out_row = &mut canvas[start..start + src_row.len()];
                for (col, (out, src)) in out_row
                    .chunks_exact_mut(4)
                    .zip(src_row.chunks_exact(4))
                    .enumerate()
                {
                    let src = [src[0], src[1], src[2], src[3]];
                    let under = [out[0], out[1], out[2], out[3]];
                    let value = if !blend || src[3] == 255 || cleared(f.x + col as u32, y) {
                        src
                    } else if src[3] == 0 {
                        under
                    } else {
                        blend_pixel(src, under)
                    };
                    out.copy_from_slice(&value);
                }
            }
            frames.push(Arc::new(Frame {
                width: w,
                height: h,
                rgba: canvas.clone(),
            }));
            if f.dispose {
                for row in f.y..f.y + f.height {
                    let start = ((row * w + f.x) * 4) as usize;
                    canvas[start..start + (f.width * 4) as usize].fill(0);
                }
            }
            prev = Some((f, key));
            times_secs.push(clock);
            clock += if f.duration_ms > 0 {
                f64::from(f.duration_ms) / 1000.0
            } else {
                ZERO_DELAY_SECS
            };
        }
        if frames.is_empty() {
            return Err(corrupt("its animation has no frames".into()));
        }
        Ok(Animation {
            frames,
            times_secs,
            duration_secs: clock,
        })
    }

    /// Number of frames.
    pub(crate) fn len(&self) -> u64 {
        self.frames.len() as u64
    }

    /// Frame `index`, if there is one.
    pub(crate) fn frame(&self, index: u64) -> Option<Arc<Frame>> {
        let i = usize::try_from(index).ok()?;
        self.frames.get(i).cloned()
    }

    /// Presentation time of frame `index` (the last frame's for indices past the end).
    pub(crate) fn frame_time_secs(&self, index: u64) -> f64 {
        let last = self.times_secs.len().saturating_sub(1);
        let i = usize::try_from(index).map_or(last, |i| i.min(last));
        self.times_secs.get(i).copied().unwrap_or(0.0)
    }

    /// Average frames per second over the whole animation.
    pub(crate) fn fps(&self) -> f64 {
        if self.duration_secs > 0.0 {
            self.len() as f64 / self.duration_secs
        } else {
            0.0
        }
    }

    /// Time from the first frame to the end of the last, in seconds.
    pub(crate) fn duration_secs(&self) -> f64 {
        self.duration_secs
    }

    /// Width and height of every frame.
    pub(crate) fn size(&self) -> (u32, u32) {
        self.frames.first().map_or((0, 0), |f| (f.width, f.height))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A lossless animated WebP of `frames` frames of `testsrc2` at 5 fps, by the ffmpeg CLI.
    fn webp(dir: &Path, frames: u32) -> std::path::PathBuf {
        let path = dir.join("anim.webp");
        let n = frames.to_string();
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
            ])
            .args([
                "-i",
                "testsrc2=size=64x48:rate=5",
                "-frames:v",
                &n,
                "-pix_fmt",
                "bgra",
            ])
            .args(["-c:v", "libwebp", "-lossless", "1", "-loop", "0"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        path
    }

    #[test]
    fn an_animation_over_the_byte_budget_is_refused_with_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let path = webp(dir.path(), 4);
        let frame = 64 * 48 * 4;
        let all = Animation::decode_webp(&path, 4 * frame).unwrap();
        assert_eq!(all.len(), 4);
        assert!((all.frame_time_secs(3) - 0.6).abs() < 1e-9);
        assert!((all.fps() - 5.0).abs() < 1e-9);
        let err = Animation::decode_webp(&path, 3 * frame + 1).err().unwrap();
        let text = err.to_string();
        assert!(matches!(err, MediaError::Unsupported { .. }), "{text}");
        assert!(text.contains("more than 3 frames"), "{text}");
    }

    #[test]
    fn a_cut_short_animation_keeps_its_whole_frames_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = webp(dir.path(), 4);
        let bytes = std::fs::read(&path).unwrap();
        let whole = Animation::decode_webp(&path, MAX_ANIMATION_BYTES).unwrap();
        let cut = dir.path().join("cut.webp");
        std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
        let kept = Animation::decode_webp(&cut, MAX_ANIMATION_BYTES).unwrap();
        assert_eq!(kept.len(), 3);
        for i in 0..3 {
            assert_eq!(kept.frame(i).unwrap().rgba, whole.frame(i).unwrap().rgba);
        }
        // Every cut and every flipped byte gives a frame or an error, never a panic.
        for end in (0..bytes.len()).step_by(7) {
            std::fs::write(&cut, &bytes[..end]).unwrap();
            let _ = Animation::decode_webp(&cut, MAX_ANIMATION_BYTES);
        }
        for at in (12..bytes.len()).step_by(5) {
            let mut bad = bytes.clone();
            bad[at] ^= 0xA5;
            std::fs::write(&cut, &bad).unwrap();
            let _ = Animation::decode_webp(&cut, MAX_ANIMATION_BYTES);
        }
        std::fs::write(&cut, b"RIFF\x04\0\0\0WEBP").unwrap();
        let err = Animation::decode_webp(&cut, MAX_ANIMATION_BYTES)
            .err()
            .unwrap();
        assert!(matches!(err, MediaError::Corrupt { .. }), "{err}");
    }
}

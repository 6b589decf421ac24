//! Building a [`Request`] from annotations on a whole image or video: which frames the model
//! sees, their timestamps, and which of an object's masks go with them. The app's chat job and
//! the `ask` command both build their requests here.
//!
//! Frame choice follows the upstream inference code: PixelRefer samples the video at 1 fps and
//! keeps at most `max_frames` of those, evenly spread (`pixelrefer/mm_utils.py`, `load_video`:
//! `np.linspace(0, T - 1, k).astype(int)` over the 1 fps samples), and adds each object's main
//! annotated frame; PixelRefer-Lite reads only the annotated frames
//! (`pixelreferlite/mm_utils.py`, `load_video_from_specific_ids`).

use super::{FrameMask, GenerationOptions, Media, ObjectMasks, ReferError, Request, Variant};
use crate::mask::Rle;
use image::RgbImage;

/// PixelRefer video: frames sampled at 1 fps, at most this many (plus the annotated frames).
pub const DEFAULT_MAX_VIDEO_FRAMES: usize = 16;

/// The most sampled frames a request may ask for: the `max_frames=768` that PixelRefer's own
/// evaluation scripts pass to `load_video` (`pixelrefer/mm_utils.py`; recorded as
/// `video_max_frames` in our manifests, see onnx/PIXELREFER_NOTES.md). Each frame is decoded
/// into memory before encoding, so this also bounds a request's frame memory.
pub const MAX_VIDEO_FRAMES: usize = 768;

/// Refuses a sampled-frame budget outside 1 to [`MAX_VIDEO_FRAMES`].
pub fn check_max_frames(max_frames: usize) -> Result<(), ReferError> {
    if (1..=MAX_VIDEO_FRAMES).contains(&max_frames) {
        return Ok(());
    }
    Err(ReferError::InvalidRequest(format!(
        "{max_frames} video frames cannot be sampled: give 1 to {MAX_VIDEO_FRAMES}"
    )))
}

/// Frames of one media item (an image is one frame).
pub trait RequestFrames {
    /// Number of frames.
    fn frame_count(&self) -> u64;
    /// Frames per second (≤ 0 when unknown; 1 is assumed then).
    fn fps(&self) -> f64;
    /// Presentation time of frame `index`, in seconds.
    fn time_secs(&self, index: u64) -> f64;
    /// Frame `index` as RGB.
    fn frame(&mut self, index: u64) -> Result<RgbImage, ReferError>;
}

/// One object's masks by frame index of the media item. The first mask is the object's main
/// frame (PixelRefer reads only that one; put the frame the question is asked on first).
#[derive(Debug, Clone)]
pub struct AnnotatedObject {
    /// The tag number (`<object{tag_id}>`).
    pub tag_id: u32,
    /// `(frame index, mask)`; empty masks are ignored.
    pub masks: Vec<(u64, Rle)>,
}

/// The frame indices the model sees for `objects` in an item of `frame_count` frames at `fps`,
/// ascending and without repeats. An image (one frame) is frame 0.
pub fn select_frames(
    variant: Variant,
    frame_count: u64,
    fps: f64,
    max_frames: usize,
    objects: &[AnnotatedObject],
) -> Vec<u64> {
    if frame_count <= 1 {
        return vec![0];
    }
    let mut wanted: Vec<u64> = objects
        .iter()
        .flat_map(|o| {
            let take = if variant == Variant::Full {
                1
            } else {
                o.masks.len()
            };
            o.masks.iter().take(take).map(|(f, _)| *f)
        })
        .collect();
    if variant == Variant::Full {
        let fps = if fps > 0.0 { fps } else { 1.0 };
        let step = usize::try_from(fps.round().max(1.0) as u64).unwrap_or(usize::MAX);
        let sampled: Vec<u64> = (0..frame_count).step_by(step).collect();
        let k = sampled.len().min(max_frames.max(1));
        for j in 0..k {
            // numpy linspace(0, T - 1, k).astype(int): floor of j * (T - 1) / (k - 1).
            let idx = if k > 1 {
                j * (sampled.len() - 1) / (k - 1)
            } else {
                0
            };
            if let Some(&f) = sampled.get(idx) {
                wanted.push(f);
            }
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// Builds the request about `objects` (in the order given) on `frames`. Objects without a
/// non-empty mask, masks of another size than the frames, and masks on frames past the end are
/// errors naming the object.
pub fn build_request(
    frames: &mut dyn RequestFrames,
    variant: Variant,
    max_frames: usize,
    objects: &[AnnotatedObject],
    question: &str,
    options: GenerationOptions,
) -> Result<Request, ReferError> {
    check_max_frames(max_frames)?;
    let n = frames.frame_count();
    let objects: Vec<AnnotatedObject> = objects
        .iter()
        .map(|o| AnnotatedObject {
            tag_id: o.tag_id,
            masks: o
                .masks
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .cloned()
                .collect(),
        })
        .collect();
    for o in &objects {
        if o.masks.is_empty() {
            return Err(ReferError::InvalidRequest(format!(
                "<object{}> has no mask: paint or click the object first",
                o.tag_id
            )));
        }
        if let Some((f, _)) = o.masks.iter().find(|(f, _)| *f >= n.max(1)) {
            return Err(ReferError::InvalidRequest(format!(
                "<object{}> has a mask on frame {f}, but the media has {n} frame(s)",
                o.tag_id
            )));
        }
    }
    let wanted = select_frames(variant, n, frames.fps(), max_frames, &objects);
    let mut images = Vec::with_capacity(wanted.len());
    let mut timestamps_secs = Vec::with_capacity(wanted.len());
    for &f in &wanted {
        images.push(frames.frame(f)?);
        timestamps_secs.push(frames.time_secs(f));
    }
    let (w, h) = images
        .first()
        .map(RgbImage::dimensions)
        .ok_or_else(|| ReferError::InvalidRequest("the media has no frames".into()))?;
    let mut out = Vec::with_capacity(objects.len());
    for o in &objects {
        let mut masks = Vec::new();
        for (f, rle) in &o.masks {
            let Some(pos) = wanted.iter().position(|x| x == f) else {
                continue;
            };
            if (rle.width(), rle.height()) != (w, h) {
                return Err(ReferError::MaskSize {
                    tag_id: o.tag_id,
                    frame: usize::try_from(*f).unwrap_or(usize::MAX),
                    mask_w: rle.width(),
                    mask_h: rle.height(),
                    frame_w: w,
                    frame_h: h,
                });
            }
            let mask = rle.to_mask().map_err(|e| {
                ReferError::InvalidRequest(format!(
                    "the mask of <object{}> cannot be read: {e}",
                    o.tag_id
                ))
            })?;
            masks.push(FrameMask { frame: pos, mask });
            if n <= 1 {
                break;
            }
        }
        out.push(ObjectMasks {
            tag_id: o.tag_id,
            masks,
        });
    }
    let media = if n <= 1 {
        Media::Image(images.remove(0))
    } else {
        Media::Video {
            frames: images,
            timestamps_secs,
        }
    };
    Ok(Request {
        media,
        objects: out,
        history: Vec::new(),
        question: question.to_string(),
        options,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mask::Mask;

    struct Blank {
        n: u64,
        fps: f64,
        read: Vec<u64>,
    }

    impl RequestFrames for Blank {
        fn frame_count(&self) -> u64 {
            self.n
        }
        fn fps(&self) -> f64 {
            self.fps
        }
        fn time_secs(&self, index: u64) -> f64 {
            index as f64 / self.fps
        }
        fn frame(&mut self, index: u64) -> Result<RgbImage, ReferError> {
            self.read.push(index);
            Ok(RgbImage::new(4, 3))
        }
    }

    fn dot(w: u32, h: u32) -> Rle {
        let mut m = Mask::new(w, h);
        m.set(1, 1, true);
        Rle::from_mask(&m)
    }

    fn obj(tag_id: u32, frames: &[u64]) -> AnnotatedObject {
        AnnotatedObject {
            tag_id,
            masks: frames.iter().map(|&f| (f, dot(4, 3))).collect(),
        }
    }

    #[test]
    fn pixelrefer_samples_one_fps_spread_and_adds_main_frames() {
        // 100 frames at 10 fps: 1 fps samples 0, 10, …, 90 (10 of them); max 4 keeps
        // linspace(0, 9, 4) = 0, 3, 6, 9 -> frames 0, 30, 60, 90; plus main frames 55 and 7.
        let objects = [obj(0, &[55, 5]), obj(1, &[7])];
        let got = select_frames(Variant::Full, 100, 10.0, 4, &objects);
        assert_eq!(got, vec![0, 7, 30, 55, 60, 90]);
    }

    #[test]
    fn lite_reads_only_annotated_frames() {
        let objects = [obj(0, &[55, 5]), obj(1, &[7, 55])];
        let got = select_frames(Variant::Lite, 100, 10.0, 4, &objects);
        assert_eq!(got, vec![5, 7, 55]);
    }

    #[test]
    fn masks_land_on_their_frame_positions() {
        let mut frames = Blank {
            n: 20,
            fps: 2.0,
            read: Vec::new(),
        };
        let objects = [obj(3, &[9, 4])];
        let req = build_request(
            &mut frames,
            Variant::Lite,
            16,
            &objects,
            "<object3>?",
            GenerationOptions::default(),
        )
        .unwrap();
        assert_eq!(frames.read, vec![4, 9]);
        let Media::Video {
            timestamps_secs, ..
        } = &req.media
        else {
            panic!("a video request");
        };
        assert_eq!(timestamps_secs, &vec![2.0, 4.5]);
        let positions: Vec<usize> = req.objects[0].masks.iter().map(|m| m.frame).collect();
        assert_eq!(positions, vec![1, 0], "main frame first, as given");
    }

    #[test]
    fn bad_objects_are_named() {
        let mut frames = Blank {
            n: 1,
            fps: 0.0,
            read: Vec::new(),
        };
        let empty = AnnotatedObject {
            tag_id: 2,
            masks: vec![(0, Rle::empty(3, 4))],
        };
        let err = build_request(
            &mut frames,
            Variant::Full,
            16,
            &[empty],
            "q",
            GenerationOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("<object2> has no mask"), "{err}");
        let wrong = AnnotatedObject {
            tag_id: 5,
            masks: vec![(0, dot(8, 8))],
        };
        let err = build_request(
            &mut frames,
            Variant::Full,
            16,
            &[wrong],
            "q",
            GenerationOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("8x8"), "{err}");
        let late = obj(1, &[3]);
        let err = build_request(
            &mut frames,
            Variant::Full,
            16,
            &[late],
            "q",
            GenerationOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("frame 3"), "{err}");
    }

    #[test]
    fn frame_budgets_outside_the_upstream_range_are_refused() {
        // 0 used to be read as 1, and a budget of a million decoded every 1 fps sample.
        for (max_frames, ok) in [
            (0, false),
            (1, true),
            (768, true),
            (769, false),
            (1 << 20, false),
        ] {
            let mut frames = Blank {
                n: 3,
                fps: 1.0,
                read: Vec::new(),
            };
            let got = build_request(
                &mut frames,
                Variant::Full,
                max_frames,
                &[obj(0, &[1])],
                "q",
                GenerationOptions::default(),
            );
            assert_eq!(got.is_ok(), ok, "{max_frames}");
            if let Err(e) = got {
                assert!(e.to_string().contains("give 1 to 768"), "{e}");
                assert!(frames.read.is_empty(), "refused before reading frames");
            }
        }
    }
}

//! Videos: frame-accurate random access checked against an independent decode by the ffmpeg
//! CLI, on clips of several codecs and containers made at test time.
#![allow(clippy::unwrap_used)]

#[path = "support/media_gen.rs"]
mod media_gen;

use media_gen::{closest, ffmpeg, reference_frames, testsrc_video};
use pixelrefer_studio::media::{self, MediaError, SourceKind};
use std::path::Path;

/// Colour conversion may differ slightly from the CLI's; wrong frames differ far more.
const TOLERANCE: f64 = 3.0;

/// Opens `path`, checks size and count against the CLI decode, then reads the frames in
/// `order` and checks each is the right one. Returns the reference frames.
fn check_random_access(path: &Path, order: &[u64], vf: Option<&str>) -> Vec<Vec<u8>> {
    let mut source = media::open(path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    let info = source.item_info(0).unwrap();
    let reference = reference_frames(path, info.width, info.height, vf);
    assert_eq!(
        info.frame_count,
        reference.len() as u64,
        "{}: frame count",
        path.display()
    );
    // Small budget so most requests really decode.
    source.set_cache_budget_bytes((info.width * info.height * 4 * 3) as usize);
    for &index in order {
        let frame = source.frame(0, index).unwrap();
        assert_eq!((frame.width, frame.height), (info.width, info.height));
        let (best, diff) = closest(&reference, &frame.rgba);
        let own = media_gen::mean_abs_diff(&reference[index as usize], &frame.rgba);
        assert!(
            best == index as usize || own <= TOLERANCE.min(diff + 0.01),
            "{}: asked for frame {index}, got one closest to frame {best} (diff {diff:.2}, \
             diff to the right one {own:.2})",
            path.display()
        );
        assert!(
            own <= TOLERANCE,
            "{}: frame {index} differs by {own:.2}",
            path.display()
        );
    }
    reference
}

/// Random order, backwards, GOP edges for `gop`, and the last frame.
fn access_order(count: u64, gop: u64) -> Vec<u64> {
    let mut order = vec![count - 1, 0, count / 2, count / 2 + 1, 1];
    let mut k = gop;
    while k < count {
        order.extend([k, k - 1, k + 1].into_iter().filter(|i| *i < count));
        k += gop;
    }
    // Backwards run.
    order.extend((count.saturating_sub(8)..count).rev());
    // Deterministic pseudo-random indices.
    let mut x: u64 = 0x9e37_79b9;
    for _ in 0..12 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.push((x >> 33) % count);
    }
    order
}

#[test]
fn h264_mp4_with_b_frames_and_open_gop_seeks_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = testsrc_video(
        dir.path(),
        "open_gop.mp4",
        "160x120",
        75,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-x264-params",
            "open-gop=1:keyint=12:min-keyint=12:scenecut=0:bframes=3:b-pyramid=normal",
        ],
    );
    let order = access_order(75, 12);
    check_random_access(&path, &order, None);
    let source = media::open(&path).unwrap();
    let info = source.item_info(0).unwrap();
    assert_eq!(info.codec, "h264");
    assert_eq!((info.width, info.height), (160, 120));
    assert!((info.fps - 25.0).abs() < 0.01, "fps {}", info.fps);
    assert!((info.duration_secs - 3.0).abs() < 0.05);
    assert!((source.frame_time_secs(0, 25) - 1.0).abs() < 1e-6);
    assert_eq!(source.frame_time_secs(0, 0), 0.0);
}

#[test]
fn sequential_reading_matches_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = testsrc_video(
        dir.path(),
        "seq.mkv",
        "128x96",
        40,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-x264-params",
            "open-gop=1:keyint=10:scenecut=0:bframes=2",
        ],
    );
    let order: Vec<u64> = (0..40).collect();
    check_random_access(&path, &order, None);
}

#[test]
fn stepping_backwards_prefetches_the_right_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = testsrc_video(
        dir.path(),
        "back.mp4",
        "128x96",
        60,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-x264-params",
            "open-gop=1:keyint=30:scenecut=0:bframes=3",
        ],
    );
    let mut source = media::open(&path).unwrap();
    let reference = reference_frames(&path, 128, 96, None);
    let frame_bytes = 128 * 96 * 4;
    source.set_cache_budget_bytes(frame_bytes * 64);
    source.frame(0, 59).unwrap();
    source.frame(0, 58).unwrap();
    // The step back decoded the GOP from its keyframe and kept the frames before 58.
    assert!(
        source.cache_bytes() >= frame_bytes * 8,
        "{}",
        source.cache_bytes()
    );
    for index in (0..58).rev() {
        let frame = source.frame(0, index).unwrap();
        let (best, diff) = closest(&reference, &frame.rgba);
        assert_eq!(
            best, index as usize,
            "stepping back to {index}: diff {diff:.2}"
        );
        assert!(diff <= TOLERANCE);
    }
}

#[test]
fn vp9_webm_seeks_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = testsrc_video(
        dir.path(),
        "clip.webm",
        "160x120",
        50,
        &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "15",
            "-b:v",
            "400k",
        ],
    );
    check_random_access(&path, &access_order(50, 15), None);
    assert_eq!(
        media::open(&path).unwrap().item_info(0).unwrap().codec,
        "vp9"
    );
}

#[test]
fn mpeg4_and_mjpeg_avi_seek_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mpeg4 = testsrc_video(
        dir.path(),
        "clip_mpeg4.avi",
        "160x120",
        40,
        &["-c:v", "mpeg4", "-q:v", "3", "-g", "10"],
    );
    check_random_access(&mpeg4, &access_order(40, 10), None);
    let mjpeg = testsrc_video(
        dir.path(),
        "clip_mjpeg.avi",
        "160x120",
        30,
        &["-c:v", "mjpeg", "-q:v", "3"],
    );
    check_random_access(&mjpeg, &access_order(30, 7), None);
}

#[test]
fn ten_bit_mov_converts_and_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let path = testsrc_video(
        dir.path(),
        "clip10.mov",
        "160x120",
        30,
        &[
            "-c:v",
            "prores_ks",
            "-profile:v",
            "0",
            "-pix_fmt",
            "yuv422p10le",
        ],
    );
    check_random_access(&path, &access_order(30, 8), None);
}

#[test]
fn more_codecs_and_containers_seek_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 7] = [
        // x265 uses open GOPs and B-frames by default.
        (
            "hevc.mkv",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "keyint=12:open-gop=1:bframes=3:log-level=error",
            ],
        ),
        // AVI has no presentation timestamps for B-frames.
        (
            "h264_bframes.avi",
            &[
                "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "12",
            ],
        ),
        (
            "mpeg4_bframes.avi",
            &["-c:v", "mpeg4", "-q:v", "4", "-bf", "2", "-g", "12"],
        ),
        (
            "mpeg2.ts",
            &["-c:v", "mpeg2video", "-q:v", "4", "-g", "12", "-bf", "2"],
        ),
        (
            "vp8.webm",
            &[
                "-c:v",
                "libvpx",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-g",
                "12",
                "-auto-alt-ref",
                "1",
                "-lag-in-frames",
                "8",
            ],
        ),
        (
            "theora.ogv",
            &["-c:v", "libtheora", "-q:v", "6", "-g", "12"],
        ),
        (
            "h264.mov",
            &[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-x264-params",
                "open-gop=1:keyint=12:bframes=3",
            ],
        ),
    ];
    for (name, args) in cases {
        let path = testsrc_video(dir.path(), name, "160x120", 40, args);
        check_random_access(&path, &access_order(40, 12), None);
    }
}

#[test]
fn rotated_mp4_is_shown_upright() {
    let dir = tempfile::tempdir().unwrap();
    let plain = testsrc_video(
        dir.path(),
        "plain.mp4",
        "160x96",
        30,
        &["-c:v", "libx264", "-preset", "veryfast", "-g", "10"],
    );
    // FFmpeg 5.1 writes the display matrix from the `rotate` tag when remuxing.
    for (tag, swapped) in [("90", true), ("180", false), ("270", true)] {
        let path = dir.path().join(format!("rot{tag}.mp4"));
        let rotate = format!("rotate={tag}");
        ffmpeg(&[
            "-i",
            plain.to_str().unwrap(),
            "-c",
            "copy",
            "-metadata:s:v:0",
            &rotate,
            path.to_str().unwrap(),
        ]);
        let info = media::open(&path).unwrap().item_info(0).unwrap();
        let want = if swapped { (96, 160) } else { (160, 96) };
        assert_eq!((info.width, info.height), want, "rotate={tag}");
        assert_ne!(info.rotation_degrees, 0, "rotate={tag}");
        // The pixels must match the CLI's autorotated decode, not just the size.
        check_random_access(&path, &[29, 0, 15, 9, 10], None);
    }
}

#[test]
fn anamorphic_video_is_shown_with_square_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let path = testsrc_video(
        dir.path(),
        "sar.mp4",
        "160x120",
        20,
        &[
            "-vf",
            "setsar=2/1",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
        ],
    );
    let info = media::open(&path).unwrap().item_info(0).unwrap();
    assert_eq!((info.width, info.height), (320, 120));
    check_random_access(&path, &[19, 3, 0, 10], Some("scale=320:120:flags=bicubic"));
}

#[test]
fn start_time_offset_transport_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = testsrc_video(
        dir.path(),
        "clip.ts",
        "160x120",
        40,
        &[
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "12",
        ],
    );
    check_random_access(&path, &access_order(40, 12), None);
    let source = media::open(&path).unwrap();
    assert_eq!(source.frame_time_secs(0, 0), 0.0);
    assert!((source.frame_time_secs(0, 10) - 0.4).abs() < 1e-3);
}

#[test]
fn stream_cut_at_the_start_begins_at_its_first_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    let full = testsrc_video(
        dir.path(),
        "full.ts",
        "160x120",
        100,
        &["-c:v", "libx264", "-preset", "veryfast", "-g", "25"],
    );
    // Drop the first 40% of the 188-byte transport packets, as a recording joined late.
    let bytes = std::fs::read(&full).unwrap();
    let packets = bytes.len() / 188;
    let cut = dir.path().join("joined_late.ts");
    std::fs::write(&cut, &bytes[packets * 4 / 10 * 188..]).unwrap();
    let reference = check_random_access(&cut, &[0, 49, 10, 25, 24, 3], None);
    assert_eq!(reference.len(), 50);
}

#[test]
fn variable_frame_rate_timestamps_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    // 10 frames at 25 fps, then 10 frames at 5 fps.
    let times = "if(lt(N,10),N/25,0.4+(N-10)/5)";
    let codec = ["-c:v", "libx264", "-preset", "veryfast"];
    let path = media_gen::vfr_video(dir.path(), "vfr.mkv", "96x64", 20, times, &codec);
    check_random_access(&path, &[19, 0, 12, 9, 10, 5], None);
    let source = media::open(&path).unwrap();
    assert_eq!(source.item_info(0).unwrap().frame_count, 20);
    assert!((source.frame_time_secs(0, 9) - 0.36).abs() < 2e-3);
    assert!((source.frame_time_secs(0, 12) - 0.8).abs() < 2e-3);
    // The duration spans the timestamps to the end of the last frame (at 2.2 s, shown for at
    // most one more frame time), not the frame count over the average rate.
    let duration = source.item_info(0).unwrap().duration_secs;
    assert!(
        duration > 2.2 && duration <= 2.4 + 1e-6,
        "duration {duration}"
    );
}

#[test]
fn one_frame_video_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = testsrc_video(dir.path(), "one.mp4", "64x48", 1, &["-c:v", "libx264"]);
    let mut source = media::open(&path).unwrap();
    let info = source.item_info(0).unwrap();
    assert_eq!(info.frame_count, 1);
    let frame = source.frame(0, 0).unwrap();
    assert_eq!((frame.width, frame.height), (64, 48));
    assert!(matches!(
        source.frame(0, 1),
        Err(MediaError::OutOfRange {
            index: 1,
            count: 1,
            ..
        })
    ));
    check_random_access(&path, &[0], None);
}

#[test]
fn cache_stays_within_its_budget_while_scrubbing() {
    let dir = tempfile::tempdir().unwrap();
    let path = testsrc_video(
        dir.path(),
        "scrub.mp4",
        "160x120",
        60,
        &["-c:v", "libx264", "-preset", "veryfast", "-g", "20"],
    );
    let mut source = media::open(&path).unwrap();
    let frame_bytes = 160 * 120 * 4;
    source.set_cache_budget_bytes(frame_bytes * 5);
    for i in (0..60).rev().step_by(3) {
        source.frame(0, i).unwrap();
        assert!(source.cache_bytes() <= frame_bytes * 5);
    }
    assert_eq!(source.cache_bytes(), frame_bytes * 5);
    // A hit returns the same shared frame.
    let a = source.frame(0, 0).unwrap();
    let b = source.frame(0, 0).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

fn assert_clear_error(path: &Path, want_corrupt: bool) {
    match media::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(err) => {
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
            if want_corrupt {
                assert!(matches!(err, MediaError::Corrupt { .. }), "{err:?}");
            } else {
                assert!(matches!(err, MediaError::Unsupported { .. }), "{err:?}");
            }
        }
    }
}

#[test]
fn bad_files_give_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    assert_clear_error(&empty, true);

    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "this is a text file, not a video\n".repeat(20)).unwrap();
    assert_clear_error(&text, false);

    // moov at the end: cutting the file loses the index.
    let full = testsrc_video(
        dir.path(),
        "full.mp4",
        "160x120",
        50,
        &["-c:v", "libx264", "-preset", "veryfast"],
    );
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_clear_error(&cut, true);

    assert!(matches!(
        media::open(&dir.path().join("missing.mp4")),
        Err(MediaError::Io { .. })
    ));

    // A named pipe is refused from its file type: opening it would wait for a writer.
    let fifo = dir.path().join("pipe.mp4");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        assert_clear_error(&fifo, false);
        let err = media::open(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}

#[test]
fn truncated_streamable_files_show_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        (
            "fast.mp4",
            &[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-movflags",
                "+faststart",
            ][..],
        ),
        ("cut.mkv", &["-c:v", "libx264", "-preset", "veryfast"][..]),
        (
            "cut.webm",
            &[
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
            ][..],
        ),
    ] {
        let full = testsrc_video(dir.path(), name, "160x120", 50, args);
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.path().join(format!("cut_{name}"));
        std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
        // Either a clear error or a working prefix; never a panic.
        match media::open(&cut) {
            Err(err) => assert!(err.to_string().contains("cut_"), "{err}"),
            Ok(mut source) => {
                let count = source.item_info(0).unwrap().frame_count;
                assert!(count > 0 && count <= 50, "{name}: {count}");
                for i in [count - 1, 0, count / 2] {
                    if let Err(err) = source.frame(0, i) {
                        assert!(err.to_string().contains("cut_"), "{err}");
                    }
                }
            }
        }
    }
}

#[test]
fn avi_of_h264_with_b_frames_keeps_its_real_frame_rate() {
    // Remuxed into AVI, B-frames come with empty placeholder packets that double the
    // container's average rate; the decode timestamps keep the real spacing.
    let dir = tempfile::tempdir().unwrap();
    let mp4 = testsrc_video(
        dir.path(),
        "b.mp4",
        "96x64",
        10,
        &["-c:v", "libx264", "-preset", "veryfast", "-bf", "2"],
    );
    let avi = dir.path().join("b.avi");
    ffmpeg(&[
        "-i",
        mp4.to_str().unwrap(),
        "-c",
        "copy",
        avi.to_str().unwrap(),
    ]);
    check_random_access(&avi, &[9, 0, 4, 5, 1], None);
    let source = media::open(&avi).unwrap();
    let info = source.item_info(0).unwrap();
    assert_eq!(info.frame_count, 10);
    assert!((info.fps - 25.0).abs() < 1e-6, "fps {}", info.fps);
    assert!(
        (info.duration_secs - 0.4).abs() < 1e-6,
        "{}",
        info.duration_secs
    );
    assert!((source.frame_time_secs(0, 4) - 0.16).abs() < 1e-6);
}

#[test]
fn frames_above_the_size_limits_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let wide = dir.path().join("wide.mkv");
    let tall = dir.path().join("tall_pixels.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=20000x4:r=5",
        "-frames:v",
        "2",
        "-c:v",
        "ffv1",
        wide.to_str().unwrap(),
    ]);
    // Square pixels would make it 64 x 64000: refused rather than squeezed.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=64x64:r=5",
        "-frames:v",
        "2",
        "-vf",
        "setsar=1/1000",
        "-c:v",
        "ffv1",
        tall.to_str().unwrap(),
    ]);
    for (path, size) in [(&wide, "20000x4"), (&tall, "64x64000")] {
        match media::open(path) {
            Err(e @ MediaError::Unsupported { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(size) && msg.contains("16384"), "{msg}");
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
}

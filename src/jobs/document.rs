//! A new document for opened media: the glue between `media` (sizes, fingerprints) and
//! `project` (which may not read media itself, DESIGN.md §3).

use crate::media::{MediaError, MediaSource, SourceKind};
use crate::project::{Document, Fingerprint, Item, MediaKind, MediaRef};
use std::path::Path;

fn fingerprint(path: &Path) -> Result<Fingerprint, MediaError> {
    let (size_bytes, sha256_head_tail) = crate::media::fingerprint_file(path)?;
    Ok(Fingerprint {
        size_bytes,
        sha256_head_tail,
    })
}

/// The project's kind of media for what was opened: a folder of frames is a folder project of
/// one sequence item ([`Document::is_frame_sequence`]).
pub fn media_kind(kind: SourceKind) -> MediaKind {
    match kind {
        SourceKind::Image => MediaKind::Image,
        SourceKind::Video => MediaKind::Video,
        SourceKind::Folder | SourceKind::Frames => MediaKind::Folder,
    }
}

/// Opens the media of `doc` the way it was annotated: a frame-sequence project's folder as the
/// frames of one video at the item's rate ([`crate::media::open_frames`]), anything else with
/// [`crate::media::open`].
pub fn open_media(doc: &Document) -> Result<MediaSource, MediaError> {
    match doc.items.first() {
        Some(item) if doc.is_frame_sequence() => {
            crate::media::open_frames(&doc.media.path, item.fps)
        }
        _ => crate::media::open(&doc.media.path),
    }
}

/// A document with one item per image (folders), one item for an image or video, or one item
/// with a frame per image (a folder of frames), sized as displayed, with the media's
/// fingerprints, and no objects yet.
pub fn new_document(source: &MediaSource) -> Result<Document, MediaError> {
    let images = source.kind() == SourceKind::Folder;
    let kind = media_kind(source.kind());
    let mut items = Vec::with_capacity(source.item_count());
    for index in 0..source.item_count() {
        let info = source.item_info(index)?;
        let file = images.then(|| info.name.clone());
        let mut item = Item::new(file, info.width, info.height, info.frame_count, info.fps);
        if images {
            item.fingerprint = Some(fingerprint(&source.item_path(index)?)?);
        }
        item.timestamps_secs = uneven_frame_times(source, info.frame_count, info.fps);
        item.frame_files = source.frame_files();
        items.push(item);
    }
    let fingerprint = match kind {
        MediaKind::Folder => None,
        _ => Some(fingerprint(source.path())?),
    };
    let media = MediaRef {
        kind,
        path: source.path().to_path_buf(),
        fingerprint,
    };
    Ok(Document::new(media, items))
}

/// The presentation times of the frames of a video whose frames are not evenly spaced at its
/// frame rate (some frame more than half a frame from `i / fps`: a variable-frame-rate video);
/// empty for evenly spaced videos, images and folders, whose timestamps `i / fps` gives.
pub(crate) fn uneven_frame_times(source: &MediaSource, frame_count: u64, fps: f64) -> Vec<f64> {
    if source.kind() != SourceKind::Video {
        return Vec::new();
    }
    let times: Vec<f64> = (0..frame_count)
        .map(|i| source.frame_time_secs(0, i))
        .collect();
    if times.iter().all(|t| *t == 0.0) {
        return Vec::new(); // no timestamps at all: nothing better than `i / fps` to store
    }
    let even = fps > 0.0
        && times
            .iter()
            .enumerate()
            .all(|(i, t)| (t - i as f64 / fps).abs() <= 0.5 / fps);
    if even { Vec::new() } else { times }
}

//! Does a loaded project fit its media? The `project` module may not read media (DESIGN.md §3),
//! so the comparison of a project with the media it names lives here: kind, number of items,
//! each item's file name, width and height, and frame count.

use crate::media::{MediaError, MediaSource, SourceKind};
use crate::project::{Document, Item, MediaKind};
use std::path::{Path, PathBuf};

/// Why a project and its media do not go together.
#[derive(Debug, thiserror::Error)]
pub enum ProjectMediaError {
    /// The media file or folder is not there.
    #[error("{project}: its media {media} does not exist")]
    Missing {
        /// The project file.
        project: PathBuf,
        /// The media path it names.
        media: PathBuf,
    },
    /// The media is there but cannot be opened (empty, damaged, unsupported).
    #[error("{project}: its media cannot be opened: {source}")]
    Unreadable {
        /// The project file.
        project: PathBuf,
        /// The media error.
        source: MediaError,
    },
    /// The media is not what the project describes.
    #[error("{project} does not fit its media {media}: {reason}")]
    Mismatch {
        /// The project file.
        project: PathBuf,
        /// The media path.
        media: PathBuf,
        /// What differs.
        reason: String,
    },
}

/// Opens the media of `doc` (loaded from `project`), brings the project up to date with it
/// ([`complete_from_media`]) and compares them ([`compare_with_media`]). A missing media path
/// is [`ProjectMediaError::Missing`], so a caller that does not need the media (export) can
/// warn and carry on.
pub fn check_project_media(doc: &mut Document, project: &Path) -> Result<(), ProjectMediaError> {
    let media = &doc.media.path;
    if let Err(err) = std::fs::metadata(media)
        && err.kind() == std::io::ErrorKind::NotFound
    {
        return Err(ProjectMediaError::Missing {
            project: project.to_path_buf(),
            media: media.clone(),
        });
    }
    let source = super::open_media(doc).map_err(|source| ProjectMediaError::Unreadable {
        project: project.to_path_buf(),
        source,
    })?;
    complete_from_media(doc, &source);
    compare_with_media(doc, &source, project)
}

/// Brings a project made by an earlier build up to date with its media, which this build reads
/// more fully; answers whether anything changed:
/// * an image project of an animated GIF, PNG or WebP (which opened as a still before such
///   files opened as videos) becomes a video project of the same size, its objects, masks and
///   chat on frame 0, the frame the still showed;
/// * a one-frame video project of a picture only FFmpeg decodes (AVIF, TGA…, which opened as
///   a video before such files opened as images) becomes an image project;
/// * a video item without frame timestamps gets them when the video's frames are not evenly
///   spaced ([`Item::timestamps_secs`]);
/// * a folder-of-frames item without frame file names gets them from the folder, when it has
///   as many images as the item has frames ([`Item::frame_files`]).
///
/// A project that does not fit its media is left alone for [`compare_with_media`] to refuse.
pub fn complete_from_media(doc: &mut Document, source: &MediaSource) -> bool {
    let mut changed = false;
    if let Some((kind, frame_count, fps)) = kind_change(doc, source) {
        doc.media.kind = kind;
        doc.items[0].frame_count = frame_count;
        doc.items[0].fps = fps;
        doc.items[0].timestamps_secs.clear();
        changed = true;
    }
    if doc.media.kind == MediaKind::Video
        && source.kind() == SourceKind::Video
        && let [item] = doc.items.as_mut_slice()
        && item.timestamps_secs.is_empty()
        && let Ok(info) = source.item_info(0)
        && info.frame_count == item.frame_count
    {
        item.timestamps_secs =
            super::document::uneven_frame_times(source, info.frame_count, info.fps);
        changed |= !item.timestamps_secs.is_empty();
    }
    if doc.is_frame_sequence()
        && let [item] = doc.items.as_mut_slice()
        && item.frame_files.is_empty()
    {
        let files = source.frame_files();
        if !files.is_empty() && files.len() as u64 == item.frame_count {
            item.frame_files = files;
            changed = true;
        }
    }
    changed
}

/// The kind, frame count and rate a one-item project of one frame takes on when its media of
/// the same size now opens as the other of image and video (see [`complete_from_media`]);
/// `None` for every other project.
fn kind_change(doc: &Document, source: &MediaSource) -> Option<(MediaKind, u64, f64)> {
    let [item] = doc.items.as_slice() else {
        return None;
    };
    let kind = match (doc.media.kind, source.kind()) {
        (MediaKind::Image, SourceKind::Video) => MediaKind::Video,
        (MediaKind::Video, SourceKind::Image) => MediaKind::Image,
        _ => return None,
    };
    let info = source.item_info(0).ok()?;
    (item.frame_count == 1 && (info.width, info.height) == (item.width, item.height)).then_some((
        kind,
        info.frame_count,
        info.fps,
    ))
}

/// Compares `doc` (loaded from `project`) with its opened media: the kind, the number of
/// items, each item's file name (folders), width, height and frame count. A folder tracked as
/// one sequence (one item without a file name) is compared with the folder opened as frames
/// ([`super::open_media`]): a frame per image, each of the item's size.
pub fn compare_with_media(
    doc: &Document,
    source: &MediaSource,
    project: &Path,
) -> Result<(), ProjectMediaError> {
    let mismatch = |reason: String| ProjectMediaError::Mismatch {
        project: project.to_path_buf(),
        media: doc.media.path.clone(),
        reason,
    };
    let unreadable = |source: MediaError| ProjectMediaError::Unreadable {
        project: project.to_path_buf(),
        source,
    };
    let kind = super::media_kind(source.kind());
    if kind != doc.media.kind {
        return Err(mismatch(format!(
            "the project is of {} but the media is {}",
            kind_name(doc.media.kind),
            kind_name(kind)
        )));
    }
    if doc.is_frame_sequence() != (source.kind() == SourceKind::Frames) {
        let (project, media) = if doc.is_frame_sequence() {
            ("the frames of one video", "separate images")
        } else {
            ("separate images", "the frames of one video")
        };
        return Err(mismatch(format!(
            "the project annotates the folder's images as {project}, but they were opened as \
             {media}"
        )));
    }
    if let [item] = doc.items.as_slice()
        && doc.is_frame_sequence()
        && let Ok(info) = source.item_info(0)
        && info.frame_count != item.frame_count
    {
        return Err(mismatch(format!(
            "the project has {} frames but the folder has {} images",
            item.frame_count, info.frame_count
        )));
    }
    if let [item] = doc.items.as_slice()
        && doc.is_frame_sequence()
        && !item.frame_files.is_empty()
    {
        let files = source.frame_files();
        if let Some((frame, (project, folder))) = item
            .frame_files
            .iter()
            .zip(&files)
            .enumerate()
            .find(|(_, (a, b))| a != b)
        {
            return Err(mismatch(format!(
                "frame {} is {project} in the project but {folder} in the folder (images \
                 were renamed, added or removed)",
                frame + 1
            )));
        }
    }
    if doc.items.len() != source.item_count() {
        return Err(mismatch(format!(
            "the project has {} items but the media has {}",
            doc.items.len(),
            source.item_count()
        )));
    }
    for (index, item) in doc.items.iter().enumerate() {
        let info = source.item_info(index).map_err(unreadable)?;
        if let Some(file) = &item.file
            && *file != info.name
        {
            return Err(mismatch(format!(
                "item {index} is {file} in the project but {} in the folder",
                info.name
            )));
        }
        check_size(item, index, info.width, info.height).map_err(mismatch)?;
        if item.frame_count != info.frame_count {
            return Err(mismatch(format!(
                "item {index} has {} frames in the project but {} in the media",
                item.frame_count, info.frame_count
            )));
        }
    }
    Ok(())
}

fn check_size(item: &Item, index: usize, width: u32, height: u32) -> Result<(), String> {
    if (item.width, item.height) != (width, height) {
        return Err(format!(
            "item {index} is {}x{} in the project but {width}x{height} in the media (w x h)",
            item.width, item.height
        ));
    }
    Ok(())
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "an image",
        MediaKind::Video => "a video",
        MediaKind::Folder => "a folder of images",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::project::MediaRef;

    fn write_png(path: &Path, w: u32, h: u32) {
        image::RgbImage::from_pixel(w, h, image::Rgb([9, 9, 9]))
            .save(path)
            .unwrap();
    }

    fn doc_for(path: &Path, kind: MediaKind, items: Vec<Item>) -> Document {
        let media = MediaRef {
            kind,
            path: path.to_path_buf(),
            fingerprint: None,
        };
        Document::new(media, items)
    }

    #[test]
    fn an_item_size_that_differs_from_the_image_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("a.png");
        write_png(&png, 6, 4);
        let project = dir.path().join("p.prj.json");
        let mut good = doc_for(&png, MediaKind::Image, vec![Item::new(None, 6, 4, 1, 0.0)]);
        check_project_media(&mut good, &project).unwrap();
        let mut bad = doc_for(&png, MediaKind::Image, vec![Item::new(None, 4, 6, 1, 0.0)]);
        let err = check_project_media(&mut bad, &project)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("item 0 is 4x6 in the project but 6x4 in the media"),
            "{err}"
        );
    }

    #[test]
    fn missing_wrong_kind_and_other_folders_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p.prj.json");
        let mut gone = doc_for(
            &dir.path().join("gone.png"),
            MediaKind::Image,
            vec![Item::new(None, 6, 4, 1, 0.0)],
        );
        assert!(matches!(
            check_project_media(&mut gone, &project),
            Err(ProjectMediaError::Missing { .. })
        ));
        let empty = dir.path().join("empty.mp4");
        std::fs::write(&empty, b"").unwrap();
        let mut empty_doc = doc_for(
            &empty,
            MediaKind::Video,
            vec![Item::new(None, 6, 4, 3, 5.0)],
        );
        assert!(matches!(
            check_project_media(&mut empty_doc, &project),
            Err(ProjectMediaError::Unreadable { .. })
        ));

        let folder = dir.path().join("frames");
        std::fs::create_dir(&folder).unwrap();
        write_png(&folder.join("a.png"), 6, 4);
        write_png(&folder.join("b.png"), 6, 4);
        let mut as_video = doc_for(
            &folder,
            MediaKind::Video,
            vec![Item::new(None, 6, 4, 2, 5.0)],
        );
        let err = check_project_media(&mut as_video, &project)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is of a video but the media is a folder"),
            "{err}"
        );
        let items = vec![
            Item::new(Some("a.png".into()), 6, 4, 1, 0.0),
            Item::new(Some("c.png".into()), 6, 4, 1, 0.0),
        ];
        let mut renamed = doc_for(&folder, MediaKind::Folder, items);
        let err = check_project_media(&mut renamed, &project)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("item 1 is c.png in the project but b.png"),
            "{err}"
        );
        let mut sequence = doc_for(
            &folder,
            MediaKind::Folder,
            vec![Item::new(None, 6, 4, 2, 5.0)],
        );
        // A project saved before frame names were kept gets them from the folder; a frame
        // renamed since is then named.
        check_project_media(&mut sequence, &project).unwrap();
        assert_eq!(sequence.items[0].frame_files, ["a.png", "b.png"]);
        std::fs::rename(folder.join("b.png"), folder.join("c.png")).unwrap();
        let err = check_project_media(&mut sequence, &project)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("frame 2 is b.png in the project but c.png in the folder"),
            "{err}"
        );
        std::fs::rename(folder.join("c.png"), folder.join("b.png")).unwrap();
        let mut longer = doc_for(
            &folder,
            MediaKind::Folder,
            vec![Item::new(None, 6, 4, 3, 5.0)],
        );
        let err = check_project_media(&mut longer, &project)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3 frames but the folder has 2 images"),
            "{err}"
        );
    }

    #[test]
    fn an_image_project_of_an_animated_gif_becomes_a_video_project() {
        let dir = tempfile::tempdir().unwrap();
        let gif = dir.path().join("a.gif");
        let mut file = std::fs::File::create(&gif).unwrap();
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut file);
        let delay = image::Delay::from_numer_denom_ms(200, 1);
        for c in [[200u8, 0, 0, 255], [0, 0, 200, 255], [0, 200, 0, 255]] {
            let buffer = image::RgbaImage::from_pixel(6, 4, image::Rgba(c));
            encoder
                .encode_frame(image::Frame::from_parts(buffer, 0, 0, delay))
                .unwrap();
        }
        drop(encoder);
        let project = dir.path().join("p.prj.json");
        let source = crate::media::open(&gif).unwrap();

        let mut old = doc_for(&gif, MediaKind::Image, vec![Item::new(None, 6, 4, 1, 0.0)]);
        let mut checked = old.clone();
        check_project_media(&mut checked, &project).unwrap();
        assert_eq!(checked.media.kind, MediaKind::Video);
        assert!(complete_from_media(&mut old, &source));
        assert_eq!(old, checked);
        assert_eq!(old.media.kind, MediaKind::Video);
        assert_eq!((old.items[0].frame_count, old.items[0].fps), (3, 5.0));
        compare_with_media(&old, &source, &project).unwrap();
        // Already a video project: nothing to adopt.
        assert!(!complete_from_media(&mut old, &source));

        // Another size, or an image project of more than one frame, is not this case.
        for other in [Item::new(None, 4, 6, 1, 0.0), Item::new(None, 6, 4, 2, 0.0)] {
            let mut doc = doc_for(&gif, MediaKind::Image, vec![other]);
            assert!(!complete_from_media(&mut doc, &source));
            let err = check_project_media(&mut doc, &project)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("is of an image but the media is a video"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_one_frame_video_project_of_a_picture_becomes_an_image_project() {
        let dir = tempfile::tempdir().unwrap();
        let ppm = dir.path().join("a.ppm");
        image::RgbImage::from_pixel(6, 4, image::Rgb([9, 8, 7]))
            .save(&ppm)
            .unwrap();
        let project = dir.path().join("p.prj.json");
        let source = crate::media::open(&ppm).unwrap();
        assert_eq!(source.kind(), SourceKind::Image);
        // As a build that opened such pictures as one-frame videos saved it.
        let mut old = doc_for(&ppm, MediaKind::Video, vec![Item::new(None, 6, 4, 1, 25.0)]);
        let mut checked = old.clone();
        check_project_media(&mut checked, &project).unwrap();
        assert!(complete_from_media(&mut old, &source));
        assert_eq!(old, checked);
        assert_eq!(old.media.kind, MediaKind::Image);
        assert_eq!((old.items[0].frame_count, old.items[0].fps), (1, 0.0));
    }
}

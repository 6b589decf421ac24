//! A PNG export into a folder that holds an earlier one: the folder ends up with exactly this
//! export's masks (a deleted object's or a cleared frame's PNGs go, other files stay), and an
//! export that fails partway leaves the earlier export as it was, with nothing staged behind.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::{Mask, Rle};
use pixelrefer_studio::project::{
    Document, Edit, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef, export_pngs,
};
use std::collections::BTreeMap;
use std::path::Path;

fn mask(x0: u32) -> Rle {
    let mut m = Mask::new(8, 6);
    for y in 1..4 {
        for x in x0..x0 + 3 {
            m.set(i64::from(x), i64::from(y), true);
        }
    }
    Rle::from_mask(&m)
}

/// A clip with objects 0 and 1, masks on frames 0, 1 and 2.
fn doc() -> Document {
    let mut doc = Document::new(
        MediaRef {
            kind: MediaKind::Video,
            path: "/data/clip.mp4".into(),
            fingerprint: None,
        },
        vec![Item::new(None, 8, 6, 5, 10.0)],
    );
    for id in 0..2 {
        let add = doc.add_object_edit(0).unwrap();
        doc.apply(add).unwrap();
        for frame in 0..3 {
            doc.apply(set_frame(id, frame, Some(mask(id + frame as u32))))
                .unwrap();
        }
    }
    doc
}

fn set_frame(id: u32, frame: u64, rle: Option<Rle>) -> Edit {
    Edit::SetFrame {
        item: 0,
        id,
        frame,
        annotation: rle.map(|r| Box::new(FrameAnnotation::from_mask(r, MaskSource::Painted))),
    }
}

/// Every file under `dir` (relative path -> bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The hidden entries of `dir` (a staging folder left behind would be one).
fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn a_second_export_holds_exactly_its_own_masks_and_leaves_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("png");
    let mut doc = doc();
    export_pngs(&doc, &out).unwrap();
    assert_eq!(tree(&out).len(), 6);
    // Files of the person's own, beside and inside the export's folders.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(out.join("clip/object1/README"), "mine").unwrap();
    std::fs::write(out.join("clip/object0/frame.png.bak"), "mine").unwrap();
    std::fs::create_dir_all(out.join("clip/objectX")).unwrap();
    std::fs::write(out.join("clip/objectX/000000.png"), "mine").unwrap();

    // Object 0 is deleted, object 1 loses frame 1 and changes on frame 2.
    doc.apply(Edit::RemoveObject { item: 0, id: 0 }).unwrap();
    doc.apply(set_frame(1, 1, None)).unwrap();
    doc.apply(set_frame(1, 2, Some(mask(0)))).unwrap();
    let written = export_pngs(&doc, &out).unwrap();
    assert_eq!(written.len(), 2);

    let files: Vec<String> = tree(&out).into_keys().collect();
    assert_eq!(
        files,
        [
            "clip/object0/frame.png.bak",
            "clip/object1/000000.png",
            "clip/object1/000002.png",
            "clip/object1/README",
            "clip/objectX/000000.png",
            "notes.txt",
        ]
    );
    let frame2 = Mask::from_png(&out.join("clip/object1/000002.png"), 127).unwrap();
    assert_eq!(
        Rle::from_mask(&frame2),
        mask(0),
        "the new mask replaced the old"
    );

    // With nothing of its own left, an object folder goes.
    std::fs::remove_file(out.join("clip/object0/frame.png.bak")).unwrap();
    export_pngs(&doc, &out).unwrap();
    assert!(!out.join("clip/object0").exists());
}

#[test]
fn a_failed_export_leaves_the_earlier_one_and_nothing_staged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("png");
    let doc0 = doc();
    export_pngs(&doc0, &out).unwrap();
    let before = tree(&out);

    // Object 1's last mask cannot be encoded (its runs do not cover the frame): the export
    // fails after the other masks are written.
    let mut doc1 = doc0.clone();
    doc1.apply(set_frame(0, 0, Some(mask(4)))).unwrap();
    let broken = Rle {
        size: [6, 8],
        counts: vec![3],
    };
    doc1.items[0].objects[1].frames.get_mut(&2).unwrap().mask = Some(broken);
    assert!(export_pngs(&doc1, &out).is_err());
    assert_eq!(tree(&out), before, "the earlier export is untouched");
    assert_eq!(hidden(&out), Vec::<String>::new(), "staged files left");
}

#[cfg(unix)]
#[test]
fn an_item_folder_linked_to_another_file_system_is_exported_into() {
    // /dev/shm is a tmpfs on Linux, the temporary folder usually is not: moving a staged mask
    // into the linked folder crosses file systems.
    let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("png");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(other.path(), out.join("clip")).unwrap();
    let mut doc = doc();
    export_pngs(&doc, &out).unwrap();
    assert_eq!(tree(other.path()).len(), 6);
    doc.apply(Edit::RemoveObject { item: 0, id: 0 }).unwrap();
    export_pngs(&doc, &out).unwrap();
    let files: Vec<String> = tree(other.path()).into_keys().collect();
    assert_eq!(
        files,
        [
            "object1/000000.png",
            "object1/000001.png",
            "object1/000002.png"
        ]
    );

    assert_eq!(hidden(&out), Vec::<String>::new(), "staged files left");
}

#[test]
fn a_staging_folder_a_killed_export_left_is_removed_by_the_next_after_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("png");
    let doc = doc();
    export_pngs(&doc, &out).unwrap();
    // Two staging folders, as a killed export leaves them: one a day old, one just made (an
    // export still running).
    let make = |name: &str, age_secs: u64| {
        let staged = out.join(name).join("clip/object0");
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join("000000.png"), "partial").unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs);
        std::fs::File::open(out.join(name))
            .unwrap()
            .set_modified(when)
            .unwrap();
    };
    make(".png-export.killed", 25 * 3600);
    make(".png-export.running", 0);
    export_pngs(&doc, &out).unwrap();
    assert_eq!(hidden(&out), [".png-export.running"]);
}

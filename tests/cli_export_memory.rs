//! Exports do not hold more than they must: PNG masks are encoded row by row from the RLE
//! (memory O(width), not width × height) and the JSON exports stream (no whole-document tree),
//! measured with a counting global allocator. One test, so nothing else allocates meanwhile.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::Rle;
use pixelrefer_studio::project::{
    self, Document, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef, Object,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::SeqCst) + by;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Count the new block before the old one is gone, as a moving realloc holds both.
            grew(new_size);
            CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was allocated before it.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst) - base
}

fn rect(w: u32, h: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> Rle {
    // Column-major runs of a rectangle, built without a bitmap.
    let mut counts = Vec::new();
    let mut zeros = x0 as u64 * h as u64 + y0 as u64;
    for _ in x0..x1 {
        counts.push(zeros as u32);
        counts.push(y1 - y0);
        zeros = (h - y1 + y0) as u64;
    }
    counts.push((zeros - y0 as u64 + (w - x1) as u64 * h as u64) as u32);
    Rle {
        size: [h, w],
        counts,
    }
}

fn image_doc(w: u32, h: u32, objects: u32) -> Document {
    let media = MediaRef {
        kind: MediaKind::Image,
        path: "/data/big.png".into(),
        fingerprint: None,
    };
    let mut item = Item::new(None, w, h, 1, 0.0);
    for id in 0..objects {
        let mut o = Object::new(id, format!("label {}", id % 7), [1, 2, 3]);
        let x = id % (w - 4);
        o.frames.insert(
            0,
            FrameAnnotation::from_mask(rect(w, h, x, 1, x + 3, 4), MaskSource::Painted),
        );
        item.objects.push(o);
    }
    item.next_object_id = objects;
    Document::new(media, vec![item])
}

#[test]
fn exports_hold_no_full_bitmap_and_no_whole_document() {
    let tmp = tempfile::tempdir().unwrap();
    let limit = 4 << 20;

    // One 4000 x 4000 mask: a bitmap of it alone is 16 MB.
    let big = image_doc(4000, 4000, 1);
    big.items[0].objects[0].frames[&0]
        .mask
        .as_ref()
        .unwrap()
        .validate()
        .unwrap();
    let dir = tmp.path().join("png");
    let mut count = 0;
    let peak = peak_during(|| {
        count = project::write_pngs(&big, &dir, &[], |_| {}).unwrap();
    });
    assert_eq!(count, 1);
    assert!(
        peak < limit,
        "PNG export of a 4000x4000 mask peaked at {peak} bytes"
    );
    let png = dir.join("big/object0/000000.png");
    let back = pixelrefer_studio::mask::Mask::from_png(&png, 127).unwrap();
    assert_eq!(
        Rle::from_mask(&back),
        big.items[0].objects[0].frames[&0].mask.clone().unwrap()
    );

    // 20 000 objects: a JSON tree of them is tens of MB; the streamed files are written
    // through a 1 MiB buffer.
    let many = image_doc(64, 48, 20_000);
    let regions = tmp.path().join("r.json");
    let peak = peak_during(|| project::export_regions(&many, &regions).unwrap());
    assert!(
        peak < limit,
        "regions export of 20000 objects peaked at {peak} bytes"
    );
    let coco = tmp.path().join("c.json");
    let peak = peak_during(|| project::export_coco(&many, &coco).unwrap());
    assert!(
        peak < limit,
        "COCO export of 20000 objects peaked at {peak} bytes"
    );
    let size = std::fs::metadata(&regions).unwrap().len();
    assert!(size > 5_000_000, "the regions file is {size} bytes");
}

//! Every WGSL file in `shaders/` parses and validates with naga, and the uniform structs the
//! Rust side uploads have the size and field count the shader expects.

#![allow(clippy::unwrap_used)]

use pixelrefer_studio::render::{OverlayUniforms, SlotStyle};
use std::path::{Path, PathBuf};

fn wgsl_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    files
}

fn parse_and_validate(path: &Path) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = std::fs::read_to_string(path).unwrap();
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
    (module, info)
}

#[test]
fn every_wgsl_file_validates() {
    let files = wgsl_files();
    assert!(!files.is_empty(), "no shaders found");
    for path in files {
        parse_and_validate(&path);
    }
}

fn struct_layout(module: &naga::Module, name: &str) -> (u32, usize) {
    module
        .types
        .iter()
        .find_map(|(_, ty)| match &ty.inner {
            naga::TypeInner::Struct { members, span } if ty.name.as_deref() == Some(name) => {
                Some((*span, members.len()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("struct {name} not found"))
}

#[test]
fn overlay_structs_match_the_rust_side() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders/mask_overlay.wgsl");
    let (module, _) = parse_and_validate(&path);

    let (size, fields) = struct_layout(&module, "Uniforms");
    assert_eq!(size as usize, std::mem::size_of::<OverlayUniforms>());
    // image_origin_px, image_px_per_screen_px, image_size_px, layer_count, slot_count,
    // outline_width_px, fill_opacity, _pad
    assert_eq!(fields, 8);

    let (size, fields) = struct_layout(&module, "SlotStyle");
    assert_eq!(size as usize, std::mem::size_of::<SlotStyle>());
    assert_eq!(fields, 5); // color, flags, 3 × padding (one array in Rust)
}

#[test]
fn the_embedded_shader_is_the_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders/mask_overlay.wgsl");
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        pixelrefer_studio::render::MASK_OVERLAY_WGSL
    );
}

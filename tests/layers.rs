//! Keeps DESIGN.md §3 true: engines and the document never import egui, eframe or wgpu, and the
//! UI never holds an ONNX session.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("src/ is readable");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn offending_lines(module: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(module);
    let mut files = Vec::new();
    if root.is_dir() {
        rust_files(&root, &mut files);
    } else {
        files.push(root.with_extension("rs"));
    }
    let mut bad = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source is UTF-8");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                let hit = code.contains(&format!("{word}::"))
                    || code.contains(&format!("use {word}"))
                    || code.contains(&format!("extern crate {word}"));
                if hit {
                    bad.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    bad
}

#[test]
fn engines_and_document_do_not_import_gui_crates() {
    let gui = ["egui", "eframe", "egui_wgpu", "wgpu", "rfd", "winit"];
    for module in [
        "media", "mask", "project", "runtime", "segment", "refer", "jobs", "cli",
    ] {
        let bad = offending_lines(module, &gui);
        assert!(
            bad.is_empty(),
            "{module} imports a GUI crate:\n{}",
            bad.join("\n")
        );
    }
}

#[test]
fn ui_and_render_do_not_hold_onnx_sessions() {
    for module in ["ui", "render"] {
        let bad = offending_lines(module, &["ort"]);
        assert!(
            bad.is_empty(),
            "{module} uses ort directly:\n{}",
            bad.join("\n")
        );
    }
}

#[test]
fn the_scan_finds_a_forbidden_import() {
    // Guard against a scan that can never fail: the ui module must be seen using egui.
    let hits = offending_lines("ui", &["egui"]);
    assert!(
        !hits.is_empty(),
        "the layer scan found no egui use in src/ui"
    );
}

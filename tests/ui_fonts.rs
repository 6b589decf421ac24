//! Chinese, Japanese and Korean text in the app: egui's bundled fonts have none of it, so the app
//! turns on eframe's system font fallback (`system_fonts` feature, `src/ui/mod.rs`) and
//! scripts/setup.sh installs a CJK font for it to find (fonts-wqy-microhei).

use std::sync::Arc;

/// Whether text laid out in `ctx` has a glyph for every character of `text`.
fn has_glyphs(ctx: &egui::Context, text: &str) -> bool {
    // fonts exist once a frame has run
    let mut output = ctx.run_ui(egui::RawInput::default(), |_| {});
    output.textures_delta.clear();
    ctx.fonts_mut(|f| f.has_glyphs(&egui::FontId::proportional(14.0), text))
}

#[test]
fn cjk_questions_and_answers_have_glyphs() {
    let text = "这辆摩托车是什么颜色？猫の目 고양이";
    assert!(
        !has_glyphs(&egui::Context::default(), text),
        "egui's own fonts were not expected to cover CJK"
    );
    // what eframe installs in the app's window
    let ctx = egui::Context::default();
    ctx.add_font_provider(Arc::new(
        egui_system_font_provider::SystemFontProvider::new(),
    ));
    assert!(
        has_glyphs(&ctx, text),
        "no system font covers {text:?}: scripts/setup.sh installs fonts-wqy-microhei"
    );
}

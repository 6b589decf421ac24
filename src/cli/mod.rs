//! Headless commands of the `pixelrefer-studio` binary. Each returns `anyhow::Result` so the
//! binary can report failures in one sentence.

pub mod ask;
pub mod media_cmds;
pub mod project_cmds;
pub mod sam_cmds;

//! `info` and `frame` commands.

use std::path::Path;

/// `pixelrefer-studio info MEDIA`: prints JSON facts about the media.
pub fn info(_media: &Path) -> anyhow::Result<()> {
    anyhow::bail!("the info command is not built yet")
}

/// `pixelrefer-studio frame MEDIA --index N --out F.png`: writes frame N as displayed.
pub fn frame(_media: &Path, _index: u64, _out: &Path) -> anyhow::Result<()> {
    anyhow::bail!("the frame command is not built yet")
}

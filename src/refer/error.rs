//! Errors of the PixelRefer engine.

use crate::runtime::RuntimeError;
use std::path::PathBuf;

/// Everything that can go wrong while loading PixelRefer or answering a question. Each message is
/// one sentence a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ReferError {
    /// Loading ONNX Runtime, the manifest or a session failed, or a graph has the wrong interface.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The manifest lacks a constant or holds a value the engine cannot use.
    #[error("{path}: manifest constant problem: {reason}")]
    Config {
        /// The model directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `tokenizer.json` is missing or unreadable.
    #[error(
        "{path}: the tokenizer cannot be loaded ({reason}); PixelRefer model directories must contain tokenizer.json"
    )]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Tokenising or detokenising failed.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// An object's mask has no pixel set.
    #[error(
        "the mask of <object{tag_id}> on frame {frame} is empty: paint or click the object first"
    )]
    EmptyMask {
        /// The object's tag number.
        tag_id: u32,
        /// The frame index of the mask.
        frame: usize,
    },
    /// A mask whose size differs from its frame.
    #[error(
        "the mask of <object{tag_id}> on frame {frame} is {mask_w}x{mask_h} but the frame is {frame_w}x{frame_h}"
    )]
    MaskSize {
        /// The object's tag number.
        tag_id: u32,
        /// The frame index.
        frame: usize,
        /// Mask width.
        mask_w: u32,
        /// Mask height.
        mask_h: u32,
        /// Frame width.
        frame_w: u32,
        /// Frame height.
        frame_h: u32,
    },
    /// The question names a tag that no object of the request carries.
    #[error("the question mentions {tag} but no object has that tag")]
    UnknownTag {
        /// The tag as written (`<object3>`).
        tag: String,
    },
    /// A mask image file (`ask --mask`) that cannot be used.
    #[error("mask {path}: {reason}")]
    MaskFile {
        /// The file.
        path: PathBuf,
        /// Why, as a sentence a user can act on.
        reason: String,
    },
    /// A decoding option outside its accepted values ([`super::GenerationOptions::validate`]).
    #[error("{option} {value} is not accepted: give {rule}")]
    Generation {
        /// The option (`temperature`, `top-p`…).
        option: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        rule: &'static str,
    },
    /// Some other problem with the request (no objects, a frame index outside the media…).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The prompt does not fit the model's context.
    #[error(
        "the prompt needs {needed} tokens but the model's context holds {limit}: ask a shorter question, use fewer frames or objects, or start a new conversation"
    )]
    ContextTooLong {
        /// Prompt tokens plus at least one generated token.
        needed: usize,
        /// The context length.
        limit: usize,
    },
    /// A graph produced something of an unexpected shape.
    #[error("{graph}: unexpected output: {reason}")]
    Output {
        /// The graph role.
        graph: String,
        /// What is wrong.
        reason: String,
    },
    /// ONNX Runtime failed while running a graph.
    #[error("{graph}: ONNX Runtime failed: {reason}")]
    Run {
        /// The graph role.
        graph: String,
        /// Runtime message.
        reason: String,
    },
    /// The request was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A model directory's `reference/` data (for `models verify`) is missing or malformed.
    #[error("{path}: {reason}")]
    Reference {
        /// The file (or folder) at fault.
        path: PathBuf,
        /// What is wrong, as a sentence a user can act on.
        reason: String,
    },
}

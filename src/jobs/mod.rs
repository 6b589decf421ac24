//! Background work (decode, encode, propagate, generate) with progress, cancellation, and
//! results delivered as messages to the UI thread.

mod document;

pub use document::new_document;

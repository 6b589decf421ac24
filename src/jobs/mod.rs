//! Background work (decode, encode, propagate, generate) with progress, cancellation, and
//! results delivered as messages to the UI thread.

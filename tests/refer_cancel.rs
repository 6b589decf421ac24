//! Cancelling PixelRefer in the middle of a graph run (tiny random model, see
//! `tests/refer_common/mod.rs`).
//!
//! This timing test has a binary of its own. Cargo runs test binaries one after another, so no
//! other test's graphs compete for the cores while it times two runs against each other. In
//! `refer_parity`, the parity tests running beside it once slowed the cancelled run more than the
//! uncancelled run it is compared with.
#![allow(clippy::unwrap_used)]

mod refer_common;

use pixelrefer_studio::refer::{CancelToken, ReferError};
use refer_common::{load, simple_request};
use std::sync::mpsc;
use std::time::Instant;

#[test]
fn cancel_terminates_a_running_graph() {
    // A large image fills the vision encoder's budget (8192 patches): a graph run long enough
    // to be cancelled in its middle from another thread.
    let (mut m, _) = load("pixelrefer-tiny");
    let req = simple_request(1400, 1100);
    let full = Instant::now();
    let t = Instant::now();
    let prepared = m.prepare(&req).unwrap();
    let prep = t.elapsed();
    let a = m
        .ask_prepared(&req, &prepared, &mut |_| {}, &CancelToken::new())
        .unwrap();
    let full = full.elapsed();
    eprintln!("prepare {prep:?}, timings {:?}", a.timings);
    m.clear_cache();
    // Cancel a quarter in (vision encoder / decoder prefill): three quarters of the work remain.
    let delay = full / 4;
    let cancel = CancelToken::new();
    let (tx, rx) = mpsc::channel::<Instant>();
    let c2 = cancel.clone();
    let killer = std::thread::Builder::new()
        .name("cancel-test".into())
        .spawn(move || {
            std::thread::sleep(delay);
            c2.cancel();
            tx.send(Instant::now()).unwrap();
        })
        .unwrap();
    let start = Instant::now();
    let res = m.ask(&req, &mut |_| {}, &cancel);
    let end = Instant::now();
    killer.join().unwrap();
    let cancelled_at = rx.recv().unwrap();
    assert!(
        matches!(res, Err(ReferError::Cancelled)),
        "{res:?} after {:?}",
        end - start
    );
    let latency = end.saturating_duration_since(cancelled_at);
    eprintln!("uncancelled run {full:?}; cancelled at {delay:?}, returned {latency:?} later");
    // Without terminate the run would go on for about full/2 more.
    assert!(
        latency < full / 5,
        "returned {latency:?} after cancel (full run {full:?})"
    );
}

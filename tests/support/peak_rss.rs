//! Peak resident set of a child process on Linux, from `wait4`'s `ru_maxrss` (shared by
//! `tests/track_memory.rs` and `benches/sam2_long.rs`).
#![allow(dead_code)]

/// `struct rusage` of Linux (x86_64 and aarch64): two `timeval`s, then 14 `long`s.
#[repr(C)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss_kib: i64,
    rest: [i64; 13],
}

unsafe extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
}

/// Waits for `child` and returns (its raw wait status, 0 for a clean exit; its peak RSS in KiB).
pub fn wait_peak_kib(child: &std::process::Child) -> (i32, u64) {
    let mut status = 0i32;
    let mut usage = Rusage {
        utime: [0; 2],
        stime: [0; 2],
        maxrss_kib: 0,
        rest: [0; 13],
    };
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    // SAFETY: `pid` is our own unwaited child; both pointers are valid for the call.
    let r = unsafe { wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    (status, u64::try_from(usage.maxrss_kib).unwrap_or(0))
}

//! Futures that follow other futures: `wrap_future` (asyncio's `_chain_future`, SEMANTICS.md
//! F22) and `ensure_future`.
//!
//! The wrapper is bound to the target loop. When the source is done, its outcome is copied
//! onto the wrapper through the target loop's queue (so on a later iteration, even when the
//! source was already done). When the wrapper is cancelled, the source is cancelled (its
//! `cancel` is thread-safe, so no extra hop is needed). The source side holds the wrapper
//! weakly, so a wrapper nobody holds any more simply goes away.

use crate::callback::{Callback, DoneCallback};
use crate::eventloop::{Loop, next_token};
use crate::future::Future;

/// `afut_ensure_future`: `fut` itself if it is bound to `event_loop`, else a wrapper.
pub fn ensure_future(event_loop: &Loop, fut: &Future) -> Future {
    match fut.event_loop() {
        Some(l) if l.same(event_loop) => fut.clone(),
        _ => wrap_future(event_loop, fut),
    }
}

/// `afut_wrap_future`: a future on `event_loop` mirroring `source`.
pub fn wrap_future(event_loop: &Loop, source: &Future) -> Future {
    if source.event_loop().is_some_and(|l| l.same(event_loop)) {
        return source.clone();
    }
    let dest = Future::new(Some(event_loop.clone()));

    // wrapper cancelled -> cancel the source.
    let src = source.clone();
    let _ = dest.add_done_callback(DoneCallback::rust(next_token(), move |d: &Future| {
        if d.is_cancelled() {
            src.cancel(d.cancel_message_owned());
        }
    }));

    // source done -> copy onto the wrapper, on the wrapper's loop.
    let weak_dest = dest.downgrade();
    let target_loop = event_loop.clone();
    let copy = DoneCallback::rust(next_token(), move |s: &Future| {
        let Some(dest) = weak_dest.upgrade().map(Future) else { return };
        let s = s.clone();
        // A closed target loop drops the copy silently (asyncio 3.13 does the same).
        let _ = target_loop.schedule(Callback::rust(move || dest.mirror(&s)), None);
    });
    if let Err((_, cb)) = source.add_done_callback(copy) {
        // The source's own loop is closed: copy straight away through the target loop.
        drop(cb);
        let s = source.clone();
        let d = dest.clone();
        let _ = event_loop.schedule(Callback::rust(move || d.mirror(&s)), None);
    }
    dest
}

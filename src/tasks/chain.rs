//! Futures that follow other futures: `wrap_future` (asyncio's `_chain_future`, SEMANTICS.md
//! F22) and `ensure_future`.
//!
//! The wrapper is bound to the target loop. When the source is done, its outcome is copied
//! onto the wrapper through the target loop's queue (so on a later iteration, even when the
//! source was already done). When the wrapper is cancelled, the source is cancelled (its
//! `cancel` is thread-safe, so no extra hop is needed). The source side holds the wrapper
//! weakly, so a wrapper nobody holds any more simply goes away.

use crate::callback::Callback;
use crate::futures::done::next_token;
use crate::futures::future::{DoneCb, Future};
use crate::runtime::eventloop::Loop;

/// `afut_ensure_future`: `fut` itself if it is bound to `event_loop`, else a wrapper.
pub(crate) fn ensure_future(event_loop: &Loop, fut: &Future) -> Future {
    if event_loop.owns(fut) { fut.clone() } else { wrap_future(event_loop, fut) }
}

/// `afut_wrap_future`: a future on `event_loop` mirroring `source`.
pub(crate) fn wrap_future(event_loop: &Loop, source: &Future) -> Future {
    if event_loop.owns(source) {
        return source.clone();
    }
    let dest = Future::new(Some(event_loop.link()));

    // wrapper cancelled -> cancel the source.
    let src = source.clone();
    let _ = dest.add_done_callback(DoneCb::rust(next_token(), move |d: &Future| {
        if d.is_cancelled() {
            src.cancel(d.cancel_message_owned());
        }
    }));

    // source done -> copy onto the wrapper, on the wrapper's loop.
    let weak_dest = dest.downgrade();
    let target_loop = event_loop.clone();
    let copy = DoneCb::rust(next_token(), move |s: &Future| {
        let Some(dest) = weak_dest.upgrade() else { return };
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

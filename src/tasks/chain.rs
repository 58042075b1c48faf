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
    wrap(event_loop, source, None)
}

/// A wrapper that `source` holds strongly until it is done (as asyncio's chain does), for a
/// source that is sure to complete (an executor job): the wrapper's callbacks run even if
/// nobody else holds it. `guard` is dropped once the copy is queued on the loop, or once it is
/// known that none will be. `source` is not bound to `event_loop`.
pub(crate) fn wrap_future_held(event_loop: &Loop, source: &Future, guard: impl Send + 'static) -> Future {
    wrap(event_loop, source, Some(Box::new(guard)))
}

fn wrap(event_loop: &Loop, source: &Future, held: Option<Box<dyn Send>>) -> Future {
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
    let strong_dest = held.is_some().then(|| dest.clone());
    let target_loop = event_loop.clone();
    let copy = DoneCb::rust(next_token(), move |s: &Future| {
        let Some(dest) = strong_dest.or_else(|| weak_dest.upgrade()) else { return };
        let s = s.clone();
        // A closed target loop drops the copy silently (asyncio 3.13 does the same).
        let _ = target_loop.schedule(Callback::rust(move || dest.mirror(&s)), None);
        drop(held);
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

//! Futures that follow other futures: `wrap_future` (asyncio's `_chain_future`, SEMANTICS.md
//! F22) and `ensure_future`.
//!
//! The wrapper is bound to the target loop. When the source is done, its outcome is copied
//! onto the wrapper through the target loop's queue (so on a later iteration, even when the
//! source was already done). When the wrapper is cancelled, the source is cancelled (its
//! `cancel` is thread-safe, so no extra hop is needed). The source's done-callback holds the
//! wrapper until the source is done (asyncio's `_chain_future` closure does the same), so a
//! wrapper whose caller dropped it still completes and runs its callbacks. The wrapper holds
//! the source too (to cancel it); for a source that never completes, the target loop's close
//! breaks that cycle (the wrapper is registered with the loop's `watch_close`).

use crate::callback::Callback;
use crate::futures::done::next_token;
use std::any::Any;

use crate::futures::future::{Behaviour, DoneCb, Future, WeakFuture};
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

/// A wrapper whose `guard` is dropped once the copy is queued on the loop, or once it is known
/// that none will be (an executor job keeps its worker's count until then). `source` is not
/// bound to `event_loop`.
pub(crate) fn wrap_future_held(event_loop: &Loop, source: &Future, guard: impl Send + 'static) -> Future {
    wrap(event_loop, source, Some(Box::new(guard)))
}

/// The wrapper's behaviour: the target loop's close detaches it from its source (whose
/// done-callback holds it), since no copy can be queued on a closed loop any more.
struct Wrapper {
    source: WeakFuture,
    /// The token of the copying done-callback on `source`.
    token: u64,
}

impl Behaviour for Wrapper {
    fn loop_closed(&self, _fut: &Future) {
        if let Some(source) = self.source.upgrade() {
            source.remove_token(self.token);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn wrap(event_loop: &Loop, source: &Future, held: Option<Box<dyn Send>>) -> Future {
    let token = next_token();
    let dest =
        Future::with_behaviour(Some(event_loop.link()), Some(Box::new(Wrapper { source: source.downgrade(), token })));

    // wrapper cancelled -> cancel the source.
    let src = source.clone();
    let _ = dest.add_done_callback(DoneCb::rust(next_token(), move |d: &Future| {
        if d.is_cancelled() {
            src.cancel(d.cancel_message_owned());
        }
    }));

    // source done -> copy onto the wrapper, on the wrapper's loop.
    let keep = dest.clone();
    let target_loop = event_loop.clone();
    let copy = DoneCb::rust(token, move |s: &Future| {
        let dest = keep;
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
        return dest;
    }
    event_loop.watch_close(&dest);
    dest
}

//! Futures: asyncio's Future state machine ([`future`]), the atomic state word it is built
//! on ([`state`]) and the done-callbacks it keeps ([`done`]). Nothing here knows the event
//! loop's insides: a future reaches its loop through the `LoopLink` trait, which the runtime
//! implements.

pub(crate) mod done;
pub(crate) mod future;
pub(crate) mod state;

#[cfg(all(test, loom))]
pub(crate) mod loom_tests;

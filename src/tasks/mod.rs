//! What is built from futures and the loop, as asyncio's "Coroutines and Tasks" chapter
//! groups it: tasks driven by a C step function ([`task`]), the combinators gather, wait_for,
//! shield, wait and as_completed ([`combinators`]), futures that follow other futures
//! (`wrap_future`, `ensure_future`: [`chain`]) and `sleep` ([`sleep`]).

pub(crate) mod chain;
pub(crate) mod combinators;
pub(crate) mod sleep;
pub(crate) mod task;

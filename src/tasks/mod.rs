//! What is built from futures and the loop, as asyncio's "Coroutines and Tasks" chapter
//! groups it: tasks driven by a C step function ([`task`]), the combinators gather, wait_for,
//! shield, wait and as_completed ([`combinators`]), futures that follow other futures
//! (`wrap_future`, `ensure_future`: [`chain`]), `sleep` ([`sleep`]), and the thread-pool
//! executor with `run_in_executor` ([`executor`]).

pub(crate) mod chain;
pub(crate) mod combinators;
pub(crate) mod executor;
pub(crate) mod sleep;
pub(crate) mod task;

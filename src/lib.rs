//! afut: Python's asyncio Future, done right for C.
//!
//! The layers, bottom to top (each imports only from the ones below it; `tests/layers.rs`
//! checks this):
//! - [`abi`]: every type, constant and function-pointer type of the C header.
//! - `callback`, `clock`, `lock`, `sync`, `thread_id`: C pointers and the only calls into C,
//!   the loop clock, the counted mutex, the atomics of the lock-free core (std, or loom under
//!   `--cfg loom`), the calling thread's identity.
//! - `futures`: asyncio's Future state machine and its done-callbacks.
//! - `runtime`: the event loop, its timers, handles, wakeup and reports.
//! - `tasks`: what is built from futures and the loop: tasks, combinators, `wrap_future`,
//!   `sleep`.
//! - [`ffi`]: the exported `afut_*` functions, the only place that turns C pointers into Rust
//!   references.
//!
//! See ARCHITECTURE.md for how they fit together.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod abi;
mod callback;
mod clock;
mod futures;
mod lock;
mod runtime;
mod sync;
mod tasks;
mod thread_id;

pub mod ffi;

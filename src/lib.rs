//! afut: Python's asyncio Future, done right for C.
//!
//! The safe core mirrors asyncio's concepts, one module each; the C ABI lives in [`ffi`].
//! See ARCHITECTURE.md for how they fit together.

pub mod callback;
pub mod chain;
pub mod combinators; // issue 5
pub mod clock;
pub mod eventloop;
pub mod ffi;
pub mod future;
pub mod handles;
pub mod report;
pub mod sleep;
pub mod status;
pub mod task; // issue 5
pub mod thread_id;
pub mod timers;
pub mod wakeup;

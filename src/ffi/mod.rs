//! The C ABI: every exported `afut_*` function, and every `unsafe` pointer conversion.
//!
//! Each export validates its pointers, converts them through [`convert`], calls the safe core,
//! and runs inside the [`panic`] boundary.
//!
//! The modules are declared in the order the header presents them (cbindgen emits functions
//! in the order it parses them): the library, the loop, scheduling, host integration, I/O watchers, futures,
//! functions on futures, tasks, combinators, the executor, virtual time, then error handling.
//! Within a file, functions appear in the order a reader meets them.

pub mod library;
pub mod eventloop;
pub mod scheduling;
pub mod host;
pub mod watchers;
pub mod future;
pub mod future_functions;
pub mod task;
pub mod combinators;
pub mod executor;
pub mod virtual_time;
pub mod errors;

mod convert;
mod panic;

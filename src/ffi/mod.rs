//! The C ABI: every exported `afut_*` function, and every `unsafe` pointer conversion.
//!
//! Each export validates its pointers, converts them through [`convert`], calls the safe core,
//! and runs inside the [`panic`] boundary.

pub mod combinators;
mod convert;
pub mod eventloop;
pub mod future;
pub mod library;
mod panic;
pub mod task;
pub mod watchers;

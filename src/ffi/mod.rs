//! The C ABI: every exported `afut_*` function, and every `unsafe` pointer conversion.
//!
//! Each export validates its pointers, converts them through [`types`], calls the safe core,
//! and runs inside the [`panic`] boundary.

pub mod combinators; // issue 5
pub mod eventloop;
pub mod future;
pub mod library;
pub mod panic;
pub mod task; // issue 5
pub mod types;

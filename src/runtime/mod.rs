//! The runtime: the event loop ([`eventloop`]), its timer heap ([`timers`]), the table of
//! scheduled callbacks ([`handles`]), the poller with the pollable wakeup ([`wakeup`]), the fd
//! watchers ([`watchers`]) and the reports that have no caller to return to ([`report`]).

pub(crate) mod eventloop;
pub(crate) mod handles;
pub(crate) mod queue;
pub(crate) mod report;
pub(crate) mod timers;
pub(crate) mod wakeup;
pub(crate) mod watchers;

#[cfg(all(test, loom, not(afut_loom_broken)))]
mod loom_tests;

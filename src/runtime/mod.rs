//! The runtime: the event loop ([`eventloop`]), its ready queues ([`queue`]), its timer heap ([`timers`]), the table of
//! scheduled callbacks ([`handles`]), the pollable wakeup ([`wakeup`]) and the reports that
//! have no caller to return to ([`report`]).

pub(crate) mod eventloop;
pub(crate) mod handles;
pub(crate) mod queue;
pub(crate) mod report;
pub(crate) mod timers;
pub(crate) mod wakeup;

#[cfg(all(test, loom, not(afut_loom_broken)))]
mod loom_tests;

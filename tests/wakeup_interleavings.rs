//! Exhaustive interleaving check of the loop's wakeup protocol (no lost wakeup).
//!
//! This explores every interleaving of a few producer threads and the loop thread over an
//! abstract model of the protocol in `src/runtime/eventloop.rs` and `src/runtime/wakeup.rs`. Each step below
//! is one atomic action in the code (a section under the `sched` lock, one atomic operation,
//! or one system call), named after the function it models:
//!
//! producer (`Loop::schedule` then `Loop::notify` then `Wakeup::signal`):
//!   Push        push the item under `sched`
//!   ReadRunning read `running` (`waiter_elsewhere`); skip the signal if no run and no host
//!   LoadFlag    `signalled.load()`: already signalled -> done
//!   SwapFlag    `signalled.swap(true)`: was already true -> done
//!   Write       write the eventfd
//!
//! standalone loop (`Loop::iteration` with `max_wait_ms = -1`):
//!   Enter       claim `running` (`Loop::enter`)
//!   Budget      under `sched`: is the queue empty?
//!   Clear/Budget2   only if about to sleep on a raised flag: clear the flag (no system
//!               call), look at the queue again
//!   CheckFlag   skip the wait if the flag is raised
//!   Wait        block until the eventfd is readable (it may still be readable from an
//!               earlier write: then the wait returns at once)
//!   Drain       after the wait: read the eventfd
//!   Take        take the whole queue under `sched`
//!
//! host loop (host mode; an edge-triggered host that watches ONLY the fd, no timeout, and
//! calls `run_once(loop, 0)` once per readiness):
//!   HostWait    block until the eventfd is readable
//!   Drain/Clear `Wakeup::clear` at the start of the iteration
//!   Take        take the queue (the batch then runs; producers may push meanwhile)
//!   Remaining   at the end, under `sched`: is the queue empty?
//!   Resignal    if not, `signal()` (load, swap, write)
//!
//! The property: once every producer is finished, the loop never blocks while an item is
//! still queued, and every item is eventually taken. A violation prints the interleaving.

use std::collections::HashSet;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum P {
    Push,
    ReadRunning,
    LoadFlag,
    SwapFlag,
    Write,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum L {
    Enter,
    Budget,
    Drain,
    Clear,
    Budget2,
    CheckFlag,
    Wait,
    Take,
    // host mode
    HostWait,
    HostDrain,
    HostClear,
    HostTake,
    HostRemaining,
    ResignalLoad,
    ResignalSwap,
    ResignalWrite,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct State {
    producers: Vec<(P, u8)>, // (next step, items left to push)
    lp: L,
    queue: u8,
    taken: u8,
    flag: bool,
    eventfd: u8,
    running: bool,
    host: bool,
    /// The value the last budget look saw (true: work ready, no wait).
    work_seen: bool,
    /// Model a broken standalone protocol (no second look after clearing), to show that the
    /// checker does catch lost wakeups.
    broken: bool,
}

#[derive(Default)]
struct Explorer {
    seen: HashSet<State>,
    violations: Vec<String>,
    states: usize,
}

fn producer_step(s: &State, i: usize) -> Option<State> {
    let mut n = s.clone();
    let (step, left) = n.producers[i];
    match step {
        P::Done => return None,
        P::Push => {
            n.queue += 1;
            n.producers[i] = (P::ReadRunning, left - 1);
        }
        P::ReadRunning => {
            let waiter_elsewhere = n.running || n.host;
            n.producers[i].0 = if waiter_elsewhere { P::LoadFlag } else { next_item(left) };
        }
        P::LoadFlag => {
            n.producers[i].0 = if n.flag { next_item(left) } else { P::SwapFlag };
        }
        P::SwapFlag => {
            let was = n.flag;
            n.flag = true;
            n.producers[i].0 = if was { next_item(left) } else { P::Write };
        }
        P::Write => {
            n.eventfd = 1;
            n.producers[i].0 = next_item(left);
        }
    }
    Some(n)
}

fn next_item(left: u8) -> P {
    if left > 0 { P::Push } else { P::Done }
}

/// The loop's next state, or None while it is blocked.
fn loop_step(s: &State) -> Option<State> {
    let mut n = s.clone();
    match s.lp {
        L::Enter => {
            n.running = true;
            n.lp = L::Budget;
        }
        L::Budget => {
            n.work_seen = n.queue > 0;
            n.lp = if n.work_seen {
                L::Take
            } else if n.flag {
                L::Clear
            } else {
                L::CheckFlag
            };
        }
        L::Drain => {
            n.eventfd = 0;
            n.lp = L::Take;
        }
        L::Clear => {
            n.flag = false;
            n.lp = if n.broken { L::CheckFlag } else { L::Budget2 };
        }
        L::Budget2 => {
            n.work_seen = n.queue > 0;
            n.lp = if n.work_seen { L::Take } else { L::CheckFlag };
        }
        L::CheckFlag => {
            n.lp = if n.flag { L::Take } else { L::Wait };
        }
        L::Wait => {
            if n.eventfd == 0 {
                return None; // blocked in epoll_wait
            }
            n.lp = L::Drain;
        }
        L::Take => {
            n.taken += n.queue;
            n.queue = 0;
            n.lp = L::Budget;
        }
        L::HostWait => {
            if n.eventfd == 0 {
                return None; // the host is blocked on the fd
            }
            n.lp = L::HostDrain;
        }
        L::HostDrain => {
            if n.flag {
                n.eventfd = 0;
                n.lp = L::HostClear;
            } else {
                n.lp = L::HostTake;
            }
        }
        L::HostClear => {
            n.flag = false;
            n.lp = L::HostTake;
        }
        L::HostTake => {
            n.taken += n.queue;
            n.queue = 0;
            n.lp = L::HostRemaining;
        }
        L::HostRemaining => {
            n.lp = if n.queue > 0 { L::ResignalLoad } else { L::HostWait };
        }
        L::ResignalLoad => {
            n.lp = if n.flag { L::HostWait } else { L::ResignalSwap };
        }
        L::ResignalSwap => {
            let was = n.flag;
            n.flag = true;
            n.lp = if was { L::HostWait } else { L::ResignalWrite };
        }
        L::ResignalWrite => {
            n.eventfd = 1;
            n.lp = L::HostWait;
        }
    }
    Some(n)
}

impl Explorer {
    fn explore(&mut self, s: State, trace: &mut Vec<String>, total: u8) {
        if !self.seen.insert(s.clone()) {
            return;
        }
        self.states += 1;
        let mut moved = false;
        for i in 0..s.producers.len() {
            if let Some(n) = producer_step(&s, i) {
                moved = true;
                trace.push(format!("producer {i}: {:?}", s.producers[i].0));
                self.explore(n, trace, total);
                trace.pop();
            }
        }
        if let Some(n) = loop_step(&s) {
            // The loop can always also take a step; once producers are done it is the only
            // one. Bound the exploration: after everything was taken and producers are done,
            // the loop only cycles.
            let producers_done = s.producers.iter().all(|p| p.0 == P::Done);
            if !(producers_done && s.taken == total && s.queue == 0 && matches!(s.lp, L::Budget | L::HostWait)) {
                moved = true;
                trace.push(format!("loop: {:?}", s.lp));
                self.explore(n, trace, total);
                trace.pop();
            }
        }
        if !moved {
            // Nobody can move: every producer is done and the loop is blocked (or idle at
            // the end). Every item must have been taken.
            if s.taken != total || s.queue != 0 {
                self.violations.push(format!(
                    "lost wakeup: {} of {total} items taken, {} queued, loop blocked at {:?}\n  {}",
                    s.taken,
                    s.queue,
                    s.lp,
                    trace.join("\n  ")
                ));
            }
        }
    }
}

fn check(producers: &[u8], host: bool, loop_already_running: bool) -> usize {
    explore_protocol(producers, host, loop_already_running, false)
}

fn explore_protocol(producers: &[u8], host: bool, loop_already_running: bool, broken: bool) -> usize {
    let total = producers.iter().sum();
    let start = State {
        producers: producers.iter().map(|&k| (next_item(k), k)).collect(),
        lp: if host {
            L::HostWait
        } else if loop_already_running {
            L::Budget
        } else {
            L::Enter
        },
        queue: 0,
        taken: 0,
        flag: false,
        eventfd: 0,
        running: host || loop_already_running,
        host,
        work_seen: false,
        broken,
    };
    let mut e = Explorer::default();
    e.explore(start, &mut Vec::new(), total);
    assert!(e.violations.is_empty(), "{} violation(s); first:\n{}", e.violations.len(), e.violations[0]);
    e.states
}

#[test]
fn standalone_loop_never_loses_a_wakeup() {
    let mut states = 0;
    for producers in [&[1u8][..], &[2], &[1, 1], &[2, 1], &[2, 2], &[1, 1, 1]] {
        for already_running in [false, true] {
            states += check(producers, false, already_running);
        }
    }
    println!("standalone protocol: {states} distinct states explored, no lost wakeup");
    assert!(states > 1000, "the exploration is not trivial");
}

#[test]
fn host_driven_loop_never_loses_a_wakeup() {
    let mut states = 0;
    for producers in [&[1u8][..], &[2], &[1, 1], &[2, 1], &[2, 2], &[1, 1, 1]] {
        states += check(producers, true, true);
    }
    println!("host protocol: {states} distinct states explored, no lost wakeup");
    assert!(states > 100, "the exploration is not trivial");
}

/// The checker itself can fail: a standalone loop that clears the flag and then sleeps without
/// looking at the queue again strands an item that arrived between its first look and the
/// clear (its producer saw the flag raised and did not write the eventfd).
#[test]
fn the_checker_finds_a_broken_protocol() {
    let result = std::panic::catch_unwind(|| explore_protocol(&[1, 1], false, true, true));
    assert!(result.is_err(), "skipping the second look must be reported as a lost wakeup");
}

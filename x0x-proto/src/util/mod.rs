//! Small building blocks the protocol layers share: id comparison and formatting, timer sets,
//! bounded FIFOs, sorted-vector sets and typed counters.

pub(crate) mod counts;
pub(crate) mod fifo;
pub(crate) mod ids;
pub(crate) mod small_set;
pub(crate) mod timers;

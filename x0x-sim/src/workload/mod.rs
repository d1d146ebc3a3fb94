//! The workloads a scenario runs on the nodes, each with its script steps, its bookkeeping
//! and the figures it adds to the report.
//!
//! * `broadcast`: publish rounds, deliveries, delivery ratio, RMR and LDH.
//! * `direct`: direct messages between random pairs of live nodes.
//! * [`discovery`]: announcements, late joiners and `find_agent` look-ups.
//! * `swim`: how soon crashed nodes are suspected and declared dead.
//! * [`spam`]: a spammer that part of the nodes block (trust).
//! * [`presence`]: online and offline reports, crash detection and FOAF look-ups.
//! * [`flood`]: publishers at a fixed rate, past the dedup window's count (replay-flood).

pub(crate) mod broadcast;
pub mod collab;
pub(crate) mod direct;
pub mod discovery;
pub mod flood;
pub mod presence;
pub mod spam;
pub(crate) mod swim;

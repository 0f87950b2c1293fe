//! Load generator and benchmark runner for `just bench`.
//!
//! - `odeon-loadgen` ([`run`]): one workload (N active + K idle Colyseus 0.18 clients of the
//!   `arena` room) against one server, summarised as JSON ([`summary::Summary`]).
//! - `odeon-bench` ([`bench`]): both servers (Odeon and the real Colyseus peer), several sizes,
//!   a Markdown report and an SVG plot.
//!
//! See `bench/README.md` for what is measured and how.

pub mod bench;
pub mod client;
pub mod matchmake;
pub mod metrics;
pub mod proc;
pub mod reconnect;
pub mod run;
pub mod schema;
pub mod summary;
pub mod sys;
pub mod wire;

//! Plain values every layer shares, with no engine behind them: what the user names
//! ([`target`]), durations, what to run ([`options`]), how a run ends ([`outcome`]), task
//! states, labels, the node-side build and the helper spec.

pub mod action;
pub mod duration;
pub mod labels;
pub mod node_program;
pub mod options;
pub mod outcome;
pub mod spec;
pub mod state;
pub mod target;

//! End-to-end tests: the real binary against the real multi-node lab swarm.
//! Unit tests of error paths and timing live with the library (a fake API, paused time).

mod util;

mod action;
mod channel;
mod cp;
mod debug;
mod ecosystem;
mod example;
mod faults;
mod forward;
mod interactive;
mod persist;
mod plugin;
mod scale;
mod service_exec;
mod session;
mod task_exec;
mod wait;
mod zero_install;

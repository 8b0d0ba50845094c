//! End-to-end tests: whole pipelines on the real sample data, one binary, a module per area.

#![allow(unreachable_pub)]

mod classify;
mod common;
mod demo;
mod flood;
mod ingest;
mod map;
mod model;
mod reliability;
mod sinks;
mod sql;

//! The demo mapping job on the real Sentinel-2 scene, and its bad-input cases.

mod bad_input;
mod geoparquet;

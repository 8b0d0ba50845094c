//! Flood service configs: any text as a `terrastream flood serve` config file. An error naming
//! the key is fine; a panic is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use terrastream::flood::serve::config::ServeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ServeConfig::parse(text);
});

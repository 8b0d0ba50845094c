//! Run configs: any text as a `terrastream map` config file. An error naming the key is fine;
//! a panic is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use terrastream::map::config::MapConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = MapConfig::parse(text, std::path::Path::new("/fuzz"));
});

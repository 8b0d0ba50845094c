//! The flood service's request bodies: any bytes as a `POST /events` body, parsed and checked
//! with the default limits. A refusal must be a 400 or 422 naming a field, never a panic.

#![no_main]

use chrono::TimeZone;
use libfuzzer_sys::fuzz_target;
use terrastream::flood::event::EventConfig;
use terrastream::flood::serve::validate::parse_request;

fuzz_target!(|data: &[u8]| {
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 12, 5, 12, 0, 0)
        .single()
        .expect("a valid time");
    if let Err(e) = parse_request(data, &EventConfig::default(), now) {
        assert!(
            matches!(e.status.as_u16(), 400 | 422),
            "status {} for {e:?}",
            e.status
        );
        assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}");
    }
});

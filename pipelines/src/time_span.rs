//! Spans of time as config files give them (days and seconds as numbers), their bounds, and
//! their conversion. Bounded so that the durations and timestamps made from them cannot
//! overflow (values past these made the fuzzer's panics).

/// The longest span in days a config may give (search windows, lookbacks): ten years.
pub const MAX_DAYS: f64 = 3650.0;

/// The longest interval or time limit in seconds a config may give: a day.
pub const MAX_SECONDS: f64 = 86_400.0;

/// `d` days (fractions allowed) as a duration, to the millisecond below.
pub fn days(d: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((d * 86_400_000.0) as i64)
}

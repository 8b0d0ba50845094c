//! Errors as one line for failure logs and messages: each cause once.
//!
//! Our library errors (and object_store's, async-tiff's) put their cause's text in their own
//! message and also expose it as `source()`, so anyhow's `{:#}` repeats every cause once per level
//! above it. [`one_line`] leaves out a cause whose text the line already holds (the walk is
//! ingest's [`error_chain`](terrastream_ingest::scene::error_chain)).

/// `e` and its causes, `: `-separated, each text once, without DataFusion's `External error: `.
pub fn one_line(e: &anyhow::Error) -> String {
    terrastream_ingest::scene::error_chain(e.as_ref()).replace("External error: ", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("not a readable TIFF: {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let inner = std::io::Error::other("Range request not supported by a.tif");
        let e = anyhow::Error::new(Outer(inner)).context("item x, asset red (http://h/a.tif)");
        assert_eq!(
            one_line(&e),
            "item x, asset red (http://h/a.tif): not a readable TIFF: Range request not supported by a.tif"
        );
        let plain = anyhow::anyhow!("first").context("second");
        assert_eq!(one_line(&plain), "second: first");
    }
}

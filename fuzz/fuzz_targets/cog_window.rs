//! Window assembly from tiles: any bytes as a GeoTIFF, opened and read window by window the way
//! the chipper reads it (windows across tile edges and past the image edge). An error is fine;
//! a panic that escapes, an abort or a hang is a bug.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use terrastream_ingest::cog::Cog;
use terrastream_ingest::store::Location;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

async fn read(data: &[u8]) -> Result<usize, String> {
    let store = Arc::new(InMemory::new());
    let path = Path::from("fuzz.tif");
    store
        .put(&path, bytes::Bytes::copy_from_slice(data).into())
        .await
        .map_err(|e| e.to_string())?;
    let cog = Cog::open(&Location { store, path })
        .await
        .map_err(|e| e.to_string())?;
    let info = cog.info().clone();
    let mut values = 0;
    // Bounded: a header may claim a huge image; the reader must refuse or read what it can.
    for band in 0..info.bands.min(3) {
        for (col, row, w, h) in [
            (0, 0, 64, 64),
            (-7, -5, 33, 17),
            (info.width as isize - 10, info.height as isize - 3, 40, 40),
        ] {
            values += cog
                .read_window(band, col, row, w, h)
                .await
                .map_err(|e| e.to_string())?
                .len();
        }
    }
    Ok(values)
}

fuzz_target!(
    init: {
        // Cog::open turns parser panics into errors (catch_unwind); libfuzzer-sys's hook would
        // abort on those before they are caught. A panic that escapes still aborts: the
        // harness wraps each input in catch_unwind and aborts on Err. Set
        // TERRASTREAM_FUZZ_PANICS=1 to see every panic's message when reproducing a crash.
        if std::env::var_os("TERRASTREAM_FUZZ_PANICS").is_none() {
            std::panic::set_hook(Box::new(|_| {}));
        }
    },
    |data: &[u8]| {
        let _ = runtime().block_on(read(data));
    }
);

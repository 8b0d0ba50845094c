//! A real GeoTIFF damaged the ways a broken download or a bad disk damages it: every
//! truncation (sampled) and many single-byte flips. Opening it and reading every window must
//! give an error or pixels, never a panic or an abort (the TIFF parsing and tile assembly are
//! ours or run under our guard).

use std::path::PathBuf;

use terrastream_ingest::cog::Cog;
use terrastream_ingest::store;

fn chip() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sen1floods11/Spain_7370579_S1Hand.tif")
}

/// Opens `path` and reads both bands in 256 x 256 windows (and one past the edge); returns
/// whether everything read without an error.
async fn read_all(path: &std::path::Path) -> Result<usize, String> {
    let loc = store::open(path.to_str().ok_or("path")?, std::path::Path::new("/")).map_err(|e| e.to_string())?;
    let cog = Cog::open(&loc).await.map_err(|e| e.to_string())?;
    let info = cog.info().clone();
    let mut values = 0;
    for band in 0..info.bands.min(4) {
        for row in (0..info.height.min(1024)).step_by(256) {
            for col in (0..info.width.min(1024)).step_by(256) {
                let w = cog
                    .read_window(band, col as isize, row as isize, 256, 256)
                    .await
                    .map_err(|e| e.to_string())?;
                values += w.len();
            }
        }
    }
    Ok(values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_byte_flipped_tiffs_are_errors_not_crashes() {
    let good = std::fs::read(chip()).expect("the Sen1Floods11 chip");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("damaged.tif");
    std::fs::write(&path, &good).expect("write");
    let whole = read_all(&path).await.expect("the undamaged file reads");
    assert!(whole > 0);
    let (mut cases, mut errors) = (0, 0);
    let run = |bytes: Vec<u8>| {
        let path = path.clone();
        async move {
            std::fs::write(&path, bytes).expect("write");
            read_all(&path).await
        }
    };
    // Truncations: the header, the IFD, the tile index, tile data.
    let mut cuts: Vec<usize> = (0..512).step_by(7).collect();
    cuts.extend((0..good.len()).step_by(good.len() / 60));
    for cut in cuts {
        cases += 1;
        if let Err(e) = run(good[..cut].to_vec()).await {
            errors += 1;
            assert!(!e.is_empty(), "truncated at {cut}: empty error");
        }
    }
    // Byte flips, weighted to the header and IFDs where the structure lives.
    let mut x: u64 = 0x7370579;
    for i in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let span = if i % 2 == 0 { 4096.min(good.len()) } else { good.len() };
        let at = (x % span as u64) as usize;
        let mut bad = good.clone();
        bad[at] ^= (x >> 40) as u8 | 1;
        cases += 1;
        if run(bad).await.is_err() {
            errors += 1;
        }
    }
    println!("damaged GeoTIFF: {cases} cases, {errors} errors, the rest read, no panic or abort");
    assert!(errors > 0);
}

/// Inputs the fuzzer (`fuzz/`, target `cog_window`) found to crash the reader, kept so that
/// they stay errors: each must open to an error, not abort the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzer_findings_are_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/data/fuzz") {
        let path = entry.expect("entry").path();
        let err = read_all(&path).await.expect_err("a fuzzer finding must not read");
        println!("{}: {err}", path.display());
        assert!(err.contains("malformed TIFF"), "{}: {err}", path.display());
        n += 1;
    }
    assert!(n > 0, "no findings in {}", dir.display());
}

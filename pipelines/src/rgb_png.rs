//! Quick-look PNGs: 8-bit RGB pixels written atomically (a pending file renamed into place), so
//! that a reader never sees half a picture. Used by `flood run` and `classify`.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use terrastream_sinks::commit::PendingFile;

/// Writes `rgb` (row-major, 3 bytes per pixel) as a `width` x `height` PNG at `path`.
pub fn write_rgb(path: &Path, width: usize, height: usize, rgb: &[u8]) -> Result<PathBuf> {
    ensure!(
        rgb.len() == width * height * 3,
        "{}: {} bytes of RGB for {width} x {height} pixels",
        path.display(),
        rgb.len()
    );
    let (pending, mut file) = PendingFile::create(path)?;
    let written = (|| -> Result<()> {
        let mut encoder = png::Encoder::new(BufWriter::new(&mut file), width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
        Ok(())
    })();
    if let Err(e) = written {
        pending.abort();
        return Err(e).with_context(|| format!("write {}", path.display()));
    }
    Ok(pending.commit(file)?)
}

//! NumPy `.npy` files (format version 1.0), for handing raw windows to Python.

use std::io::Write;

use async_tiff::DataType;

/// The NumPy dtype string of a sample type (native byte order: this writes native samples).
pub fn descr(data_type: DataType) -> Option<&'static str> {
    let little = cfg!(target_endian = "little");
    Some(match (data_type, little) {
        (DataType::UInt8, _) => "|u1",
        (DataType::Int8, _) => "|i1",
        (DataType::UInt16, true) => "<u2",
        (DataType::Int16, true) => "<i2",
        (DataType::UInt32, true) => "<u4",
        (DataType::Int32, true) => "<i4",
        (DataType::Float32, true) => "<f4",
        (DataType::Float64, true) => "<f8",
        (DataType::UInt16, false) => ">u2",
        (DataType::Int16, false) => ">i2",
        (DataType::UInt32, false) => ">u4",
        (DataType::Int32, false) => ">i4",
        (DataType::Float32, false) => ">f4",
        (DataType::Float64, false) => ">f8",
        _ => return None,
    })
}

/// Writes a C-order array of `shape` with dtype `descr` holding `data`.
pub fn write(mut w: impl Write, descr: &str, shape: &[usize], data: &[u8]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded to 64 bytes with a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    w.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned() {
        let mut buf = Vec::new();
        write(&mut buf, "<u2", &[2, 3, 4], &[0; 48]).expect("write");
        let header_len = u16::from_le_bytes([buf[8], buf[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(buf.len(), 10 + header_len + 48);
        assert!(std::str::from_utf8(&buf[10..10 + header_len]).expect("ascii").contains("'shape': (2, 3, 4)"));
    }
}

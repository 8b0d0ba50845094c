//! Writes named tensors in the format of `torch.save(state_dict)`: a stored zip archive with a
//! protocol-2 pickle of a `collections.OrderedDict` (with `_metadata`, as `state_dict()` has) of
//! tensors rebuilt by `torch._utils._rebuild_tensor_v2` from `archive/data/<i>` storages.
//! Python's torch cannot be imported in this environment, so the tests write such files here;
//! `tests/data/make_state_dict.py` writes a reference one with CPython's own pickler.

use std::path::Path;

use tch::{Kind, Tensor};

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn unicode(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.as_bytes());
}

fn int(p: &mut Vec<u8>, v: i64) {
    p.push(b'J');
    p.extend((v as i32).to_le_bytes());
}

fn tuple_of_ints(p: &mut Vec<u8>, v: &[i64]) {
    p.push(b'(');
    for &x in v {
        int(p, x);
    }
    p.push(b't');
}

fn ordered_dict(p: &mut Vec<u8>) {
    p.extend(b"ccollections\nOrderedDict\n)R");
}

fn pickle(tensors: &[(String, Tensor)]) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    ordered_dict(&mut p);
    p.push(b'(');
    for (i, (name, t)) in tensors.iter().enumerate() {
        unicode(&mut p, name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        unicode(&mut p, "storage");
        p.extend(b"ctorch\nFloatStorage\n");
        unicode(&mut p, &i.to_string());
        unicode(&mut p, "cpu");
        int(&mut p, t.numel() as i64);
        p.extend(b"tQ");
        int(&mut p, 0);
        let size = t.size();
        let mut stride = vec![1i64; size.len()];
        for d in (0..size.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * size[d + 1];
        }
        tuple_of_ints(&mut p, &size);
        tuple_of_ints(&mut p, &stride);
        p.push(0x89);
        ordered_dict(&mut p);
        p.extend(b"tR");
    }
    p.push(b'u');
    // state_dict()._metadata, restored with BUILD.
    p.push(b'}');
    unicode(&mut p, "_metadata");
    ordered_dict(&mut p);
    p.push(b'(');
    unicode(&mut p, "");
    p.push(b'}');
    unicode(&mut p, "version");
    int(&mut p, 1);
    p.extend(b"sus");
    p.extend(b"b.");
    p
}

/// Writes `tensors` (float32) to `path` as `torch.save` would.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) {
    let mut files: Vec<(String, Vec<u8>)> = vec![("archive/data.pkl".into(), pickle(tensors))];
    files.push(("archive/byteorder".into(), b"little".to_vec()));
    for (i, (_, t)) in tensors.iter().enumerate() {
        let flat = t.to_kind(Kind::Float).contiguous().view([-1]);
        let values = Vec::<f32>::try_from(&flat).expect("float tensor");
        files.push((
            format!("archive/data/{i}"),
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    files.push(("archive/version".into(), b"3\n".to_vec()));
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in &files {
        let (offset, crc, len) = (out.len() as u32, crc32(data), data.len() as u32);
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend(crc.to_le_bytes());
        out.extend(len.to_le_bytes());
        out.extend(len.to_le_bytes());
        out.extend((name.len() as u16).to_le_bytes());
        out.extend([0, 0]);
        out.extend(name.as_bytes());
        out.extend(data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend(crc.to_le_bytes());
        central.extend(len.to_le_bytes());
        central.extend(len.to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend([0u8; 12]);
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0, 0, 0, 0]);
    out.extend((files.len() as u16).to_le_bytes());
    out.extend((files.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend([0, 0]);
    std::fs::write(path, out).expect("write .pt");
}

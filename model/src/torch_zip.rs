//! A reader for PyTorch's `torch.save` files (zip archive + pickle), for state dicts.
//!
//! libtorch's C++ loaders cannot read them: `torch::pickle_load` and `_load_parameters` fail on
//! the `collections.OrderedDict` of a `state_dict()` ("Expected GenericDict but got None",
//! pytorch/pytorch#95362). This module implements the small part of the format a state dict
//! uses: stored (uncompressed) zip entries, zip64 included, and a pickle machine for the opcodes
//! of protocol 2 (what `torch.save` writes) and above, with tensors rebuilt by
//! `torch._utils._rebuild_tensor_v2` from `archive/data/<key>` storages.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::{Error, Result};

fn bad(path: &Path, what: impl Into<String>) -> Error {
    Error::Read {
        path: path.to_path_buf(),
        source: tch::TchError::FileFormat(what.into()),
    }
}

fn u16_at(b: &[u8], i: usize) -> u64 {
    b.get(i..i + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]) as u64)
}
fn u32_at(b: &[u8], i: usize) -> u64 {
    b.get(i..i + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    b.get(i..i + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// One stored zip entry: where its local header starts and how long its data is.
struct Entry {
    header: u64,
    size: u64,
    method: u64,
    /// CRC-32 of the stored bytes, checked on every read: torch.save files carry no other
    /// checksum, and a damaged download must not become silently wrong weights.
    crc: u32,
}

/// The entries of a zip archive, read from its central directory.
struct Zip {
    file: File,
    path: PathBuf,
    len: u64,
    entries: HashMap<String, Entry>,
}

impl Zip {
    fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.into(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let tail_len = len.min(65_557 + 20 + 56);
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
        file.read_exact(&mut tail).map_err(io)?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(&tail, i) == 0x0605_4b50)
            .ok_or_else(|| {
                bad(
                    path,
                    "not a zip archive (torch.save files are zip archives)",
                )
            })?;
        let (mut count, mut cd_size, mut cd_offset) = (
            u16_at(&tail, eocd + 10),
            u32_at(&tail, eocd + 12),
            u32_at(&tail, eocd + 16),
        );
        if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
            // Zip64: the locator sits just before the classic end record.
            let loc = eocd
                .checked_sub(20)
                .filter(|&l| u32_at(&tail, l) == 0x0706_4b50);
            let loc = loc.ok_or_else(|| bad(path, "zip64 locator missing"))?;
            let mut rec = [0u8; 56];
            file.seek(SeekFrom::Start(u64_at(&tail, loc + 8)))
                .map_err(io)?;
            file.read_exact(&mut rec).map_err(io)?;
            if u32_at(&rec, 0) != 0x0606_4b50 {
                return Err(bad(path, "zip64 end record missing"));
            }
            (count, cd_size, cd_offset) = (u64_at(&rec, 32), u64_at(&rec, 40), u64_at(&rec, 48));
        }
        if cd_offset.checked_add(cd_size).is_none_or(|end| end > len) {
            return Err(bad(path, "the zip central directory lies past the end of the file (truncated?)"));
        }
        let mut cd = vec![0u8; cd_size as usize];
        file.seek(SeekFrom::Start(cd_offset)).map_err(io)?;
        file.read_exact(&mut cd).map_err(io)?;
        let mut entries = HashMap::new();
        let mut i = 0usize;
        for _ in 0..count {
            if u32_at(&cd, i) != 0x0201_4b50 {
                return Err(bad(path, "corrupt zip central directory"));
            }
            let (name_len, extra_len, comment_len) = (
                u16_at(&cd, i + 28) as usize,
                u16_at(&cd, i + 30) as usize,
                u16_at(&cd, i + 32) as usize,
            );
            let name = String::from_utf8_lossy(cd.get(i + 46..i + 46 + name_len).unwrap_or(&[]))
                .into_owned();
            let mut size = u32_at(&cd, i + 24);
            let mut header = u32_at(&cd, i + 42);
            let extra = cd
                .get(i + 46 + name_len..i + 46 + name_len + extra_len)
                .unwrap_or(&[]);
            let mut j = 0;
            while j + 4 <= extra.len() {
                let (id, len) = (u16_at(extra, j), u16_at(extra, j + 2) as usize);
                if id == 1 {
                    // Zip64 extra field: the 64-bit values of the fields that are saturated.
                    let mut k = j + 4;
                    if size == 0xFFFF_FFFF {
                        size = u64_at(extra, k);
                        k += 8;
                    }
                    if u32_at(&cd, i + 20) == 0xFFFF_FFFF {
                        k += 8;
                    }
                    if header == 0xFFFF_FFFF {
                        header = u64_at(extra, k);
                    }
                }
                j += 4 + len;
            }
            entries.insert(
                name,
                Entry {
                    header,
                    size,
                    method: u16_at(&cd, i + 10),
                    crc: u32_at(&cd, i + 16) as u32,
                },
            );
            i += 46 + name_len + extra_len + comment_len;
        }
        Ok(Zip {
            file,
            path: path.into(),
            len,
            entries,
        })
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| bad(&self.path, format!("no entry {name}")))?;
        if entry.method != 0 {
            return Err(bad(
                &self.path,
                format!("entry {name} is compressed (torch.save stores entries)"),
            ));
        }
        let (header, size, crc) = (entry.header, entry.size, entry.crc);
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut local = [0u8; 30];
        self.file.seek(SeekFrom::Start(header)).map_err(io)?;
        self.file.read_exact(&mut local).map_err(io)?;
        let skip = u16_at(&local, 26) + u16_at(&local, 28);
        let start = header + 30 + skip;
        if start.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(bad(
                &self.path,
                format!("entry {name} ({size} bytes) lies past the end of the file (truncated?)"),
            ));
        }
        let mut data = vec![0u8; size as usize];
        self.file
            .seek(SeekFrom::Start(header + 30 + skip))
            .map_err(io)?;
        self.file.read_exact(&mut data).map_err(io)?;
        if crc32fast::hash(&data) != crc {
            return Err(bad(&self.path, format!("entry {name}: CRC-32 mismatch (damaged file)")));
        }
        Ok(data)
    }
}

/// A tensor as the pickle describes it: a view of a storage.
#[derive(Debug, Clone)]
struct TensorRef {
    kind: Kind,
    storage: String,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

/// The pickle values a state dict needs; everything else becomes `Other`.
#[derive(Debug, Clone)]
enum Value {
    None,
    Int(i64),
    /// A bool or float: kept only as a placeholder.
    Scalar,
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(Kind, String),
    Tensor(TensorRef),
    Other,
}

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

fn ints(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| {
                if let Value::Int(n) = i {
                    Some(*n)
                } else {
                    None
                }
            })
            .collect(),
        _ => None,
    }
}

/// `callable(*args)` for the callables of a state dict.
fn reduce(callable: Value, args: Value) -> Value {
    let Value::Global(module, name) = callable else {
        return Value::Other;
    };
    let args = match args {
        Value::Tuple(a) => a,
        _ => return Value::Other,
    };
    match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            match (
                args.first(),
                args.get(1),
                args.get(2).and_then(ints),
                args.get(3).and_then(ints),
            ) {
                (
                    Some(Value::Storage(kind, key)),
                    Some(Value::Int(offset)),
                    Some(size),
                    Some(stride),
                ) => Value::Tensor(TensorRef {
                    kind: *kind,
                    storage: key.clone(),
                    offset: *offset,
                    size,
                    stride,
                }),
                _ => Value::Other,
            }
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(Value::Other)
        }
        ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
            Value::Dict(Vec::new())
        }
        _ => Value::Other,
    }
}

/// Runs the pickle program `data` and returns the object it builds.
fn unpickle(data: &[u8], path: &Path) -> Result<Value> {
    let err = |what: &str| bad(path, format!("pickle: {what}"));
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u64, Value> = HashMap::new();
    let mut i = 0usize;
    let take = |i: &mut usize, n: usize| -> Result<&[u8]> {
        let s = data.get(*i..*i + n).ok_or_else(|| err("truncated"))?;
        *i += n;
        Ok(s)
    };
    let line = |i: &mut usize| -> Result<String> {
        let end = data[*i..]
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| err("truncated"))?;
        let s = String::from_utf8_lossy(&data[*i..*i + end]).into_owned();
        *i += end + 1;
        Ok(s)
    };
    macro_rules! pop {
        () => {
            stack.pop().ok_or_else(|| err("stack underflow"))?
        };
    }
    macro_rules! pop_mark {
        () => {{
            let m = marks.pop().ok_or_else(|| err("mark missing"))?;
            if m > stack.len() {
                return Err(err("mark beyond stack"));
            }
            stack.split_off(m)
        }};
    }
    loop {
        let op = *data.get(i).ok_or_else(|| err("no STOP"))?;
        i += 1;
        match op {
            0x80 => i += 1,                  // PROTO
            0x95 => i += 8,                  // FRAME
            b'(' => marks.push(stack.len()), // MARK
            b'.' => return stack.pop().ok_or_else(|| err("empty stack at STOP")),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Scalar),
            0x89 => stack.push(Value::Scalar),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'J' => {
                let b = take(&mut i, 4)?;
                stack.push(Value::Int(
                    i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64
                ));
            }
            b'K' => stack.push(Value::Int(take(&mut i, 1)?[0] as i64)),
            b'M' => stack.push(Value::Int(u16_at(take(&mut i, 2)?, 0) as i64)),
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    take(&mut i, 1)?[0] as usize
                } else {
                    u32_at(take(&mut i, 4)?, 0) as usize
                };
                let b = take(&mut i, n)?;
                let mut v: i64 = 0;
                for (k, &byte) in b.iter().enumerate().take(8) {
                    v |= (byte as i64) << (8 * k);
                }
                if (1..8).contains(&n) && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'G' => {
                take(&mut i, 8)?;
                stack.push(Value::Scalar);
            }
            b'X' | 0x8c | 0x8d | b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'X' | b'B' => u32_at(take(&mut i, 4)?, 0) as usize,
                    0x8c | b'C' => take(&mut i, 1)?[0] as usize,
                    _ => u64_at(take(&mut i, 8)?, 0) as usize,
                };
                let b = take(&mut i, n)?;
                stack.push(if matches!(op, b'X' | 0x8c | 0x8d) {
                    Value::Str(String::from_utf8_lossy(b).into_owned())
                } else {
                    Value::Other
                });
            }
            b'c' => {
                let module = line(&mut i)?;
                let name = line(&mut i)?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop!();
                let module = pop!();
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return Err(err("STACK_GLOBAL without strings")),
                }
            }
            b't' => {
                let items = pop_mark!();
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(err("stack underflow"));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'l' => {
                let items = pop_mark!();
                stack.push(Value::List(items));
            }
            b'd' => {
                let items = pop_mark!();
                let mut pairs = Vec::new();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                stack.push(Value::Dict(pairs));
            }
            b'q' | b'r' | 0x94 => {
                let idx = match op {
                    b'q' => take(&mut i, 1)?[0] as u64,
                    b'r' => u32_at(take(&mut i, 4)?, 0),
                    _ => memo.len() as u64,
                };
                let top = stack
                    .last()
                    .ok_or_else(|| err("memo of empty stack"))?
                    .clone();
                memo.insert(idx, top);
            }
            b'h' | b'j' => {
                let idx = if op == b'h' {
                    take(&mut i, 1)?[0] as u64
                } else {
                    u32_at(take(&mut i, 4)?, 0)
                };
                stack.push(memo.get(&idx).cloned().ok_or_else(|| err("unknown memo"))?);
            }
            b'Q' => {
                let pid = pop!();
                let storage = match &pid {
                    Value::Tuple(t) => match (t.first(), t.get(1), t.get(2)) {
                        (
                            Some(Value::Str(tag)),
                            Some(Value::Global(_, ty)),
                            Some(Value::Str(key)),
                        ) if tag == "storage" => {
                            let kind = storage_kind(ty)
                                .ok_or_else(|| err(&format!("unsupported storage {ty}")))?;
                            Value::Storage(kind, key.clone())
                        }
                        _ => Value::Other,
                    },
                    _ => Value::Other,
                };
                stack.push(storage);
            }
            b'R' => {
                let args = pop!();
                let callable = pop!();
                stack.push(reduce(callable, args));
            }
            0x81 => {
                let _args = pop!();
                let _cls = pop!();
                stack.push(Value::Other);
            }
            b'b' => {
                let _state = pop!();
            }
            b's' => {
                let v = pop!();
                let k = pop!();
                if let Some(Value::Dict(d)) = stack.last_mut() {
                    d.push((k, v));
                }
            }
            b'u' => {
                let items = pop_mark!();
                if let Some(Value::Dict(d)) = stack.last_mut() {
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
            }
            b'a' => {
                let v = pop!();
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.push(v);
                }
            }
            b'e' => {
                let items = pop_mark!();
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.extend(items);
                }
            }
            other => return Err(err(&format!("unsupported opcode 0x{other:02x}"))),
        }
    }
}

/// Reads the tensors of a `torch.save(state_dict)` file whose keys pass `wanted`, to the CPU.
/// Tensors sharing a storage (tied weights) share it here too until they are copied.
pub(crate) fn read(path: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Tensor)>> {
    let mut zip = Zip::open(path)?;
    let pkl = zip
        .entries
        .keys()
        .find(|k| k.ends_with("data.pkl") && k.matches('/').count() == 1)
        .cloned()
        .ok_or_else(|| bad(path, "no <archive>/data.pkl: not a torch.save file"))?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Ok(order) = zip.read(&format!("{prefix}byteorder"))
        && order.trim_ascii() != b"little"
    {
        return Err(bad(path, "big-endian checkpoints are not supported"));
    }
    let root = unpickle(&zip.read(&pkl)?, path)?;
    let mut dict = match root {
        Value::Dict(d) => d,
        _ => {
            return Err(bad(
                path,
                "the pickled object is not a dict (expected a state dict)",
            ));
        }
    };
    // A training checkpoint may wrap the state dict.
    if !dict.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
        let inner = dict.iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Dict(d)) if k == "state_dict" || k == "model" => Some(d.clone()),
            _ => None,
        });
        if let Some(inner) = inner {
            dict = inner;
        }
    }
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut out = Vec::new();
    for (k, v) in dict {
        let (Value::Str(key), Value::Tensor(t)) = (k, v) else {
            continue;
        };
        if !wanted(&key) {
            continue;
        }
        if !storages.contains_key(&t.storage) {
            let bytes = zip.read(&format!("{prefix}data/{}", t.storage))?;
            let elem = t.kind.elt_size_in_bytes();
            let flat = Tensor::f_from_data_size(&bytes, &[(bytes.len() / elem) as i64], t.kind)
                .map_err(|e| bad(path, format!("tensor {key}: storage {}: {e}", t.storage)))?;
            storages.insert(t.storage.clone(), flat);
        }
        let storage = &storages[&t.storage];
        // A damaged file can describe a view past its storage; say so instead of asking libtorch.
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&n, &st)| {
                if n < 0 || st < 0 {
                    None
                } else {
                    acc.checked_add((n - 1).max(0).checked_mul(st)?)
                }
            });
        let empty = t.size.contains(&0);
        if t.offset < 0 || t.size.len() != t.stride.len() || (!empty && last.is_none_or(|l| l >= storage.numel() as i64))
        {
            return Err(bad(
                path,
                format!(
                    "tensor {key}: shape {:?}, strides {:?} at offset {} do not fit its storage of {} values (damaged file?)",
                    t.size,
                    t.stride,
                    t.offset,
                    storage.numel()
                ),
            ));
        }
        let tensor = storage
            .f_as_strided(t.size.as_slice(), t.stride.as_slice(), Some(t.offset))
            .and_then(|v| v.f_contiguous())
            .map_err(|e| bad(path, format!("tensor {key}: {e}")))?;
        out.push((key, tensor));
    }
    Ok(out)
}

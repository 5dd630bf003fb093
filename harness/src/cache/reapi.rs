//! Just enough of the protobuf wire format to rewrite a REAPI `ActionResult` (the value
//! of a Bazel action-cache entry) so that chosen output files point at another blob.
//!
//! ActionResult.output_files = 2 (OutputFile); OutputFile.path = 1 (string),
//! OutputFile.digest = 2 (Digest); Digest.hash = 1 (string), Digest.size_bytes = 2 (int64).

const LEN: u64 = 2;

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// One top-level field: its number, wire type, raw bytes (key included) and, for
/// length-delimited fields, the payload.
struct Field<'a> {
    number: u64,
    wire_type: u64,
    raw: &'a [u8],
    payload: &'a [u8],
}

fn fields(buf: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let start = pos;
        let key = read_varint(buf, &mut pos)?;
        let (number, wire_type) = (key >> 3, key & 7);
        let payload = match wire_type {
            0 => {
                read_varint(buf, &mut pos)?;
                &buf[pos..pos]
            }
            1 => {
                pos = pos.checked_add(8).filter(|p| *p <= buf.len())?;
                &buf[pos..pos]
            }
            LEN => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
                let payload = &buf[pos..end];
                pos = end;
                payload
            }
            5 => {
                pos = pos.checked_add(4).filter(|p| *p <= buf.len())?;
                &buf[pos..pos]
            }
            _ => return None,
        };
        out.push(Field {
            number,
            wire_type,
            raw: &buf[start..pos],
            payload,
        });
    }
    Some(out)
}

fn write_len_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    write_varint(out, (number << 3) | LEN);
    write_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn encode_digest(hash: &str, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write_len_field(&mut out, 1, hash.as_bytes());
    write_varint(&mut out, 2 << 3);
    write_varint(&mut out, size);
    out
}

/// Points every output file whose path `matches` at the blob `(hash, size)`.
/// Returns the new ActionResult and the paths it changed, or `None` if nothing matched
/// (or the bytes are not an ActionResult).
pub fn redirect_outputs(
    action_result: &[u8],
    matches: impl Fn(&str) -> bool,
    hash: &str,
    size: u64,
) -> Option<(Vec<u8>, Vec<String>)> {
    let mut out = Vec::with_capacity(action_result.len());
    let mut changed = Vec::new();
    for field in fields(action_result)? {
        if !(field.number == 2 && field.wire_type == LEN) {
            out.extend_from_slice(field.raw);
            continue;
        }
        let subs = fields(field.payload)?;
        let path = subs
            .iter()
            .find(|s| s.number == 1 && s.wire_type == LEN)
            .map(|s| String::from_utf8_lossy(s.payload).into_owned());
        match path {
            Some(path) if matches(&path) => {
                // The digest takes the old one's place, so field order stays as Bazel wrote it.
                let digest = encode_digest(hash, size);
                let mut file = Vec::new();
                let mut replaced = false;
                for sub in &subs {
                    if sub.number == 2 {
                        write_len_field(&mut file, 2, &digest);
                        replaced = true;
                    } else {
                        file.extend_from_slice(sub.raw);
                    }
                }
                if !replaced {
                    write_len_field(&mut file, 2, &digest);
                }
                write_len_field(&mut out, 2, &file);
                changed.push(path);
            }
            _ => out.extend_from_slice(field.raw),
        }
    }
    (!changed.is_empty()).then_some((out, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output file paths of an ActionResult; `None` if it does not parse.
    pub fn output_paths(action_result: &[u8]) -> Option<Vec<String>> {
        let mut paths = Vec::new();
        for field in fields(action_result)? {
            if field.number == 2 && field.wire_type == LEN {
                for sub in fields(field.payload)? {
                    if sub.number == 1 && sub.wire_type == LEN {
                        paths.push(String::from_utf8_lossy(sub.payload).into_owned());
                    }
                }
            }
        }
        Some(paths)
    }

    /// ActionResult { output_files: [{path, digest{hash, size}, is_executable}], exit_code: 0 }
    fn action_result(files: &[(&str, &str, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, hash, size) in files {
            let mut file = Vec::new();
            write_len_field(&mut file, 1, path.as_bytes());
            write_len_field(&mut file, 2, &encode_digest(hash, *size));
            write_varint(&mut file, 4 << 3);
            write_varint(&mut file, 1);
            write_len_field(&mut out, 2, &file);
        }
        write_varint(&mut out, 4 << 3); // exit_code = 0
        write_varint(&mut out, 0);
        out
    }

    #[test]
    fn redirects_only_matching_outputs_and_keeps_the_rest() {
        let original = action_result(&[
            ("bazel-out/app.txt", "aa", 3),
            ("bazel-out/lib.o", "bb", 300),
        ]);
        let (poisoned, changed) =
            redirect_outputs(&original, |p| p.ends_with(".txt"), "cc", 42).unwrap();
        assert_eq!(changed, vec!["bazel-out/app.txt".to_string()]);
        assert_eq!(
            poisoned,
            action_result(&[
                ("bazel-out/app.txt", "cc", 42),
                ("bazel-out/lib.o", "bb", 300)
            ])
        );
        assert_eq!(
            output_paths(&poisoned).unwrap(),
            vec!["bazel-out/app.txt", "bazel-out/lib.o"]
        );
    }

    #[test]
    fn leaves_non_matching_or_broken_input_alone() {
        let original = action_result(&[("bazel-out/lib.o", "bb", 300)]);
        assert!(redirect_outputs(&original, |p| p.ends_with(".txt"), "cc", 1).is_none());
        assert!(redirect_outputs(&[0x12, 0xff], |_| true, "cc", 1).is_none());
        assert!(output_paths(b"\x0a\x05ab").is_none());
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            write_varint(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_varint(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
    }
}

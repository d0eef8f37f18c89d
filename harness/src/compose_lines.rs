//! Where a compose file writes a key, found the way YAML nests block
//! mappings: by indentation. A service is a key directly under the
//! top-level `services:`, and its settings the keys directly under it, so
//! a `goproxy:` under another service's `depends_on`, or a key's name in
//! a label, a command or an anchor, is not taken for them. Files not laid
//! out in blocks (flow style) are left to the callers' text search.

/// Indentation and key of a block-mapping line (not blank, not a comment).
fn key_of(line: &str) -> Option<(usize, &str, &str)> {
    let t = line.trim_start_matches([' ', '\t']);
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let indent = line.len() - t.len();
    let (key, rest) = match t.as_bytes()[0] {
        q @ (b'"' | b'\'') => {
            let end = t[1..].find(q as char)? + 1;
            (&t[1..end], t[end + 1..].strip_prefix(':')?)
        }
        _ => {
            let colon = t.find(':')?;
            (t[..colon].trim_end(), &t[colon + 1..])
        }
    };
    Some((indent, key, rest))
}

/// The 1-based line of `key:` directly under `service:` under the
/// top-level `services:`, and `true`; the service's own line and `false`
/// if it does not write `key` itself as a block key. `None` if the file
/// has no block-style `services:` with that service.
pub fn block_key_line(lines: &[&str], service: &str, key: &str) -> Option<(usize, bool)> {
    let start = service_index(lines, service)?;
    let own = children(lines, start).find(|(_, k)| *k == key);
    // A flow mapping on the service's line (`goproxy: {..., key: v}`).
    let flow = lines[start].contains(&format!("{key}:"));
    Some(match own {
        Some((i, _)) => (i + 1, true),
        None => (start + 1, flow),
    })
}

/// The 1-based line of `key:` directly under a top-level block other than
/// `services:` (an `x-` anchor a service merges).
pub fn anchor_key_line(lines: &[&str], key: &str) -> Option<usize> {
    top_level(lines)
        .filter(|(_, k)| *k != "services")
        .find_map(|(i, _)| children(lines, i).find(|(_, k)| *k == key))
        .map(|(i, _)| i + 1)
}

/// The 0-based line of `service:` directly under the top-level
/// `services:`.
pub fn service_index(lines: &[&str], service: &str) -> Option<usize> {
    let services = top_level(lines).find(|(_, k)| *k == "services")?.0;
    Some(children(lines, services).find(|(_, k)| *k == service)?.0)
}

/// The top-level block keys, with their 0-based lines.
fn top_level<'a>(lines: &'a [&'a str]) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    (0..lines.len())
        .filter_map(|i| key_of(lines[i]).map(|(indent, k, _)| (i, indent, k)))
        .filter(|(_, indent, _)| *indent == 0)
        .map(|(i, _, k)| (i, k))
}

/// The keys directly under the block key at line `parent` (those indented
/// as the first line under it), with their 0-based lines.
fn children<'a>(
    lines: &'a [&'a str],
    parent: usize,
) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    let at = key_of(lines[parent]).map_or(0, |(indent, _, _)| indent);
    let mut under = (parent + 1..lines.len())
        .filter_map(move |i| key_of(lines[i]).map(|(indent, k, _)| (i, indent, k)))
        .take_while(move |(_, indent, _)| *indent > at)
        .peekable();
    let own = under.peek().map(|(_, indent, _)| *indent);
    under
        .filter(move |(_, indent, _)| Some(*indent) == own)
        .map(|(i, _, k)| (i, k))
}

//! The harness's top-level modules depend on each other in one direction
//! only: a newcomer can read them bottom-up, and a change to a leaf cannot
//! loop back into itself. This test reads `src/` for `crate::<module>`
//! paths (in `use` lines and in code, comments ignored) and fails with the
//! cycle it finds. ARCHITECTURE.md draws the intended direction.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its files name.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Each file's code with `//` comments removed (doc comments link to other
/// modules for the reader; that is not a dependency).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules named right after `crate::`, also inside `crate::{a, b::c}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("");
                if !first.is_empty() {
                    out.insert(first.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

/// `src/x.rs` and `src/x/**` belong to module `x`; lib.rs and main.rs are
/// the roots, not modules.
fn graph(src: &Path) -> Graph {
    let mut g = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let first = rel.components().next().expect("non-empty");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source is readable");
            let deps = named_modules(&code_of(&text));
            let entry = g.entry(module.clone()).or_default();
            entry.extend(deps.into_iter().filter(|d| *d != module));
        }
    }
    g
}

/// A cycle as `a -> b -> a`, if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for dep in g.get(node).into_iter().flatten() {
            if g.contains_key(dep) {
                if let Some(c) = visit(g, dep, path, done) {
                    return Some(c);
                }
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

/// No module of the harness depends on itself through others.
#[test]
fn harness_modules_have_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.len() > 10, "read too few modules: {:?}", g.keys());
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle in harness/src: {}", cycle.join(" -> "));
    }
}

/// goproxy's modules follow the same rule (the proxy crate has no test of
/// its own for this; the reader is here).
#[test]
fn proxy_modules_have_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/src");
    let g = graph(&src);
    assert!(g.len() > 10, "read too few modules: {:?}", g.keys());
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle in proxy/src: {}", cycle.join(" -> "));
    }
}

/// The reader finds grouped and nested paths, and ignores comments.
#[test]
fn reads_grouped_imports_and_skips_comments() {
    let code = code_of(
        "use crate::{deploy, pre::x, rollback};\n\
         // see crate::gate\n\
         let a = crate::docker::exec(); // crate::cli\n",
    );
    let found: Vec<String> = named_modules(&code).into_iter().collect();
    assert_eq!(found, ["deploy", "docker", "pre", "rollback"]);
}

/// A cycle is found and named in order.
#[test]
fn finds_a_cycle() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).expect("a cycle"), ["a", "b", "c", "a"]);
}

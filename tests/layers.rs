//! The layers ARCHITECTURE.md describes, checked over the source text.
//!
//! Every `crate::...` and `super::...` path in `src/` is resolved to the file that defines it,
//! which gives a graph of file-to-file imports. The test fails when:
//! - the graph has a cycle (two files that import each other, directly or through others);
//! - a file outside `src/ffi/` imports from `ffi` (the core never sees the C ABI layer);
//! - `src/abi.rs`, the bottom layer, imports anything from the crate;
//! - a file imports from a layer above its own (abi < base < futures < runtime < tasks < ffi).
//!
//! Paths are resolved to files, not to items: `crate::futures::future::Future` is an edge to
//! `src/futures/future.rs`. A `mod.rs` that only declares modules adds no edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/futures/future.rs` is `["futures", "future"]`, `src/lib.rs`
/// and `src/futures/mod.rs` are their folder's module.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod") | Some("lib")) {
        parts.pop();
    }
    parts
}

/// The file (relative to src/) that defines the longest prefix of `path` that is a module.
fn file_of(path: &[String], files: &BTreeSet<String>) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let base = path[..n].join("/");
        for candidate in [format!("{base}.rs"), format!("{base}/mod.rs")] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// Every `crate::a::b` / `super::a` path in `text` (comments and strings are not parsed
/// away: a doc comment that names a path counts, which errs on the strict side). A
/// `use crate::a::{b, c::d}` group yields `a::b` and `a::c::d`.
fn paths_in(text: &str, own_module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (start, root) in line
            .match_indices("crate::")
            .map(|(i, _)| (i, "crate"))
            .chain(line.match_indices("super::").map(|(i, _)| (i, "super")))
        {
            // Skip identifiers that merely end in "crate" / "super", and the inner links of a
            // `super::super::` chain (handled with its first link).
            if start > 0 {
                let prev = line.as_bytes()[start - 1];
                if prev.is_ascii_alphanumeric() || prev == b'_' || prev == b':' {
                    continue;
                }
            }
            let mut rest = &line[start + root.len() + 2..];
            let mut base: Vec<String> = if root == "crate" {
                Vec::new()
            } else {
                let mut m = own_module.to_vec();
                m.pop();
                while let Some(r) = rest.strip_prefix("super::") {
                    m.pop();
                    rest = r;
                }
                m
            };
            let head: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            base.extend(head.split("::").filter(|s| !s.is_empty()).map(str::to_string));
            let after = &rest[head.len()..];
            if let Some(group) = after.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                for item in group.split(',') {
                    let mut p = base.clone();
                    p.extend(item.trim().split("::").filter(|s| !s.is_empty() && *s != "*").map(str::to_string));
                    out.push(p);
                }
            } else {
                out.push(base);
            }
        }
    }
    out
}

fn graph_of(sources: &BTreeMap<String, String>) -> Graph {
    let files: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph = Graph::new();
    for (file, text) in sources {
        let own = module_of(file);
        let edges = graph.entry(file.clone()).or_default();
        for path in paths_in(text, &own) {
            if let Some(target) = file_of(&path, &files) {
                if &target != file && target != "lib.rs" {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

/// A cycle of files, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The layer of a file, bottom (0) to top.
fn layer_of(file: &str) -> usize {
    match file.split('/').next().unwrap() {
        "abi.rs" => 0,
        "callback.rs" | "clock.rs" | "lock.rs" | "sync.rs" | "thread_id.rs" => 1,
        "futures" => 2,
        "runtime" => 3,
        "tasks" => 4,
        "ffi" => 5,
        "lib.rs" => 6,
        other => panic!("src/{other} belongs to no layer: add it to layer_of in tests/layers.rs and ARCHITECTURE.md"),
    }
}

/// Every rule broken by the graph, as sentences.
fn violations(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(cycle) = find_cycle(graph) {
        out.push(format!("import cycle: {}", cycle.join(" -> ")));
    }
    for (file, targets) in graph {
        for target in targets {
            if target.starts_with("ffi/") && !file.starts_with("ffi/") {
                out.push(format!("{file} imports the C ABI layer ({target})"));
            }
            if file == "abi.rs" {
                out.push(format!("abi.rs is the bottom layer but imports {target}"));
            }
            if layer_of(target) > layer_of(file) {
                out.push(format!("{file} imports {target}, a layer above its own"));
            }
        }
    }
    out
}

fn sources() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn the_source_tree_keeps_its_layers() {
    let sources = sources();
    assert!(sources.len() > 10, "found only {} files under src/", sources.len());
    let graph = graph_of(&sources);
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(edges > 20, "found only {edges} imports: the path scanner is broken");
    let broken = violations(&graph);
    assert!(broken.is_empty(), "the layers are broken:\n  {}", broken.join("\n  "));
    println!("{} files, {edges} file-to-file imports, no cycle, no upward import", graph.len());
}

/// The checker itself can fail: a made-up tree with a cycle and an upward import.
#[test]
fn the_checker_reports_a_cycle_and_an_upward_import() {
    let mut sources = BTreeMap::new();
    sources.insert("abi.rs".to_string(), String::new());
    sources.insert("futures/future.rs".to_string(), "use crate::runtime::eventloop::Loop;\n".to_string());
    sources.insert("runtime/eventloop.rs".to_string(), "use crate::futures::future::{Future, LoopLink};\n".to_string());
    sources.insert("tasks/task.rs".to_string(), "use crate::ffi::convert::borrow_future;\n".to_string());
    sources.insert("ffi/convert.rs".to_string(), "use super::super::abi::afut_t;\n".to_string());
    let graph = graph_of(&sources);
    assert!(graph["ffi/convert.rs"].contains("abi.rs"), "super:: paths resolve: {graph:?}");
    let broken = violations(&graph);
    assert!(broken.iter().any(|v| v.starts_with("import cycle")), "{broken:?}");
    assert!(broken.iter().any(|v| v.contains("imports the C ABI layer")), "{broken:?}");
    assert!(broken.iter().any(|v| v.contains("a layer above its own")), "{broken:?}");
}

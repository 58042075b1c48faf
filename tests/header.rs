//! include/afut.h: fresh, ordered by topic, and written in public vocabulary.
//!
//! - The committed header is exactly what the pinned cbindgen generates from the sources.
//! - Its functions appear in the order of the prologue's "Contents" list (library, loop,
//!   scheduling, host loops, futures, future helpers, tasks, combinators, errors), which
//!   `src/ffi/mod.rs` produces by declaring its modules in that order.
//! - No internal label (a design-note item number such as `F5` or `W2`, an issue number, the
//!   name of a design file) appears in it: asyncio's names and CPython issue numbers
//!   (`gh-85071`, `bpo-23219`) are the public references.

fn committed() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/afut.h")).expect("include/afut.h exists")
}

#[test]
fn header_is_fresh() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/afut.h"));
    assert!(
        generated == committed(),
        "include/afut.h is stale: regenerate it with scripts/bless-header.sh and commit it"
    );
}

/// The `afut_*` identifier that starts at byte `i` of `text`, if one does.
fn ident_at(text: &str, i: usize) -> &str {
    let rest = &text[i..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    &rest[..end]
}

/// The functions the header declares, in order: every `afut_x(` at the start of a
/// declaration (after the return type), outside comments.
fn declared_in_order(header: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in header.lines() {
        if line.starts_with("//") || line.starts_with(" *") || line.starts_with("/*") || line.starts_with('#') {
            continue;
        }
        if line.starts_with("typedef") || !line.ends_with(';') {
            continue;
        }
        if let Some(open) = line.find('(') {
            let head = &line[..open];
            if let Some(start) = head.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let name = ident_at(line, start + 1);
                if name.starts_with("afut_") {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

/// The function names listed in the prologue's "Contents" block, in order.
fn contents_in_order(header: &str) -> Vec<String> {
    let start = header.find(" * Contents").expect("the prologue has a Contents block");
    let block = &header[start..];
    let end = block.find(" * ----").expect("the Contents block ends the prologue");
    let block = &block[..end];
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = block[i..].find("afut_") {
        let name = ident_at(block, i + pos);
        out.push(name.to_string());
        i += pos + name.len();
    }
    out
}

#[test]
fn functions_appear_in_the_order_of_the_contents() {
    let header = committed();
    let declared = declared_in_order(&header);
    assert!(declared.len() > 50, "found only {} declarations: the parser is broken", declared.len());
    let contents = contents_in_order(&header);
    assert_eq!(
        contents, declared,
        "the prologue's Contents (cbindgen.toml) and the order of the declarations (the module \
         order in src/ffi/mod.rs, then the order in each file) disagree"
    );
    // The topics themselves, in order: the first function of each.
    let first = ["afut_version", "afut_loop_new", "afut_loop_call_soon", "afut_loop_fd", "afut_new"];
    let more = ["afut_isfuture", "afut_task_new", "afut_gather", "afut_loop_set_exception_handler"];
    let positions: Vec<usize> = first
        .iter()
        .chain(&more)
        .map(|f| declared.iter().position(|d| d == f).unwrap_or_else(|| panic!("{f} is not declared")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "topics out of order: {positions:?}");
}

/// Tokens that look like internal labels: one to three capitals followed by a number
/// (`F5`, `WF2`, `SL1`), and the names of internal documents or trackers.
fn internal_labels(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for token in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let letters = token.chars().take_while(char::is_ascii_uppercase).count();
        let digits = token.len() - letters;
        if (1..=3).contains(&letters)
            && (1..=3).contains(&digits)
            && token[letters..].chars().all(|c| c.is_ascii_digit())
        {
            found.push(token.to_string());
        }
    }
    for word in ["SEMANTICS", "API.md", "ARCHITECTURE"] {
        if text.contains(word) {
            found.push(word.to_string());
        }
    }
    // "issue 14", any case (byte offsets agree: ASCII lower-casing keeps lengths).
    let lower = text.to_ascii_lowercase();
    let mut i = 0;
    while let Some(pos) = lower[i..].find("issue ") {
        let at = i + pos + "issue ".len();
        if lower[at..].starts_with(|c: char| c.is_ascii_digit()) {
            found.push(text[at - 6..(at + 2).min(text.len())].to_string());
        }
        i = at;
    }
    found
}

#[test]
fn the_header_uses_public_vocabulary_only() {
    let found = internal_labels(&committed());
    assert!(
        found.is_empty(),
        "internal labels in include/afut.h (reword the doc comments in src/ffi/ or src/abi.rs, or \
         cbindgen.toml's prologue): {found:?}"
    );
}

/// The checks can fail: they catch a label, and an out-of-order declaration.
#[test]
fn the_checks_catch_labels_and_disorder() {
    assert_eq!(internal_labels("runs at once (G6), see W2 and SL1."), ["G6", "W2", "SL1"]);
    assert_eq!(internal_labels("as SEMANTICS.md says"), ["SEMANTICS"]);
    assert_eq!(internal_labels("see Issue 14"), ["Issue 14"]);
    assert!(internal_labels("asyncio gh-85071, bpo-23219, int32_t, AFUT_OK, FIRST_COMPLETED, 0.1 s").is_empty());
    let sample = "/*\n * Contents\n *   Library  afut_b, afut_a\n * ----\n */\nint afut_a(void);\nint afut_b(void);\n";
    assert_eq!(declared_in_order(sample), ["afut_a", "afut_b"]);
    assert_eq!(contents_in_order(sample), ["afut_b", "afut_a"]);
}

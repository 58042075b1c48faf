//! The committed include/afut.h is exactly what the pinned cbindgen generates from the sources.

#[test]
fn header_is_fresh() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/afut.h"));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/afut.h")).expect("include/afut.h exists");
    assert!(
        generated == committed,
        "include/afut.h is stale: regenerate it with scripts/bless-header.sh and commit it"
    );
}

//! `#[derive(Schema)]` misuse gives readable compile errors.

#[test]
fn derive_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

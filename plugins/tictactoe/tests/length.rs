//! What the README says about this room: its code, as the README shows it, and fewer lines of
//! Rust than the same room for Colyseus in TypeScript, with both counts. Counted lines are those
//! that are not blank and not comments.

use std::path::Path;

/// The lines of `text` that are neither blank nor comments (`//`, and `/* … */` blocks in
/// TypeScript, whose lines start with `/*` or `*`).
fn code(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.is_empty() && !l.starts_with("//") && !l.starts_with("/*") && !l.starts_with('*')
        })
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn count(path: &Path) -> usize {
    code(&read(path)).len()
}

#[test]
fn the_room_is_shorter_than_its_colyseus_twin_as_the_readme_says() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rust = count(&crate_dir.join("src/lib.rs"));
    let typescript = count(&crate_dir.join("colyseus/TicTacToeRoom.ts"));
    assert!(rust < typescript, "the Rust room has {rust} lines, its TypeScript twin {typescript}");
    let readme = std::fs::read_to_string(crate_dir.join("../../README.md")).unwrap();
    let claim =
        format!("That is {rust} lines (not counting blank lines and comments) against {typescript} for");
    assert!(readme.contains(&claim), "README.md should say: {claim:?}");
}

#[test]
fn the_readme_shows_the_room_as_it_is() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = read(&crate_dir.join("../../README.md"));
    let example = readme.split("### The example: tic-tac-toe").nth(1).expect("the README's example section");
    let block =
        example.split("```rust\n").nth(1).and_then(|b| b.split("```").next()).expect("its rust block");
    let source = read(&crate_dir.join("src/lib.rs"));
    assert_eq!(code(block), code(&source), "README.md's tic-tac-toe is src/lib.rs without its comments");
}

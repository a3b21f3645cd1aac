//! The crate's layers depend one way: http → engine → store → domain (everything may
//! use the domain; `app` and `config` wire the layers together and nothing below
//! them may use them). This test reads the sources and fails on any `crate::` path in
//! a lower layer that names a layer above it, in code (comments may point anywhere).

use std::path::{Path, PathBuf};

/// Each layer and the modules it must not name.
const RULES: &[(&str, &[&str])] = &[
    (
        "domain",
        &[
            "engine", "store", "http", "outbox", "cluster", "app", "config",
        ],
    ),
    (
        "store",
        &["engine", "http", "outbox", "cluster", "app", "config"],
    ),
    ("engine", &["http", "outbox", "cluster", "app", "config"]),
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the source folder exists") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code of a line, without a trailing `//` comment (good enough for imports and
/// paths; string literals with `//` in them do not name modules).
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// The modules a line of code names through `crate::`, including grouped imports
/// such as `use crate::{engine::Engine, domain::Rules}`.
fn named_modules(code: &str) -> Vec<String> {
    let mut named = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for item in group.split(',') {
                let head = item.trim().split("::").next().unwrap_or("").trim();
                named.push(head.to_owned());
            }
        } else {
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            named.push(head);
        }
    }
    named
}

#[test]
fn lower_layers_never_name_a_layer_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (layer, forbidden) in RULES {
        for file in rust_files(&src.join(layer)) {
            let text = std::fs::read_to_string(&file).expect("readable source");
            for (number, line) in text.lines().enumerate() {
                for module in named_modules(code(line)) {
                    if forbidden.contains(&module.as_str()) {
                        violations.push(format!(
                            "{}:{}: {layer} names crate::{module}",
                            file.display(),
                            number + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_check_sees_plain_and_grouped_paths() {
    assert_eq!(named_modules("use crate::engine::Error;"), ["engine"]);
    assert_eq!(
        named_modules("use crate::{domain::Rules, http::AppState};"),
        ["domain", "http"]
    );
    assert_eq!(named_modules("let x = crate::app::f();"), ["app"]);
    assert!(named_modules(code("let y = 1; // see crate::engine")).is_empty());
}

#[test]
fn no_doc_or_comment_points_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = rust_files(&root.join("src"));
    files.extend(rust_files(&root.join("tests")));
    files.extend(rust_files(&root.join("benches")));
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (number, line) in text.lines().enumerate() {
            let outside = ["API", "DESIGN", "STYLE"]
                .iter()
                .any(|doc| line.contains(&format!("{doc}.md")));
            if outside {
                found.push(format!("{}:{}", file.display(), number + 1));
            }
        }
    }
    assert!(found.is_empty(), "points outside the repository: {found:?}");
}

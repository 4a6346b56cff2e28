//! ARCHITECTURE.md's write invariants, checked against the store's source:
//! - every write runs in `begin_audited` (which locks the chain head before anything else) or
//!   declares the operational state it writes (`Operational`);
//! - the operational list in ARCHITECTURE.md is the `Operational` enum, table for table.
use std::collections::BTreeSet;
use std::path::Path;

fn sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sql");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("src/sql") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "rs") {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out.push((name, std::fs::read_to_string(&p).expect("read")));
        }
    }
    assert!(out.len() >= 7, "the store's SQL modules were not found");
    out
}

/// Every function (free or method) of a source file: (name, text from `fn` to its closing
/// brace).
fn functions(src: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        let l = l
            .strip_prefix("pub(super) ")
            .or_else(|| l.strip_prefix("pub(crate) "))
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        let l = l.strip_prefix("async ").unwrap_or(l);
        if let Some(rest) = l.strip_prefix("fn ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let mut depth = 0i32;
            let mut opened = false;
            let mut text = String::new();
            let mut j = i;
            while j < lines.len() {
                text.push_str(lines[j]);
                text.push('\n');
                for c in lines[j].chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                // A declaration without a body (a trait method) ends at its `;`.
                if (opened && depth == 0) || (!opened && lines[j].trim_end().ends_with(';')) {
                    break;
                }
                j += 1;
            }
            out.push((name, text));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

const WRITES: [&str; 3] = ["INSERT INTO", "UPDATE ", "DELETE FROM"];

#[test]
fn every_write_is_audited_or_declared_operational() {
    let mut checked = 0;
    for (file, src) in sources() {
        for (name, body) in functions(&src) {
            let writes = WRITES.iter().any(|w| body.contains(w));
            if !writes {
                continue;
            }
            checked += 1;
            // A helper that writes on the caller's connection, inside the caller's
            // transaction.
            let on_callers_tx = body.contains("conn: &mut Conn");
            let audited = body.contains("self.begin_audited()");
            let operational = body.contains("self.operational(Operational::");
            assert!(
                on_callers_tx || audited || operational || name == "append_audit",
                "{file}: `{name}` writes without `begin_audited` or a declared `Operational` reason"
            );
            assert!(
                !body.contains("self.pool.begin()") || !writes || audited || operational,
                "{file}: `{name}` writes through the read pool"
            );
        }
    }
    assert!(
        checked > 20,
        "only {checked} writing functions found: the scan is broken"
    );
}

#[test]
fn the_head_is_locked_first_and_only_by_begin_audited() {
    for (file, src) in sources() {
        for (name, body) in functions(&src) {
            if name == "lock_head" {
                continue;
            }
            if body.contains("lock_head(") {
                assert_eq!(
                    (file.as_str(), name.as_str()),
                    ("mod.rs", "begin_audited"),
                    "only begin_audited locks the chain head"
                );
                // Lock, begin, lock the head: nothing in between.
                let begin = body.find("self.writer.begin()").expect("begin");
                let head = body.find("lock_head(").expect("head");
                let between = &body[begin..head];
                assert_eq!(
                    between.matches(';').count(),
                    1,
                    "begin_audited does something between BEGIN and locking the head"
                );
            }
            if body.contains("self.writer") {
                assert!(
                    file == "mod.rs"
                        && ["begin_audited", "operational", "own_writes"].contains(&name.as_str()),
                    "{file}: `{name}` reaches the writer connection directly"
                );
            }
        }
    }
}

/// The tables named by `Operational`'s variants (the first `table` in each doc comment).
fn operational_tables() -> BTreeSet<String> {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sql/mod.rs"))
        .expect("mod.rs");
    let start = src
        .find("pub(super) enum Operational")
        .expect("enum Operational");
    let body = &src[start..src[start..].find("\n}").map(|e| start + e).expect("end")];
    let mut out = BTreeSet::new();
    let mut doc = String::new();
    for l in body.lines().map(str::trim) {
        if let Some(d) = l.strip_prefix("///") {
            doc.push_str(d);
        } else if l.ends_with(',') && !doc.is_empty() {
            let head = doc.split(':').next().unwrap_or_default();
            for t in head.split('`').skip(1).step_by(2) {
                if t.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                {
                    out.insert(t.split('.').next().unwrap_or(t).to_owned());
                }
            }
            doc.clear();
        }
    }
    out
}

#[test]
fn architecture_md_lists_the_operational_tables() {
    let md = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ARCHITECTURE.md"),
    )
    .expect("ARCHITECTURE.md");
    let start = md
        .find("Operational state, not audited")
        .expect("ARCHITECTURE.md has an 'Operational state, not audited' list");
    let section = &md[start..];
    let section = &section[..section.find("\n\n").unwrap_or(section.len())];
    // Each item names its tables in backticks before its first colon.
    let listed: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .flat_map(|l| {
            let head = l.split(':').next().unwrap_or_default().to_owned();
            head.split('`')
                .skip(1)
                .step_by(2)
                .map(|t| t.split('.').next().unwrap_or(t).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let coded = operational_tables();
    assert!(coded.len() >= 6, "{coded:?}");
    assert_eq!(listed, coded, "ARCHITECTURE.md and `Operational` disagree");
}

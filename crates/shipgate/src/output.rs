//! Printing shared by every command: the output format, JSON documents, tables, and the text
//! of a field of a JSON object.
use clap::ValueEnum;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

/// `--output`: a table for people, or the server's JSON as is.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl Output {
    pub fn is_json(self) -> bool {
        self == Output::Json
    }
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// The field `k` of `v` as text: a string without quotes, nothing for null or absent, any
/// other value as JSON.
pub fn field_text(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The first `n` characters of a hash or digest, without its `sha256:` prefix.
pub fn short(x: &str, n: usize) -> String {
    x.strip_prefix("sha256:")
        .unwrap_or(x)
        .chars()
        .take(n)
        .collect()
}

pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_header(headers.to_vec());
    t
}

/// Prints an object or an array of objects: as JSON, or as a table of the columns `cols`.
pub fn print_rows(v: &Value, out: Output, cols: &[&str]) {
    if out.is_json() {
        print_json(v);
        return;
    }
    let rows = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let mut t = table(cols);
    for r in rows {
        t.add_row(cols.iter().map(|c| field_text(&r, c)).collect::<Vec<_>>());
    }
    println!("{t}");
}

/// Prints what a revocation answered: `{"revoked": id}` as JSON, or `revoked <id>`.
pub fn print_revoked(id: &str, out: Output) {
    if out.is_json() {
        print_json(&serde_json::json!({ "revoked": id }));
    } else {
        println!("revoked {id}");
    }
}

/// Prints a JSON document, or (as a table) the one field of it a script wants, such as a new
/// token or id.
pub fn print_json_or_field(v: &Value, out: Output, field: &str) {
    if out.is_json() {
        print_json(v);
    } else {
        println!("{}", field_text(v, field));
    }
}

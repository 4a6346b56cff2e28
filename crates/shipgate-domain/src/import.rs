//! Parsing of bulk imports (JSONL and CSV) into JSON objects, one per line, with line numbers.
//! Validation of each object is `input::parse_create`'s job.
use serde_json::{Map, Value};

use crate::error::FieldErrors;

/// One record of an import file: its 1-based line number and its object, or why it is unreadable.
pub type ImportLine = (usize, Result<Value, FieldErrors>);

/// Columns a CSV import understands; `labels.KEY` columns become labels.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "correlation_id",
    "service",
    "team",
    "environment",
    "version",
    "commit_sha",
    "git_ref",
    "repository",
    "artifact",
    "artifact_name",
    "artifact_digest",
    "deployer",
    "deployer_type",
    "kind",
    "trigger",
    "change_ref",
    "region",
    "status",
    "started_at",
    "finished_at",
];

pub fn parse_jsonl(text: &str) -> Vec<ImportLine> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let r = serde_json::from_str::<Value>(l).map_err(|e| {
                let mut errs = FieldErrors::default();
                errs.add("", "malformed_json", format!("not valid JSON: {e}"));
                errs
            });
            (i + 1, r)
        })
        .collect()
}

/// Parses CSV with a header row. Empty cells are absent values. Lines are numbered as in the
/// file (the header is line 1).
pub fn parse_csv(text: &str) -> Result<Vec<ImportLine>, FieldErrors> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| one("header", "malformed_csv", e.to_string()))?
        .clone();
    let mut header_errors = FieldErrors::default();
    for h in headers.iter() {
        if !CSV_COLUMNS.contains(&h) && !h.starts_with("labels.") {
            header_errors.add(
                format!("header.{h}"),
                "unknown_field",
                "is not a known column",
            );
        }
    }
    for required in ["service", "environment", "version"] {
        if !headers.iter().any(|h| h == required) {
            header_errors.add(
                format!("header.{required}"),
                "required",
                "column is required",
            );
        }
    }
    if !header_errors.is_empty() {
        return Err(header_errors);
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        match rec {
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                out.push((line, Err(one("", "malformed_csv", e.to_string()))));
            }
            Ok(r) => {
                let line = r.position().map(|p| p.line() as usize).unwrap_or(0);
                if r.len() != headers.len() {
                    let missing: Vec<&str> = headers.iter().skip(r.len()).collect();
                    let mut errs = FieldErrors::default();
                    if missing.is_empty() {
                        errs.add(
                            "",
                            "malformed_csv",
                            format!("{} cells for {} columns", r.len(), headers.len()),
                        );
                    }
                    for m in missing {
                        errs.add(m, "missing_column", "this line has no cell for the column");
                    }
                    out.push((line, Err(errs)));
                    continue;
                }
                let mut obj = Map::new();
                let mut labels = Map::new();
                for (h, v) in headers.iter().zip(r.iter()) {
                    if v.is_empty() {
                        continue;
                    }
                    if let Some(k) = h.strip_prefix("labels.") {
                        labels.insert(k.to_owned(), Value::String(v.to_owned()));
                    } else {
                        obj.insert(h.to_owned(), Value::String(v.to_owned()));
                    }
                }
                if !labels.is_empty() {
                    obj.insert("labels".into(), Value::Object(labels));
                }
                out.push((line, Ok(Value::Object(obj))));
            }
        }
    }
    Ok(out)
}

fn one(field: &str, code: &str, msg: String) -> FieldErrors {
    let mut e = FieldErrors::default();
    e.add(field, code, msg);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_with_missing_columns_are_named() {
        let rows = parse_csv("service,environment,version,labels.team\na,dev,1,x\nb,dev\n")
            .expect("header ok");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, 2);
        let v = rows[0].1.as_ref().expect("ok");
        assert_eq!(v["labels"]["team"], "x");
        let e = rows[1].1.as_ref().expect_err("missing");
        assert_eq!(rows[1].0, 3);
        assert_eq!(e.0[0].field, "version");
    }

    #[test]
    fn csv_header_problems() {
        let e = parse_csv("service,env,version\n").expect_err("bad header");
        let f: Vec<&str> = e.0.iter().map(|x| x.field.as_str()).collect();
        assert!(f.contains(&"header.env") && f.contains(&"header.environment"));
    }

    #[test]
    fn jsonl_numbers_lines() {
        let rows = parse_jsonl("{\"a\":1}\n\n{oops\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].0, 3);
        assert!(rows[1].1.is_err());
    }
}

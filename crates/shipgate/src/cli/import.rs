//! `shipgate deploy import`: past deployments from a JSONL or CSV file, sent in chunks of whole
//! records, with line numbers reported as the file's.
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::client::{Body, CliError, CliResult, Client, describe};
use crate::exit;
use crate::output::{Output, field_text, print_json};

#[derive(Args)]
pub struct ImportArgs {
    file: PathBuf,
    /// jsonl or csv (default: from the file name).
    #[arg(long, value_parser = ["jsonl", "csv"])]
    format: Option<String>,
    /// Write the good lines even if some are bad (default: all or nothing).
    #[arg(long)]
    partial: bool,
    /// Records per request.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
}

/// A chunk of the file: the file line number of its first record, and its text (a CSV chunk
/// repeats the header).
type Chunk = (usize, String);

/// One import: where it goes and how its chunks are read.
struct Import<'a> {
    c: &'a Client,
    csv: bool,
    partial: bool,
}

impl Import<'_> {
    /// Sends one chunk, as a dry run (validate only) or for real.
    async fn send(&self, dry: bool, chunk: String) -> CliResult<(StatusCode, Value)> {
        let (format, ctype) = if self.csv {
            ("csv", "text/csv")
        } else {
            ("jsonl", "application/x-ndjson")
        };
        let mode = if self.partial { "partial" } else { "atomic" };
        let params = [
            ("format", Some(format.to_owned())),
            ("mode", Some(mode.to_owned())),
            ("dry_run", Some(dry.to_string())),
        ];
        self.c
            .send(
                reqwest::Method::POST,
                "/api/v1/deployments/import",
                &params,
                Some(Body::Raw(ctype.into(), chunk.into_bytes())),
                Some("import"),
            )
            .await
    }

    /// The number of records in a chunk.
    fn records(&self, chunk: &str) -> usize {
        chunk.lines().count() - usize::from(self.csv)
    }

    /// Renumbers the server's line numbers (relative to the chunk) to the file's.
    fn renumber(&self, first_line: usize, v: &mut Value) {
        let offset = if self.csv { first_line - 1 } else { first_line };
        if let Some(lines) = v.get_mut("lines").and_then(Value::as_array_mut) {
            for l in lines {
                if let Some(n) = l.get("line").and_then(Value::as_u64) {
                    l["line"] = json!(n as usize + offset);
                }
            }
        }
        if let Some(errs) = v.get_mut("errors").and_then(Value::as_array_mut) {
            for e in errs {
                if let Some(f) = e.get("field").and_then(Value::as_str).map(str::to_owned)
                    && let Some(rest) = f.strip_prefix("lines.")
                {
                    let (n, tail) = rest
                        .split_once('.')
                        .map(|(n, t)| (n, format!(".{t}")))
                        .unwrap_or((rest, String::new()));
                    if let Ok(n) = n.parse::<usize>() {
                        e["field"] = json!(format!("lines.{}{tail}", n + offset));
                    }
                }
            }
        }
    }
}

fn is_csv(a: &ImportArgs) -> bool {
    match a.format.as_deref() {
        Some(f) => f == "csv",
        None => a
            .file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
    }
}

/// Splits the file into chunks of whole records, keeping file line numbers; returns them with
/// the number of records in all.
fn chunks(text: &str, csv: bool, batch: usize) -> (Vec<Chunk>, usize) {
    let all: Vec<&str> = text.lines().collect();
    let (header, body_start) = if csv {
        (all.first().copied(), 1)
    } else {
        (None, 0)
    };
    let batch = batch.max(1);
    let chunks = all[body_start.min(all.len())..]
        .chunks(batch)
        .enumerate()
        .map(|(i, lines)| {
            let first_line = body_start + i * batch;
            let mut s = String::new();
            if let Some(h) = header {
                s.push_str(h);
                s.push('\n');
            }
            for l in lines {
                s.push_str(l);
                s.push('\n');
            }
            (first_line, s)
        })
        .collect();
    (chunks, all.len() - body_start.min(all.len()))
}

/// A progress bar on a terminal (table output only); hidden otherwise.
fn progress_bar(total_records: usize, out: Output) -> ProgressBar {
    let bar = ProgressBar::new(total_records as u64);
    if std::io::stderr().is_terminal() && out == Output::Table {
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// All or nothing across chunks: validates every chunk before any is written.
async fn validate_all(imp: &Import<'_>, chunks: &[Chunk], bar: &ProgressBar) -> CliResult<()> {
    bar.set_prefix("validating");
    let mut problems = Vec::new();
    for (first, chunk) in chunks.iter().cloned() {
        let n = imp.records(&chunk);
        match imp.send(true, chunk).await {
            Ok(_) => {}
            Err(mut e) if e.code == exit::VALIDATION => {
                if let Some(p) = e.problem.as_mut() {
                    imp.renumber(first, p);
                    problems.extend(p["errors"].as_array().cloned().unwrap_or_default());
                }
            }
            Err(e) => return Err(e),
        }
        bar.inc(n as u64);
    }
    if !problems.is_empty() {
        bar.finish_and_clear();
        let problem = json!({"title": "Import refused", "detail": "bad lines; nothing was written", "code": "validation_failed", "errors": problems});
        return Err(CliError {
            code: exit::VALIDATION,
            message: describe(&problem, StatusCode::UNPROCESSABLE_ENTITY),
            problem: Some(problem),
        });
    }
    bar.set_position(0);
    Ok(())
}

/// Writes every chunk; returns the totals and the lines that failed, numbered as in the file.
async fn write_all(imp: &Import<'_>, chunks: Vec<Chunk>, bar: &ProgressBar) -> CliResult<Value> {
    bar.set_prefix("importing");
    let mut report = json!({"total": 0, "created": 0, "replayed": 0, "failed": 0, "lines": []});
    for (first, chunk) in chunks {
        let n = imp.records(&chunk);
        let (_, mut v) = match imp.send(false, chunk).await {
            Ok(v) => v,
            Err(mut e) => {
                if let Some(p) = e.problem.as_mut() {
                    imp.renumber(first, p);
                    e.message = describe(p, StatusCode::UNPROCESSABLE_ENTITY);
                }
                bar.finish_and_clear();
                return Err(e);
            }
        };
        imp.renumber(first, &mut v);
        for k in ["total", "created", "replayed", "failed"] {
            report[k] = json!(report[k].as_u64().unwrap_or(0) + v[k].as_u64().unwrap_or(0));
        }
        let failed_lines: Vec<Value> = v["lines"]
            .as_array()
            .map(|src| {
                src.iter()
                    .filter(|l| l["result"] != "created" && l["result"] != "replayed")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if let Some(dst) = report["lines"].as_array_mut() {
            dst.extend(failed_lines);
        }
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(report)
}

fn print_report(a: &ImportArgs, report: &Value, out: Output) {
    if out.is_json() {
        print_json(report);
        return;
    }
    println!(
        "imported {}: {} created, {} already present, {} failed",
        a.file.display(),
        report["created"],
        report["replayed"],
        report["failed"]
    );
    for l in report["lines"].as_array().cloned().unwrap_or_default() {
        for e in l["errors"].as_array().cloned().unwrap_or_default() {
            println!(
                "  line {}: {}: {}",
                l["line"],
                field_text(&e, "field"),
                field_text(&e, "message")
            );
        }
    }
}

pub async fn import(c: &Client, a: &ImportArgs, out: Output) -> CliResult<()> {
    let text = std::fs::read_to_string(&a.file).map_err(|e| {
        CliError::new(
            exit::FAILURE,
            format!("cannot read {}: {e}", a.file.display()),
        )
    })?;
    let imp = Import {
        c,
        csv: is_csv(a),
        partial: a.partial,
    };
    let (chunks, total_records) = chunks(&text, imp.csv, a.batch);
    let bar = progress_bar(total_records, out);
    if !a.partial && chunks.len() > 1 {
        validate_all(&imp, &chunks, &bar).await?;
    }
    let report = write_all(&imp, chunks, &bar).await?;
    print_report(a, &report, out);
    if report["failed"].as_u64().unwrap_or(0) > 0 {
        return Err(CliError::validation(format!(
            "{} line(s) failed",
            report["failed"]
        )));
    }
    Ok(())
}

//! What waits on people: the approval queue, and the reviews due.
use serde_json::Value;

use crate::client::{CliResult, Client};
use crate::output::{Output, field_text, print_json, table};

/// `shipgate approvals`: your queue, or (`--all`) every pending change and who is blocking it.
pub async fn approvals(c: &Client, out: Output, all: bool) -> CliResult<()> {
    let params = [("all", all.then(|| "true".to_owned()))];
    let v = c.get_query("/api/v1/approvals", &params).await?;
    if out.is_json() {
        print_json(&v);
        return Ok(());
    }
    let mut t = table(&["change", "title", "requester", "waiting", "sla", "blocking"]);
    for i in v.as_array().cloned().unwrap_or_default() {
        let waiting = i["waiting_secs"].as_i64().unwrap_or(0);
        t.add_row(vec![
            field_text(&i, "change"),
            field_text(&i, "title"),
            field_text(&i, "requester"),
            format!("{}m", waiting / 60),
            if i["sla_breached"] == true {
                "BREACHED".into()
            } else {
                format!("{}m", i["sla_secs"].as_u64().unwrap_or(0) / 60)
            },
            blocking(&i),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// The groups still blocking a change: `group: approved of quorum (environment)`, `; `-joined.
fn blocking(item: &Value) -> String {
    let groups: Vec<String> = item["blocking"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    format!(
                        "{}: {} of {} ({})",
                        field_text(b, "group"),
                        b["approved_by"].as_array().map_or(0, Vec::len),
                        field_text(b, "quorum"),
                        field_text(b, "environment")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    groups.join("; ")
}

/// `shipgate reviews`: post-deployment reviews due, and root-cause reviews.
pub async fn reviews(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/reviews").await?;
    if out.is_json() {
        print_json(&v);
        return Ok(());
    }
    let mut t = table(&["change", "due", "overdue", "escalated", "incident"]);
    for r in v["pending_reviews"].as_array().cloned().unwrap_or_default() {
        t.add_row(vec![
            field_text(&r, "change"),
            field_text(&r, "due_at"),
            field_text(&r, "overdue"),
            field_text(&r, "escalated"),
            field_text(&r, "incident_id"),
        ]);
    }
    println!("{t}");
    for r in v["root_cause_reviews"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        println!(
            "root-cause review: team {} in {}: {}",
            field_text(&r, "team"),
            field_text(&r, "month"),
            r["changes"]
        );
    }
    Ok(())
}

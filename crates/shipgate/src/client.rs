//! The CLI's HTTP client: bearer auth, idempotent retries, and problem+json mapped to exit codes.
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::exit;

#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
    pub problem: Option<Value>,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            problem: None,
        }
    }
}

impl CliError {
    /// Input the CLI refuses before asking the server.
    pub fn validation(message: impl Into<String>) -> Self {
        CliError::new(exit::VALIDATION, message)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::new(exit::FAILURE, format!("{e:#}"))
    }
}

pub type CliResult<T> = Result<T, CliError>;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> CliResult<Client> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("shipgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Sends a request; retries transport failures and 503s (a write carries an idempotency
    /// key, so a retry cannot duplicate it). reqwest encodes the query parameters.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        params: &Params<'_>,
        body: Option<Body>,
        idempotency_key: Option<&str>,
    ) -> CliResult<(StatusCode, Value)> {
        let url = format!("{}{}", self.base, path);
        let query: Vec<(&str, &str)> = params
            .iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .collect();
        let mut last_err = String::new();
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
            }
            let mut req = self.http.request(method.clone(), &url).query(&query);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(k) = idempotency_key {
                req = req.header("Idempotency-Key", k);
            }
            req = match &body {
                Some(Body::Json(v)) => req.json(v),
                Some(Body::Raw(ct, bytes)) => {
                    req.header("content-type", ct.as_str()).body(bytes.clone())
                }
                None => req,
            };
            match req.send().await {
                Err(e) => {
                    last_err = format!("cannot reach shipgate at {}: {e}", self.base);
                    if method != Method::GET && idempotency_key.is_none() {
                        break;
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    if status == StatusCode::SERVICE_UNAVAILABLE && attempt < 3 {
                        last_err = describe(&value, status);
                        continue;
                    }
                    if status.is_success()
                        || status == StatusCode::CONFLICT && value.get("lines").is_some()
                    {
                        return Ok((status, value));
                    }
                    let code = value.get("code").and_then(Value::as_str).unwrap_or("");
                    return Err(CliError {
                        code: exit::for_problem(status.as_u16(), code),
                        message: describe(&value, status),
                        problem: Some(value),
                    });
                }
            }
        }
        Err(CliError::new(exit::UNAVAILABLE, last_err))
    }

    pub async fn get(&self, path: &str) -> CliResult<Value> {
        self.get_query(path, &[]).await
    }

    pub async fn get_query(&self, path: &str, params: &Params<'_>) -> CliResult<Value> {
        Ok(self.send(Method::GET, path, params, None, None).await?.1)
    }

    pub async fn delete(&self, path: &str) -> CliResult<Value> {
        Ok(self.send(Method::DELETE, path, &[], None, None).await?.1)
    }

    pub async fn post(
        &self,
        path: &str,
        body: Value,
        key: Option<&str>,
    ) -> CliResult<(StatusCode, Value)> {
        self.send(Method::POST, path, &[], Some(Body::Json(body)), key)
            .await
    }
}

/// Query parameters; one whose value is `None` (a flag not given) is left out.
pub type Params<'a> = [(&'a str, Option<String>)];

pub enum Body {
    Json(Value),
    Raw(String, Vec<u8>),
}

/// A human-readable account of a problem document.
pub fn describe(v: &Value, status: StatusCode) -> String {
    let mut s = match (
        v.get("title").and_then(Value::as_str),
        v.get("detail").and_then(Value::as_str),
    ) {
        (Some(t), Some(d)) => format!("{t}: {d}"),
        _ => format!("HTTP {status}: {v}"),
    };
    if let Some(errors) = v.get("errors").and_then(Value::as_array) {
        for e in errors {
            s.push_str(&format!(
                "\n  - {}: {} ({})",
                e.get("field").and_then(Value::as_str).unwrap_or(""),
                e.get("message").and_then(Value::as_str).unwrap_or(""),
                e.get("code").and_then(Value::as_str).unwrap_or("")
            ));
        }
    }
    if let Some(id) = v.get("request_id").and_then(Value::as_str) {
        s.push_str(&format!("\n  request id: {id}"));
    }
    s
}

/// A change key, group name or id as one path segment: only ASCII letters, digits and `-`.
pub fn path_segment(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// A request body without its null fields (flags not given).
pub fn without_nulls(mut body: Value) -> Value {
    if let Value::Object(m) = &mut body {
        m.retain(|_, v| !v.is_null());
    }
    body
}

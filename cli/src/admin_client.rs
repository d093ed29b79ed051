//! Client of the gateway's admin API, signing each request with a root key.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use weft_common::admin_auth;

/// Credentials and endpoint of the admin API.
#[derive(Clone, Debug)]
pub struct AdminClient {
    http: reqwest::Client,
    endpoint: String,
    access_key: String,
    secret_key: String,
}

impl AdminClient {
    /// A client for `endpoint` (`http://host:port`) signing as the given key.
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> Self {
        AdminClient {
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .build()
                .expect("static client settings"),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
        }
    }

    /// Sends a request and decodes the JSON answer (or `null` for 204).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let body_bytes = match &body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_secs();
        let auth = admin_auth::authorization(
            &self.access_key,
            &self.secret_key,
            method.as_str(),
            path,
            now,
            &body_bytes,
        );
        let url = format!("{}{}", self.endpoint, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("authorization", auth);
        if body.is_some() {
            req = req
                .header("content-type", "application/json")
                .body(body_bytes);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "reach the admin API at {}; is the gateway running?",
                self.endpoint
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.context("read admin API response")?;
        if !status.is_success() {
            let msg = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(text);
            bail!("{method} {path}: HTTP {status}: {msg}");
        }
        let text = if text.is_empty() {
            "null".to_string()
        } else {
            text
        };
        serde_json::from_str(&text).with_context(|| format!("decode answer to {method} {path}"))
    }
}

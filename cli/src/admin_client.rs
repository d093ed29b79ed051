//! Client of the gateway's admin API, signing each request with a root key.

use serde::de::DeserializeOwned;
use weft_common::admin_auth;

/// Why an admin API call failed. The messages name the call, so a command
/// can print the chain as it is.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request body could not be encoded as JSON.
    #[error(transparent)]
    Encode(serde_json::Error),
    /// Requests are signed with the current time, which is unknown.
    #[error("system clock before 1970")]
    Clock(#[source] std::time::SystemTimeError),
    /// No answer from the endpoint.
    #[error("reach the admin API at {endpoint}; is the gateway running?")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// The answer broke off.
    #[error("read admin API response")]
    ReadBody(#[source] reqwest::Error),
    /// The gateway answered with an error status; `message` is its `error`
    /// field, or the whole body if it has none.
    #[error("{method} {path}: HTTP {status}: {message}")]
    Refused {
        /// The request's method.
        method: reqwest::Method,
        /// The request's path.
        path: String,
        /// The status.
        status: reqwest::StatusCode,
        /// Why, as the gateway put it.
        message: String,
    },
    /// The answer is not the JSON this call expects.
    #[error("decode answer to {method} {path}")]
    Decode {
        /// The request's method.
        method: reqwest::Method,
        /// The request's path.
        path: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// Credentials and endpoint of the admin API.
#[derive(Clone, Debug)]
pub struct AdminClient {
    http: reqwest::Client,
    endpoint: String,
    access_key: String,
    secret_key: String,
    timeout: std::time::Duration,
}

/// How long the CLI waits to connect to the admin API.
pub const ADMIN_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest one admin call may take. Generous (adding a metad voter
/// waits for it to catch up), but bounded: a gateway that accepts and then
/// never answers must not hang the CLI.
pub const ADMIN_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

impl AdminClient {
    /// A client for `endpoint` (`http://host:port`) signing as the given key.
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> Self {
        Self::with_request_timeout(endpoint, access_key, secret_key, ADMIN_REQUEST_TIMEOUT)
    }

    /// As [`new`](Self::new), with another bound on each call.
    pub fn with_request_timeout(
        endpoint: &str,
        access_key: &str,
        secret_key: &str,
        timeout: std::time::Duration,
    ) -> Self {
        AdminClient {
            http: reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(ADMIN_CONNECT_TIMEOUT)
                .timeout(timeout)
                .build()
                .expect("static client settings"),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            timeout,
        }
    }

    /// Over HTTPS with the cluster CA: trusts `tls`'s CAs and presents its
    /// certificate (an admin certificate authenticates every call by
    /// itself; calls are signed as well, for a gateway that does not serve
    /// TLS).
    pub fn with_tls(
        mut self,
        tls: Option<&std::sync::Arc<weft_client::internal_tls::InternalTls>>,
    ) -> Self {
        if let Some(tls) = tls {
            self.http = reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(ADMIN_CONNECT_TIMEOUT)
                .timeout(self.timeout)
                .use_preconfigured_tls(tls.client_config_for(weft_client::pki::Role::Gateway))
                .build()
                .expect("static client settings");
        }
        self
    }

    /// Sends a request and decodes the JSON answer (or `null` for 204).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, AdminError> {
        let body_bytes = match &body {
            Some(b) => serde_json::to_vec(b).map_err(AdminError::Encode)?,
            None => Vec::new(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(AdminError::Clock)?
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
        let resp = req.send().await.map_err(|source| AdminError::Unreachable {
            endpoint: self.endpoint.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(AdminError::ReadBody)?;
        if !status.is_success() {
            let msg = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(text);
            return Err(AdminError::Refused {
                method,
                path: path.to_string(),
                status,
                message: msg,
            });
        }
        let text = if text.is_empty() {
            "null".to_string()
        } else {
            text
        };
        serde_json::from_str(&text).map_err(|source| AdminError::Decode {
            method,
            path: path.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway that accepts and then never answers fails the call at the
    /// bound instead of hanging the CLI.
    #[tokio::test]
    async fn a_silent_admin_endpoint_fails_the_call_at_the_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = vec![];
            loop {
                let (s, _) = listener.accept().await.unwrap();
                open.push(s);
            }
        });
        let c = AdminClient::with_request_timeout(
            &format!("http://{addr}"),
            "AK",
            "SK",
            std::time::Duration::from_millis(300),
        );
        let r: Result<serde_json::Value, AdminError> = c
            .call(reqwest::Method::GET, "/v1/cluster/status", None)
            .await;
        let e = r.expect_err("a call to a silent endpoint succeeded");
        let chain = format!("{:#}", anyhow::Error::new(e));
        assert!(
            chain.contains("timed out") || chain.contains("operation timed out"),
            "{chain}"
        );
        held.abort();
    }
}

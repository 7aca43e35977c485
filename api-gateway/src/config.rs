//! api-gateway configuration: every setting is an environment variable and a flag
//! (`api-gateway --help`), validated before anything starts.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use http::HeaderValue;
use pair_common::duration::parse_duration;

/// The homework's REST API (HTTP/JSON) over auth-service and blog-service.
#[derive(Debug, Clone, Parser)]
#[command(name = "api-gateway", version, about)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "GATEWAY_LISTEN_ADDR",
        value_name = "GATEWAY_LISTEN_ADDR",
        default_value = "127.0.0.1:8000"
    )]
    pub listen_addr: SocketAddr,

    /// auth-service (users, sessions, tokens).
    #[arg(
        long,
        env = "GATEWAY_AUTH_URL",
        value_name = "GATEWAY_AUTH_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub auth_url: String,

    /// blog-service (posts).
    #[arg(
        long,
        env = "GATEWAY_BLOG_URL",
        value_name = "GATEWAY_BLOG_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub blog_url: String,

    /// Deadline of each call to a service, connecting included; past it the request is
    /// answered 504.
    #[arg(long, env = "GATEWAY_REQUEST_TIMEOUT", value_name = "GATEWAY_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Browser origins allowed to call the API, comma-separated (`*` for any); unset
    /// means no cross-origin access.
    #[arg(
        long,
        env = "GATEWAY_CORS_ALLOWED_ORIGINS",
        value_name = "GATEWAY_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Vec<String>,
}

impl Config {
    /// Checks what clap cannot: URLs we can call, origins that are header values, a
    /// timeout that lets a call happen.
    pub fn validate(&self) -> Result<(), String> {
        check_url("GATEWAY_AUTH_URL", &self.auth_url)?;
        check_url("GATEWAY_BLOG_URL", &self.blog_url)?;
        if self.request_timeout.is_zero() {
            return Err("GATEWAY_REQUEST_TIMEOUT must be more than 0s".into());
        }
        for origin in &self.cors_allowed_origins {
            if origin != "*" && HeaderValue::from_str(origin).is_err() {
                return Err(format!(
                    "GATEWAY_CORS_ALLOWED_ORIGINS: `{origin}` is not a valid origin"
                ));
            }
        }
        Ok(())
    }
}

fn check_url(variable: &str, url: &str) -> Result<(), String> {
    let uri: tonic::transport::Uri = url.parse().map_err(|_| {
        format!("{variable} `{url}` is not a URL: write e.g. http://127.0.0.1:50051")
    })?;
    // TLS is not built in: an https:// URL would only fail on the first call.
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(format!(
            "{variable} `{url}` must be an http:// URL with a host, e.g. http://127.0.0.1:50051"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        let config = Config::try_parse_from(["api-gateway"]).unwrap();
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn service_urls_that_are_not_plain_http_are_refused() {
        for bad in [
            "127.0.0.1:50051",
            "https://auth:50051",
            "not a url",
            "http://",
        ] {
            let config = Config::try_parse_from(["api-gateway", "--auth-url", bad]).unwrap();
            let error = config.validate().unwrap_err();
            assert!(error.contains("GATEWAY_AUTH_URL"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let parsed = Config::try_parse_from(["api-gateway", "--request-timeout", "0s"]);
        assert!(parsed.is_err() || parsed.is_ok_and(|config| config.validate().is_err()));
    }
}

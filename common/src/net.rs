//! What every listener of the pair shares: binding an address with an error that names
//! its setting, and the CORS origins a browser may call from (gRPC-Web and the HTTP
//! gateway read them the same way).

use std::net::SocketAddr;

use http::HeaderValue;
use tokio::net::TcpListener;
use tower_http::cors::AllowOrigin;

/// Binds `addr`, saying clearly which address could not be bound (e.g. already in use).
pub async fn bind(addr: SocketAddr, variable: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("{variable}: cannot listen on {addr}: {error}"))
}

/// The origins of a CORS policy: `*` for any, else each listed origin (an error names
/// the first that is not a valid header value).
pub fn allowed_origins(origins: &[String]) -> anyhow::Result<AllowOrigin> {
    if origins.iter().any(|o| o == "*") {
        return Ok(AllowOrigin::any());
    }
    let origins = origins
        .iter()
        .map(|o| {
            HeaderValue::from_str(o).map_err(|_| anyhow::anyhow!("`{o}` is not a valid origin"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(AllowOrigin::list(origins))
}

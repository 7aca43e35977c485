//! Starting the whole stack for black-box tests of the REST API: auth-service and
//! blog-service on fresh stores of a backend, api-gateway in front, each on port 0; and
//! a small HTTP/1.1 JSON client.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;

use super::{Backend, Running, auth_config_on, blog::spawn_blog_on, spawn, start_auth};

/// The configuration tests run the gateway with: port 0, the given services.
pub fn gateway_config(auth_url: String, blog_url: String) -> api_gateway::Config {
    api_gateway::Config {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        auth_url,
        blog_url,
        request_timeout: Duration::from_secs(5),
        cors_allowed_origins: Vec::new(),
    }
}

/// Starts the gateway with `config`.
pub async fn start_gateway(config: api_gateway::Config) -> Running {
    let app = api_gateway::Application::build(config)
        .await
        .expect("build api-gateway");
    let addr = app.local_addr();
    spawn(addr, |stopped| {
        app.run_until_stopped(async move {
            let _ = stopped.await;
        })
    })
}

/// The three servers of one test.
pub struct Stack {
    pub auth: Running,
    pub blog: Running,
    pub http: Http,
    pub gateway: Running,
}

/// auth-service and blog-service on fresh stores of `backend`, the gateway in front.
pub async fn spawn_stack(backend: Backend) -> Stack {
    spawn_stack_with(backend, auth_config_on(backend).await).await
}

/// The same with auth-service configured by `auth_config`.
pub async fn spawn_stack_with(backend: Backend, auth_config: auth_service::Config) -> Stack {
    let auth = start_auth(auth_config).await;
    let blog = spawn_blog_on(backend, &auth).await;
    let gateway = start_gateway(gateway_config(auth.url(), blog.url())).await;
    Stack {
        http: Http::new(gateway.addr),
        auth,
        blog,
        gateway,
    }
}

/// An HTTP answer; `json` is `Value::Null` when the body is not JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    /// The `loc`s of a 422 answer's entries, each joined with `.` (`body.username`).
    pub fn locs(&self) -> Vec<String> {
        self.json["detail"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| {
                        entry["loc"]
                            .as_array()
                            .map(|loc| {
                                loc.iter()
                                    .map(|part| part.as_str().unwrap_or_default())
                                    .collect::<Vec<_>>()
                                    .join(".")
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A string field of the JSON body.
    pub fn str(&self, field: &str) -> String {
        self.json[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string `{field}` in {}", self.text))
            .to_owned()
    }
}

/// A JSON client of one gateway.
pub struct Http {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// A request builder for `path` on the gateway.
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
    }

    /// Sends `request`; every call has a deadline (a hang fails the test).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        let response = tokio::time::timeout(Duration::from_secs(15), self.client.request(request))
            .await
            .expect("the gateway answers within 15 s")
            .expect("HTTP exchange");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status: parts.status,
            headers: parts.headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    /// A JSON call, with a bearer token when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.request(method, path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(body.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        self.send(request.body(body).expect("request")).await
    }

    /// Raw bytes as the body, with the given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let request = self
            .request(method, path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        self.send(request).await
    }

    /// A request that declares a `declared`-byte body of `content_type` and sends none of
    /// it, over a connection of its own: what the gateway answers from the headers alone.
    pub async fn declared_body(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        declared: usize,
    ) -> Answer {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(self.addr).await?;
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {declared}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
                self.addr
            );
            stream.write_all(head.as_bytes()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::time::timeout(Duration::from_secs(15), exchange)
            .await
            .expect("the gateway answers from the headers within 15 s")
            .expect("HTTP exchange");
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or_else(|| panic!("no status line in {text}"));
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Answer {
            status,
            headers: http::HeaderMap::new(),
            json: serde_json::from_str(&body).unwrap_or(Value::Null),
            text: body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Signs up a fresh user; returns the username.
    pub async fn signup(&self, prefix: &str) -> String {
        let username = super::unique_name(prefix);
        let signup = self
            .post(
                "/api/v1/signup",
                None,
                serde_json::json!({
                    "username": username,
                    "email": format!("{username}@example.com"),
                    "password": super::PASSWORD,
                }),
            )
            .await;
        assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.text);
        username
    }

    /// Signs up a fresh user and logs in; returns (username, login answer).
    pub async fn signup_and_login(&self, prefix: &str) -> (String, Answer) {
        let username = self.signup(prefix).await;
        let login = self
            .post(
                "/api/v1/login",
                None,
                serde_json::json!({"username": username, "password": super::PASSWORD}),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
        (username, login)
    }
}

/// A 401 as the gateway answers it: `WWW-Authenticate: Bearer` and a detail.
pub fn assert_unauthenticated(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(answer.json["detail"].is_string(), "{}", answer.text);
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

//! A minimal blocking HTTP/1.1 client (one connection per request) to log
//! in, check the routes and run the sequential probes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Response {
    pub status: u16,
    /// `name=value` of every `Set-Cookie` that sets a non-empty value.
    pub cookies: Vec<String>,
    pub body: String,
}

impl Response {
    /// A `Cookie` header value carrying every cookie the response set.
    pub fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| self.cookies.join("; "))
    }
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> Result<Response, String> {
    request_with(port, method, path, cookie, &[])
}

/// [`request`] with extra headers (`("User-Agent", "...")`).
pub fn request_with(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let fail = |e: std::io::Error| format!("{method} {path}: {e}");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).map_err(fail)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(fail)?;
    parse(&raw).ok_or_else(|| {
        format!(
            "{method} {path}: unparsable response {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    })
}

fn parse(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut cookies = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("set-cookie") {
            let pair = value.trim().split(';').next().unwrap_or("").trim();
            if pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()) {
                cookies.push(pair.to_owned());
            }
        }
    }
    Some(Response {
        status,
        cookies,
        body: body.to_owned(),
    })
}

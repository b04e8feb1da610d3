//! A minimal HTTP/1.1 client over a plain `TcpStream`: what the tests of the real server
//! binary need of a browser (login form, cookies, pages, server-sent event streams).

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A response head and, for [`request`], its whole body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `netauto_session=…` from `Set-Cookie`.
    pub fn session_cookie(&self) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.split(';').next().unwrap_or_default().trim())
            .find(|c| c.starts_with("netauto_session="))
            .map(str::to_owned)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a response body piece by piece: chunked, by `Content-Length`, or up to EOF. Holds
/// the whole connection: a client that shut its side down would be taken as gone.
pub struct Body {
    reader: BufReader<TcpStream>,
    chunked: bool,
    remaining: Option<u64>,
    done: bool,
}

impl Body {
    /// Appends the next piece of the body to `out`; `false` at its end.
    pub async fn next_piece(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        if self.chunked {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                ));
            }
            let size = line.trim().split(';').next().unwrap_or_default();
            let size = u64::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("chunk {line:?}"))
            })?;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    line.clear();
                    if self.reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                self.done = true;
                return Ok(false);
            }
            let start = out.len();
            out.resize(start + size as usize, 0);
            self.reader.read_exact(&mut out[start..]).await?;
            let mut crlf = [0u8; 2];
            self.reader.read_exact(&mut crlf).await?;
            return Ok(true);
        }
        let mut buf = [0u8; 16 * 1024];
        let want = match self.remaining {
            Some(0) => {
                self.done = true;
                return Ok(false);
            }
            Some(r) => buf.len().min(r as usize),
            None => buf.len(),
        };
        let n = self.reader.read(&mut buf[..want]).await?;
        if n == 0 {
            self.done = true;
            return Ok(false);
        }
        if let Some(r) = &mut self.remaining {
            *r -= n as u64;
        }
        out.extend_from_slice(&buf[..n]);
        Ok(true)
    }
}

/// Sends one request on a new connection and reads the response head.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    accept: &str,
) -> std::io::Result<(Response, Body)> {
    let stream = TcpStream::connect(addr).await?;
    send_on(stream, addr, method, path, cookie, form, accept).await
}

/// [`send`] on a connection already open.
pub async fn send_on(
    mut stream: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    accept: &str,
) -> std::io::Result<(Response, Body)> {
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n"
    );
    if let Some(c) = cookie {
        head.push_str(&format!("Cookie: {c}\r\n"));
    }
    if let Some(f) = form {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            f.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if let Some(f) = form {
        stream.write_all(f.as_bytes()).await?;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {line:?} for {method} {path}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let res = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = res
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let remaining = res.header("content-length").and_then(|v| v.parse().ok());
    let body = Body {
        reader,
        chunked,
        remaining: if chunked { None } else { remaining },
        done: false,
    };
    Ok((res, body))
}

/// One request, whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Response {
    let (mut res, mut body) = send(addr, method, path, cookie, form, "text/html")
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let mut out = Vec::new();
    while body.next_piece(&mut out).await.expect("read the body") {}
    res.body = out;
    res
}

/// The value of the first `name="csrf"` hidden input of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + html[at..].find('"').expect("end of the csrf value")].to_owned()
}

/// The login form: its anonymous session cookie and CSRF token.
pub async fn login_form(addr: SocketAddr) -> (String, String) {
    let page = request(addr, "GET", "/login", None, None).await;
    assert_eq!(page.status, 200, "GET /login");
    let cookie = page.session_cookie().expect("a session cookie");
    (cookie, csrf_of(&page.text()))
}

/// Logs in like a browser: the login form (session cookie + CSRF token), then the post.
/// Answers the fresh session cookie.
pub async fn login(addr: SocketAddr, user: &str, password: &str) -> String {
    let (anon, csrf) = login_form(addr).await;
    let form = format!(
        "username={user}&password={}&csrf={csrf}",
        password.replace(' ', "+"),
    );
    let res = request(addr, "POST", "/login", Some(&anon), Some(&form)).await;
    assert_eq!(res.status, 303, "POST /login: {}", res.text());
    res.session_cookie().expect("a fresh session cookie")
}

/// Starts the real server binary with `cmd` (which must bind `127.0.0.1:0`) and answers it
/// with the address it printed once serving.
pub async fn spawn_server(
    cmd: std::process::Command,
) -> (netauto_reliability::harness::Proc, SocketAddr) {
    let mut server = netauto_reliability::harness::Proc::spawn_command("server", cmd)
        .expect("start netauto-server");
    let serving = "netauto is serving on http://";
    assert!(
        server
            .wait_for(std::time::Duration::from_secs(60), |l| l
                .iter()
                .any(|x| x.starts_with(serving)))
            .await,
        "the server did not start"
    );
    let addr = server
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix(serving))
        .map(|a| a.trim_end_matches('/').parse().expect("server address"))
        .expect("address line");
    (server, addr)
}

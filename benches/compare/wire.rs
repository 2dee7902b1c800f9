//! A lean HTTP/1.1 keep-alive client for the load: one connection, one
//! request at a time, the request written in one piece and the answer read
//! with httparse. The load shares the machine's cores with the servers, so
//! it must cost as little as it can: the same bytes and the same cost for
//! every server under test.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may wait for its whole answer.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Connection {
    port: u16,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

/// An answer: the status and, when asked for, the body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Connection {
    /// Not connected yet: the first request connects.
    pub fn new(port: u16) -> Connection {
        Connection {
            port,
            stream: None,
            request: Vec::with_capacity(1024),
            buffer: Vec::with_capacity(4096),
        }
    }

    pub async fn connect(&mut self) -> std::io::Result<()> {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Sends `method path` with `headers` (each `Name: value`) and `body`,
    /// answers the status and the body. A connection the server closed is
    /// opened again once.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, String> {
        self.request.clear();
        self.request.extend_from_slice(method.as_bytes());
        self.request.push(b' ');
        self.request.extend_from_slice(path.as_bytes());
        self.request
            .extend_from_slice(b" HTTP/1.1\r\nhost: 127.0.0.1\r\n");
        for (name, value) in headers {
            self.request.extend_from_slice(name.as_bytes());
            self.request.extend_from_slice(b": ");
            self.request.extend_from_slice(value.as_bytes());
            self.request.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() {
            self.request
                .extend_from_slice(b"content-type: application/json\r\n");
        }
        self.request
            .extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        self.request.extend_from_slice(body);
        let reused = self.stream.is_some();
        match self.exchange_in_time().await {
            Ok(answer) => Ok(answer),
            // A kept-alive connection the server closed in between: once more.
            Err(_) if reused => {
                self.stream = None;
                self.exchange_in_time().await.map_err(|e| e.to_string())
            }
            Err(e) => {
                self.stream = None;
                Err(e.to_string())
            }
        }
    }

    /// An exchange that takes longer than `ANSWER_TIMEOUT` fails (and the
    /// connection with it), so a server that hangs cannot hang the bench.
    async fn exchange_in_time(&mut self) -> std::io::Result<Answer> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.exchange()).await {
            Ok(answer) => answer,
            Err(_) => {
                self.stream = None;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer in 30 s",
                ))
            }
        }
    }

    async fn exchange(&mut self) -> std::io::Result<Answer> {
        if self.stream.is_none() {
            self.connect().await?;
        }
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(&self.request).await?;
        self.buffer.clear();
        let closed = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buffer) {
                Ok(httparse::Status::Complete(head)) => {
                    let status = response.code.unwrap_or(0);
                    let mut length = 0usize;
                    let mut close = false;
                    for h in response.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h
                                .value
                                .to_ascii_lowercase()
                                .windows(5)
                                .any(|w| w == b"close");
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            // Every server under test sends Content-Length.
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "chunked answers are not read",
                            ));
                        }
                    }
                    while self.buffer.len() < head + length {
                        let read = read_more(stream, &mut self.buffer).await?;
                        if read == 0 {
                            return Err(closed());
                        }
                    }
                    let body = self.buffer[head..head + length].to_vec();
                    if close {
                        self.stream = None;
                    }
                    return Ok(Answer { status, body });
                }
                Ok(httparse::Status::Partial) => {
                    if read_more(stream, &mut self.buffer).await? == 0 {
                        return Err(closed());
                    }
                }
                Err(e) => {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
            }
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    let start = buffer.len();
    buffer.resize(start + 4096, 0);
    let read = stream.read(&mut buffer[start..]).await;
    buffer.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

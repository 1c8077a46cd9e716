//! `bitsmock notify-echo`: a tiny server application for `serve --notify`, in both modes
//! (docs/protocol.md §8). It answers every notification with a JSON receipt naming the
//! upload's size and SHA-256, so the whole pipeline can be tried with two commands:
//!
//! ```text
//! bitsmock notify-echo --listen 127.0.0.1:9000
//! bitsmock serve --notify http://127.0.0.1:9000/ --notify-type value
//! ```
//!
//! By reference (both `BITS-Request-DataFile-Name` and `BITS-Response-DataFile-Name`, or the
//! [MC-BUP] `…-DataEntity-Name` spelling) it reads the upload from the request path and
//! writes the receipt to the response path; by value it hashes the request body and answers
//! the receipt as the response body. Either way the upload is streamed, never held whole.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use std::io;
use std::path::PathBuf;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Serves notifications on `listener` until the task is dropped.
pub async fn run(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(answer);
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// The receipt for an upload.
pub fn receipt(mode: &str, original_url: &str, size: u64, sha256: &[u8]) -> Bytes {
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    let doc = serde_json::json!({
        "mode": mode,
        "url": original_url,
        "size": size,
        "sha256": hex,
    });
    Bytes::from(doc.to_string() + "\n")
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let header = |names: &[&str]| {
        names.iter().find_map(|n| {
            req.headers()
                .get(*n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
    };
    let original = header(&["BITS-Original-Request-URL"]).unwrap_or_default();
    let request_file = header(&["BITS-Request-DataFile-Name", "BITS-Request-DataEntity-Name"]);
    let response_file = header(&[
        "BITS-Response-DataFile-Name",
        "BITS-Response-DataEntity-Name",
    ]);
    let result = match (request_file, response_file) {
        (Some(request_file), Some(response_file)) => {
            by_reference(&original, request_file.into(), response_file.into()).await
        }
        _ => by_value(&original, req.into_body()).await,
    };
    Ok(match result {
        Ok(body) => {
            let mut response = Response::new(Full::new(body));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "notify-echo cannot answer");
            let mut response = Response::new(Full::new(Bytes::from(e.to_string())));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    })
}

async fn by_value(original: &str, mut body: Incoming) -> io::Result<Bytes> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        if let Some(data) = frame.data_ref() {
            hasher.update(data);
            size += data.len() as u64;
        }
    }
    Ok(receipt("value", original, size, &hasher.finalize()))
}

/// Reads the upload, writes the receipt where the server said; the answer has no body. The
/// receipt never replaces an existing file (bitsmock clears the reply path before it
/// notifies), so whoever can reach this application cannot overwrite files with it.
async fn by_reference(original: &str, request: PathBuf, response: PathBuf) -> io::Result<Bytes> {
    let mut file = tokio::fs::File::open(&request).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let doc = receipt("reference", original, size, &hasher.finalize());
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&response)
        .await?;
    tokio::io::AsyncWriteExt::write_all(&mut out, &doc).await?;
    Ok(Bytes::new())
}

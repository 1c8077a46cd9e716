//! Why an upload failed: [`UploadError`], with the HRESULT a BITS client would report
//! (docs/protocol.md §5.4) and, for answers that end the upload, a [`Refusal`] naming status and
//! `BITS-Error-Code`.

use super::verdict;
use crate::proto::{PROTOCOL_GUID, PacketType};
use std::fmt;
use std::path::PathBuf;

/// A server answer that ends the upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub packet: PacketType,
    pub status: u16,
    /// `BITS-Error-Code`, if the server sent one.
    pub code: Option<u32>,
    pub context: Option<u32>,
    /// What it means, in words.
    pub meaning: String,
}

impl Refusal {
    /// The HRESULT a BITS client reports: the server's code, else `BG_E_HTTP_ERROR_<status>`.
    pub fn hresult(&self) -> u32 {
        self.code.unwrap_or(verdict::http_error(self.status))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the server answered {}",
            self.packet,
            verdict::describe_status(self.status)
        )?;
        match self.code {
            Some(code) => {
                write!(f, " with BITS-Error-Code {}", verdict::describe_code(code))?;
                if let Some(context) = self.context {
                    write!(f, ", context 0x{context:X}")?;
                }
            }
            None => write!(
                f,
                " without a BITS error code ({})",
                verdict::describe_code(self.hresult())
            )?,
        }
        write!(f, ": {}", self.meaning)
    }
}

/// Why an upload failed. [`UploadError::hresult`] gives the code a BITS client would report.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Bad arguments: an unusable URL, a missing file.
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {error}")]
    Local {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{path} changed during the upload (0x8020001D BG_E_LOCAL_FILE_CHANGED); start it again"
    )]
    LocalFileChanged { path: PathBuf },
    /// A fatal answer (400, 403, 404, 501, `0x80200020`, an unanswerable 401, …).
    #[error("{0}")]
    Refused(Refusal),
    #[error(
        "Create-Session: no common protocol (0x80200022 BG_E_CLIENT_SERVER_PROTOCOL_MISMATCH): \
         the client offers {PROTOCOL_GUID}, the server answered BITS-Protocol {}",
        offered.as_deref().unwrap_or("(none)")
    )]
    ProtocolMismatch { offered: Option<String> },
    #[error(
        "Fragment: the server still answers 413 to a {size}-byte fragment, and fragments are \
         never made smaller than 5 KiB (0x8019019D BG_E_HTTP_ERROR_413)"
    )]
    FragmentTooLarge { size: u64 },
    #[error("{step}: gave up after {attempts} consecutive failures; the last: {last}")]
    GaveUp {
        /// The packet type (or `reply download`) that kept failing.
        step: &'static str,
        attempts: u32,
        last: String,
        /// The client-side code of the last failure, when it was an answer.
        hresult: Option<u32>,
    },
    #[error(
        "gave up after {restarts} session re-creations: the server keeps losing the session \
         (0x8020001F BG_E_SESSION_NOT_FOUND)"
    )]
    TooManyRestarts { restarts: u32 },
    #[error(
        "Fragment: {answers} answers in a row without progress past byte {high}: the server \
         keeps sending the client back"
    )]
    NoProgress { answers: u32, high: u64 },
    #[error("reply download from {url}: {message} ({})", verdict::describe_code(*hresult))]
    Reply {
        url: String,
        hresult: u32,
        message: String,
    },
    #[error(
        "Close-Session: its Ack was lost, the resent Close-Session got 0x8020001F and the new \
         session's Create-Session gets 409 (destination exists): the first Close-Session most \
         likely committed the file; check the destination"
    )]
    CloseUnconfirmed,
    /// The TLS handshake failed on the server's certificate
    /// (0x80072F8F ERROR_WINHTTP_SECURE_FAILURE for a Windows client).
    #[error(
        "TLS with {host}: the server's certificate is {problem} (0x80072F8F \
         ERROR_WINHTTP_SECURE_FAILURE); trust its CA with --ca-cert FILE, or --insecure to \
         try anyway"
    )]
    Certificate {
        host: String,
        problem: super::wire::CertProblem,
    },
}

/// `ERROR_WINHTTP_SECURE_FAILURE` as an HRESULT: what WinHTTP (and so BITS) reports for a
/// certificate it does not accept.
pub const SECURE_FAILURE: u32 = 0x8007_2F8F;

impl UploadError {
    /// The HRESULT a BITS client would report for this failure, where one applies.
    pub fn hresult(&self) -> Option<u32> {
        match self {
            UploadError::Refused(r) => Some(r.hresult()),
            UploadError::LocalFileChanged { .. } => Some(verdict::LOCAL_FILE_CHANGED),
            UploadError::ProtocolMismatch { .. } => Some(verdict::PROTOCOL_MISMATCH),
            UploadError::FragmentTooLarge { .. } => Some(verdict::http_error(413)),
            UploadError::TooManyRestarts { .. } => Some(verdict::SESSION_NOT_FOUND),
            UploadError::Reply { hresult, .. } => Some(*hresult),
            UploadError::GaveUp { hresult, .. } => *hresult,
            UploadError::CloseUnconfirmed => Some(verdict::http_error(409)),
            UploadError::Certificate { .. } => Some(SECURE_FAILURE),
            _ => None,
        }
    }

    /// The HTTP status of the answer that ended the upload, if one did.
    pub fn status(&self) -> Option<u16> {
        match self {
            UploadError::Refused(r) => Some(r.status),
            UploadError::FragmentTooLarge { .. } => Some(413),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_status_code_and_meaning() {
        let r = Refusal {
            packet: PacketType::CreateSession,
            status: 401,
            code: None,
            context: None,
            meaning: "no credentials".into(),
        };
        assert_eq!(r.hresult(), 0x8019_0191);
        let text = r.to_string();
        assert!(text.contains("401 Unauthorized"), "{text}");
        assert!(text.contains("0x80190191 (BG_E_HTTP_ERROR_401)"), "{text}");
        let r = Refusal {
            packet: PacketType::Fragment,
            status: 500,
            code: Some(verdict::TOO_LARGE),
            context: Some(5),
            meaning: "too large".into(),
        };
        assert!(
            r.to_string()
                .contains("0x80200020 (BG_E_TOO_LARGE), context 0x5")
        );
    }
}

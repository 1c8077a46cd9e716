//! The BITS error codes a server sends (docs/protocol.md §5.3), as one typed table.
//!
//! Every failure Ack the core produces names one of these; the HTTP status, the HRESULT and
//! the `BITS-Error-Context` travel together so they can never disagree.

/// `BITS-Error-Context` values a server sends (docs/protocol.md §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// `0x5`: the BITS server itself failed the request.
    Server,
    /// `0x7`: the failure came from the server application.
    Application,
}

impl Context {
    pub fn value(self) -> u32 {
        match self {
            Context::Server => 0x5,
            Context::Application => 0x7,
        }
    }
}

/// One row of docs/protocol.md §5.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BitsError {
    /// `BG_E_SESSION_NOT_FOUND`: unknown, expired, closed or cancelled session.
    SessionNotFound,
    /// `E_ACCESSDENIED` with 403: the caller may not upload here.
    AccessDenied,
    /// `E_ACCESSDENIED` with 501: uploads are disabled on the vdir (IIS 6 style).
    UploadsDisabled,
    /// `E_INVALIDARG` with 400: any malformed or inconsistent request.
    InvalidArg,
    /// `E_INVALIDARG` with 411: `Content-Length` missing.
    LengthRequired,
    /// `BG_E_TOO_LARGE`: the whole file exceeds the maximum upload size.
    TooLarge,
    /// `ERROR_DISK_FULL` as an HRESULT: the server ran out of space.
    DiskFull,
    /// `E_OUTOFMEMORY` with 500: the server is out of resources for another session (the
    /// live-session limit). A 5xx that is not session-not-found is transient to clients, so
    /// they retry later, as they would with IIS out of memory.
    OutOfResources,
    /// `E_FAIL` with 500: the server failed for another reason (an I/O error it cannot name
    /// more precisely; the log carries the cause).
    Internal,
}

impl BitsError {
    /// Every row, for tests and documentation.
    pub const ALL: [BitsError; 9] = [
        BitsError::SessionNotFound,
        BitsError::AccessDenied,
        BitsError::UploadsDisabled,
        BitsError::InvalidArg,
        BitsError::LengthRequired,
        BitsError::TooLarge,
        BitsError::DiskFull,
        BitsError::OutOfResources,
        BitsError::Internal,
    ];

    /// The HRESULT sent in `BITS-Error-Code`.
    pub fn code(self) -> u32 {
        match self {
            BitsError::SessionNotFound => 0x8020_001F,
            BitsError::AccessDenied | BitsError::UploadsDisabled => 0x8007_0005,
            BitsError::InvalidArg | BitsError::LengthRequired => 0x8007_0057,
            BitsError::TooLarge => 0x8020_0020,
            BitsError::DiskFull => 0x8007_0112,
            BitsError::OutOfResources => 0x8007_000E,
            BitsError::Internal => 0x8000_4005,
        }
    }

    /// The HTTP status that carries it.
    pub fn status(self) -> u16 {
        match self {
            BitsError::SessionNotFound
            | BitsError::TooLarge
            | BitsError::DiskFull
            | BitsError::OutOfResources
            | BitsError::Internal => 500,
            BitsError::AccessDenied => 403,
            BitsError::UploadsDisabled => 501,
            BitsError::InvalidArg => 400,
            BitsError::LengthRequired => 411,
        }
    }

    /// The server's own errors always carry context `0x5`.
    pub fn context(self) -> Context {
        Context::Server
    }

    /// The symbolic name used in the Windows headers, for logs.
    pub fn name(self) -> &'static str {
        match self {
            BitsError::SessionNotFound => "BG_E_SESSION_NOT_FOUND",
            BitsError::AccessDenied | BitsError::UploadsDisabled => "E_ACCESSDENIED",
            BitsError::InvalidArg | BitsError::LengthRequired => "E_INVALIDARG",
            BitsError::TooLarge => "BG_E_TOO_LARGE",
            BitsError::DiskFull => "ERROR_DISK_FULL",
            BitsError::OutOfResources => "E_OUTOFMEMORY",
            BitsError::Internal => "E_FAIL",
        }
    }
}

/// Renders an HRESULT the way docs/protocol.md §5.1 recommends: `0x` and eight upper-case digits.
pub fn format_code(code: u32) -> String {
    format!("0x{code:08X}")
}

/// Renders a context value: `0x5`, `0x7`.
pub fn format_context(context: u32) -> String {
    format!("0x{context:X}")
}

/// Parses an HRESULT as clients should: optional `0x`/`x`, hex digits in any case.
pub fn parse_code(text: &str) -> Option<u32> {
    let t = text.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .or_else(|| t.strip_prefix('x'))
        .unwrap_or(t);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_error_table_has_the_documented_status_code_and_context() {
        let expected = [
            (BitsError::SessionNotFound, 500, 0x8020_001F),
            (BitsError::AccessDenied, 403, 0x8007_0005),
            (BitsError::UploadsDisabled, 501, 0x8007_0005),
            (BitsError::InvalidArg, 400, 0x8007_0057),
            (BitsError::LengthRequired, 411, 0x8007_0057),
            (BitsError::TooLarge, 500, 0x8020_0020),
            (BitsError::DiskFull, 500, 0x8007_0112),
            (BitsError::OutOfResources, 500, 0x8007_000E),
            (BitsError::Internal, 500, 0x8000_4005),
        ];
        assert_eq!(expected.len(), BitsError::ALL.len());
        for (error, status, code) in expected {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.context(), Context::Server);
            assert_eq!(error.context().value(), 5);
        }
    }

    #[test]
    fn codes_render_as_0x_and_eight_upper_case_digits() {
        assert_eq!(format_code(0x8020_001F), "0x8020001F");
        assert_eq!(format_code(0), "0x00000000");
        assert_eq!(format_context(5), "0x5");
        assert_eq!(format_context(7), "0x7");
    }

    #[test]
    fn codes_parse_with_or_without_prefix_in_any_case() {
        assert_eq!(parse_code("0x8020001f"), Some(0x8020_001F));
        assert_eq!(parse_code("x80070057"), Some(0x8007_0057));
        assert_eq!(parse_code("80070057"), Some(0x8007_0057));
        assert_eq!(parse_code("0x"), None);
        assert_eq!(parse_code("0x123456789"), None);
        assert_eq!(parse_code("zz"), None);
    }
}

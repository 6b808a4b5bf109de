//! Issue 8 item 8 (admin half): every error the admin listener sends has
//! the JSON error body, including the ones axum writes itself (405 for a
//! wrong method, 413 for a body over the limit, 400/415/422 from an
//! extractor's rejection), and ids in paths are read strictly.

use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Longest framework error text kept as the message; those are one line.
const MAX_TEXT: usize = 4096;

/// Response middleware: an error response that is not JSON is rewritten
/// as `{"error": {"code", "message"}}` with the same status and headers
/// (so `Allow` on a 405 stays).
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    let mut out = ApiError::new(status, code_for(status), message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::LENGTH_REQUIRED => "length_required",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal_error",
        _ => "request_failed",
    }
}

/// A numeric id as written in a path: decimal digits only, no sign, no
/// leading zero (so `+1`, `01`, ` 1` and `1.0` are not the id 1).
pub fn parse_path_id(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

/// Request middleware for routes with a JSON body: a request whose
/// `Content-Length` already says it is over `JSON_BODY_LIMIT` gets its 413 at once,
/// before the body is read (axum's own limit only trips after reading
/// `limit` bytes, so a client sending a large body waits for nothing).
pub async fn refuse_over_json_limit(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = super::JSON_BODY_LIMIT;
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body is larger than the limit of {limit} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::parse_path_id;

    #[test]
    fn path_ids_are_canonical_decimal() {
        assert_eq!(parse_path_id("1"), Some(1));
        assert_eq!(parse_path_id("0"), Some(0));
        assert_eq!(parse_path_id("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+1",
            "01",
            " 1",
            "1 ",
            "1.0",
            "-1",
            "1e3",
            "18446744073709551616",
        ] {
            assert_eq!(parse_path_id(bad), None, "{bad:?}");
        }
    }
}

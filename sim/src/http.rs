//! HTTP building blocks shared by the handlers: the response body type (whole, or deliberately
//! cut short) and builders for the cloud's JSON and OBS's XML error answers.
//!
//! Owns the wire shapes only; it must not decide *which* answer to give (the handlers and the
//! state's plans do).

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// The content type of the cloud API's JSON answers.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// How long a truncated body waits after its first half, so that half is flushed to the client
/// before the connection is torn down.
const TRUNCATE_FLUSH_GRACE: Duration = Duration::from_millis(50);

/// A response body: a whole buffer, or a buffer of which only the first half is sent before the
/// connection is aborted (for [`crate::Fault::TruncatedDownload`]).
pub(crate) struct SimBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Truncated {
        first: Option<Bytes>,
        declared: u64,
        stall: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl SimBody {
    /// A whole body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
        }
    }

    /// An empty body.
    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }

    /// A body announcing `bytes.len()` bytes that sends half of them and then fails, which makes
    /// hyper close the connection.
    pub(crate) fn truncated(bytes: Bytes) -> Self {
        let declared = bytes.len() as u64;
        let first = bytes.slice(..bytes.len() / 2);
        Self {
            kind: Kind::Truncated {
                first: Some(first),
                declared,
                stall: None,
            },
        }
    }

    /// The length the response announces.
    pub(crate) fn declared_len(&self) -> u64 {
        match &self.kind {
            Kind::Full(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Kind::Truncated { declared, .. } => *declared,
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Truncated { first, stall, .. } => {
                if let Some(b) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                // Pending here lets hyper flush the first half before the error aborts the connection.
                let sleep =
                    stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(TRUNCATE_FLUSH_GRACE)));
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::other(
                        "simulated truncated download",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared_len())
    }
}

/// A response with a body, content type and an explicit Content-Length.
pub(crate) fn response(status: StatusCode, content_type: &str, body: SimBody) -> Response<SimBody> {
    let len = body.declared_len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// A JSON response with the cloud API's content type.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<SimBody> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    response(status, JSON_CONTENT_TYPE, SimBody::full(body))
}

/// The API gateway's error body (`APIGW.*` / `APIG.*` codes carry a `request_id`).
#[derive(Serialize)]
struct GatewayError<'a> {
    error_code: &'a str,
    error_msg: &'a str,
    request_id: &'a str,
}

/// The service's own error body (`DBS.*` codes).
#[derive(Serialize)]
struct ServiceError<'a> {
    error_code: &'a str,
    error_msg: &'a str,
}

/// An error answered by the API gateway.
pub(crate) fn gateway_error(
    status: StatusCode,
    code: &str,
    msg: &str,
    request_id: &str,
) -> Response<SimBody> {
    json(
        status,
        &GatewayError {
            error_code: code,
            error_msg: msg,
            request_id,
        },
    )
}

/// An error answered by the GaussDB NoSQL service behind the gateway.
pub(crate) fn service_error(status: StatusCode, code: &str, msg: &str) -> Response<SimBody> {
    json(
        status,
        &ServiceError {
            error_code: code,
            error_msg: msg,
        },
    )
}

/// Escapes text for an XML element.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// OBS's XML error document, with optional extra elements (name, text).
pub(crate) fn obs_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
    extra: &[(&str, String)],
) -> Response<SimBody> {
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Error>");
    xml.push_str(&format!("<Code>{}</Code>", xml_escape(code)));
    xml.push_str(&format!("<Message>{}</Message>", xml_escape(message)));
    for (name, text) in extra {
        xml.push_str(&format!("<{name}>{}</{name}>", xml_escape(text)));
    }
    xml.push_str(&format!("<RequestId>{request_id}</RequestId>"));
    xml.push_str(&format!("<HostId>{request_id}</HostId></Error>"));
    response(status, "application/xml", SimBody::full(xml))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn truncated_body_sends_half_then_fails() {
        let mut body = SimBody::truncated(Bytes::from_static(b"0123456789"));
        assert_eq!(body.size_hint().exact(), Some(10));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"01234");
        assert!(body.frame().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn obs_error_escapes_text() {
        let resp = obs_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "a<b & c",
            "rid",
            &[("Key", "x>y".to_owned())],
        );
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/xml");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("<Message>a&lt;b &amp; c</Message>"), "{text}");
        assert!(text.contains("<Key>x&gt;y</Key>"), "{text}");
    }
}

//! The browser dashboard, served on the gRPC listener.
//!
//! [`DashboardLayer`] is the outermost layer of the server: it answers
//! `GET`/`HEAD /` with the page and `GET`/`HEAD /assets/<name>` with its
//! script and style sheet, all compiled into the binary, and passes every
//! other request (gRPC, gRPC-Web, the JSON API) to the services inside. The
//! page only calls the JSON API of the same origin; it loads nothing from
//! anywhere else.
//!
//! Every file carries an `ETag` (a hash of its bytes) and `Cache-Control:
//! no-cache`: browsers keep a copy and revalidate it, so a new binary's page
//! is picked up at once while an unchanged one costs a `304 Not Modified`.

use std::sync::LazyLock;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use sha2::{Digest, Sha256};
use tonic::codegen::http::{self, HeaderValue, Method, StatusCode, header};
use tonic::codegen::{Bytes, Service};

/// One embedded file.
struct Asset {
    /// Request path.
    path: &'static str,
    /// `Content-Type`.
    content_type: &'static str,
    /// The bytes.
    body: &'static [u8],
}

/// The embedded files.
const ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
];

/// The page may load only its own files and call only its own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The ETag of each asset, in the order of [`ASSETS`].
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..8])))
                .expect("a hex ETag is a valid header value")
        })
        .collect()
});

/// The layer; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct DashboardLayer;

impl<S> tower::Layer<S> for DashboardLayer {
    type Service = Dashboard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Dashboard { inner }
    }
}

/// The service the layer wraps around the router.
#[derive(Debug, Clone)]
pub struct Dashboard<S> {
    inner: S,
}

/// What the dashboard answers for a request, or `None` to pass it on.
fn answer(method: &Method, path: &str, headers: &http::HeaderMap) -> Option<http::Response<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let index = ASSETS.iter().position(|a| a.path == path);
    let Some(index) = index else {
        if path.starts_with("/assets/") {
            return Some(plain(StatusCode::NOT_FOUND, "no such file\n"));
        }
        return None;
    };
    let asset = &ASSETS[index];
    let etag = ETAGS[index].clone();
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/").as_bytes() == etag.as_bytes()
        });
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else if method == Method::HEAD {
        (StatusCode::OK, Bytes::new())
    } else {
        (StatusCode::OK, Bytes::from_static(asset.body))
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if status == StatusCode::OK {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, etag);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(response)
}

/// A short plain-text answer.
fn plain(status: StatusCode, text: &'static str) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::from_static(text.as_bytes()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Dashboard<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if let Some(response) = answer(request.method(), request.uri().path(), request.headers()) {
            let response =
                response.map(|body| tonic::body::Body::new(http_body_util::Full::new(body)));
            return std::future::ready(Ok(response)).boxed();
        }
        self.inner
            .call(request)
            .map(|result| result.map(|response| response.map(tonic::body::Body::new)))
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<http::Response<Bytes>> {
        answer(&Method::GET, path, &http::HeaderMap::new())
    }

    #[test]
    fn the_page_and_its_assets_are_served_with_their_types() {
        let page = get("/").expect("the page");
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(page.body().starts_with(b"<!doctype html>"));
        let script = get("/assets/app.js").expect("the script");
        assert_eq!(
            script.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            get("/assets/nope.js").unwrap().status(),
            StatusCode::NOT_FOUND
        );
        assert!(get("/salesmetrics.v1.KpiService/GetKpis").is_none());
        assert!(answer(&Method::POST, "/", &http::HeaderMap::new()).is_none());
    }

    #[test]
    fn a_matching_etag_answers_not_modified() {
        let page = get("/").unwrap();
        let etag = page.headers()[header::ETAG].clone();
        let mut headers = http::HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        let again = answer(&Method::GET, "/", &headers).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.body().is_empty());
        let head = answer(&Method::HEAD, "/assets/app.css", &http::HeaderMap::new()).unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert!(head.body().is_empty());
        assert_eq!(
            head.headers()[header::CONTENT_LENGTH],
            ASSETS[2].body.len().to_string().as_str()
        );
    }
}

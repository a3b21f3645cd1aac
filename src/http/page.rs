//! The web page of the box office, embedded in the binary: `GET /` (the HTML) and
//! `GET /assets/{name}` (its script, style and icon). Plain HTML, CSS and JavaScript
//! in `src/http/page/`, with no build step and nothing fetched from elsewhere. The HTML
//! is revalidated on every load (`no-cache`, with an `ETag`), so a new binary's page is
//! seen at once; the assets are named in it with the build's version
//! (`?v=`), so they can be cached for a day.

use super::AppState;
use super::error::ApiError;
use super::seatmap::{etag_matches, not_modified};
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::LazyLock;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");
const ICON_SVG: &str = include_str!("page/icon.svg");

/// The page's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

/// The page's tag: a checksum of everything it is made of.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = crc32fast::Hasher::new();
    for part in [INDEX_HTML, APP_JS, APP_CSS, ICON_SVG] {
        hasher.update(part.as_bytes());
    }
    format!("{:08x}", hasher.finalize())
});

static INDEX: LazyLock<String> = LazyLock::new(|| INDEX_HTML.replace("{{version}}", &VERSION));

async fn index(headers: HeaderMap) -> Response {
    let etag = format!("\"page-{}\"", *VERSION);
    if etag_matches(&headers, &etag) {
        return not_modified(&etag);
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX.as_str(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    response
}

async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (content_type, body) = match name.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        "icon.svg" => ("image/svg+xml", ICON_SVG),
        _ => return Err(ApiError::no_route()),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response())
}

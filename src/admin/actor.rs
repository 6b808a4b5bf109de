//! Who made an admin request: the name of the admin token behind it
//! (`admin::auth` inserts it), for the audit log.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The name of the admin token behind a request; `None` when the request
/// carried none (a public route).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Actor>()
            .cloned()
            .unwrap_or(Actor(None)))
    }
}

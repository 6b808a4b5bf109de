//! Who is behind an admin request: the name of the admin token the auth
//! middleware accepted. The middleware inserts an [`Actor`] request
//! extension; handlers take `Actor` as an extractor (`Actor(None)` when no
//! middleware ran, e.g. before tokens exist or in tests).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The name of the admin token behind a request, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor(pub Option<String>);

impl<S> FromRequestParts<S> for Actor
where
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Actor>()
            .cloned()
            .unwrap_or(Actor(None)))
    }
}

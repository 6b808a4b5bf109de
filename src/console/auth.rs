//! The console's view of an admin token: who is behind it and whether it
//! may write. The token check itself is `crate::admin::auth::verify_token`
//! (the same one the API's bearer check uses), so a token revoked with
//! `DELETE /api/v1/tokens/{name}` ends its console sessions at their next
//! request.

use crate::state::App;

/// The operator behind a session.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's name (what the audit log records).
    pub name: String,
    /// Admin tokens may write; read tokens see everything, change nothing.
    pub admin: bool,
}

/// `Some` when `token` is a valid admin or read token.
pub async fn verify(app: &App, token: &str) -> Option<Principal> {
    let principal = crate::admin::auth::verify_token(app, token).await?;
    Some(Principal {
        admin: matches!(principal.role, crate::admin::auth::Role::Admin),
        name: principal.name,
    })
}

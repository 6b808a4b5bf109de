//! `GET /` (the login form without a session, the campaign list with
//! one), `POST /login`, `POST /logout`.

use axum::extract::{Form, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::layout::{error_box, respond, shell};
use super::session::{self, Operator};
use super::{auth, campaigns, ConsoleState};

/// Longest token the form accepts (tokens are far shorter; this only
/// keeps a pasted novel out of the token check).
const MAX_TOKEN_LEN: usize = 512;

fn login_page(error: Option<&str>) -> Markup {
    shell(
        "Log in",
        "",
        html! {
            main id="main" class="login" {
                h1 { "lwota console" }
                p { "Paste an admin or read token (" code { "lwota token create" } ", or "
                    code { "DATA_DIR/admin.token" } " for the first admin)." }
                @if let Some(message) = error { (error_box(message)) }
                form.stack method="post" action="/login" {
                    div {
                        label for="token" { "Token" }
                        input #token type="password" name="token" autocomplete="current-password"
                            required autofocus;
                    }
                    div { button type="submit" { "Log in" } }
                }
            }
        },
    )
}

/// `/`: the console's home, or the login form.
pub async fn home(
    State(state): State<ConsoleState>,
    op: Result<Operator, session::LoginRequired>,
) -> Response {
    match op {
        Ok(op) => campaigns::list_page(&state, &op, "Campaigns").await,
        Err(_) => respond(StatusCode::OK, login_page(None)),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    token: String,
}

pub async fn login(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // No session yet, so no CSRF token: the origin check keeps another
    // site from logging a browser in with the attacker's token.
    if !session::same_origin(&headers) {
        return respond(
            StatusCode::FORBIDDEN,
            login_page(Some("Refused: the login came from another site.")),
        );
    }
    let token = form.token.trim();
    let principal = if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        None
    } else {
        auth::verify(&state.app, token).await
    };
    let Some(principal) = principal else {
        metrics::counter!("lwota_console_logins_total", "outcome" => "refused").increment(1);
        tracing::info!("console login refused");
        return respond(
            StatusCode::UNAUTHORIZED,
            login_page(Some("That token was not accepted.")),
        );
    };
    metrics::counter!("lwota_console_logins_total", "outcome" => "ok").increment(1);
    tracing::info!(token = %principal.name, "console login");
    let id = state.sessions.start(token, state.app.now());
    (
        [(SET_COOKIE, session::cookie(Some(&id), &headers))],
        Redirect::to("/"),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrfForm {
    pub csrf: String,
}

pub async fn logout(
    State(state): State<ConsoleState>,
    op: Operator,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    // Logging out changes nothing stored, so a read token may do it too;
    // it still needs the CSRF token (no forced logouts from other sites).
    if !session::same_origin(&headers) || !session::csrf_matches(&form.csrf, &op.csrf) {
        return (StatusCode::FORBIDDEN, "refused: CSRF check failed").into_response();
    }
    state.sessions.end(&op.session);
    (
        [(SET_COOKIE, session::cookie(None, &headers))],
        Redirect::to("/"),
    )
        .into_response()
}

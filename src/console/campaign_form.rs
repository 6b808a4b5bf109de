//! `GET /campaigns/new` and `POST /campaigns`: the campaign form with every
//! option of `POST /api/v1/campaigns`. The form is turned into the API's
//! JSON body and handed to the API's own handler, so the rules (and their
//! messages) are the API's; a refusal is shown next to the field its
//! message is about.

use std::collections::BTreeMap;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::firmware;
use super::layout::{self, error_box, field, page, respond, Nav};
use super::session::Operator;
use super::ConsoleState;
use crate::admin::console_api::campaigns as api;

/// The form as posted (every value text; empty means "not set").
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignForm {
    csrf: String,
    firmware: String,
    /// `all`, `source_versions` or `devices`.
    target: String,
    source_versions: String,
    devices: String,
    kind: String,
    force: Option<String>,
    dynamic: Option<String>,
    start_at: String,
    retry_interval_s: String,
    retry_max: String,
    timeout_s: String,
    pack_size: String,
    pack_interval_s: String,
    waves: String,
    min_battery: String,
}

/// Messages by form field; `""` is the form as a whole.
type Errors = BTreeMap<&'static str, String>;

fn number(errors: &mut Errors, name: &'static str, value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    match value.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            errors.insert(name, format!("{value:?} is not a whole number"));
            None
        }
    }
}

fn words(value: &str) -> Vec<Value> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(|w| Value::String(w.to_string()))
        .collect()
}

/// The API request body the form stands for, or the fields that are not
/// even numbers.
fn body(form: &CampaignForm) -> Result<Value, Errors> {
    let mut errors = Errors::new();
    let mut body = Map::new();
    match number(&mut errors, "firmware", &form.firmware) {
        Some(id) => {
            body.insert("firmware".into(), json!(id));
        }
        None if !errors.contains_key("firmware") => {
            errors.insert("firmware", "choose a firmware".into());
        }
        None => {}
    }
    let target = match form.target.as_str() {
        "source_versions" => json!({"source_versions": words(&form.source_versions)}),
        "devices" => json!({"devices": words(&form.devices)}),
        _ => json!({"all": true}),
    };
    body.insert("target".into(), target);
    if form.kind == "verify" {
        body.insert("kind".into(), json!("verify"));
    }
    if form.force.is_some() {
        body.insert("force".into(), json!(true));
    }
    if form.dynamic.is_some() {
        body.insert("dynamic".into(), json!(true));
    }
    if !form.start_at.trim().is_empty() {
        body.insert("start_at".into(), json!(form.start_at.trim()));
    }
    let interval = number(&mut errors, "retry", &form.retry_interval_s);
    let max = number(&mut errors, "retry", &form.retry_max);
    if interval.is_some() || max.is_some() {
        let mut retry = Map::new();
        if let Some(n) = interval {
            retry.insert("interval_s".into(), json!(n));
        }
        if let Some(n) = max {
            retry.insert("max".into(), json!(n));
        }
        body.insert("retry".into(), Value::Object(retry));
    }
    if let Some(n) = number(&mut errors, "timeout_s", &form.timeout_s) {
        body.insert("timeout_s".into(), json!(n));
    }
    let size = number(&mut errors, "rate", &form.pack_size);
    let window = number(&mut errors, "rate", &form.pack_interval_s);
    if size.is_some() || window.is_some() {
        let mut rate = Map::new();
        if let Some(n) = size {
            rate.insert("pack_size".into(), json!(n));
        }
        if let Some(n) = window {
            rate.insert("pack_interval_s".into(), json!(n));
        }
        body.insert("rate".into(), Value::Object(rate));
    }
    let mut waves = Vec::new();
    for line in form.waves.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line
            .split(|c: char| c == ':' || c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .collect();
        let mut wave = Map::new();
        match parts.as_slice() {
            [p] | [p, _] if p.parse::<u64>().is_ok() => {
                wave.insert("percent".into(), json!(p.parse::<u64>().unwrap_or(0)));
            }
            _ => {
                errors.insert(
                    "waves",
                    format!("{line:?}: write one wave per line as PERCENT:ABORT_FAILURE_PERCENT"),
                );
                continue;
            }
        }
        if let [_, f] = parts.as_slice() {
            match f.parse::<u64>() {
                Ok(f) => {
                    wave.insert("abort_failure_percent".into(), json!(f));
                }
                Err(_) => {
                    errors.insert("waves", format!("{line:?}: {f:?} is not a whole number"));
                }
            }
        }
        waves.push(Value::Object(wave));
    }
    if !waves.is_empty() {
        body.insert("waves".into(), Value::Array(waves));
    }
    if let Some(n) = number(&mut errors, "min_battery", &form.min_battery) {
        body.insert("min_battery".into(), json!(n));
    }
    if errors.is_empty() {
        Ok(Value::Object(body))
    } else {
        Err(errors)
    }
}

/// The form field an API error is about, from its code and message
/// (`""`: the form as a whole).
pub fn field_of(code: &str, message: &str) -> &'static str {
    match code {
        "firmware_unverified" => return "force",
        "unknown_firmware" => return "firmware",
        "campaign_conflict" => return "",
        _ => {}
    }
    let m = message.to_ascii_lowercase();
    // Most specific names first: "target.devices" before "target".
    const FIELDS: [(&str, &str); 14] = [
        ("source_versions", "source_versions"),
        ("target.devices", "devices"),
        ("waves", "waves"),
        ("wave", "waves"),
        ("retry", "retry"),
        ("pack_", "rate"),
        ("rate", "rate"),
        ("start_at", "start_at"),
        ("timeout", "timeout_s"),
        ("battery", "min_battery"),
        ("dynamic", "dynamic"),
        ("kind", "kind"),
        ("target", "target"),
        ("firmware", "firmware"),
    ];
    FIELDS
        .iter()
        .find(|(needle, _)| m.contains(needle))
        .map(|(_, f)| *f)
        .unwrap_or("")
}

fn field_error(errors: &Errors, name: &str) -> Markup {
    html! {
        @if let Some(message) = errors.get(name) {
            span.field-error id={ (name) "-error" } role="alert" { (message) }
        }
    }
}

fn render(fws: &[Value], form: &CampaignForm, errors: &Errors, op: &Operator) -> Markup {
    let target = if form.target.is_empty() {
        "all"
    } else {
        form.target.as_str()
    };
    let invalid = |name: &str| errors.contains_key(name);
    let described = |name: &str| format!("{name}-hint {name}-error");
    let select = |name: &'static str, current: &str, choices: &[(&str, &str)]| {
        html! {
            select id=(name) name=(name) aria-describedby=(described(name)) {
                @for (value, label) in choices {
                    option value=(value) selected[*value == current] { (label) }
                }
            }
        }
    };
    let body = html! {
        @if let Some(message) = errors.get("") { (error_box(message)) }
        @if !errors.is_empty() && !errors.contains_key("") {
            (error_box("The campaign was not created: see the messages next to the fields."))
        }
        form.stack #campaign-form method="post" action="/campaigns" novalidate {
            input type="hidden" name="csrf" value=(op.csrf);
            div {
                label for="firmware" { "Firmware" }
                select #firmware name="firmware" required aria-invalid=(invalid("firmware")) aria-describedby=(described("firmware")) {
                    option value="" { "Choose…" }
                    @for fw in fws.iter().rev() {
                        @let id = field(fw, "id");
                        option value=(id) selected[id == form.firmware] {
                            (id) " — " (field(fw, "product")) " " (field(fw, "version"))
                            @if fw["verified"] == json!(true) { " (verified)" }
                        }
                    }
                }
                (field_error(errors, "firmware"))
            }
            fieldset {
                legend { "Target" }
                div {
                    @for (value, label) in [("all", "All devices of the product"), ("source_versions", "Devices on versions…"), ("devices", "Listed devices…")] {
                        label.inline {
                            input type="radio" name="target" value=(value) checked[target == value];
                            (label)
                        }
                    }
                    (field_error(errors, "target"))
                }
                div data-target-field="source_versions" {
                    label for="source_versions" { "Source versions" }
                    input #source_versions type="text" name="source_versions" value=(form.source_versions)
                        aria-invalid=(invalid("source_versions")) aria-describedby=(described("source_versions"));
                    span.hint id="source_versions-hint" { "Separated by commas or spaces." }
                    (field_error(errors, "source_versions"))
                }
                div data-target-field="devices" {
                    label for="devices" { "Device names" }
                    textarea #devices name="devices" aria-invalid=(invalid("devices")) aria-describedby=(described("devices")) { (form.devices) }
                    span.hint id="devices-hint" { "One per line (or separated by commas); at most 10,000." }
                    (field_error(errors, "devices"))
                }
            }
            div {
                label for="kind" { "Kind" }
                (select("kind", &form.kind, &[("batch", "batch"), ("verify", "verify (1-10 listed devices; marks the firmware verified)")]))
                (field_error(errors, "kind"))
            }
            div {
                label.inline { input type="checkbox" name="force" checked[form.force.is_some()] aria-describedby="force-hint force-error"; "Force (firmware not verified)" }
                span.hint id="force-hint" { "Needed when the server requires verified firmware and this one is not; recorded in the audit log." }
                (field_error(errors, "force"))
            }
            div {
                label.inline { input type="checkbox" name="dynamic" checked[form.dynamic.is_some()] aria-describedby="dynamic-hint dynamic-error"; "Dynamic" }
                span.hint id="dynamic-hint" { "Devices that match later also get the update." }
                (field_error(errors, "dynamic"))
            }
            div {
                label for="start_at" { "Start at (optional)" }
                input #start_at type="text" name="start_at" value=(form.start_at) placeholder="2026-12-01T09:00:00Z"
                    aria-invalid=(invalid("start_at")) aria-describedby=(described("start_at"));
                span.hint id="start_at-hint" { "RFC 3339 time, 5 minutes to 7 days ahead; static campaigns only." }
                (field_error(errors, "start_at"))
            }
            fieldset {
                legend { "Retry after failure" }
                div {
                    label for="retry_interval_s" { "Interval" }
                    (select("retry_interval_s", &form.retry_interval_s, &[("", "no retry"), ("0", "at once"), ("600", "10 minutes"), ("1800", "30 minutes"), ("3600", "1 hour"), ("86400", "1 day")]))
                }
                div {
                    label for="retry_max" { "At most" }
                    (select("retry_max", &form.retry_max, &[("", "—"), ("1", "1 more time"), ("2", "2 more times"), ("5", "5 more times")]))
                }
                (field_error(errors, "retry"))
            }
            div {
                label for="timeout_s" { "Task timeout, seconds (optional)" }
                input #timeout_s type="number" min="1" name="timeout_s" value=(form.timeout_s)
                    aria-invalid=(invalid("timeout_s")) aria-describedby=(described("timeout_s"));
                span.hint id="timeout_s-hint" { "Default: the server's tasks.timeout." }
                (field_error(errors, "timeout_s"))
            }
            fieldset {
                legend { "Rate limit (optional)" }
                div {
                    label for="pack_size" { "Devices per window" }
                    input #pack_size type="number" min="1" name="pack_size" value=(form.pack_size);
                }
                div {
                    label for="pack_interval_s" { "Window, seconds" }
                    input #pack_interval_s type="number" min="1" name="pack_interval_s" value=(form.pack_interval_s);
                }
                (field_error(errors, "rate"))
            }
            div {
                label for="waves" { "Waves (optional)" }
                textarea #waves name="waves" placeholder="10:20\n50:10\n100:5" aria-invalid=(invalid("waves")) aria-describedby=(described("waves")) { (form.waves) }
                span.hint id="waves-hint" { "One wave per line: cumulative PERCENT:ABORT_FAILURE_PERCENT. A wave with more failures pauses the campaign." }
                (field_error(errors, "waves"))
            }
            div {
                label for="min_battery" { "Minimum battery, % (optional)" }
                input #min_battery type="number" min="0" max="100" name="min_battery" value=(form.min_battery)
                    aria-invalid=(invalid("min_battery")) aria-describedby=(described("min_battery"));
                span.hint id="min_battery-hint" { "Devices reporting less wait." }
                (field_error(errors, "min_battery"))
            }
            div { button type="submit" { "Create campaign" } }
        }
    };
    page("New campaign", Nav::Campaigns, op, body)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewParams {
    firmware: Option<String>,
}

pub async fn new(
    State(state): State<ConsoleState>,
    op: Operator,
    axum::extract::Query(q): axum::extract::Query<NewParams>,
) -> Response {
    let fws = match firmware::all(&state).await {
        Ok(list) => list,
        Err(e) => return layout::error_page(&op, &e, "/campaigns"),
    };
    let form = CampaignForm {
        firmware: q.firmware.unwrap_or_default(),
        ..CampaignForm::default()
    };
    let mut errors = Errors::new();
    if !op.admin() {
        errors.insert("", "A read token cannot create campaigns.".into());
    }
    respond(StatusCode::OK, render(&fws, &form, &errors, &op))
}

pub async fn create(
    State(state): State<ConsoleState>,
    op: Operator,
    headers: HeaderMap,
    Form(form): Form<CampaignForm>,
) -> Response {
    let fws = match firmware::all(&state).await {
        Ok(list) => list,
        Err(e) => return layout::error_page(&op, &e, "/campaigns"),
    };
    if let Err(why) = op.may_write(&headers, &form.csrf) {
        let errors = Errors::from([("", why.to_string())]);
        return respond(StatusCode::FORBIDDEN, render(&fws, &form, &errors, &op));
    }
    let request = match body(&form) {
        Ok(request) => request,
        Err(errors) => return respond(StatusCode::BAD_REQUEST, render(&fws, &form, &errors, &op)),
    };
    let bytes = axum::body::Bytes::from(request.to_string());
    match api::create(
        State(state.app.clone()),
        crate::admin::actor::Actor(Some(op.principal.name.clone())),
        bytes,
    )
    .await
    {
        Ok((_, Json(created))) => {
            tracing::info!(id = %field(&created, "id"), token = %op.principal.name, "console: campaign created");
            Redirect::to(&format!("/campaigns/{}", field(&created, "id"))).into_response()
        }
        Err(e) => {
            let errors = Errors::from([(field_of(e.code, &e.message), e.message.clone())]);
            respond(e.status, render(&fws, &form, &errors, &op))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_becomes_the_api_body() {
        let form = CampaignForm {
            firmware: "3".into(),
            target: "devices".into(),
            devices: "a\nb, c".into(),
            retry_interval_s: "600".into(),
            retry_max: "2".into(),
            waves: "10:20\n100:5".into(),
            force: Some("on".into()),
            ..CampaignForm::default()
        };
        let body = body(&form).unwrap();
        assert_eq!(
            body,
            json!({"firmware": 3, "target": {"devices": ["a", "b", "c"]}, "force": true,
                   "retry": {"interval_s": 600, "max": 2},
                   "waves": [{"percent": 10, "abort_failure_percent": 20}, {"percent": 100, "abort_failure_percent": 5}]})
        );
        let bad = CampaignForm {
            firmware: "x".into(),
            timeout_s: "soon".into(),
            ..CampaignForm::default()
        };
        let errors = body_errors(&bad);
        assert!(errors.contains_key("firmware") && errors.contains_key("timeout_s"));
    }

    fn body_errors(form: &CampaignForm) -> Errors {
        body(form).unwrap_err()
    }

    #[test]
    fn api_messages_land_next_to_their_field() {
        assert_eq!(
            field_of("invalid_request", "target.devices must not be empty"),
            "devices"
        );
        assert_eq!(
            field_of("invalid_request", "retry.interval_s must be one of 0, 600"),
            "retry"
        );
        assert_eq!(
            field_of(
                "invalid_request",
                "start_at must be 5 minutes to 7 days ahead"
            ),
            "start_at"
        );
        assert_eq!(
            field_of("firmware_unverified", "firmware 3 is not verified"),
            "force"
        );
        assert_eq!(field_of("campaign_conflict", "overlaps campaign 2"), "");
    }
}

//! The Object 5 / 9 flow driven by hand: every request it sends is
//! answered by the test, like a device would.

use super::*;

fn text(code: &str, body: &str) -> Response {
    Response::Answer {
        success: code.starts_with('2'),
        code: code.into(),
        content_format: Some(format::TEXT),
        payload: body.as_bytes().to_vec(),
    }
}

fn sent(commands: &[Command]) -> Vec<(u32, Request)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Send { id, request } => Some((*id, request.clone())),
            _ => None,
        })
        .collect()
}

fn one(commands: &[Command]) -> (u32, Request) {
    let s = sent(commands);
    assert_eq!(s.len(), 1, "{commands:?}");
    s[0].clone()
}

fn tasks(commands: &[Command]) -> Vec<TaskEvent> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Task(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn report(state: TaskState) -> TaskEvent {
    TaskEvent::Report {
        state,
        progress: None,
        error: None,
    }
}

/// Drives a flow up to the delivery request; returns it, the observe ids
/// (state, result) and the delivery request.
fn to_delivery(
    flow: &mut Flow,
    delivery: Response,
    state: &str,
) -> (u32, u32, (u32, Request), Vec<Command>) {
    let (id, r) = one(&flow.start());
    assert_eq!(r.path.to_string(), "/5/0/9");
    assert_eq!(r.accept, Some(format::TEXT), "reads always carry Accept");
    let only_one_way = matches!(
        &delivery,
        Response::Answer { success: true, payload, .. } if payload == b"0" || payload == b"1"
    );
    let (id, r) = one(&flow.on_response(id, &delivery));
    let (id, r) = if only_one_way {
        // Protocol Support cannot change the choice: not read.
        (id, r)
    } else {
        assert_eq!(r.path.to_string(), "/5/0/8");
        one(&flow.on_response(id, &text("4.04", "")))
    };
    assert_eq!(r.path.to_string(), "/5/0/3");
    let mut out = flow.on_response(id, &text("2.05", state));
    if state == "2" {
        let (id, r) = one(&out);
        assert_eq!(
            (r.path.to_string(), r.body.clone()),
            ("/5/0/1".into(), Body::Bytes(vec![]))
        );
        assert_eq!(
            r.content_format,
            Some(format::TEXT),
            "writes always carry Content-Format"
        );
        out = flow.on_response(id, &text("2.04", ""));
    }
    let (obs_state, r) = one(&out);
    assert!(r.observe && r.path.to_string() == "/5/0/3");
    let (obs_result, r) = one(&flow.on_response(obs_state, &text("2.05", "0")));
    assert!(r.observe && r.path.to_string() == "/5/0/5");
    let out = flow.on_response(obs_result, &text("2.05", "0"));
    let delivery = one(&out);
    (obs_state, obs_result, delivery, out)
}

fn flow(default: Delivery) -> Flow {
    Flow::new(
        FIRMWARE,
        "1.1",
        "coap://127.0.0.1:5683/ota/fw/1/d/c1".into(),
        default,
    )
}

#[test]
fn pull_update_end_to_end() {
    let mut f = flow(Delivery::Pull);
    let (st, res, (wid, w), out) = to_delivery(&mut f, text("2.05", "2"), "0");
    assert_eq!(tasks(&out), vec![TaskEvent::Handed]);
    assert_eq!(w.path.to_string(), "/5/0/1");
    assert_eq!(
        w.body,
        Body::Bytes(b"coap://127.0.0.1:5683/ota/fw/1/d/c1".to_vec())
    );
    assert!(f.on_response(wid, &text("2.04", "")).is_empty());
    assert_eq!(
        tasks(&f.on_notify(st, &text("2.05", "1"))),
        vec![report(TaskState::Downloading)]
    );
    let out = f.on_notify(st, &text("2.05", "2"));
    assert_eq!(tasks(&out), vec![report(TaskState::Downloaded)]);
    let (eid, e) = one(&out);
    assert_eq!(
        (e.method, e.path.to_string()),
        (Method::Post, "/5/0/2".into())
    );
    assert_eq!(
        tasks(&f.on_response(eid, &text("2.04", ""))),
        vec![report(TaskState::Updating)]
    );
    assert!(tasks(&f.on_notify(st, &text("2.05", "3"))).contains(&report(TaskState::Updating)));
    let out = f.on_notify(res, &text("2.05", "1"));
    assert_eq!(tasks(&out), vec![TaskEvent::ReachedTarget]);
    let (vid, v) = one(&out);
    assert_eq!(v.path.to_string(), "/3/0/3");
    let out = f.on_response(vid, &text("2.05", "1.0"));
    assert_eq!(out, vec![Command::Version("1.0".into()), Command::Done]);
}

#[test]
fn push_when_the_device_only_takes_push_or_config_says_so() {
    for (delivery, default) in [
        (text("2.05", "1"), Delivery::Pull),
        (text("4.04", ""), Delivery::Push),
    ] {
        let mut f = flow(default);
        let (_, _, (_, w), out) = to_delivery(&mut f, delivery, "0");
        assert_eq!(w.path.to_string(), "/5/0/0");
        assert_eq!(w.body, Body::Image);
        assert_eq!(w.content_format, Some(format::OPAQUE));
        assert_eq!(
            tasks(&out),
            vec![TaskEvent::Handed, report(TaskState::Downloading)]
        );
    }
    // Pull only (0) wins over a push default.
    let mut f = flow(Delivery::Push);
    let (_, _, (_, w), _) = to_delivery(&mut f, text("2.05", "0"), "0");
    assert_eq!(w.path.to_string(), "/5/0/1");
}

#[test]
fn downloaded_with_an_old_package_clears_the_uri_first() {
    let mut f = flow(Delivery::Pull);
    let (_, _, (_, w), _) = to_delivery(&mut f, text("2.05", "2"), "2");
    assert_eq!(w.path.to_string(), "/5/0/1");
}

#[test]
fn every_update_result_maps_to_its_error() {
    let expected = [
        (2, "not enough flash"),
        (3, "out of RAM"),
        (4, "connection lost"),
        (5, "integrity check failure"),
        (6, "unsupported package type"),
        (7, "invalid URI"),
        (8, "firmware update failed"),
        (9, "unsupported protocol"),
        (10, "cancelled"),
    ];
    for (code, words) in expected {
        let mut f = flow(Delivery::Pull);
        let (_, res, _, _) = to_delivery(&mut f, text("2.05", "2"), "0");
        let out = f.on_notify(res, &text("2.05", &code.to_string()));
        let Some(TaskEvent::Report {
            state: TaskState::Failed,
            error: Some(error),
            ..
        }) = tasks(&out).pop()
        else {
            panic!("result {code}: {out:?}");
        };
        assert!(
            error.starts_with(&format!("update result {code}: ")),
            "{error}"
        );
        assert!(error.contains(words), "{error}");
        assert_eq!(out.last(), Some(&Command::Done));
    }
    // 0 (initial) and 1 before anything happened are not final.
    assert_eq!(result_error(&FIRMWARE, 0), None);
    assert_eq!(result_error(&FIRMWARE, 1), None);
}

#[test]
fn a_result_left_from_an_earlier_update_is_ignored() {
    let mut f = flow(Delivery::Pull);
    let (st, _, (_, _), _) = to_delivery(&mut f, text("2.05", "2"), "0");
    // Result 1 observed at start (old) and notified again: nothing.
    let mut g = flow(Delivery::Pull);
    let (id, _) = one(&g.start());
    let (id, _) = one(&g.on_response(id, &text("2.05", "2")));
    let (id, _) = one(&g.on_response(id, &text("4.04", "")));
    let (obs_state, _) = one(&g.on_response(id, &text("2.05", "0")));
    let (obs_result, _) = one(&g.on_response(obs_state, &text("2.05", "0")));
    let out = g.on_response(obs_result, &text("2.05", "1"));
    assert_eq!(tasks(&out), vec![TaskEvent::Handed]);
    assert!(tasks(&g.on_notify(obs_result, &text("2.05", "1"))).is_empty());
    // It moves 1 → 0 → 1: that is this update's success.
    g.on_notify(obs_result, &text("2.05", "0"));
    assert_eq!(
        tasks(&g.on_notify(obs_result, &text("2.05", "1"))),
        vec![TaskEvent::ReachedTarget]
    );
    let _ = st;
}

#[test]
fn refused_writes_and_silent_devices_fail_with_a_reason() {
    let mut f = flow(Delivery::Pull);
    let (_, _, (wid, _), _) = to_delivery(&mut f, text("2.05", "2"), "0");
    let out = f.on_response(wid, &text("4.00", ""));
    assert!(matches!(
        tasks(&out).pop(),
        Some(TaskEvent::Report { state: TaskState::Failed, error: Some(e), .. }) if e.contains("package URI write refused: 4.00")
    ));
    let mut g = flow(Delivery::Pull);
    let (id, _) = one(&g.start());
    let (id, _) = one(&g.on_response(id, &Response::Failed("timeout".into())));
    let (id, _) = one(&g.on_response(id, &Response::Failed("timeout".into())));
    let out = g.on_response(id, &Response::Failed("no answer in time".into()));
    assert_eq!(out.last(), Some(&Command::Done));
}

#[test]
fn software_goes_through_object_9() {
    let mut f = Flow::new(SOFTWARE, "1.0", "coap://h:1/x".into(), Delivery::Pull);
    let (id, r) = one(&f.start());
    assert_eq!(r.path.to_string(), "/9/0/7");
    let (st, r) = one(&f.on_response(id, &text("2.05", "0")));
    assert_eq!(r.path.to_string(), "/9/0/7");
    let (res, r) = one(&f.on_response(st, &text("2.05", "0")));
    assert_eq!(r.path.to_string(), "/9/0/9");
    let (_, w) = one(&f.on_response(res, &text("2.05", "0")));
    assert_eq!(w.path.to_string(), "/9/0/3");
    let out = f.on_notify(st, &text("2.05", "3"));
    let (eid, e) = one(&out);
    assert_eq!(e.path.to_string(), "/9/0/4");
    f.on_response(eid, &text("2.04", ""));
    let out = f.on_notify(res, &text("2.05", "2"));
    assert_eq!(tasks(&out), vec![TaskEvent::ReachedTarget]);
    let (vid, _) = one(&out);
    let (aid, a) = one(&f.on_response(vid, &text("2.05", "2.0")));
    assert_eq!(a.path.to_string(), "/9/0/10");
    assert_eq!(f.on_response(aid, &text("2.04", "")), vec![Command::Done]);
    let mut g = Flow::new(SOFTWARE, "1.0", "coap://h:1/x".into(), Delivery::Pull);
    assert!(result_error(&SOFTWARE, 53).unwrap().contains("integrity"));
    let _ = g.start();
}

#[test]
fn version_answers_are_validated() {
    assert_eq!(version_of(&text("2.05", "3.14.0")), Some("3.14.0".into()));
    assert_eq!(version_of(&text("2.05", "bad version!")), None);
    assert_eq!(version_of(&text("5.00", "")), None);
}

fn tlv_single(resource: u16, value: i64) -> Response {
    let path = Path::resource(5, 0, resource);
    let v = Value::Int(value);
    let payload = content::encode(format::TLV, &path, &[content::ResourceValue::new(path, v)])
        .expect("TLV encodes");
    Response::Answer {
        success: true,
        code: "2.05".into(),
        content_format: Some(format::TLV),
        payload,
    }
}

#[test]
fn tlv_only_lwm2m_10_client_is_read_and_observed_in_tlv() {
    // A TLV-only 1.0 client refuses the text Accept: asked again in TLV,
    // the mandatory 1.0 format, which is then kept.
    let mut f = Flow::new(FIRMWARE, "1.0", "coap://h:1/x".into(), Delivery::Push);
    let (id, r) = one(&f.start());
    assert_eq!(r.accept, Some(format::TEXT), "1.0: text first");
    let (id, r) = one(&f.on_response(id, &text("4.06", "")));
    assert_eq!(r.accept, Some(format::TLV), "then the mandatory TLV");
    // Delivery Method 1 (push only): Protocol Support is not read.
    let (id, r) = one(&f.on_response(id, &tlv_single(9, 1)));
    assert_eq!(
        (r.path.to_string(), r.accept),
        ("/5/0/3".into(), Some(format::TLV))
    );
    let (st, r) = one(&f.on_response(id, &tlv_single(3, 0)));
    assert!(r.observe);
    assert_eq!(r.accept, Some(format::TLV));
    let (res, r) = one(&f.on_response(st, &tlv_single(3, 0)));
    assert_eq!(r.accept, Some(format::TLV));
    let (_, w) = one(&f.on_response(res, &tlv_single(5, 0)));
    assert_eq!(
        w.path.to_string(),
        "/5/0/0",
        "Delivery Method 1 read from TLV: push"
    );
}

#[test]
fn not_acceptable_moves_to_the_next_format_and_keeps_it() {
    // A 1.0 client that speaks TLV only refuses text.
    let mut f = Flow::new(FIRMWARE, "1.0", "coap://h:1/x".into(), Delivery::Pull);
    let (id, r) = one(&f.start());
    assert_eq!(r.accept, Some(format::TEXT));
    let (retry, r) = one(&f.on_response(id, &text("4.06", "")));
    assert_ne!(retry, id, "a new request");
    assert_eq!(
        (r.path.to_string(), r.accept),
        ("/5/0/9".into(), Some(format::TLV))
    );
    // The late answer of the refused request changes nothing.
    assert!(f.on_response(id, &text("2.05", "1")).is_empty());
    let (id, r) = one(&f.on_response(retry, &tlv_single(9, 0)));
    assert_eq!(r.path.to_string(), "/5/0/3");
    assert_eq!(r.accept, Some(format::TLV), "the accepted format is kept");
    let (st, r) = one(&f.on_response(id, &tlv_single(3, 0)));
    assert_eq!((r.observe, r.accept), (true, Some(format::TLV)));

    // 1.1: an observe refused in text is observed again in SenML-JSON,
    // and its notifications count under the new id.
    let mut g = flow(Delivery::Pull);
    let (id, _) = one(&g.start());
    let (id, _) = one(&g.on_response(id, &text("2.05", "0")));
    let (obs, r) = one(&g.on_response(id, &text("2.05", "0")));
    assert_eq!((r.observe, r.accept), (true, Some(format::TEXT)));
    let (obs2, r) = one(&g.on_response(obs, &text("4.06", "")));
    assert_eq!((r.observe, r.accept), (true, Some(format::SENML_JSON)));
    let (res, r) = one(&g.on_response(obs2, &text("2.05", "0")));
    assert_eq!(
        (r.path.to_string(), r.accept),
        ("/5/0/5".into(), Some(format::SENML_JSON))
    );
    let (_, w) = one(&g.on_response(res, &text("2.05", "0")));
    assert_eq!(w.path.to_string(), "/5/0/1");
    assert_eq!(
        tasks(&g.on_notify(obs2, &text("2.05", "1"))),
        vec![report(TaskState::Downloading)]
    );
    let _ = st;

    // When every format was refused, the 4.06 stands: an observe that
    // cannot be set up does not retry forever.
    let mut h = Flow::new(FIRMWARE, "1.0", "coap://h:1/x".into(), Delivery::Pull);
    let (id, _) = one(&h.start());
    let (id, _) = one(&h.on_response(id, &text("4.06", "")));
    let (_, r) = one(&h.on_response(id, &text("4.06", "")));
    assert_eq!(
        r.path.to_string(),
        "/5/0/8",
        "no format left: the flow moves on"
    );
}

#[test]
fn version_reads_follow_the_accept_rule() {
    let accepts =
        |v: &str| -> Vec<Option<u16>> { read_version(v).iter().map(|r| r.accept).collect() };
    assert_eq!(accepts("1.0"), vec![Some(format::TEXT), Some(format::TLV)]);
    assert_eq!(
        accepts("1.1"),
        vec![
            Some(format::TEXT),
            Some(format::SENML_JSON),
            Some(format::TLV)
        ]
    );
    let path = Path::resource(3, 0, 3);
    let payload = content::encode(
        format::TLV,
        &path,
        &[content::ResourceValue::new(
            path,
            Value::String("1.0".into()),
        )],
    )
    .unwrap();
    let tlv = Response::Answer {
        success: true,
        code: "2.05".into(),
        content_format: Some(format::TLV),
        payload,
    };
    assert_eq!(version_of(&tlv), Some("1.0".into()));
}

#[test]
fn protocol_support_is_read_only_when_the_device_takes_both_ways() {
    for (delivery, reads_protocols) in [("0", false), ("1", false), ("2", true)] {
        let mut f = flow(Delivery::Pull);
        let (id, _) = one(&f.start());
        let (_, r) = one(&f.on_response(id, &text("2.05", delivery)));
        let expected = if reads_protocols { "/5/0/8" } else { "/5/0/3" };
        assert_eq!(r.path.to_string(), expected, "delivery method {delivery}");
    }
}

#[test]
fn a_wake_up_re_reads_what_the_flow_missed_and_counts_it_once() {
    let mut f = flow(Delivery::Pull);
    // Nothing is re-read before delivery: the flow's own requests are
    // still on their way.
    assert!(f.on_wake(false).is_empty());
    let (st, res, (wid, _), _) = to_delivery(&mut f, text("2.05", "2"), "0");
    assert!(f.on_response(wid, &text("2.04", "")).is_empty());
    // The Downloaded notification was lost; the device sends an Update.
    let reads = sent(&f.on_wake(false));
    assert_eq!(reads.len(), 2);
    assert!(reads
        .iter()
        .all(|(_, r)| !r.observe && r.method == Method::Get));
    assert_eq!(reads[0].1.path.to_string(), "/5/0/3");
    assert_eq!(reads[1].1.path.to_string(), "/5/0/5");
    let out = f.on_response(reads[0].0, &text("2.05", "2"));
    assert_eq!(tasks(&out), vec![report(TaskState::Downloaded)]);
    let (eid, e) = one(&out);
    assert_eq!(e.path.to_string(), "/5/0/2");
    assert!(f.on_response(reads[1].0, &text("2.05", "0")).is_empty());
    // The late notification does not execute a second time.
    assert!(sent(&f.on_notify(st, &text("2.05", "2"))).is_empty());
    f.on_response(eid, &text("2.04", ""));
    // Installed; the result notification is lost too. The next wake-up
    // reads it: success, once, even when the notification comes after.
    let reads = sent(&f.on_wake(false));
    let out = f.on_response(reads[1].0, &text("2.05", "1"));
    assert_eq!(tasks(&out), vec![TaskEvent::ReachedTarget]);
    let (vid, v) = one(&out);
    assert_eq!(v.path.to_string(), "/3/0/3");
    assert!(f.on_notify(res, &text("2.05", "1")).is_empty());
    assert!(f.on_response(reads[0].0, &text("2.05", "0")).is_empty());
    let out = f.on_response(vid, &text("2.05", "2.0"));
    assert_eq!(out, vec![Command::Version("2.0".into()), Command::Done]);
    assert!(f.on_wake(false).is_empty(), "a finished flow reads nothing");
}

#[test]
fn a_re_register_during_the_flow_observes_again() {
    let mut f = flow(Delivery::Pull);
    let (st, res, (wid, _), _) = to_delivery(&mut f, text("2.05", "2"), "0");
    f.on_response(wid, &text("2.04", ""));
    let observes = sent(&f.on_wake(true));
    assert_eq!(observes.len(), 2);
    assert!(observes.iter().all(|(_, r)| r.observe));
    let (new_st, new_res) = (observes[0].0, observes[1].0);
    assert!(new_st != st && new_res != res);
    // The old observations are over: their notifications count no more.
    assert!(f.on_notify(st, &text("2.05", "2")).is_empty());
    let out = f.on_response(new_st, &text("2.05", "2"));
    assert_eq!(tasks(&out), vec![report(TaskState::Downloaded)]);
    let (eid, _) = one(&out);
    f.on_response(eid, &text("2.04", ""));
    f.on_response(new_res, &text("2.05", "0"));
    let out = f.on_notify(new_res, &text("2.05", "1"));
    assert_eq!(tasks(&out), vec![TaskEvent::ReachedTarget]);
}

#[test]
fn a_resumed_flow_checks_the_version_before_delivering_again() {
    // The device already runs the target: done, nothing delivered.
    let mut f = flow(Delivery::Pull).resuming("2.0");
    let (id, r) = one(&f.start());
    assert_eq!(r.path.to_string(), "/3/0/3");
    let out = f.on_response(id, &text("2.05", "2.0"));
    assert_eq!(tasks(&out), vec![TaskEvent::ReachedTarget]);
    assert!(sent(&out).is_empty());
    assert_eq!(out.last(), Some(&Command::Done));
    // It does not: the usual flow follows.
    let mut g = flow(Delivery::Pull).resuming("2.0");
    let (id, _) = one(&g.start());
    let (_, r) = one(&g.on_response(id, &text("2.05", "1.0")));
    assert_eq!(r.path.to_string(), "/5/0/9");
    // No answer at all: the usual flow too (its reads decide).
    let mut h = flow(Delivery::Pull).resuming("2.0");
    let (id, _) = one(&h.start());
    let (_, r) = one(&h.on_response(id, &Response::Failed("timeout".into())));
    assert_eq!(r.path.to_string(), "/5/0/9");
}

#[test]
fn wake_ups_do_not_pile_up_re_reads() {
    let mut f = flow(Delivery::Pull);
    let (_, _, (wid, _), _) = to_delivery(&mut f, text("2.05", "2"), "0");
    f.on_response(wid, &text("2.04", ""));
    let first = sent(&f.on_wake(false));
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|(id, _)| f.is_reread(*id)));
    // Updates every second while the reads are unanswered: no new reads
    // queue up ahead of what the flow sends next.
    assert!(f.on_wake(false).is_empty());
    assert!(f.on_wake(false).is_empty());
    // A lost re-read changes nothing; the next wake-up reads it again.
    assert!(f
        .on_response(first[1].0, &Response::Failed("no answer in time".into()))
        .is_empty());
    assert!(!f.is_reread(first[1].0));
    let again = sent(&f.on_wake(false));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.path.to_string(), "/5/0/5");
    // The flow's own requests are not re-reads.
    assert!(!f.is_reread(wid));
}

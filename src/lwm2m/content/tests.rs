use proptest::prelude::*;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

#[test]
fn tlv_decodes_the_spec_example_of_device_object() {
    // TS 1.0 §6.4.3.1 example: /3/0 read, resources 0 (string, 8-bit
    // length), 9 (battery 100) and 6 (multiple: 0 -> 1, 1 -> 5).
    let bytes = hex(
        "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65 \
         C1 09 64 86 06 41 00 01 41 01 05",
    );
    let values = decode(format::TLV, &Path::instance(3, 0), &bytes).unwrap();
    assert_eq!(
        find(&values, &Path::resource(3, 0, 0)),
        Some(&Value::String("Open Mobile Alliance".into()))
    );
    assert_eq!(
        find(&values, &Path::resource(3, 0, 9)),
        Some(&Value::Int(100))
    );
    assert_eq!(
        find(&values, &Path::resource_instance(3, 0, 6, 1)),
        Some(&Value::Int(5))
    );
    // The same bytes under an object-instance wrapper, read as /3.
    let mut wrapped = vec![0x08, 0x00, bytes.len() as u8];
    wrapped.extend_from_slice(&bytes);
    let again = decode(format::TLV, &Path::object(3), &wrapped).unwrap();
    assert_eq!(again, values);
}

#[test]
fn tlv_single_resource_and_its_encoding() {
    let path = Path::resource(5, 0, 3);
    let bytes = encode(
        format::TLV,
        &path,
        &[ResourceValue::new(path, Value::Int(2))],
    )
    .unwrap();
    assert_eq!(bytes, hex("C1 03 02"));
    assert_eq!(
        decode(format::TLV, &path, &bytes).unwrap(),
        vec![ResourceValue::new(path, Value::Int(2))]
    );
    // 16-bit ids and 16-bit lengths.
    let big = Path::resource(5, 0, 300);
    let payload = vec![7u8; 300];
    let bytes = encode(
        format::TLV,
        &big,
        &[ResourceValue::new(big, Value::Opaque(payload.clone()))],
    )
    .unwrap();
    assert_eq!(&bytes[..5], &[0xF0, 0x01, 0x2C, 0x01, 0x2C]);
    assert_eq!(
        decode(format::TLV, &big, &bytes).unwrap()[0].value,
        Value::Opaque(payload)
    );
}

#[test]
fn tlv_rejects_malformed_input() {
    let base = Path::instance(3, 0);
    for bad in [
        hex("C8 00"),          // length missing
        hex("C8 00 14 41"),    // value cut short
        hex("C3 09 00 00 64"), // integer of 3 bytes
        hex("41 00 01"),       // resource instance without a resource
    ] {
        assert!(decode(format::TLV, &base, &bad).is_err(), "{bad:?}");
    }
    // Deep nesting of object instances is refused, not recursed into.
    let mut deep = vec![];
    for _ in 0..10 {
        let mut outer = vec![0x08, 0x00, deep.len() as u8];
        outer.extend_from_slice(&deep);
        deep = outer;
    }
    assert!(decode(format::TLV, &Path::object(3), &deep).is_err());
}

#[test]
fn text_and_opaque() {
    let version = Path::resource(3, 0, 3);
    assert_eq!(
        decode(format::TEXT, &version, b"1.0.3").unwrap()[0].value,
        Value::String("1.0.3".into())
    );
    let state = Path::resource(5, 0, 3);
    assert_eq!(
        decode(format::TEXT, &state, b"2").unwrap()[0].value,
        Value::Int(2)
    );
    assert!(decode(format::TEXT, &state, b"two").is_err());
    assert!(decode(format::TEXT, &Path::instance(5, 0), b"2").is_err());
    let package = Path::resource(5, 0, 0);
    assert_eq!(
        decode(format::OPAQUE, &package, &[0, 1, 2]).unwrap()[0].value,
        Value::Opaque(vec![0, 1, 2])
    );
    assert_eq!(
        encode(
            format::TEXT,
            &state,
            &[ResourceValue::new(state, Value::Bool(true))]
        )
        .unwrap(),
        b"1"
    );
    assert!(decode(9999, &state, b"").is_err());
}

#[test]
fn senml_json_with_base_names_as_clients_send_it() {
    let body = br#"[{"bn":"/5/0/","n":"3","v":2},{"n":"5","v":0},
        {"n":"1","vs":"coap://h/x"},{"n":"0","vd":"AAEC"},{"bn":"/9/0/","n":"17","vlo":"3:0"}]"#;
    let values = decode(format::SENML_JSON, &Path::instance(5, 0), body).unwrap();
    assert_eq!(
        find(&values, &Path::resource(5, 0, 3)),
        Some(&Value::Int(2))
    );
    assert_eq!(
        find(&values, &Path::resource(5, 0, 1)),
        Some(&Value::String("coap://h/x".into()))
    );
    assert_eq!(
        find(&values, &Path::resource(5, 0, 0)),
        Some(&Value::Opaque(vec![0, 1, 2]))
    );
    assert_eq!(
        find(&values, &Path::resource(9, 0, 17)),
        Some(&Value::ObjLnk(3, 0))
    );
    assert!(decode(format::SENML_JSON, &Path::instance(5, 0), b"{}").is_err());
    assert!(decode(
        format::SENML_JSON,
        &Path::instance(5, 0),
        br#"[{"n":"/5/x","v":1}]"#
    )
    .is_err());
}

#[test]
fn senml_cbor_as_anjay_sends_it() {
    // [{-2: "/3/0/", 0: "3", 3: "3.14.0"}, {0: "9", 2: 100}]
    let mut bytes = Vec::new();
    let cbor = ciborium::value::Value::Array(vec![
        ciborium::value::Value::Map(vec![
            ((-2).into(), "/3/0/".into()),
            (0.into(), "3".into()),
            (3.into(), "3.14.0".into()),
        ]),
        ciborium::value::Value::Map(vec![(0.into(), "9".into()), (2.into(), 100.into())]),
    ]);
    ciborium::ser::into_writer(&cbor, &mut bytes).unwrap();
    let values = decode(format::SENML_CBOR, &Path::instance(3, 0), &bytes).unwrap();
    assert_eq!(
        values,
        vec![
            ResourceValue::new(Path::resource(3, 0, 3), Value::String("3.14.0".into())),
            ResourceValue::new(Path::resource(3, 0, 9), Value::Int(100)),
        ]
    );
    assert!(decode(format::SENML_CBOR, &Path::instance(3, 0), &[0xff]).is_err());
}

#[test]
fn registration_payloads_of_real_clients() {
    // Anjay: no root link.
    let anjay = b"</1/1>,</2>,</3/0>,</4/0>,</5/0>,</10>;ver=1.1,</11>";
    let objects = RegisteredObjects::parse(anjay).unwrap();
    assert_eq!(objects.root, "/");
    assert!(objects.has_object(5));
    assert_eq!(objects.objects(), vec![1, 2, 3, 4, 5, 10, 11]);
    assert_eq!(objects.versions, vec![(10, "1.1".to_string())]);
    // Wakaama: a root link with rt and ct.
    let wakaama = br#"</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3/0>,</5/0>"#;
    let objects = RegisteredObjects::parse(wakaama).unwrap();
    assert_eq!(objects.content_formats, vec![110]);
    assert_eq!(objects.path_strings(), vec!["/1", "/1/0", "/3/0", "/5/0"]);
    // An alternate root path.
    let alt = br#"</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>,</lwm2m/9/1>"#;
    let objects = RegisteredObjects::parse(alt).unwrap();
    assert_eq!(objects.objects(), vec![3, 9]);
    // Quoted values may hold commas and semicolons.
    let links = parse_links(br#"</a>;title="x, y; z";obs,</b>"#).unwrap();
    assert_eq!(links.len(), 2);
    assert_eq!(links[0].attr("title"), Some("x, y; z"));
    assert_eq!(links[0].attrs[1], ("obs".to_string(), None));
    for bad in [&b"</a"[..], b"a,b", b"</a>;\"x", b"</a>;=1", &[0xff, 0xfe]] {
        assert!(RegisteredObjects::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(RegisteredObjects::parse(b"").unwrap().paths, vec![]);
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        // Short decimals: serde_json's default float parsing may be one
        // ulp off on arbitrary doubles (that is JSON, not our codec).
        any::<i32>().prop_map(|i| Value::Float(f64::from(i) / 64.0)),
        any::<bool>().prop_map(Value::Bool),
        "[ -~]{0,40}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Opaque),
        (any::<u16>(), any::<u16>()).prop_map(|(o, i)| Value::ObjLnk(o, i)),
        any::<i64>().prop_map(Value::Time),
    ]
}

/// Values of one object instance with distinct resource ids, each
/// single or multiple.
fn any_instance() -> impl Strategy<Value = Vec<ResourceValue>> {
    proptest::collection::btree_map(
        any::<u16>(),
        (
            any_value(),
            proptest::option::of(proptest::collection::btree_set(any::<u16>(), 1..4)),
        ),
        0..6,
    )
    .prop_map(|resources| {
        let mut out = Vec::new();
        for (r, (value, instances)) in resources {
            match instances {
                None => out.push(ResourceValue::new(Path::resource(40, 1, r), value)),
                Some(ids) => {
                    for ri in ids {
                        out.push(ResourceValue::new(
                            Path::resource_instance(40, 1, r, ri),
                            value.clone(),
                        ))
                    }
                }
            }
        }
        out
    })
}

fn kind_table(values: &[ResourceValue]) -> impl Fn(&Path) -> Kind + '_ {
    move |p: &Path| {
        values
            .iter()
            .find(|v| v.path.resource == p.resource)
            .map_or(Kind::Opaque, |v| v.value.kind())
    }
}

proptest! {
    #[test]
    fn tlv_round_trips(values in any_instance()) {
        for base in [Path::object(40), Path::instance(40, 1)] {
            let bytes = tlv::encode(&base, &values).unwrap();
            let back = tlv::decode_with(&base, &bytes, &kind_table(&values)).unwrap();
            prop_assert_eq!(&back, &values);
        }
    }

    #[test]
    fn senml_round_trips(values in any_instance()) {
        let kinds = kind_table(&values);
        let kind = |p: &Path| Some(kinds(p));
        let json = senml::encode_json(&values).unwrap();
        prop_assert_eq!(&senml::decode_json_with(&Path::object(40), &json, &kind).unwrap(), &values);
        let cbor = senml::encode_cbor(&values).unwrap();
        prop_assert_eq!(&senml::decode_cbor_with(&Path::object(40), &cbor, &kind).unwrap(), &values);
    }

    #[test]
    fn links_round_trip(targets in proptest::collection::vec("/[0-9]{1,4}(/[0-9]{1,4})?", 0..20),
                        ver in "[0-9]\\.[0-9]", title in "[ -~]{0,20}") {
        let links: Vec<Link> = targets.iter().map(|t| Link {
            target: t.clone(),
            attrs: vec![("ver".into(), Some(ver.clone())), ("title".into(), Some(title.clone()))],
        }).collect();
        let text = link::format_links(&links);
        prop_assert_eq!(parse_links(text.as_bytes()).unwrap(), links);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for format in DECODABLE {
            let _ = decode(format, &Path::instance(3, 0), &bytes);
            let _ = decode(format, &Path::resource(5, 0, 3), &bytes);
        }
        let _ = RegisteredObjects::parse(&bytes);
    }
}

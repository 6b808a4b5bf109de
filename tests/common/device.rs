//! A scripted device for tests: synchronous calls over our CoAP client.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ciborium::Value;
use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use lwota::coap::block::Block;
use lwota::sim::{ClientConfig, CoapClient};

pub struct Device {
    pub name: String,
    pub product: String,
    rt: tokio::runtime::Runtime,
    client: CoapClient,
    /// Whether this device has proven its address (RFC 9175 Echo), so
    /// blocks come at the size asked for.
    verified: bool,
}

pub fn cbor(entries: &[(&str, Value)]) -> Vec<u8> {
    let map = Value::Map(
        entries
            .iter()
            .map(|(k, v)| (Value::Text(k.to_string()), v.clone()))
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::into_writer(&map, &mut out).unwrap();
    out
}

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

pub fn code(p: &Packet) -> ResponseType {
    match p.header.code {
        MessageClass::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

impl Device {
    pub fn new(server: SocketAddr, name: &str, product: &str) -> Device {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(CoapClient::connect(server, ClientConfig::default()))
            .unwrap();
        Device {
            name: name.into(),
            product: product.into(),
            rt,
            client,
            verified: false,
        }
    }

    pub fn post(&mut self, resource: &str, payload: Vec<u8>) -> Packet {
        let path = format!("/ota/{}/{resource}", self.name);
        self.rt
            .block_on(self.client.request(
                RequestType::Post,
                &path,
                &[(CoapOption::ContentFormat, vec![60])],
                payload,
            ))
            .unwrap()
    }

    /// Polls; returns the answer map (empty map = nothing to do).
    pub fn poll(&mut self, version: &str) -> BTreeMap<String, Value> {
        let body = cbor(&[("product", text(&self.product)), ("version", text(version))]);
        let resp = self.post("poll", body);
        assert_eq!(
            code(&resp),
            ResponseType::Content,
            "poll: {:?}",
            String::from_utf8_lossy(&resp.payload)
        );
        let value: Value = ciborium::from_reader(resp.payload.as_slice()).unwrap();
        match value {
            Value::Map(entries) => entries
                .into_iter()
                .map(|(k, v)| (k.into_text().unwrap(), v))
                .collect(),
            other => panic!("poll answer not a map: {other:?}"),
        }
    }

    pub fn report(&mut self, task: &str, state: &str, extra: &[(&str, Value)]) -> ResponseType {
        let mut entries = vec![("task", text(task)), ("state", text(state))];
        entries.extend(extra.iter().cloned());
        let resp = self.post("report", cbor(&entries));
        code(&resp)
    }

    pub fn get_block(&mut self, uri: &str, num: u32, szx: u8) -> Packet {
        if !self.verified {
            // The server bounds answers to an unverified address and
            // offers an Echo value; the client sends it with its next
            // request (docs/PROTOCOL.md), which verifies the address.
            let probe = Block {
                num: 0,
                more: false,
                szx: 0,
            };
            let _ = self.rt.block_on(self.client.request(
                RequestType::Get,
                "/.well-known/core",
                &[(CoapOption::Block2, probe.encode())],
                vec![],
            ));
            self.verified = true;
        }
        let block = Block {
            num,
            more: false,
            szx,
        };
        self.rt
            .block_on(self.client.request(
                RequestType::Get,
                uri,
                &[(CoapOption::Block2, block.encode())],
                vec![],
            ))
            .unwrap()
    }
}

pub fn task_of(answer: &BTreeMap<String, Value>) -> (String, String) {
    let t = |k: &str| {
        answer
            .get(k)
            .and_then(|v| v.as_text())
            .unwrap_or_else(|| panic!("no {k} in {answer:?}"))
            .to_string()
    };
    (t("task"), t("uri"))
}

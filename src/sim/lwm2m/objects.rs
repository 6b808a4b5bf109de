//! Objects 1 (Server), 3 (Device) and 5 (Firmware Update) of one simulated
//! LwM2M client, sans-IO: a request in, a response plus what the driver
//! must do next out (OMA LwM2M 1.1 TS Core §6.3 Device Management, Object
//! 5 from the OMA registry). No socket, clock or spawn in here.

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};

use super::content::{self, Resource, Value};
use crate::coap::endpoint::uri_path;
use crate::coap::message::read_uint;

/// Object 5 State (resource 3).
pub const IDLE: u8 = 0;
pub const DOWNLOADING: u8 = 1;
pub const DOWNLOADED: u8 = 2;
pub const UPDATING: u8 = 3;

/// Object 5 Update Result (resource 5) codes the simulator produces.
pub const RESULT_SUCCESS: u8 = 1;
pub const RESULT_CONNECTION_LOST: u8 = 4;
pub const RESULT_INVALID_URI: u8 = 7;
pub const RESULT_UPDATE_FAILED: u8 = 8;
pub const RESULT_UNSUPPORTED_PROTOCOL: u8 = 9;

/// Object 5 Delivery Method (resource 9): 0 pull, 1 push, 2 both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    Pull,
    Push,
    Both,
}

impl Delivery {
    fn code(self) -> i64 {
        match self {
            Delivery::Pull => 0,
            Delivery::Push => 1,
            Delivery::Both => 2,
        }
    }
    fn pull(self) -> bool {
        self != Delivery::Push
    }
    fn push(self) -> bool {
        self != Delivery::Pull
    }
}

/// What the driver does after a request was answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// Fetch the package from this URI (Block2, from a new source port).
    Download(String),
    /// Install: after a while call [`Objects::installed`].
    Install,
}

#[derive(Debug)]
pub struct Handled {
    pub response: Packet,
    /// A GET with Observe=0 the driver should accept: (path, format).
    pub observe: Option<(String, u16)>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct Objects {
    pub name: String,
    pub version: String,
    /// LwM2M 1.0: TLV for every read (no text, no SenML).
    pub v10: bool,
    pub binding: String,
    pub lifetime: u32,
    pub delivery: Delivery,
    pub package_uri: String,
    pub state: u8,
    pub result: u8,
    /// The injected failure: the Update Result this device ends with.
    pub fail: Option<u8>,
    /// The version the device reports after a successful update (when
    /// unknown it keeps reporting the old one, as the demo clients do).
    pub new_version: Option<String>,
    /// Bytes of the package received (push) or downloaded (pull).
    pub package_len: usize,
}

fn path_ids(packet: &Packet) -> Option<Vec<u16>> {
    uri_path(packet).iter().map(|s| s.parse().ok()).collect()
}

pub fn response(code: ResponseType, format: Option<u16>, payload: Vec<u8>) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Response(code);
    if let Some(f) = format {
        p.add_option(
            CoapOption::ContentFormat,
            crate::coap::message::uint(f.into()),
        );
    }
    p.payload = payload;
    p
}

fn error(code: ResponseType, why: &str) -> Handled {
    Handled {
        response: response(code, None, why.as_bytes().to_vec()),
        observe: None,
        action: Action::None,
    }
}

fn done(code: ResponseType, action: Action) -> Handled {
    Handled {
        response: response(code, None, Vec::new()),
        observe: None,
        action,
    }
}

fn option_uint(packet: &Packet, option: CoapOption) -> Option<u16> {
    packet
        .get_first_option(option)
        .and_then(|v| read_uint(v))
        .and_then(|v| u16::try_from(v).ok())
}

impl Objects {
    /// The registration's link payload (TS Core §6.2.1: the instances the
    /// client has, CoRE link format).
    pub fn links(&self) -> String {
        "</1/1>,</3/0>,</5/0>".to_string()
    }

    /// The resources of an instance, in id order.
    fn instance(&self, object: u16, instance: u16) -> Option<Vec<Resource>> {
        Some(match (object, instance) {
            (1, 1) => vec![
                (0, Value::Int(1)),
                (1, Value::Int(self.lifetime.into())),
                (7, Value::Str(self.binding.clone())),
            ],
            (3, 0) => vec![
                (0, Value::Str("lwota".into())),
                (1, Value::Str("lwota-sim".into())),
                (2, Value::Str(self.name.clone())),
                (3, Value::Str(self.version.clone())),
                (9, Value::Int(87)),
                (11, Value::Multi(vec![(0, 0)])),
                (16, Value::Str(self.binding.clone())),
            ],
            (5, 0) => vec![
                (1, Value::Str(self.package_uri.clone())),
                (3, Value::Int(self.state.into())),
                (5, Value::Int(self.result.into())),
                (6, Value::Str("firmware".into())),
                (7, Value::Str(self.new_version.clone().unwrap_or_default())),
                // Protocol support: CoAP only.
                (8, Value::Multi(vec![(0, 0)])),
                (9, Value::Int(self.delivery.code())),
            ],
            _ => return None,
        })
    }

    /// The format a read is answered in: the Accept option if we speak it,
    /// else the version's default (TLV for 1.0; text for a single
    /// resource and SenML-CBOR for an instance in 1.1, as Anjay does).
    fn read_format(&self, accept: Option<u16>, single: bool) -> Result<u16, ()> {
        match accept {
            None if self.v10 => Ok(content::TLV),
            None if single => Ok(content::TEXT),
            None => Ok(content::SENML_CBOR),
            Some(content::TLV) => Ok(content::TLV),
            Some(_) if self.v10 => Err(()),
            Some(f @ (content::TEXT | content::SENML_JSON | content::SENML_CBOR)) => Ok(f),
            Some(_) => Err(()),
        }
    }

    /// Encodes `path` (`/O/I` or `/O/I/R`) in `format`.
    pub fn read(&self, path: &[u16], format: u16) -> Result<Vec<u8>, ResponseType> {
        let (object, instance) = match path {
            [o, i] | [o, i, _] => (*o, *i),
            _ => return Err(ResponseType::MethodNotAllowed),
        };
        let resources = self
            .instance(object, instance)
            .ok_or(ResponseType::NotFound)?;
        let base = path
            .iter()
            .map(|p| format!("/{p}"))
            .collect::<Vec<_>>()
            .concat();
        let picked: Vec<Resource> = match path {
            [5, 0, 0] | [5, 0, 2] => return Err(ResponseType::MethodNotAllowed),
            [_, _, r] => resources.into_iter().filter(|(id, _)| id == r).collect(),
            _ => resources,
        };
        if picked.is_empty() {
            return Err(ResponseType::NotFound);
        }
        content::encode(format, &base, path.len() == 3, &picked)
            .map_err(|_| ResponseType::NotAcceptable)
    }

    /// Answers one request from the server.
    pub fn handle(&mut self, method: RequestType, packet: &Packet, observe: bool) -> Handled {
        let Some(path) = path_ids(packet) else {
            return error(ResponseType::NotFound, "not an LwM2M path");
        };
        match method {
            RequestType::Get => {
                let accept = option_uint(packet, CoapOption::Accept);
                let Ok(format) = self.read_format(accept, path.len() == 3) else {
                    return error(ResponseType::NotAcceptable, "format not supported");
                };
                match self.read(&path, format) {
                    Ok(payload) => Handled {
                        response: response(ResponseType::Content, Some(format), payload),
                        observe: observe.then(|| (path_string(&path), format)),
                        action: Action::None,
                    },
                    Err(code) => error(code, "cannot read that"),
                }
            }
            RequestType::Put if packet.get_first_option(CoapOption::UriQuery).is_some() => {
                // Write-Attributes (pmin, pmax, ...): accepted, not acted on.
                done(ResponseType::Changed, Action::None)
            }
            RequestType::Put | RequestType::Post if path == [5, 0, 0] => self.push(packet),
            RequestType::Put | RequestType::Post if path == [5, 0, 1] || path == [5, 0] => {
                self.write_uri(packet)
            }
            RequestType::Post if path == [5, 0, 2] => self.execute(),
            RequestType::Put | RequestType::Post => {
                error(ResponseType::MethodNotAllowed, "read-only here")
            }
            RequestType::Delete => error(ResponseType::MethodNotAllowed, "nothing to delete"),
            _ => error(ResponseType::MethodNotAllowed, ""),
        }
    }

    fn write_format(&self, packet: &Packet) -> Result<u16, (ResponseType, &'static str)> {
        // A write without Content-Format is refused, as real clients do
        // (Wakaama 4.06; Anjay takes it for Write-Attributes).
        let format = option_uint(packet, CoapOption::ContentFormat)
            .ok_or((ResponseType::BadRequest, "Content-Format missing"))?;
        let known = [content::TEXT, content::OPAQUE, content::TLV];
        let senml = [content::SENML_JSON, content::SENML_CBOR];
        if known.contains(&format) || (!self.v10 && senml.contains(&format)) {
            Ok(format)
        } else {
            Err((
                ResponseType::UnsupportedContentFormat,
                "content format not supported",
            ))
        }
    }

    fn write_uri(&mut self, packet: &Packet) -> Handled {
        let format = match self.write_format(packet) {
            Ok(f) => f,
            Err((code, why)) => return error(code, why),
        };
        let uri = match content::decode_single(format, 1, &packet.payload).map(String::from_utf8) {
            Ok(Ok(uri)) => uri,
            _ => return error(ResponseType::BadRequest, "not a Package URI"),
        };
        if uri.is_empty() {
            // An empty URI resets the state machine (Object 5, resource 1).
            self.package_uri.clear();
            self.state = IDLE;
            self.result = 0;
            return done(ResponseType::Changed, Action::None);
        }
        if !self.delivery.pull() {
            return error(ResponseType::MethodNotAllowed, "pull not supported");
        }
        if self.state != IDLE {
            return error(ResponseType::BadRequest, "write an empty URI first");
        }
        self.package_uri = uri.clone();
        self.result = 0;
        if !uri.starts_with("coap://") || self.fail == Some(RESULT_UNSUPPORTED_PROTOCOL) {
            self.result = RESULT_UNSUPPORTED_PROTOCOL;
            return done(ResponseType::Changed, Action::None);
        }
        self.state = DOWNLOADING;
        done(ResponseType::Changed, Action::Download(uri))
    }

    fn push(&mut self, packet: &Packet) -> Handled {
        if !self.delivery.push() {
            return error(ResponseType::MethodNotAllowed, "push not supported");
        }
        let format = match self.write_format(packet) {
            Ok(f) => f,
            Err((code, why)) => return error(code, why),
        };
        if self.state != IDLE {
            return error(ResponseType::BadRequest, "not idle");
        }
        let package = match content::decode_single(format, 0, &packet.payload) {
            Ok(p) => p,
            Err(e) => return error(ResponseType::BadRequest, &e),
        };
        if package.is_empty() {
            // An empty package resets the state machine, like an empty URI.
            self.state = IDLE;
            self.result = 0;
            return done(ResponseType::Changed, Action::None);
        }
        self.result = 0;
        self.downloaded(package.len());
        done(ResponseType::Changed, Action::None)
    }

    /// The package is whole (pushed or downloaded): Downloaded, or the
    /// injected failure of the download/verification stage.
    pub fn downloaded(&mut self, len: usize) {
        self.package_len = len;
        match self.fail {
            Some(code @ 2..=7) => {
                self.state = IDLE;
                self.result = code;
            }
            _ => self.state = DOWNLOADED,
        }
    }

    /// The download failed with `result` (4 connection lost, 7 invalid URI).
    pub fn download_failed(&mut self, result: u8) {
        self.state = IDLE;
        self.result = result;
    }

    fn execute(&mut self) -> Handled {
        if self.state != DOWNLOADED {
            return error(ResponseType::MethodNotAllowed, "no package downloaded");
        }
        self.state = UPDATING;
        done(ResponseType::Changed, Action::Install)
    }

    /// Installation finished ("after the reboot").
    pub fn installed(&mut self) {
        if self.fail == Some(RESULT_UPDATE_FAILED) {
            // Update failed: back to Downloaded (Object 5 state diagram).
            self.state = DOWNLOADED;
            self.result = RESULT_UPDATE_FAILED;
            return;
        }
        self.state = IDLE;
        self.result = RESULT_SUCCESS;
        if let Some(v) = &self.new_version {
            self.version = v.clone();
        }
    }
}

pub fn path_string(path: &[u16]) -> String {
    path.iter()
        .map(|p| format!("/{p}"))
        .collect::<Vec<_>>()
        .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(delivery: Delivery) -> Objects {
        Objects {
            name: "d".into(),
            version: "1.0".into(),
            v10: false,
            binding: "U".into(),
            lifetime: 60,
            delivery,
            package_uri: String::new(),
            state: IDLE,
            result: 0,
            fail: None,
            new_version: Some("2.0".into()),
            package_len: 0,
        }
    }

    fn request(path: &str, format: Option<u16>, payload: &[u8]) -> Packet {
        let mut p = Packet::new();
        for s in path.split('/').filter(|s| !s.is_empty()) {
            p.add_option(CoapOption::UriPath, s.as_bytes().to_vec());
        }
        if let Some(f) = format {
            p.add_option(
                CoapOption::ContentFormat,
                crate::coap::message::uint(f.into()),
            );
        }
        p.payload = payload.to_vec();
        p
    }

    fn code(h: &Handled) -> MessageClass {
        h.response.header.code
    }

    #[test]
    fn pull_then_execute_reports_success_and_the_new_version() {
        let mut o = objects(Delivery::Pull);
        let uri = b"coap://127.0.0.1:5683/ota/fw/1";
        let h = o.handle(RequestType::Put, &request("/5/0/1", Some(0), uri), false);
        assert_eq!(code(&h), MessageClass::Response(ResponseType::Changed));
        assert!(matches!(h.action, Action::Download(_)));
        assert_eq!(o.state, DOWNLOADING);
        // A second URI while busy: 4.00.
        let h = o.handle(RequestType::Put, &request("/5/0/1", Some(0), uri), false);
        assert_eq!(code(&h), MessageClass::Response(ResponseType::BadRequest));
        o.downloaded(100);
        assert_eq!(o.state, DOWNLOADED);
        let h = o.handle(RequestType::Post, &request("/5/0/2", None, b""), false);
        assert_eq!(h.action, Action::Install);
        o.installed();
        assert_eq!((o.state, o.result, o.version.as_str()), (IDLE, 1, "2.0"));
        let h = o.handle(RequestType::Get, &request("/3/0/3", None, b""), true);
        assert_eq!(h.response.payload, b"2.0");
        assert_eq!(h.observe, Some(("/3/0/3".into(), content::TEXT)));
    }

    #[test]
    fn failures_and_refusals() {
        let mut o = objects(Delivery::Push);
        o.fail = Some(5);
        let h = o.handle(
            RequestType::Put,
            &request("/5/0/1", Some(0), b"coap://x/y"),
            false,
        );
        assert_eq!(
            code(&h),
            MessageClass::Response(ResponseType::MethodNotAllowed)
        );
        let h = o.handle(RequestType::Put, &request("/5/0/0", None, b"img"), false);
        assert_eq!(code(&h), MessageClass::Response(ResponseType::BadRequest));
        let h = o.handle(
            RequestType::Put,
            &request("/5/0/0", Some(42), b"img"),
            false,
        );
        assert_eq!(code(&h), MessageClass::Response(ResponseType::Changed));
        assert_eq!((o.state, o.result), (IDLE, 5));
        let mut o = objects(Delivery::Both);
        o.fail = Some(8);
        o.v10 = true;
        let h = o.handle(RequestType::Get, &request("/5/0/3", None, b""), false);
        assert_eq!(h.response.payload, [0xc1, 3, 0]);
        let mut get = request("/5/0/3", None, b"");
        get.add_option(CoapOption::Accept, vec![0]);
        let h = o.handle(RequestType::Get, &get, false);
        assert_eq!(
            code(&h),
            MessageClass::Response(ResponseType::NotAcceptable)
        );
        o.handle(
            RequestType::Put,
            &request("/5/0/0", Some(42), b"img"),
            false,
        );
        o.handle(RequestType::Post, &request("/5/0/2", None, b""), false);
        o.installed();
        assert_eq!(
            (o.state, o.result, o.version.as_str()),
            (DOWNLOADED, 8, "1.0")
        );
    }
}

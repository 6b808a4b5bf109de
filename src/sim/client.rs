//! A minimal CoAP client for the simulator: CON requests with RFC 7252
//! retransmission (exponential back-off), piggybacked or separate
//! responses, and switchable packet loss for tests.

use std::net::SocketAddr;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use rand::Rng;
use tokio::net::UdpSocket;

use crate::coap::amplification::ECHO;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no response after {0} transmissions")]
    Timeout(u32),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("encode: {0}")]
    Encode(String),
}

#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// First retransmission timeout (RFC 7252 ACK_TIMEOUT).
    pub ack_timeout: Duration,
    pub max_retransmit: u32,
    /// Probability that a datagram is dropped, each way.
    pub loss: f64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            ack_timeout: Duration::from_secs(2),
            max_retransmit: 4,
            loss: 0.0,
        }
    }
}

pub struct CoapClient {
    socket: UdpSocket,
    server: SocketAddr,
    next_mid: u16,
    next_token: u32,
    config: ClientConfig,
    buf: Vec<u8>,
    /// The server's last Echo value (RFC 9175 §2.3), sent with the next
    /// request: it proves this address receives the server's datagrams, so
    /// the server stops bounding its responses (`coap/amplification.rs`).
    echo: Option<Vec<u8>>,
}

impl CoapClient {
    pub async fn connect(server: SocketAddr, config: ClientConfig) -> std::io::Result<CoapClient> {
        let bind: SocketAddr = if server.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let socket = UdpSocket::bind(bind).await?;
        Ok(CoapClient {
            socket,
            server,
            next_mid: rand::random(),
            next_token: rand::random(),
            config,
            buf: vec![0; 2048],
            echo: None,
        })
    }

    pub fn set_server(&mut self, server: SocketAddr) {
        self.server = server;
    }

    /// Sends a CON request and waits for its response. A 4.01 carrying a
    /// new Echo value is answered by repeating the request with it.
    pub async fn request(
        &mut self,
        method: RequestType,
        path: &str,
        options: &[(CoapOption, Vec<u8>)],
        payload: Vec<u8>,
    ) -> Result<Packet, ClientError> {
        let sent_echo = self.echo.clone();
        let reply = self
            .request_once(method, path, options, payload.clone())
            .await?;
        let echo = reply.get_first_option(ECHO).cloned();
        let challenged = reply.header.code
            == MessageClass::Response(coap_lite::ResponseType::Unauthorized)
            && echo.is_some()
            && echo != sent_echo;
        self.echo = echo;
        if challenged {
            return self.request_once(method, path, options, payload).await;
        }
        Ok(reply)
    }

    async fn request_once(
        &mut self,
        method: RequestType,
        path: &str,
        options: &[(CoapOption, Vec<u8>)],
        payload: Vec<u8>,
    ) -> Result<Packet, ClientError> {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_token = self.next_token.wrapping_add(1);
        let mid = self.next_mid;
        let token = self.next_token.to_be_bytes().to_vec();
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(method);
        packet.header.message_id = mid;
        packet.set_token(token.clone());
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        for (option, value) in options {
            packet.add_option(*option, value.clone());
        }
        if let Some(echo) = self.echo.take() {
            packet.add_option(ECHO, echo);
        }
        packet.payload = payload;
        let bytes = packet
            .to_bytes()
            .map_err(|e| ClientError::Encode(format!("{e:?}")))?;

        let mut timeout = self.config.ack_timeout;
        let mut acked = false;
        for _attempt in 0..=self.config.max_retransmit {
            if !acked && !self.lose() {
                self.socket.send_to(&bytes, self.server).await?;
            }
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let received =
                    tokio::time::timeout_at(deadline, self.socket.recv_from(&mut self.buf)).await;
                let Ok(received) = received else { break };
                let (len, _) = received?;
                if self.lose() {
                    continue;
                }
                let Ok(reply) = Packet::from_bytes(&self.buf[..len]) else {
                    continue;
                };
                let kind = reply.header.get_type();
                if kind == MessageType::Acknowledgement && reply.header.message_id == mid {
                    if reply.header.code == MessageClass::Empty {
                        // Separate response follows.
                        acked = true;
                        continue;
                    }
                    return Ok(reply);
                }
                if kind == MessageType::Reset && reply.header.message_id == mid {
                    return Err(ClientError::Encode("server reset the request".into()));
                }
                if reply.get_token() == token.as_slice()
                    && !matches!(reply.header.code, MessageClass::Empty)
                {
                    if kind == MessageType::Confirmable {
                        let mut ack = Packet::new();
                        ack.header.set_type(MessageType::Acknowledgement);
                        ack.header.code = MessageClass::Empty;
                        ack.header.message_id = reply.header.message_id;
                        if let Ok(b) = ack.to_bytes() {
                            self.socket.send_to(&b, self.server).await?;
                        }
                    }
                    return Ok(reply);
                }
            }
            timeout *= 2;
        }
        Err(ClientError::Timeout(self.config.max_retransmit + 1))
    }

    /// Waits for the next notification carrying `token` (an observation
    /// made with [`request`](Self::request) and an Observe=0 option),
    /// ACKing it when it is CON; `None` once `until` passes.
    pub async fn next_notification(
        &mut self,
        token: &[u8],
        until: tokio::time::Instant,
    ) -> Result<Option<Packet>, ClientError> {
        loop {
            let received =
                tokio::time::timeout_at(until, self.socket.recv_from(&mut self.buf)).await;
            let Ok(received) = received else {
                return Ok(None);
            };
            let (len, _) = received?;
            if self.lose() {
                continue;
            }
            let Ok(packet) = Packet::from_bytes(&self.buf[..len]) else {
                continue;
            };
            if packet.get_token() != token || packet.header.code == MessageClass::Empty {
                continue;
            }
            if packet.header.get_type() == MessageType::Confirmable {
                let mut ack = Packet::new();
                ack.header.set_type(MessageType::Acknowledgement);
                ack.header.code = MessageClass::Empty;
                ack.header.message_id = packet.header.message_id;
                if let Ok(b) = ack.to_bytes() {
                    self.socket.send_to(&b, self.server).await?;
                }
            }
            return Ok(Some(packet));
        }
    }

    fn lose(&self) -> bool {
        self.config.loss > 0.0 && rand::thread_rng().gen_bool(self.config.loss.min(1.0))
    }
}

//! The CLI against a running server: happy paths, exit codes and one-line
//! errors, CSV import with line numbers, campaign show --watch.

use crate::common;

use std::process::{Command, Output};
use std::time::Duration;

use common::cli::lwota;
use common::*;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn firmware_device_and_campaign_commands() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let fw_path = dir.path().join("fw.bin");
    std::fs::write(&fw_path, image(20_000, 1)).unwrap();
    let fw = fw_path.to_str().unwrap();

    let o = lwota(
        &server,
        &[
            "firmware",
            "add",
            fw,
            "--product",
            "p",
            "--version",
            "2.0",
            "--name",
            "main",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("firmware 1 uploaded"), "{}", stdout(&o));
    // Repeat: non-zero exit, one line.
    let o = lwota(
        &server,
        &["firmware", "add", fw, "--product", "p", "--version", "2.0"],
    );
    assert!(!o.status.success());
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("409"), "{}", stderr(&o));
    let o = lwota(&server, &["firmware", "ls"]);
    assert!(
        stdout(&o).contains("2.0") && stdout(&o).contains("main"),
        "{}",
        stdout(&o)
    );

    // CSV import: bad lines are reported with their numbers, nothing imported.
    let csv = fixture("devices-with-errors.csv");
    let o = lwota(&server, &["device", "import", csv.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("line 3") && err.contains("line 5"), "{err}");
    assert!(!err.contains("line 4"), "d3 without version is fine: {err}");
    let (_, list) = server.get("/api/v1/devices");
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing imported");
    let csv = fixture("devices.csv");
    let o = lwota(&server, &["device", "import", csv.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lwota(&server, &["device", "ls"]);
    assert_eq!(stdout(&o).lines().count(), 4, "{}", stdout(&o));

    let names = fixture("targets.csv");
    let o = lwota(
        &server,
        &[
            "campaign",
            "create",
            "--firmware",
            "1",
            "--devices-csv",
            names.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 tasks"), "{}", stdout(&o));
    let o = lwota(
        &server,
        &[
            "campaign",
            "create",
            "--firmware",
            "1",
            "--from-version",
            "1.5",
        ],
    );
    assert!(stdout(&o).contains("1 tasks"), "{}", stdout(&o));

    // --watch returns once the campaign finishes.
    let watcher = {
        let url = format!("http://{}", server.http);
        let token = server.token.clone();
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_lwota"))
                .env("LWOTA_TOKEN", token)
                .args([
                    "campaign",
                    "show",
                    "1",
                    "--watch",
                    "--interval",
                    "0.2",
                    "--server",
                    &url,
                ])
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let o = lwota(&server, &["campaign", "cancel", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let watched = watcher.join().unwrap();
    assert!(watched.status.success());
    assert!(
        stdout(&watched).contains("status cancelled"),
        "{}",
        stdout(&watched)
    );

    let o = lwota(&server, &["device", "history", "d1"]);
    assert!(stdout(&o).contains("cancelled"), "{}", stdout(&o));
    let o = lwota(&server, &["device", "history", "nobody"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("404"), "{}", stderr(&o));
}

#[test]
fn unreachable_server_is_one_clear_line() {
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["firmware", "ls", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn serve_rejects_bad_config_and_busy_port_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = fixture("config/bad-block-size.toml");
    let data = dir.path().join("data");
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args([
            "serve",
            "--config",
            bad.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("max_block_size"), "{err}");
    assert!(!data.exists(), "nothing written on bad config");

    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--coap-bind",
            &port,
            "--http-bind",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot bind CoAP"), "{err}");
    assert!(!data.exists(), "nothing written on a busy port");
}

#[test]
fn unwritable_data_dir_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    // A data dir below a regular file cannot be created (even as root).
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let data = file.join("data");
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["serve", "--data-dir", data.to_str().unwrap()])
        .args(["--coap-bind", "127.0.0.1:0", "--http-bind", "127.0.0.1:0"])
        .args(["--coaps-bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("cannot create data dir"), "{err}");
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::spawn(dir.path(), "127.0.0.1:0", "127.0.0.1:0");
    let r = common::http(
        server
            .request("POST", "/api/v1/firmware?product=p&version=1")
            .send_bytes(b"abc"),
    );
    assert_eq!(r.0, 201);
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
}

#[test]
fn serve_runs_on_the_local_test_config_fixture() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["serve", "--config"])
        .arg(fixture("config/local-test.toml"))
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (mut coap, mut http_addr) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some((kind, addr)) = line.split_once(" listening on ") {
            let addr: std::net::SocketAddr = addr.trim().parse().unwrap();
            assert!(addr.ip().is_loopback() && addr.port() != 0, "{line}");
            match kind {
                "coap" => coap = Some(addr),
                "http" => http_addr = Some(addr),
                _ => {}
            }
        }
        if coap.is_some() && http_addr.is_some() {
            break;
        }
    }
    let http_addr = http_addr.expect("http address printed");
    assert!(coap.is_some(), "coap address printed");
    let (status, _) = http(ureq::get(&format!("http://{http_addr}/healthz")).call());
    assert_eq!(status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

/// A self-signed certificate for 127.0.0.1 and localhost, made for this
/// test only (openssl crate): (certificate PEM, private key PEM).
fn self_signed() -> (Vec<u8>, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "lwota test").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .dns("localhost")
        .build(&cert.x509v3_context(None, None))
        .unwrap();
    cert.append_extension(san).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    (
        cert.build().to_pem().unwrap(),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
}

#[test]
fn admin_api_over_tls_with_a_self_signed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let (cert_path, key_path) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path());
    config.server.http_tls_cert = Some(cert_path.clone());
    config.server.http_tls_key = Some(key_path.clone());
    let server = TestServer::start_with(config, None);
    let https = format!("https://{}", server.http);

    // The CLI, trusting the certificate by --ca-cert and by LWOTA_CA_CERT.
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["device", "ls", "--server", &https, "--ca-cert"])
        .arg(&cert_path)
        .env("LWOTA_TOKEN", &server.token)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["firmware", "ls", "--server", &https])
        .env("LWOTA_CA_CERT", &cert_path)
        .env("LWOTA_TOKEN", &server.token)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Without trusting it: a certificate error, exit non-zero.
    let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
        .args(["device", "ls", "--server", &https])
        .env("LWOTA_TOKEN", &server.token)
        .env_remove("LWOTA_CA_CERT")
        .output()
        .unwrap();
    assert!(!o.status.success());

    // Another HTTP client (openssl's) reaches the API over https.
    let mut connector =
        openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
    connector
        .cert_store_mut()
        .add_cert(openssl::x509::X509::from_pem(&cert).unwrap())
        .unwrap();
    let connector = connector.build();
    let tcp = std::net::TcpStream::connect(server.http).unwrap();
    let mut tls = connector.connect("localhost", tcp).unwrap();
    use std::io::{Read, Write};
    write!(
        tls,
        "GET /api/v1/devices HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        server.token
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = std::net::TcpStream::connect(server.http).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[test]
fn bad_tls_paths_stop_start_up_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let serve_with = |cert: &std::path::Path, key: &std::path::Path| {
        let config = tmp.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nhttp_bind = \"127.0.0.1:0\"\ncoap_bind = \"127.0.0.1:0\"\ncoaps_bind = \"127.0.0.1:0\"\nhttp_tls_cert = {:?}\nhttp_tls_key = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ),
        )
        .unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_lwota"))
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .output()
            .unwrap();
        assert!(!o.status.success());
        stderr(&o)
    };
    let missing = tmp.path().join("missing.pem");
    let err = serve_with(&missing, &missing);
    assert!(err.contains("cannot read TLS certificate"), "{err}");
    assert!(err.contains("missing.pem"), "{err}");
    // A key file holding no key.
    let cert = tmp.path().join("cert.pem");
    std::fs::write(&cert, self_signed().0).unwrap();
    let err = serve_with(&cert, &cert);
    assert!(err.contains("private key"), "{err}");
}

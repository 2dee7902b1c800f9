//! Operating the real binary: the listening line only after a full start, a
//! failed start in one line, SIGTERM closing WebSockets promptly, metrics a
//! scraper can trust (help text, every documented series from the start,
//! build and process figures), and the README's admin commands as written.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::crash::{start_with, Server};
use crate::helpers::{client, send, PASSWORD, TEST_SECRET};

fn sigterm(server: &Server) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
}

/// Waits for the child to exit, at most `limit`.
fn exit_within(
    server: &mut Server,
    limit: Duration,
) -> Option<(std::process::ExitStatus, Duration)> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = server.child.try_wait().unwrap() {
            return Some((status, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[actix_web::test]
async fn sigterm_with_100_websockets_exits_0_within_2s_and_every_client_gets_a_going_away_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_with(dir.path(), 1, &[]);
    let url = format!("{}/v1/ws", server.base.replace("http://", "ws://"));
    let ws = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .finish();
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let (_, mut framed) = ws.ws(url.as_str()).connect().await.unwrap();
        // The hello frame says the connection is served.
        let hello = tokio::time::timeout(Duration::from_secs(10), framed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(matches!(hello, awc::ws::Frame::Text(_)));
        sockets.push(framed);
    }
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut framed| {
            actix_web::rt::spawn(async move {
                while let Ok(Some(Ok(frame))) =
                    tokio::time::timeout(Duration::from_secs(5), framed.next()).await
                {
                    match frame {
                        awc::ws::Frame::Close(reason) => {
                            let _ = framed.send(awc::ws::Message::Close(reason.clone())).await;
                            return reason.map(|r| r.code);
                        }
                        awc::ws::Frame::Ping(bytes) => {
                            let _ = framed.send(awc::ws::Message::Pong(bytes)).await;
                        }
                        _ => {}
                    }
                }
                None
            })
        })
        .collect();
    sigterm(&server);
    let exited =
        tokio::task::spawn_blocking(move || exit_within(&mut server, Duration::from_secs(2)))
            .await
            .unwrap();
    let (status, took) = exited.expect("flashdrop exits within 2 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status");
    let mut codes = Vec::new();
    for reader in readers {
        codes.push(reader.await.unwrap());
    }
    let away = codes
        .iter()
        .filter(|c| **c == Some(awc::ws::CloseCode::Away))
        .count();
    assert_eq!(away, 100, "close codes: {codes:?}");
    eprintln!(
        "SIGTERM with 100 WebSockets: exit 0 after {} ms",
        took.as_millis()
    );
}

/// `flashdrop serve` on `dir` with `env`: its stdout lines, stderr lines and
/// exit code, once it exits.
fn serve_to_exit(dir: &Path, env: &[(&str, &str)]) -> (Vec<String>, Vec<String>, Option<i32>) {
    let output = Command::new(env!("CARGO_BIN_EXE_flashdrop"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir)
        .env("FLASHDROP__AUTH__JWT_SECRET", TEST_SECRET)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let lines = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    (
        lines(&output.stdout),
        lines(&output.stderr),
        output.status.code(),
    )
}

#[actix_web::test]
async fn the_listening_line_comes_only_after_a_full_start_and_a_failed_start_says_why_in_one_line()
{
    // A bootstrap admin the password policy refuses: start-up fails after
    // the port is bound and recovery ran, and says so once.
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr, code) = serve_to_exit(
        dir.path(),
        &[
            ("FLASHDROP__LOG__LEVEL", "error"),
            ("FLASHDROP__AUTH__BOOTSTRAP_ADMIN_EMAIL", "root@example.com"),
            ("FLASHDROP__AUTH__BOOTSTRAP_ADMIN_PASSWORD", "short"),
        ],
    );
    assert!(stdout.is_empty(), "no listening line: {stdout:?}");
    assert_eq!(code, Some(1));
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with("flashdrop: cannot start:") && stderr[0].contains("bootstrap_admin"),
        "{stderr:?}"
    );

    // Another instance holds the data directory: refused once the lock wait ends.
    let mut first = start_with(dir.path(), 1, &[]);
    let http = client();
    // The line came only now, and start-up is complete: ready at once.
    let ready = send(http.get(format!("{}/readyz", first.base)), None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let (stdout, stderr, code) = serve_to_exit(
        &dir.path().join("data"),
        &[("FLASHDROP__LOG__LEVEL", "error")],
    );
    assert!(stdout.is_empty(), "{stdout:?}");
    assert_eq!(code, Some(1));
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].contains("another flashdrop holds it"),
        "{stderr:?}"
    );
    sigterm(&first);
    let (status, _) = exit_within(&mut first, Duration::from_secs(10)).expect("stops");
    assert_eq!(status.code(), Some(0));
}

/// The `flashdrop_*` series README's Operations table lists.
fn readme_series() -> BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `flashdrop_"))
        .map(|rest| format!("flashdrop_{}", rest.split('`').next().unwrap()))
        .map(|name| name.split('{').next().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn metrics_have_help_text_and_every_series_the_readme_lists_exists_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_with(dir.path(), 1, &[]);
    let http = client();
    let mut response = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    let typed: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    let helped: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(typed, helped, "every series has HELP text");
    let exported: BTreeSet<String> = typed
        .iter()
        .filter(|name| name.starts_with("flashdrop_"))
        .cloned()
        .collect();
    let documented = readme_series();
    assert!(documented.len() >= 40, "README lists {documented:?}");
    assert_eq!(
        exported, documented,
        "the binary's series (left) and README's list (right) differ"
    );
    for series in [
        r#"flashdrop_build_info{version=""#,
        r#"flashdrop_reservations_total{outcome="created"} 0"#,
        r#"flashdrop_notifications_total{channel="webhook",outcome="refused"} 0"#,
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
    sigterm(&server);
    exit_within(&mut server, Duration::from_secs(10)).expect("stops");
}

/// The shell line of README's `admin create` example.
fn readme_admin_example() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .find(|l| l.contains("admin create --email"))
        .expect("README shows admin create")
        .trim()
        .to_owned()
}

#[actix_web::test]
async fn the_readme_admin_create_example_works_as_written_and_an_account_can_be_promoted() {
    let example = readme_admin_example();
    let line = example.split('#').next().unwrap().trim().to_owned();
    assert!(line.starts_with("FLASHDROP_ADMIN_PASSWORD="), "{line}");
    // Run it as written, in a fresh directory, `cargo run --release --` being
    // this very binary.
    let work = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_flashdrop");
    let command = line.replace("cargo run --release --", bin);
    let output = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(work.path())
        .env_remove("FLASHDROP__AUTH__JWT_SECRET")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let email = line
        .split("--email ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let password = line
        .strip_prefix("FLASHDROP_ADMIN_PASSWORD=")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('\'')
        .to_owned();

    // An existing account becomes a platform admin too.
    let data = work.path().join("flashdrop-data");
    let serve = |dir: &Path| {
        let mut child = Command::new(bin)
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(dir)
            .env("FLASHDROP__AUTH__JWT_SECRET", TEST_SECRET)
            .env("FLASHDROP__LOG__LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let base = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("flashdrop listening on ").map(str::to_owned))
            .unwrap();
        Server { child, base }
    };
    let mut server = serve(&data);
    let http = client();
    let login = |email: &str, password: &str| {
        send(
            http.post(format!("{}/v1/auth/login", server.base)),
            Some(json!({"email": email, "password": password})),
        )
    };
    let admin = login(&email, &password).await;
    assert_eq!(admin.status, StatusCode::OK, "{:?}", admin.body);
    assert_eq!(admin.body["account"]["role"], "platform_admin");
    let registered = send(
        http.post(format!("{}/v1/auth/register", server.base)),
        Some(json!({"email": "ops@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(registered.status, StatusCode::ACCEPTED);
    sigterm(&server);
    exit_within(&mut server, Duration::from_secs(10)).expect("stops");

    let promote = Command::new(bin)
        .args([
            "admin",
            "promote",
            "--email",
            "ops@example.com",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        promote.status.success(),
        "{}",
        String::from_utf8_lossy(&promote.stderr)
    );
    let again = Command::new(bin)
        .args([
            "admin",
            "create",
            "--email",
            "ops@example.com",
            "--data-dir",
        ])
        .arg(&data)
        .env("FLASHDROP_ADMIN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("admin promote"));

    let mut server = serve(&data);
    let http = client();
    let ops = send(
        http.post(format!("{}/v1/auth/login", server.base)),
        Some(json!({"email": "ops@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(
        ops.body["account"]["role"], "platform_admin",
        "{:?}",
        ops.body
    );
    let token = ops.body["access_token"].as_str().unwrap();
    let audit = send(
        http.get(format!("{}/v1/admin/audit?action=user.role", server.base))
            .insert_header(crate::helpers::bearer(token)),
        None,
    )
    .await;
    assert_eq!(audit.status, StatusCode::OK);
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 1, "audited");
    sigterm(&server);
    exit_within(&mut server, Duration::from_secs(10)).expect("stops");
}

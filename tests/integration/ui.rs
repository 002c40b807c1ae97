//! The web UI's side of the daemon, over raw HTTP: the embedded page and
//! its headers, the login that exchanges the token for a session cookie
//! (what the cookie may do, logout), and the live event stream
//! (`GET /v1/events`) as a script reads it. The page itself is tested in a
//! real browser by `host/daemon/ui/tests` (`scripts/test.sh` runs them).

use crate::daemon::plugins_dir;
use crate::daemon_support::RunningDaemon;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

const GATE: &str = "id: gate\nsteps:\n  - { id: first, plugin_id: plexus.echo.native, method_name: echo, parameters: { n: 1 } }\n  - { id: wait, wait_for: { signal: go }, dependencies: [first] }\n";

/// The value of header `name` (lowercase) in a response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn the_page_is_embedded_and_served_with_a_strict_policy() {
    let plugins = plugins_dir(&[]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    let (status, head, body) = d.exchange("GET", "/ui/", "", None);
    assert_eq!(status, 200, "{head}");
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("<script type=\"module\" src=\"app.js\">"),
        "the UI is built into the daemon (scripts/build-ui.sh before building plexus): {html}"
    );
    let policy = header(&head, "content-security-policy").unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    let (status, head, script) = d.exchange("GET", "/ui/app.js", "", None);
    assert_eq!(status, 200);
    assert!(header(&head, "content-type").unwrap().starts_with("text/javascript"));
    // No CDN: nothing the page loads comes from elsewhere.
    let script = String::from_utf8(script).unwrap();
    assert!(script.len() > 10_000 && !script.contains("https://cdn"), "{} bytes", script.len());
    for path in ["/", "/ui"] {
        let (status, head, _) = d.exchange("GET", path, "", None);
        assert_eq!((status, header(&head, "location")), (303, Some("/ui/")), "{path}");
    }
    assert_eq!(d.exchange("GET", "/ui/../Cargo.toml", "", None).0, 404);
    assert_eq!(d.exchange("GET", "/ui/nothing.js", "", None).0, 404);
}

#[test]
fn a_login_gives_a_cookie_that_reads_writes_only_with_the_ui_header_and_ends_at_logout() {
    let plugins = plugins_dir(&["echo-native"]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    let json_body = |v: Value| serde_json::to_vec(&v).unwrap();
    // A wrong token: 401, no cookie.
    let wrong = json_body(json!({"token": "not-it"}));
    let (status, head, _) = d.exchange("POST", "/v1/session", "", Some(("application/json", &wrong)));
    assert_eq!(status, 401);
    assert_eq!(header(&head, "set-cookie"), None);
    // The token: a session cookie, HttpOnly and SameSite=Strict, named by the port, that is not
    // the token; and the session's write key in the body.
    let right = json_body(json!({"token": d.token}));
    let (status, head, body) = d.exchange("POST", "/v1/session", "", Some(("application/json", &right)));
    assert_eq!(status, 200, "{head}");
    let session: plexus_client::Session = serde_json::from_slice(&body).unwrap();
    let set = header(&head, "set-cookie").unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    // The raw client sends `Host: plexus` (no port): the name has none either.
    assert!(cookie.starts_with("plexus_session=") && !cookie.contains(&d.token), "{cookie}");
    assert!(!cookie.contains(&session.write_key) && session.write_key != d.token);
    let with = |extra: &str| format!("Cookie: {cookie}\r\n{extra}");
    // It reads.
    let (status, _, body) = d.exchange("GET", "/v1/workflows", &with(""), None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // It writes only with the session's write key in the UI's header: not without it, not with
    // another value (a server on another port of the host gets the cookie, not the key).
    let source = json_body(json!({"source": GATE}));
    for extra in ["", "X-Plexus-UI: 1\r\n"] {
        let (status, _, body) = d.exchange("POST", "/v1/workflows", &with(extra), Some(("application/json", &source)));
        assert_eq!(status, 403, "{extra}: {}", String::from_utf8_lossy(&body));
    }
    assert_eq!(d.exchange("GET", "/v1/workflows/gate", &with(""), None).0, 404, "nothing was registered");
    let key = format!("X-Plexus-UI: {}\r\n", session.write_key);
    let (status, _, _) = d.exchange("POST", "/v1/workflows", &with(&key), Some(("application/json", &source)));
    assert_eq!(status, 201);
    // A made-up session is not one, nor is the cookie under another port's name.
    let forged = format!("Cookie: plexus_session={}\r\n", "ab".repeat(32));
    assert_eq!(d.exchange("GET", "/v1/workflows", &forged, None).0, 401);
    let (_, value) = cookie.split_once('=').unwrap();
    let elsewhere = format!("Host: plexus:7070\r\nCookie: plexus_session={value}\r\n");
    let mut stream = TcpStream::connect(&d.addr).unwrap();
    write!(stream, "GET /v1/workflows HTTP/1.1\r\n{elsewhere}Connection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "a cookie named for no port is not the one for port 7070: {answer}");
    // An event stream opened with the session: it closes once the session ends, even while its
    // execution goes on.
    let id = d.start_execution("gate");
    let mut events = open_stream(&d, &format!("/v1/events?execution={id}"), &with(""));
    let mut seen = Vec::new();
    while !seen.iter().any(|(_, _, e): &(String, Option<String>, Value)| e["step_id"] == "wait") {
        seen.extend(read_events(&mut events, "transition"));
    }
    // Logout ends it, and clears the cookie.
    let (status, head, _) = d.exchange("DELETE", "/v1/session", &with(""), None);
    assert_eq!(status, 204);
    assert!(header(&head, "set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(d.exchange("GET", "/v1/workflows", &with(""), None).0, 401);
    // The signal's transitions wake the stream, which finds its session gone and closes, without them.
    d.client().signal(&id, "go", &serde_json::from_value(json!({"payload": 1})).unwrap()).unwrap();
    assert_eq!(
        d.wait_for(&id, Duration::from_secs(20)).status.status,
        plexus_client::status::WorkflowStatus::Completed
    );
    let rest = read_to_close(&mut events, "after logout");
    assert!(!rest.contains("event:"), "nothing after the logout: {rest}");
    // The token went to the daemon in a body only: its log never holds it.
    let log = std::fs::read_to_string(data.path().join("daemon.log")).unwrap();
    assert!(!log.contains(&d.token));
}

/// Read server-sent events from `reader` until one named `until`; returns
/// (name, id, data) of each. Panics when the stream ends or stalls (30 s) first.
fn read_events(reader: &mut impl BufRead, until: &str) -> Vec<(String, Option<String>, Value)> {
    let (mut events, mut name, mut id, mut data) = (Vec::new(), String::new(), None, String::new());
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => panic!("the stream ended before `{until}`: {events:?}"),
            Ok(_) => {}
            Err(e) => panic!("the stream stalled before `{until}` ({e}): {events:?}"),
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if !data.is_empty() {
                let done = name == until;
                events.push((std::mem::take(&mut name), id.take(), serde_json::from_str(&data).unwrap()));
                data.clear();
                if done {
                    return events;
                }
            }
        } else if let Some(v) = line.strip_prefix("event: ") {
            name = v.to_owned();
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
        // Chunk sizes of the chunked encoding and `:` keep-alive comments are skipped.
    }
}

/// What is left of a stream until the daemon closes it; panics when it
/// stays open 30 s (`when` says after what).
fn read_to_close(reader: &mut impl BufRead, when: &str) -> String {
    let mut rest = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return rest,
            Ok(_) => rest.push_str(&line),
            Err(e) => panic!("the stream stayed open {when} ({e}): {rest:?}"),
        }
    }
}

/// Open `GET path` with the token (or the `Cookie` that `extra` has) and read past the response head.
fn open_stream(d: &RunningDaemon, path: &str, extra: &str) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(&d.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = if extra.contains("Cookie:") { String::new() } else { format!("Authorization: Bearer {}\r\n", d.token) };
    write!(stream, "GET {path} HTTP/1.1\r\nHost: plexus\r\n{auth}Connection: close\r\n{extra}\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut head = String::new();
    while line.trim() != "" {
        line.clear();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
    }
    assert_eq!(header(&head, "content-type"), Some("text/event-stream"), "{head}");
    reader
}

#[test]
fn the_event_stream_delivers_transitions_live_and_ends_with_the_execution() {
    let plugins = plugins_dir(&["echo-native"]);
    let data = tempfile::tempdir().unwrap();
    let d = RunningDaemon::start(data.path(), plugins.path(), &[]);
    d.register(GATE);
    let id = d.start_execution("gate");
    // While it waits for its signal, the stream has what happened so far and stays open.
    let mut reader = open_stream(&d, &format!("/v1/events?execution={id}"), "");
    let mut seen = Vec::new();
    while !seen.iter().any(|(_, _, e): &(String, Option<String>, Value)| e["step_id"] == "wait") {
        seen.extend(read_events(&mut reader, "transition"));
    }
    assert!(seen.iter().all(|(name, _, _)| name == "transition"));
    let seqs: Vec<i64> = seen
        .iter()
        .map(|(_, id, e)| {
            assert_eq!(id.as_deref().map(str::parse::<i64>).unwrap().unwrap(), e["seq"].as_i64().unwrap());
            e["seq"].as_i64().unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert!(seen.iter().any(|(_, _, e)| e["step_id"] == "first" && e["status"] == "completed"), "{seen:?}");
    let last_seen = *seqs.last().unwrap();
    // The signal: its transitions come on the open stream, then `end`.
    let client = d.client();
    client.signal(&id, "go", &serde_json::from_value(json!({"payload": {"ok": true}})).unwrap()).unwrap();
    let rest = read_events(&mut reader, "end");
    let (name, _, end) = rest.last().unwrap();
    assert_eq!((name.as_str(), &end["execution_id"], &end["status"]), ("end", &json!(id), &json!("completed")));
    assert!(rest.iter().any(|(_, _, e)| e["step_id"] == "wait" && e["status"] == "completed"), "{rest:?}");
    // The stream closes after `end`: the chunked body's last chunk, then the connection's end.
    let tail = read_to_close(&mut reader, "after `end`");
    assert!(tail.ends_with("0\r\n\r\n"), "{tail:?}");
    // A client reconnecting with Last-Event-ID gets only what came after.
    let mut again = open_stream(&d, &format!("/v1/events?execution={id}"), &format!("Last-Event-ID: {last_seen}\r\n"));
    let replay = read_events(&mut again, "end");
    assert_eq!(replay.len(), rest.len(), "{replay:?} vs {rest:?}");
    assert!(replay.iter().filter_map(|(_, _, e)| e["seq"].as_i64()).all(|s| s > last_seen));
    // An unknown execution: 404 before any stream.
    let (status, body) = d.call("GET", "/v1/events?execution=nope", None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(d.call("GET", "/v1/events", None).0, 400, "the execution is required");
}

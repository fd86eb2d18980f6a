//! Requests too big to take: a 100 MB body, a prompt of 200,000 nodes, JSON nested 100,000 deep, more
//! websockets than allowed (one by one and all at once), a full queue and an upload over the limit.
//! Each is refused with its status, quickly, and the server goes on serving.

use crate::support::socket::{Refusal, Socket, connect, connect_as};
use crate::support::{Options, TestServer, WAIT, save_prompt, slow_prompt, upload, wait_for};
use kinograph_server::Limits;
use serde_json::json;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn server_with(limits: Limits) -> TestServer {
    TestServer::start_with(Options { limits, ..Options::default() })
}

/// Sends `POST path` with a body of `length` bytes, the `pieces`, written while the answer is read on
/// another thread, and returns the answer as text: the server may answer before it has the whole body,
/// and close the connection.
fn post_while_reading(
    address: SocketAddr,
    path: &str,
    content_type: &str,
    length: usize,
    pieces: impl Iterator<Item = Vec<u8>>,
) -> String {
    let mut stream = TcpStream::connect_timeout(&address, WAIT).expect("a connection");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let answer = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let mut buffer = [0_u8; 8192];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                // A reset after the answer (the server stopped reading the body) ends it too.
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    for piece in pieces {
        // The server refusing the rest shows as a broken pipe or a reset here.
        if stream.write_all(&piece).is_err() {
            break;
        }
    }
    answer.join().expect("the reader")
}

/// The status line of an answer.
fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("nothing")
}

#[test]
fn a_100_megabyte_body_is_refused_with_413() {
    let server = TestServer::start();
    let length = 100 << 20;
    let pieces = (0..100).map(|_| vec![b' '; 1 << 20]);
    let answer = post_while_reading(server.address, "/prompt", "application/json", length, pieces);
    assert!(answer.starts_with("HTTP/1.1 413"), "the answer: {}", status_line(&answer));
    assert!(answer.contains("request_too_large"), "{answer}");
    server.client().assert_still_serving();
    assert_eq!(server.client().get("/queue").json()["queue_pending"], json!([]));
}

#[test]
fn a_prompt_of_200000_nodes_is_refused_quickly_naming_the_limit() {
    let server = TestServer::start();
    let client = server.client();
    let mut body = String::from("{\"prompt\": {");
    for index in 0..200_000 {
        if index > 0 {
            body.push(',');
        }
        write!(
            body,
            "\"{index}\": {{\"class_type\": \"SaveText\", \"inputs\": {{\"text\": \"x\", \"filename_prefix\": \"p\"}}}}"
        )
        .unwrap();
    }
    body.push_str("}}");
    assert!(body.len() > 10_000_000);
    let started = Instant::now();
    let reply = client.send("POST", "/prompt", Some("application/json"), body.into_bytes());
    let took = started.elapsed();
    assert_eq!(reply.status, 413, "{}", reply.text());
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "prompt_too_large");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("200000") && message.contains("10000"), "{message}");
    assert!(took < Duration::from_secs(2), "refusing took {took:?}");
    client.assert_still_serving();
}

#[test]
fn json_nested_100000_deep_is_refused_with_400() {
    let server = TestServer::start();
    let client = server.client();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies = [
        format!("{{\"prompt\": {deep}}}"),
        format!("{{\"prompt\": {{\"1\": {{\"class_type\": \"SaveText\", \"inputs\": {{\"text\": {deep}}}}}}}}}"),
        deep.clone(),
        "[".repeat(100_000),
    ];
    for path in ["/prompt", "/queue", "/history", "/interrupt", "/free"] {
        for body in &bodies {
            let reply = client.send("POST", path, Some("application/json"), body.clone().into_bytes());
            assert_eq!(reply.status, 400, "{path}: {}", reply.text());
            client.assert_still_serving();
        }
    }
}

#[test]
fn websockets_beyond_the_limit_are_refused_and_the_open_ones_keep_working() {
    let server = server_with(Limits { max_websockets: 8, ..Limits::default() });
    let client = server.client();
    let mut open: Vec<Socket> = (0..8).map(|index| connect_as(server.address, &format!("client-{index}"))).collect();
    for _ in 0..3 {
        match connect(server.address, "/ws?clientId=extra", &[]) {
            Err(Refusal::Status(status)) => assert_eq!(status, 429),
            Err(other) => panic!("refused without a status: {other}"),
            Ok(_) => panic!("a ninth websocket opened"),
        }
        client.assert_still_serving();
    }
    let prompt_id = client.queue(&json!({"prompt": slow_prompt("still heard", 2, 0), "client_id": "client-0"}));
    let frames = open[0].until_finished(&prompt_id);
    assert!(frames.iter().any(|frame| frame.kind() == Some("execution_success")));

    for socket in open.drain(5..) {
        socket.close();
    }
    for index in 0..3 {
        // A closed socket's slot is free once the server has seen the close.
        let socket = wait_for("a free websocket slot", || {
            connect(server.address, &format!("/ws?clientId=new-{index}"), &[]).ok()
        });
        open.push(socket);
    }
    assert!(matches!(connect(server.address, "/ws?clientId=extra", &[]), Err(Refusal::Status(429))));
}

#[test]
fn websockets_opened_all_at_once_stay_within_the_limit() {
    let server = server_with(Limits { max_websockets: 8, ..Limits::default() });
    let address = server.address;
    let attempts: Vec<_> = (0..40)
        .map(|index| std::thread::spawn(move || connect(address, &format!("/ws?clientId=flood-{index}"), &[])))
        .collect();
    let results: Vec<Result<Socket, Refusal>> = attempts.into_iter().map(|attempt| attempt.join().unwrap()).collect();
    let opened = results.iter().filter(|result| result.is_ok()).count();
    assert!(opened <= 8, "{opened} websockets opened at once with a limit of 8");
    assert!(opened >= 1, "none opened");
    for result in results {
        match result {
            Ok(mut socket) => assert_eq!(socket.next_json()["type"], "status", "an open socket works"),
            Err(refusal) => assert!(matches!(refusal, Refusal::Status(429)), "{refusal}"),
        }
    }
    server.client().assert_still_serving();
}

#[test]
fn a_full_queue_refuses_more_prompts_with_429() {
    let server = server_with(Limits { max_queue: 3, ..Limits::default() });
    let client = server.client();
    let blocker = client.queue(&json!({"prompt": slow_prompt("blocker", 100_000, 5)}));
    client.wait_until_running(&blocker);
    let waiting: Vec<String> =
        (0..3).map(|index| client.queue(&json!({"prompt": save_prompt(&format!("waiting {index}"))}))).collect();
    let reply = client.post("/prompt", &json!({"prompt": save_prompt("one too many")}));
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "queue_full");
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains('3'));
    client.assert_still_serving();
    assert_eq!(client.queue_ids().1, waiting);

    client.post("/queue", &json!({"delete": [waiting[0]]}));
    client.queue(&json!({"prompt": save_prompt("room again")}));
    client.post("/interrupt", &json!({}));
}

#[test]
fn an_upload_over_the_limit_is_refused_with_413() {
    let server = server_with(Limits { max_upload_bytes: 64 << 10, ..Limits::default() });
    let client = server.client();
    let boundary = "limit-test-boundary";
    let mut form =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n\r\n")
            .into_bytes();
    form.extend(std::iter::repeat_n(7_u8, 1 << 20));
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let pieces = form.chunks(64 << 10).map(<[u8]>::to_vec);
    let answer = post_while_reading(server.address, "/upload/image", &content_type, form.len(), pieces);
    assert!(answer.starts_with("HTTP/1.1 413"), "the answer: {}", status_line(&answer));
    assert!(answer.contains(&(64 << 10).to_string()), "the message names the limit: {answer}");
    assert!(!server.input_dir().join("big.png").exists());
    client.assert_still_serving();

    let reply = upload(&client, "/upload/image", "small.png", &[7_u8; 1000], &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(client.get("/features").json()["max_upload_size"], 64 << 10);
}

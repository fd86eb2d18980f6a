//! Who gets in: with a token, every request and websocket without it (or with a wrong one) is refused
//! with 401, even from loopback when the server listens on every interface; listening beyond loopback
//! without a token is refused at start; on loopback, a page from another site is refused with 403.

use crate::support::socket::{Refusal, connect};
use crate::support::{Options, TestServer, Workspace, bind, save_prompt};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};

const TOKEN: &str = "correct-horse-battery-staple";

fn server_with_token(listen: IpAddr) -> TestServer {
    TestServer::start_with(Options { token: Some(TOKEN), listen, ..Options::default() })
}

/// Checks that requests without the right token are refused and with it accepted, over HTTP and the
/// websocket.
fn only_the_token_gets_in(server: &TestServer) {
    let anonymous = server.anonymous_client();
    for path in ["/prompt", "/queue", "/history", "/object_info", "/system_stats", "/view?filename=x", "/api/prompt"] {
        let reply = anonymous.get(path);
        assert_eq!(reply.status, 401, "{path}: {}", reply.text());
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(reply.json()["error"]["type"], "unauthorized");
    }
    let refused = anonymous.post("/prompt", &json!({"prompt": save_prompt("sneaky")}));
    assert_eq!(refused.status, 401);
    for wrong in ["Bearer wrong", &format!("Bearer {TOKEN}x"), &format!("Basic {TOKEN}"), "Bearer "] {
        let reply = anonymous.clone().with_header("Authorization", wrong).get("/prompt");
        assert_eq!(reply.status, 401, "{wrong}");
    }
    assert_eq!(anonymous.get("/prompt?token=wrong").status, 401);

    let client = server.client();
    assert_eq!(client.get("/prompt").status, 200);
    assert_eq!(anonymous.get(&format!("/prompt?token={TOKEN}")).status, 200);
    assert_eq!(client.get("/queue").json()["queue_pending"], json!([]), "the refused prompt was not queued");
    let prompt_id = client.queue(&json!({"prompt": save_prompt("allowed")}));
    client.wait_for_history(&prompt_id);

    let mut socket =
        connect(server.address, &format!("/ws?clientId=a&token={TOKEN}"), &[]).expect("the token opens it");
    assert_eq!(socket.next_json()["data"]["sid"], "a");
    let bearer = format!("Bearer {TOKEN}");
    let mut socket =
        connect(server.address, "/ws?clientId=b", &[("Authorization", &bearer)]).expect("so does the header");
    assert_eq!(socket.next_json()["data"]["sid"], "b");
    for target in ["/ws?clientId=c", "/ws?clientId=c&token=wrong", "/api/ws"] {
        assert!(matches!(connect(server.address, target, &[]), Err(Refusal::Status(401))), "{target}");
    }
    client.assert_still_serving();
}

#[test]
fn with_a_token_every_request_needs_it() {
    let server = server_with_token(IpAddr::V4(Ipv4Addr::LOCALHOST));
    only_the_token_gets_in(&server);
}

#[test]
fn listening_on_every_interface_without_a_token_is_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let options = Options { listen: IpAddr::V4(Ipv4Addr::UNSPECIFIED), ..Options::default() };
    let Err(error) = bind(&runtime, &Workspace::new(), &options) else { panic!("the server listened without a token") };
    let message = error.to_string();
    assert!(message.contains("--auth-token"), "{message}");
    assert!(message.contains("0.0.0.0"), "{message}");
}

#[test]
fn listening_on_every_interface_with_a_token_loopback_requests_need_it_too() {
    let server = server_with_token(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert!(server.address.ip().is_loopback(), "the tests reach it over loopback");
    only_the_token_gets_in(&server);
}

#[test]
fn a_cross_site_origin_is_refused_on_loopback() {
    let server = TestServer::start();
    let client = server.client();
    let same_origin = format!("http://{}", server.address);
    for origin in ["http://evil.example", "https://evil.example", "null", "http://127.0.0.1:1", "http://localhost"] {
        let cross_site = client.clone().with_header("Origin", origin);
        for path in ["/prompt", "/queue", "/history", "/object_info", "/view?filename=x", "/api/prompt"] {
            let reply = cross_site.get(path);
            assert_eq!(reply.status, 403, "{origin} {path}: {}", reply.text());
            assert_eq!(reply.json()["error"]["type"], "forbidden_origin");
        }
        let posted = cross_site.post("/prompt", &json!({"prompt": save_prompt("cross-site")}));
        assert_eq!(posted.status, 403);
        assert_eq!(cross_site.post("/interrupt", &json!({})).status, 403);
        let refused = connect(server.address, "/ws?clientId=evil", &[("Origin", origin)]);
        assert!(matches!(refused, Err(Refusal::Status(403))), "{origin}: {refused:?}");
        client.assert_still_serving();
    }
    assert_eq!(client.get("/queue").json()["queue_pending"], json!([]), "nothing cross-site was queued");

    let same_site = client.clone().with_header("Origin", &same_origin);
    assert_eq!(same_site.get("/prompt").status, 200);
    let prompt_id = same_site.queue(&json!({"prompt": save_prompt("same origin")}));
    same_site.wait_for_history(&prompt_id);
    let mut socket = connect(server.address, "/ws?clientId=page", &[("Origin", &same_origin)]).expect("same origin");
    assert_eq!(socket.next_json()["type"], "status");
    assert_eq!(client.get("/prompt").status, 200, "no Origin, as scripts send");
}

use super::*;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use std::net::{Ipv4Addr, Ipv6Addr};
use tower::ServiceExt;

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    map
}

fn token(value: &str) -> AuthToken {
    AuthToken::new(value).unwrap()
}

#[test]
fn loopback_addresses() {
    assert!(is_loopback(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert!(is_loopback(&IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3))));
    assert!(is_loopback(&IpAddr::V6(Ipv6Addr::LOCALHOST)));
    assert!(is_loopback(&IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())));
    assert!(!is_loopback(&IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    assert!(!is_loopback(&IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
    assert!(!is_loopback(&IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10))));
}

#[test]
fn binding_beyond_loopback_needs_a_token() {
    assert!(check_bind(IpAddr::V4(Ipv4Addr::LOCALHOST), None).is_ok());
    assert!(check_bind(IpAddr::V6(Ipv6Addr::LOCALHOST), None).is_ok());
    let token = AuthToken::new("s3cret").unwrap();
    assert!(check_bind(IpAddr::V4(Ipv4Addr::UNSPECIFIED), Some(&token)).is_ok());
    let message = check_bind(IpAddr::V4(Ipv4Addr::UNSPECIFIED), None).unwrap_err().to_string();
    assert!(message.contains("0.0.0.0"), "{message}");
    assert!(message.contains("--auth-token") && message.contains("--auth-token-file"), "{message}");
    // Nothing but whitespace is no token.
    assert!(AuthToken::new("").is_err() && AuthToken::new("  \n").is_err());
}

#[test]
fn tokens_come_from_files_trimmed() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("token");
    std::fs::write(&path, "  s3cret\n").unwrap();
    assert!(AuthToken::from_file(&path).unwrap().matches("s3cret"));
    std::fs::write(&path, "\n\n").unwrap();
    let error = AuthToken::from_file(&path).unwrap_err();
    assert!(matches!(error, SecurityError::TokenFileEmpty { .. }));
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
    let missing = folder.path().join("missing");
    let error = AuthToken::from_file(&missing).unwrap_err();
    assert!(matches!(error, SecurityError::TokenFileUnreadable { .. }));
    assert!(error.to_string().contains(&missing.display().to_string()), "{error}");
    assert!(matches!(AuthToken::new(" "), Err(SecurityError::EmptyToken)));
}

#[test]
fn tokens_match_only_themselves() {
    let secret = token("s3cret");
    assert!(secret.matches("s3cret"));
    assert!(!secret.matches("s3cre"));
    assert!(!secret.matches("s3crets"));
    assert!(!secret.matches("s3cres"));
    assert!(!secret.matches("S3cret"));
    assert!(!secret.matches(""));
    // A longer string whose first bytes are the token is not the token.
    assert!(!secret.matches("s3cret\0"));
}

#[test]
fn tokens_are_never_printed() {
    let policy = AccessPolicy { token: Some(token("s3cret")), check_origin: true };
    let printed = format!("{policy:?}");
    assert!(printed.contains("AuthToken(<redacted>)"), "{printed}");
    assert!(!printed.contains("s3cret"), "{printed}");
}

#[test]
fn bearer_tokens_are_read_from_the_header() {
    for value in ["Bearer s3cret", "bearer s3cret", "BEARER   s3cret  ", "  Bearer\ts3cret"] {
        let map = headers(&[(header::AUTHORIZATION, value)]);
        assert_eq!(presented_token(&map, None).as_deref(), Some("s3cret"), "{value:?}");
    }
    for value in ["Basic czNjcmV0", "Bearer", "Bearer   ", "s3cret", "Bearers3cret"] {
        let map = headers(&[(header::AUTHORIZATION, value)]);
        assert_eq!(presented_token(&map, None), None, "{value:?}");
    }
    // The header wins over the query.
    let map = headers(&[(header::AUTHORIZATION, "Bearer from-header")]);
    assert_eq!(presented_token(&map, Some("token=from-query")).as_deref(), Some("from-header"));
}

#[test]
fn query_tokens_are_percent_decoded() {
    let empty = HeaderMap::new();
    for (query, expected) in [
        ("token=s3cret", Some("s3cret")),
        ("clientId=abc&token=a%2Bb%2Fc%3D%3D", Some("a+b/c==")),
        ("token=a+b", Some("a+b")),
        ("token=%E2%9C%93", Some("\u{2713}")),
        ("token=50%", Some("50%")),
        ("token=%zz", Some("%zz")),
        ("token=%FF", None),
        ("token=", None),
        ("mytoken=s3cret", None),
        ("token", None),
        ("", None),
    ] {
        assert_eq!(presented_token(&empty, Some(query)).as_deref(), expected, "{query:?}");
    }
    // A non-Bearer header falls back to the query.
    let basic = headers(&[(header::AUTHORIZATION, "Basic abc")]);
    assert_eq!(presented_token(&basic, Some("token=q")).as_deref(), Some("q"));
}

#[test]
fn origins_must_match_the_host() {
    let check = |origin: Option<&str>, host: Option<&str>| {
        let mut map = HeaderMap::new();
        if let Some(origin) = origin {
            map.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        if let Some(host) = host {
            map.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        origin_allowed(&map)
    };
    let host = Some("127.0.0.1:8188");
    assert!(check(Some("http://127.0.0.1:8188"), host));
    assert!(check(Some("HTTP://LocalHost:8188"), Some("localhost:8188")));
    assert!(check(Some("http://[::1]:8188"), Some("[::1]:8188")));
    assert!(check(Some("http://example.local"), Some("example.local:80")));
    assert!(check(Some("https://example.local"), Some("EXAMPLE.local")));
    // No Origin: a script or curl.
    assert!(check(None, host));
    assert!(check(None, None));

    assert!(!check(Some("http://evil.example"), host));
    assert!(!check(Some("http://127.0.0.1:9999"), host));
    assert!(!check(Some("http://127.0.0.1"), host));
    assert!(!check(Some("https://example.local"), Some("example.local:80")));
    assert!(!check(Some("null"), host));
    assert!(!check(Some("127.0.0.1:8188"), host));
    assert!(!check(Some("http://"), host));
    assert!(!check(Some("http://user@127.0.0.1:8188"), host));
    assert!(!check(Some("http://127.0.0.1:8188/path"), host));
    assert!(!check(Some("http://127.0.0.1:8188"), None));
}

/// A router answering "ok" on `/` behind the guard.
fn guarded(policy: AccessPolicy) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(Arc::new(policy), guard))
}

async fn send(router: Router, uri: &str, pairs: &[(header::HeaderName, &str)]) -> (StatusCode, HeaderMap, String) {
    let mut request = axum::http::Request::builder().uri(uri);
    for (name, value) in pairs {
        request = request.header(name, *value);
    }
    let response = router.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_guard_needs_the_token() {
    let policy = || AccessPolicy { token: Some(token("s3cret")), check_origin: false };

    let (status, headers, body) = send(guarded(policy()), "/", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "unauthorized");
    assert!(body["error"]["message"].as_str().unwrap().contains("Bearer"));

    let (status, ..) = send(guarded(policy()), "/", &[(header::AUTHORIZATION, "Bearer wrong")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(guarded(policy()), "/", &[(header::AUTHORIZATION, "Bearer s3cret")]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, body) = send(guarded(policy()), "/?clientId=1&token=s3cret", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn the_guard_refuses_other_sites() {
    let policy = || AccessPolicy { token: None, check_origin: true };
    let cross_site = [(header::HOST, "127.0.0.1:8188"), (header::ORIGIN, "http://evil.example")];
    let (status, _, body) = send(guarded(policy()), "/", &cross_site).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "forbidden_origin");

    let same_site = [(header::HOST, "127.0.0.1:8188"), (header::ORIGIN, "http://127.0.0.1:8188")];
    assert_eq!(send(guarded(policy()), "/", &same_site).await.0, StatusCode::OK);
    assert_eq!(send(guarded(policy()), "/", &[(header::HOST, "127.0.0.1:8188")]).await.0, StatusCode::OK);
    // Without the check, any origin passes.
    let open = AccessPolicy { token: None, check_origin: false };
    assert_eq!(send(guarded(open), "/", &cross_site).await.0, StatusCode::OK);
    // A cross-site page with the token is still refused.
    let both = AccessPolicy { token: Some(token("s3cret")), check_origin: true };
    let with_token = [cross_site[0].clone(), cross_site[1].clone(), (header::AUTHORIZATION, "Bearer s3cret")];
    assert_eq!(send(guarded(both), "/", &with_token).await.0, StatusCode::FORBIDDEN);
}

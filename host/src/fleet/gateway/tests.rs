use super::*;

#[test]
fn an_error_says_its_message_in_either_shape() {
    let unary =
        json!({"error": "etcdserver: no leader", "code": 14, "message": "etcdserver: no leader"});
    let stream =
        json!({"error": {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader"}});
    assert_eq!(error_message(&unary), "etcdserver: no leader");
    assert_eq!(error_message(&stream), "etcdserver: no leader");
    assert_eq!(error_message(&Value::Null), "no message");
}

#[test]
fn a_member_too_busy_is_passed_over_but_a_client_error_is_an_answer() {
    use reqwest::StatusCode;
    for passed in [
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::GATEWAY_TIMEOUT,
    ] {
        assert!(cannot_serve_now(passed), "{passed}");
    }
    for answer in [
        StatusCode::OK,
        StatusCode::BAD_REQUEST,
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::NOT_FOUND,
    ] {
        assert!(!cannot_serve_now(answer), "{answer}");
    }
}

/// A failed call says what to look at for the check that failed, and no more.
#[test]
fn a_failed_call_hints_at_what_failed() {
    let tls = "https://127.0.0.1:2379";
    assert_eq!(
        with_hint(tls, "invalid peer certificate: UnknownIssuer".into()),
        "invalid peer certificate: UnknownIssuer (is etcd's certificate signed by the CA of ca_file?)"
    );
    assert_eq!(
        with_hint(tls, "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"etcd\")".into()),
        "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"etcd\") (the endpoint's host must be a name or address etcd's certificate is for)"
    );
    let closed = "connection closed before message completed";
    assert_eq!(
        with_hint("http://127.0.0.1:2379", closed.into()),
        "connection closed before message completed (if etcd serves TLS, the endpoint needs https://)"
    );
    assert_eq!(with_hint(tls, closed.into()), closed);
    assert_eq!(
        with_hint(tls, "Connection refused (os error 111)".into()),
        "Connection refused (os error 111)"
    );
}

#[test]
fn a_prefix_range_ends_past_its_last_key() {
    assert_eq!(prefix_end("/nm/"), b"/nm0");
    assert_eq!(number(&json!("7587")), 7587);
    assert_eq!(number(&json!(12)), 12);
    assert_eq!(number(&Value::Null), 0);
    let read = kv(&json!({"key": b64(b"/a"), "value": b64(b"x"), "mod_revision": "9"})).unwrap();
    assert_eq!(
        (read.key.as_str(), read.value, read.mod_revision),
        ("/a", b"x".to_vec(), 9)
    );
    // Two keys that are no UTF-8: two keys still.
    let odd = |bytes: &[u8]| {
        kv(&json!({"key": b64(bytes), "value": b64(b"1")}))
            .unwrap()
            .key
    };
    assert_eq!(odd(b"/nm/limits/\xff"), "/nm/limits/\\xff");
    assert_ne!(odd(b"/nm/limits/\xfe"), odd(b"/nm/limits/\xff"));
}

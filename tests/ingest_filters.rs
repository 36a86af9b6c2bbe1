//! The HTTP layer's rules, through warp's test client: every validation rule, both
//! dict-literal syntaxes, auth, body limits, unknown routes, and the OpenAPI document
//! agreeing with the routes. Publishing goes to a recorder so each test can check what
//! was (or was not) produced; the real broker is exercised in tests/ingest_kafka.rs.

use creditstream::config::Config;
use creditstream::ingest::ports::{
    CommandRecord, CommandUser, Delivered, OrderEvent, Publish, PublishError, Read, ReadError,
};
use creditstream::ingest::{self, routes};
use creditstream::topology::definition::TopologyDefinition;
use creditstream::topology::partitioner::partition_for;
use creditstream::topology::record::{Column, Predicate, Target, UserCommand, UserRow, Value};
use futures::future::BoxFuture;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What was published: topic, partition, key, value.
type Published = (String, Option<i32>, Vec<u8>, Vec<u8>);

#[derive(Default)]
struct Recorder {
    records: Mutex<Vec<Published>>,
    unavailable: bool,
}

/// The recorder as the ingest holds it (a handle the test keeps a clone of).
struct Handle(Arc<Recorder>);

impl Publish for Handle {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        partition: Option<i32>,
        key: &'a [u8],
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<Delivered, PublishError>> {
        Box::pin(async move {
            if self.0.unavailable {
                return Err(PublishError::Unavailable("broker down".into()));
            }
            let mut records = self.0.records.lock().unwrap();
            records.push((topic.to_string(), partition, key.to_vec(), value.to_vec()));
            Ok(Delivered {
                partition: partition.unwrap_or(0),
                offset: records.len() as i64,
            })
        })
    }

    fn is_reachable(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move { !self.0.unavailable })
    }
}

/// The tables as the sink would have written them, in memory.
#[derive(Default)]
struct Tables {
    users: Mutex<Vec<UserRow>>,
    orders: Mutex<HashMap<i64, Vec<OrderEvent>>>,
    commands: Mutex<HashMap<i64, CommandRecord>>,
}

struct Reader(Arc<Tables>);

impl Read for Reader {
    fn users<'a>(&'a self, condition: &'a [Predicate], limit: usize) -> BoxFuture<'a, Result<Vec<UserRow>, ReadError>> {
        Box::pin(async move {
            let users = self.0.users.lock().unwrap();
            Ok(users
                .iter()
                .filter(|u| u.matches(condition))
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn order_events(&self, order_id: i64) -> BoxFuture<'_, Result<Vec<OrderEvent>, ReadError>> {
        Box::pin(async move {
            Ok(self
                .0
                .orders
                .lock()
                .unwrap()
                .get(&order_id)
                .cloned()
                .unwrap_or_default())
        })
    }

    fn command(&self, command_id: i64) -> BoxFuture<'_, Result<CommandRecord, ReadError>> {
        Box::pin(async move {
            Ok(self
                .0
                .commands
                .lock()
                .unwrap()
                .get(&command_id)
                .cloned()
                .unwrap_or_default())
        })
    }

    fn is_reachable(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

struct Harness {
    recorder: Arc<Recorder>,
    tables: Arc<Tables>,
    filter: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    topology: TopologyDefinition,
}

fn harness_with(overlay: &str, unavailable: bool) -> Harness {
    let config = Config::from_toml_overlay(overlay).unwrap();
    let topology = TopologyDefinition::builtin();
    let recorder = Arc::new(Recorder {
        unavailable,
        ..Recorder::default()
    });
    let tables = Arc::new(Tables::default());
    let state = Arc::new(ingest::state(
        Handle(recorder.clone()),
        Reader(tables.clone()),
        topology.clone(),
        &config.ingest,
    ));
    use warp::Filter;
    Harness {
        recorder,
        tables,
        filter: routes::routes(state).boxed(),
        topology,
    }
}

fn harness() -> Harness {
    harness_with("", false)
}

impl Harness {
    async fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, Json, warp::http::HeaderMap) {
        self.call_with(method, path, body, &[]).await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> (u16, Json, warp::http::HeaderMap) {
        let mut request = warp::test::request().method(method).path(path).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.reply(&self.filter).await;
        let json = serde_json::from_slice(response.body()).unwrap_or(Json::Null);
        (response.status().as_u16(), json, response.headers().clone())
    }

    fn published(&self) -> Vec<Published> {
        self.recorder.records.lock().unwrap().clone()
    }
}

async fn assert_rejected(h: &Harness, method: &str, path: &str, body: &[u8], status: u16, field: Option<&str>) {
    let (code, json, _) = h.call(method, path, body).await;
    assert_eq!(code, status, "{method} {path} -> {json}");
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{method} {path}: no error text in {json}"
    );
    if let Some(field) = field {
        assert_eq!(json["field"], field, "{method} {path} -> {json}");
    }
    assert!(h.published().is_empty(), "{method} {path} published something");
    assert_eq!(
        h.call("GET", "/healthz", b"").await.0,
        200,
        "still healthy after {method} {path}"
    );
}

#[tokio::test]
async fn seed_order_publishes_to_the_uid_partition_and_answers_202() {
    let h = harness();
    let (code, json, headers) = h.call("GET", "/order?uid=5&amount=30", b"").await;
    assert_eq!(code, 202, "{json}");
    assert_eq!(json["status"], "Initialised");
    assert!(json["order_id"].as_i64().unwrap() > 0);
    assert!(headers.get("location").is_some());
    let published = h.published();
    assert_eq!(published.len(), 1);
    let (topic, partition, key, value) = &published[0];
    assert_eq!(topic, &h.topology.inputs.orders);
    assert_eq!(key, b"5");
    assert_eq!(*partition, Some(partition_for(b"5", h.topology.partitions) as i32));
    let order: creditstream::topology::record::Order = serde_json::from_slice(value).unwrap();
    assert_eq!((order.uid, order.amount), (5, 30));
    // POST works the same.
    assert_eq!(h.call("POST", "/order?uid=5&amount=1", b"").await.0, 202);
}

#[tokio::test]
async fn seed_order_rejections() {
    for (path, field) in [
        ("/order?uid=5", "amount"),
        ("/order?amount=5", "uid"),
        ("/order?uid=5&amount=0", "amount"),
        ("/order?uid=5&amount=-3", "amount"),
        ("/order?uid=5&amount=abc", "amount"),
        ("/order?uid=5&amount=99999999999999999999", "amount"),
        ("/order?uid=x&amount=5", "uid"),
        ("/order?uid=5&amount=5&color=red", "color"),
        ("/order?uid=5&uid=6&amount=5", "uid"),
        ("/order?uid=5&amount=1%FF", "query"),
        ("/order?uid=5&amount=%ZZ", "query"),
    ] {
        assert_rejected(&harness(), "GET", path, b"", 400, Some(field)).await;
    }
}

fn command(h: &Harness, index: usize) -> UserCommand {
    serde_json::from_slice(&h.published()[index].3).unwrap()
}

#[tokio::test]
async fn seed_create_user_publishes_a_create_command() {
    let h = harness();
    let (code, json, _) = h
        .call(
            "GET",
            "/user?type=C&lname=Sharma&name=Arpana&credit_limit=100&credit_balance=80",
            b"",
        )
        .await;
    assert_eq!(code, 202, "{json}");
    let uid = json["uid"].as_i64().unwrap();
    match command(&h, 0) {
        UserCommand::Create { user, .. } => {
            assert_eq!(user.uid, uid);
            assert_eq!(
                (
                    user.name.as_str(),
                    user.lname.as_str(),
                    user.credit_limit,
                    user.credit_balance
                ),
                ("Arpana", "Sharma", 100, 80)
            );
        }
        other => panic!("expected a create, got {other:?}"),
    }
    assert_eq!(h.published()[0].0, h.topology.inputs.user_commands);
}

#[tokio::test]
async fn seed_create_user_rejections() {
    let base = "lname=Sharma&name=Arpana&credit_limit=100&credit_balance=80";
    for (path, field) in [
        (
            "/user?type=C&lname=Sharma&credit_limit=100&credit_balance=80".to_string(),
            "name",
        ),
        (format!("/user?type=C&{base}&email=x"), "email"),
        (
            "/user?type=C&lname=Sharma&name=Arpana&credit_limit=100&credit_balance=-1".to_string(),
            "credit_balance",
        ),
        (
            "/user?type=C&lname=Sharma&name=Arpana&credit_limit=-5&credit_balance=0".to_string(),
            "credit_limit",
        ),
        (
            "/user?type=C&lname=Sharma&name=ABCDEFGHIJKLMNOP&credit_limit=100&credit_balance=1".to_string(),
            "name",
        ),
        (
            "/user?type=C&lname=&name=Arpana&credit_limit=100&credit_balance=1".to_string(),
            "lname",
        ),
        (
            "/user?type=C&lname=Sh%00rma&name=Arpana&credit_limit=100&credit_balance=1".to_string(),
            "lname",
        ),
        (
            "/user?type=C&lname=Sharma&name=Arpana&credit_limit=1e3&credit_balance=1".to_string(),
            "credit_limit",
        ),
        ("/user?type=X&a=b".to_string(), "type"),
        ("/user?name=x".to_string(), "type"),
    ] {
        assert_rejected(&harness(), "GET", &path, b"", 400, Some(field)).await;
    }
}

#[tokio::test]
async fn seed_update_accepts_python_dict_literals_and_json() {
    for (condition, new_val) in [
        ("{'uid':7}", "{'name':'Arpana'}"),
        (r#"{"uid": 7}"#, r#"{"name": "Arpana"}"#),
        ("{'uid':'7'}", "{\"name\":'Arpana',}"),
    ] {
        let h = harness();
        let path = format!(
            "/user?type=U&condition={}&new_val={}",
            urlencode(condition),
            urlencode(new_val)
        );
        let (code, json, _) = h.call("GET", &path, b"").await;
        assert_eq!(code, 202, "{path} -> {json}");
        match command(&h, 0) {
            UserCommand::Update { target, set, .. } => {
                assert_eq!(target, Target::Uid(7));
                assert_eq!(set.len(), 1);
                assert_eq!(set[0].column, Column::Name);
                assert_eq!(set[0].value, Value::Text("Arpana".into()));
            }
            other => panic!("expected an update, got {other:?}"),
        }
        let (_, partition, key, _) = &h.published()[0];
        assert_eq!(key, b"7");
        assert_eq!(*partition, Some(partition_for(b"7", h.topology.partitions) as i32));
    }
}

#[tokio::test]
async fn a_condition_update_is_broadcast_to_every_partition() {
    let h = harness();
    let path = format!(
        "/user?type=U&condition={}&new_val={}",
        urlencode("{'lname':'Sharma','credit_limit':100}"),
        urlencode("{'credit_limit':200}")
    );
    let (code, json, _) = h.call("POST", &path, b"").await;
    assert_eq!(code, 202, "{json}");
    let published = h.published();
    assert_eq!(published.len(), h.topology.partitions as usize);
    let mut partitions: Vec<i32> = published.iter().map(|r| r.1.unwrap()).collect();
    partitions.sort_unstable();
    assert_eq!(partitions, (0..h.topology.partitions as i32).collect::<Vec<_>>());
    assert!(published.iter().all(|r| r.2 == b"*"));
}

#[tokio::test]
async fn seed_update_and_delete_rejections() {
    let enc = urlencode;
    for (path, field) in [
        (
            format!(
                "/user?type=U&condition={}&new_val={}",
                enc("{'uid':7"),
                enc("{'name':'A'}")
            ),
            "condition",
        ),
        (
            format!(
                "/user?type=U&condition={}&new_val={}",
                enc("{'uid':7}"),
                enc("{name:'A'}")
            ),
            "new_val",
        ),
        (
            format!(
                "/user?type=U&condition={}&new_val={}",
                enc("{'email':'x'}"),
                enc("{'name':'A'}")
            ),
            "email",
        ),
        (
            format!(
                "/user?type=U&condition={}&new_val={}",
                enc("{'uid':7}"),
                enc("{'password':'x'}")
            ),
            "password",
        ),
        (
            format!(
                "/user?type=U&condition={}&new_val={}",
                enc("{'uid':7}"),
                enc("{'uid':8}")
            ),
            "uid",
        ),
        (
            format!("/user?type=U&condition={}&new_val={}", enc("{'uid':7}"), enc("{}")),
            "new_val",
        ),
        (
            format!("/user?type=U&condition={}&new_val={}", enc("{}"), enc("{'name':'A'}")),
            "condition",
        ),
        (
            format!(
                "/user?type=U&condition={}&new_val={}",
                enc("{'uid':7}"),
                enc("{'credit_limit':'lots'}")
            ),
            "credit_limit",
        ),
        (
            format!(
                "/user?type=U&condition={}&new_val={}",
                enc("{'uid':7}"),
                enc("{'credit_balance':-1}")
            ),
            "credit_balance",
        ),
        (format!("/user?type=U&condition={}", enc("{'uid':7}")), "new_val"),
        ("/user?type=D".to_string(), "condition"),
        ("/user?type=D&password=x".to_string(), "password"),
        ("/user?type=D&uid=abc".to_string(), "uid"),
        (
            format!("/user?type=D&name={}", enc("x' OR '1'='1 ; DROP TABLE User; --")),
            "name",
        ),
    ] {
        assert_rejected(&harness(), "GET", &path, b"", 400, Some(field)).await;
    }
}

#[tokio::test]
async fn very_long_values_are_refused() {
    let long = "x".repeat(10_000);
    assert_rejected(
        &harness(),
        "GET",
        &format!("/user?type=R&name={long}"),
        b"",
        400,
        Some("name"),
    )
    .await;
    assert_rejected(
        &harness(),
        "GET",
        &format!("/order?uid={}&amount=1", "9".repeat(5000)),
        b"",
        400,
        Some("uid"),
    )
    .await;
    let body = format!(r#"{{"name": "{long}", "lname": "B", "credit_limit": 1, "credit_balance": 1}}"#);
    let h = harness_with("[ingest]\nmax_body_bytes = 1000000", false);
    assert_rejected(&h, "POST", "/v1/users", body.as_bytes(), 400, Some("name")).await;
}

#[tokio::test]
async fn sql_looking_text_is_just_a_value() {
    let h = harness();
    let (code, _, _) = h
        .call("GET", &format!("/user?type=D&name={}", urlencode("x' OR 1=1--")), b"")
        .await;
    assert_eq!(code, 202);
    match command(&h, 0) {
        UserCommand::Delete {
            target: Target::Condition(c),
            ..
        } => {
            assert_eq!(c[0].value, Value::Text("x' OR 1=1--".into()));
        }
        other => panic!("expected a condition delete, got {other:?}"),
    }
}

#[tokio::test]
async fn rest_orders_with_an_idempotency_key_get_one_id_and_one_publish() {
    let h = harness();
    let body = br#"{"uid": 9, "amount": 25, "idempotency_key": "abc-1"}"#;
    let (code, first, headers) = h.call("POST", "/v1/orders", body).await;
    assert_eq!(code, 202, "{first}");
    assert_eq!(
        headers.get("location").unwrap(),
        &format!("/v1/orders/{}", first["order_id"])
    );
    let (code, second, _) = h.call("POST", "/v1/orders", body).await;
    assert_eq!(code, 202);
    assert_eq!(first["order_id"], second["order_id"]);
    assert_eq!(h.published().len(), 1);
    // The header form gives the same id, on any replica.
    let other = harness();
    let (_, third, _) = other
        .call_with(
            "POST",
            "/v1/orders",
            br#"{"uid": 9, "amount": 25}"#,
            &[("idempotency-key", "abc-1")],
        )
        .await;
    assert_eq!(first["order_id"], third["order_id"]);
    // Without a key, two orders.
    let (_, a, _) = h.call("POST", "/v1/orders", br#"{"uid": 9, "amount": 25}"#).await;
    let (_, b, _) = h.call("POST", "/v1/orders", br#"{"uid": 9, "amount": 25}"#).await;
    assert_ne!(a["order_id"], b["order_id"]);
}

#[tokio::test]
async fn rest_body_rejections() {
    for (method, path, body, field) in [
        ("POST", "/v1/orders", &b"{"[..], "body"),
        ("POST", "/v1/orders", &b"[1,2]"[..], "body"),
        ("POST", "/v1/orders", &b"\xff\xfe"[..], "body"),
        ("POST", "/v1/orders", &br#"{"uid": "5", "amount": 1}"#[..], "uid"),
        ("POST", "/v1/orders", &br#"{"uid": 5, "amount": 1.5}"#[..], "amount"),
        ("POST", "/v1/orders", &br#"{"uid": 5, "amount": 0}"#[..], "amount"),
        ("POST", "/v1/orders", &br#"{"uid": 5, "amount": -1}"#[..], "amount"),
        (
            "POST",
            "/v1/orders",
            &br#"{"uid": 5, "amount": 9223372036854775808}"#[..],
            "amount",
        ),
        (
            "POST",
            "/v1/orders",
            &br#"{"uid": 5, "amount": 1, "coupon": "x"}"#[..],
            "coupon",
        ),
        (
            "POST",
            "/v1/orders",
            &br#"{"uid": 5, "amount": 1, "idempotency_key": 7}"#[..],
            "idempotency_key",
        ),
        (
            "POST",
            "/v1/users",
            &br#"{"name": "A", "lname": "B", "credit_limit": 10}"#[..],
            "credit_balance",
        ),
        (
            "POST",
            "/v1/users",
            &br#"{"name": 5, "lname": "B", "credit_limit": 10, "credit_balance": 1}"#[..],
            "name",
        ),
        (
            "POST",
            "/v1/users",
            &br#"{"name": "A", "lname": "B", "credit_limit": 10, "credit_balance": 1, "role": "admin"}"#[..],
            "role",
        ),
        ("PATCH", "/v1/users/5", &br#"{"uid": 6}"#[..], "uid"),
        ("PATCH", "/v1/users/5", &br#"{"nickname": "x"}"#[..], "nickname"),
        ("PATCH", "/v1/users/5", &br#"{}"#[..], "new_val"),
        ("PATCH", "/v1/users/abc", &br#"{"name": "A"}"#[..], "uid"),
        ("PATCH", "/v1/users", &br#"{"name": "A"}"#[..], "condition"),
        ("DELETE", "/v1/users", &b""[..], "condition"),
        ("DELETE", "/v1/users?color=red", &b""[..], "color"),
    ] {
        assert_rejected(&harness(), method, path, body, 400, Some(field)).await;
    }
}

#[tokio::test]
async fn rest_user_writes_publish_commands() {
    let h = harness();
    let (code, json, _) = h
        .call(
            "POST",
            "/v1/users",
            br#"{"name": "Arpana", "lname": "Sharma", "credit_limit": 10, "credit_balance": 10}"#,
        )
        .await;
    assert_eq!(code, 202, "{json}");
    assert_eq!(
        h.call("PATCH", "/v1/users/12", br#"{"credit_balance": 3}"#).await.0,
        202
    );
    assert_eq!(h.call("DELETE", "/v1/users/12", b"").await.0, 202);
    assert_eq!(
        h.call("PATCH", "/v1/users?lname=Sharma", br#"{"credit_balance": 3}"#)
            .await
            .0,
        202
    );
    assert_eq!(h.call("DELETE", "/v1/users?uid=12", b"").await.0, 202);
    let n = h.topology.partitions as usize;
    assert_eq!(h.published().len(), 1 + 1 + 1 + n + 1);
    assert!(matches!(
        command(&h, 2),
        UserCommand::Delete {
            target: Target::Uid(12),
            ..
        }
    ));
    assert!(matches!(
        command(&h, 3),
        UserCommand::Update {
            target: Target::Condition(_),
            ..
        }
    ));
    // A condition that is exactly `uid = N` is routed to that uid's partition, not broadcast.
    assert!(matches!(
        command(&h, 3 + n),
        UserCommand::Delete {
            target: Target::Uid(12),
            ..
        }
    ));
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_or_without_a_length() {
    let h = harness_with("[ingest]\nmax_body_bytes = 64", false);
    let big = vec![b'x'; 65];
    let (code, json, _) = h.call("POST", "/v1/orders", &big).await;
    assert_eq!(code, 413, "{json}");
    assert_eq!(json["field"], "body");
    assert!(h.published().is_empty());
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let h = harness();
    for (method, path, status) in [
        ("GET", "/nope", 404),
        ("GET", "/v1/orders/1/extra", 404),
        ("PUT", "/v1/orders", 405),
        ("DELETE", "/order?uid=1&amount=1", 405),
        ("GET", "/v1/orders", 405),
        ("POST", "/v1/users/5", 405),
    ] {
        assert_rejected(&h, method, path, b"", status, None).await;
    }
    assert_eq!(h.call("GET", "/healthz", b"").await.0, 200);
    // A 405 says what is allowed (RFC 9110).
    for (method, path, allow) in [
        ("PUT", "/v1/orders", "POST"),
        ("DELETE", "/order", "GET, POST"),
        ("POST", "/v1/users/5", "GET, PATCH, DELETE"),
        ("DELETE", "/v1/commands/5", "GET"),
        ("POST", "/healthz", "GET"),
        ("PUT", "/openapi.json", "GET"),
        ("DELETE", "/metrics", "GET"),
    ] {
        let (code, json, headers) = h.call(method, path, b"").await;
        assert_eq!(code, 405, "{method} {path} -> {json}");
        assert_eq!(headers.get("allow").unwrap(), allow, "{method} {path}");
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
    }
}

#[tokio::test]
async fn kafka_unavailable_is_503_with_retry_after_never_202() {
    let h = harness_with("", true);
    let (code, json, headers) = h.call("GET", "/order?uid=1&amount=1", b"").await;
    assert_eq!(code, 503, "{json}");
    assert!(headers.get("retry-after").is_some());
    let (code, _, _) = h
        .call(
            "POST",
            "/v1/users",
            br#"{"name": "A", "lname": "B", "credit_limit": 1, "credit_balance": 1}"#,
        )
        .await;
    assert_eq!(code, 503);
}

#[tokio::test]
async fn the_bearer_token_guards_writes_when_configured() {
    let h = harness_with("[ingest]\nauth_token = \"s3cret\"", false);
    let (code, json, _) = h.call("GET", "/order?uid=1&amount=1", b"").await;
    assert_eq!(code, 401, "{json}");
    let (code, _, _) = h
        .call_with(
            "GET",
            "/order?uid=1&amount=1",
            b"",
            &[("authorization", "Bearer wrong")],
        )
        .await;
    assert_eq!(code, 401);
    assert!(h.published().is_empty());
    let (code, _, _) = h
        .call_with(
            "GET",
            "/order?uid=1&amount=1",
            b"",
            &[("authorization", "Bearer s3cret")],
        )
        .await;
    assert_eq!(code, 202);
    // Reads and health need no token.
    assert_eq!(h.call("GET", "/healthz", b"").await.0, 200);
    assert_ne!(h.call("GET", "/v1/users/1", b"").await.0, 401);
}

#[tokio::test]
async fn the_openapi_document_and_the_routes_agree() {
    let h = harness();
    let (code, spec, _) = h.call("GET", "/openapi.json", b"").await;
    assert_eq!(code, 200);
    assert_eq!(spec["openapi"].as_str().unwrap().chars().next(), Some('3'));
    let paths = spec["paths"].as_object().unwrap();
    let methods = ["GET", "POST", "PATCH", "DELETE", "PUT"];
    for (path, operations) in paths {
        let concrete = path
            .replace("{order_id}", "1")
            .replace("{uid}", "1")
            .replace("{command_id}", "1");
        for method in methods {
            let documented = operations.get(method.to_lowercase()).is_some();
            let (code, json, _) = h.call(method, &concrete, b"").await;
            // A 404 of a routed request is about the resource ("no user 1"), not the route.
            let unrouted = code == 405 || json["error"].as_str().is_some_and(|e| e.starts_with("no such route"));
            assert_eq!(
                unrouted, !documented,
                "{method} {path} answers {code} {json}; documented: {documented}"
            );
        }
    }
    for undocumented in ["/v2/orders", "/users", "/orders", "/v1", "/admin"] {
        for method in methods {
            assert_eq!(
                h.call(method, undocumented, b"").await.0,
                404,
                "{method} {undocumented}"
            );
        }
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn every_type_the_document_states_is_enforced() {
    for (method, path, body, field) in [
        ("PATCH", "/v1/users/5", &br#"{"lname": 0}"#[..], "lname"),
        ("PATCH", "/v1/users/5", &br#"{"credit_limit": "7"}"#[..], "credit_limit"),
        (
            "PATCH",
            "/v1/users/-9223372036854775808",
            &br#"{"name": "A"}"#[..],
            "uid",
        ),
        ("PATCH", "/v1/users/0", &br#"{"name": "A"}"#[..], "uid"),
        ("DELETE", "/v1/users/-1", &b""[..], "uid"),
        ("GET", "/v1/users/-1", &b""[..], "uid"),
        ("GET", "/v1/users/5?verbose=1", &b""[..], "verbose"),
        ("GET", "/v1/users?uid=-1", &b""[..], "uid"),
        ("GET", "/v1/users?credit_limit=-1", &b""[..], "credit_limit"),
        ("GET", "/v1/orders/-5", &b""[..], "order_id"),
        ("GET", "/v1/orders/5?wait_ms=-1", &b""[..], "wait_ms"),
        ("GET", "/v1/orders/5?wait_ms=30001", &b""[..], "wait_ms"),
        ("GET", "/v1/commands/0", &b""[..], "command_id"),
        ("GET", "/order?uid=-5&amount=1", &b""[..], "uid"),
        (
            "GET",
            "/user?type=C&uid=0&name=A&lname=B&credit_limit=1&credit_balance=1",
            &b""[..],
            "uid",
        ),
        (
            "GET",
            "/user?type=U&condition=%7B%27uid%27%3A-7%7D&new_val=%7B%27name%27%3A%27A%27%7D",
            &b""[..],
            "uid",
        ),
        ("GET", "/user?type=R&condition=x", &b""[..], "condition"),
        (
            "POST",
            "/v1/users",
            &br#"{"uid": 0, "name": "A", "lname": "B", "credit_limit": 1, "credit_balance": 1}"#[..],
            "uid",
        ),
        ("POST", "/v1/orders", &br#"{"uid": -2, "amount": 1}"#[..], "uid"),
        (
            "POST",
            "/v1/orders",
            &br#"{"uid": 2, "amount": 1, "idempotency_key": "two words"}"#[..],
            "idempotency_key",
        ),
        ("POST", "/v1/orders?x=1", &br#"{"uid": 2, "amount": 1}"#[..], "x"),
    ] {
        assert_rejected(&harness(), method, path, body, 400, Some(field)).await;
    }
}

fn finish(h: &Harness, command_id: i64, users: Vec<CommandUser>) {
    h.tables.commands.lock().unwrap().insert(
        command_id,
        CommandRecord {
            partitions_done: 1,
            partitions: Some(1),
            users,
            truncated: false,
        },
    );
}

#[tokio::test]
async fn a_write_answers_with_a_command_whose_outcome_can_be_read() {
    let h = harness();
    let (code, accepted, headers) = h
        .call(
            "POST",
            "/v1/users",
            br#"{"uid": 41, "name": "Asha", "lname": "Rao", "credit_limit": 10, "credit_balance": 10}"#,
        )
        .await;
    assert_eq!(code, 202, "{accepted}");
    let command_id = accepted["command_id"].as_i64().unwrap();
    let location = format!("/v1/commands/{command_id}");
    assert_eq!(headers.get("location").unwrap(), location.as_str());
    let (code, view, _) = h.call("GET", &location, b"").await;
    assert_eq!((code, view["status"].as_str()), (200, Some("accepted")), "{view}");
    finish(
        &h,
        command_id,
        vec![CommandUser {
            uid: 41,
            version: Some(1),
            deleted: false,
            reason: None,
        }],
    );
    let (_, view, _) = h.call("GET", &location, b"").await;
    assert_eq!(view["status"], "applied", "{view}");
    assert_eq!(view["changed"][0]["uid"], 41);
    assert_eq!(view["changed"][0]["version"], 1);

    let (_, accepted, headers) = h.call("DELETE", "/v1/users/77", b"").await;
    let command_id = accepted["command_id"].as_i64().unwrap();
    assert!(headers.get("location").is_some());
    finish(
        &h,
        command_id,
        vec![CommandUser {
            uid: 77,
            version: None,
            deleted: false,
            reason: Some("user 77 does not exist".into()),
        }],
    );
    let (_, view, _) = h
        .call("GET", &format!("/v1/commands/{command_id}?wait_ms=1000"), b"")
        .await;
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str()),
        (Some("rejected"), Some("user 77 does not exist"))
    );

    // The seed's calls get the same id and Location.
    let (code, seed, headers) = h.call("GET", "/user?type=D&uid=77", b"").await;
    assert_eq!(code, 202);
    assert_eq!(
        headers.get("location").unwrap(),
        format!("/v1/commands/{}", seed["command_id"]).as_str()
    );
    // A command nobody accepted here and nothing reported is unknown.
    let (code, json, _) = h.call("GET", "/v1/commands/12345", b"").await;
    assert_eq!(code, 404, "{json}");
}

/// As the sink would, 200 ms from now: changes the users table with `apply` and records
/// command `command_id` as finished on user `uid` (deleted or not).
fn apply_later(
    h: &Harness,
    command_id: i64,
    uid: i64,
    deleted: bool,
    apply: impl FnOnce(&mut Vec<UserRow>) + Send + 'static,
) {
    let tables = h.tables.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        apply(&mut tables.users.lock().unwrap());
        tables.commands.lock().unwrap().insert(
            command_id,
            CommandRecord {
                partitions_done: 1,
                partitions: Some(1),
                users: vec![CommandUser {
                    uid,
                    version: Some(2),
                    deleted,
                    reason: None,
                }],
                truncated: false,
            },
        );
    });
}

#[tokio::test]
async fn a_replica_waits_for_its_own_write_before_answering_a_read() {
    let h = harness();
    let row = UserRow {
        uid: 5,
        name: "Asha".into(),
        lname: "Rao".into(),
        credit_limit: 10,
        credit_balance: 10,
    };
    h.tables.users.lock().unwrap().push(row);
    assert_eq!(h.call("GET", "/v1/users/5", b"").await.0, 200);
    let (code, accepted, _) = h.call("DELETE", "/v1/users/5", b"").await;
    assert_eq!(code, 202);
    let command_id = accepted["command_id"].as_i64().unwrap();
    // The sink applies the delete a little later.
    apply_later(&h, command_id, 5, true, |users| users.clear());
    let (code, json, _) = h.call("GET", "/v1/users/5", b"").await;
    assert_eq!(code, 404, "read the user before its own delete was applied: {json}");
    // Writing to the user this replica deleted is 404 at once, until it is created again.
    for (method, body) in [("PATCH", &br#"{"name": "B"}"#[..]), ("DELETE", &b""[..])] {
        let (code, json, _) = h.call(method, "/v1/users/5", body).await;
        assert_eq!(
            (code, json["error"].as_str()),
            (404, Some("user 5 was deleted")),
            "{method}"
        );
    }
    let create = br#"{"uid": 5, "name": "Asha", "lname": "Rao", "credit_limit": 10, "credit_balance": 10}"#;
    assert_eq!(h.call("POST", "/v1/users", create).await.0, 202);
    assert_eq!(h.call("PATCH", "/v1/users/5", br#"{"name": "B"}"#).await.0, 202);
}

#[tokio::test]
async fn not_ready_is_503_with_retry_after() {
    let h = harness_with("", true);
    let (code, json, headers) = h.call("GET", "/readyz", b"").await;
    assert_eq!((code, json["kafka"].as_bool()), (503, Some(false)));
    assert!(headers.get("retry-after").is_some());
    assert_eq!(harness().call("GET", "/readyz", b"").await.0, 200);
}

#[tokio::test]
async fn a_new_user_whose_balance_exceeds_its_limit_is_refused_at_once() {
    // The processor never creates such a user: a 202 would send the caller to read a user
    // that never appears (a generated client's create-then-read got 404).
    let h = harness();
    let body = br#"{"name": "A", "lname": "B", "credit_limit": 100, "credit_balance": 101}"#;
    assert_rejected(&h, "POST", "/v1/users", body, 400, Some("credit_balance")).await;
    assert_rejected(
        &h,
        "GET",
        "/user?type=C&name=A&lname=B&credit_limit=100&credit_balance=101",
        b"",
        400,
        Some("credit_balance"),
    )
    .await;
    // At the limit is fine.
    let (code, json, _) = h
        .call(
            "POST",
            "/v1/users",
            br#"{"name": "A", "lname": "B", "credit_limit": 100, "credit_balance": 100}"#,
        )
        .await;
    assert_eq!(code, 202, "{json}");
}

#[tokio::test]
async fn a_long_poll_for_a_command_id_no_one_can_have_issued_answers_at_once() {
    // Ids carry the millisecond they were minted: one from 2024-01-01 (id 1) or from the
    // future is not a command on its way, so waiting for it only holds the caller.
    let h = harness();
    // All 41 bits of milliseconds set: minted in 2093.
    let future = ((1_i64 << 41) - 1) << 22;
    for id in [1, future] {
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            h.call("GET", &format!("/v1/commands/{id}?wait_ms=29999"), b""),
        )
        .await;
        let (code, json, _) = answered.unwrap_or_else(|_| panic!("command {id}: still waiting after 10 s"));
        assert_eq!(code, 404, "{json}");
    }
}

#[tokio::test]
async fn the_seeds_read_by_uid_waits_for_its_own_update_like_a_rest_read() {
    let h = harness();
    h.tables.users.lock().unwrap().push(UserRow {
        uid: 5,
        name: "Asha".into(),
        lname: "Rao".into(),
        credit_limit: 10,
        credit_balance: 10,
    });
    let (code, accepted, _) = h
        .call("GET", "/user?type=U&condition={'uid':5}&new_val={'name':'Bela'}", b"")
        .await;
    assert_eq!(code, 202, "{accepted}");
    let command_id = accepted["command_id"].as_i64().unwrap();
    // The sink applies the update a little later.
    apply_later(&h, command_id, 5, false, |users| users[0].name = "Bela".into());
    let (code, json, _) = h.call("GET", "/user?type=R&uid=5", b"").await;
    assert_eq!(code, 200, "{json}");
    assert_eq!(
        json[0]["name"], "Bela",
        "read the row before its own update was applied: {json}"
    );
}

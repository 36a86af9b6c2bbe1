//! The ingest on the real broker: a 202 means the record is on the topic under the uid's
//! key and partition; with no broker reachable the answer is 503, never 202; and reads
//! return what the sink wrote.

mod common;

use common::*;
use creditstream::app;
use creditstream::ingest;
use creditstream::shutdown;
use creditstream::topology::partitioner::partition_for;
use creditstream::topology::record::{Order, UserCommand};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

async fn start_ingest(
    config: creditstream::config::Config,
    def: creditstream::topology::definition::TopologyDefinition,
) -> (SocketAddr, shutdown::ShutdownTrigger) {
    let (trigger, shutdown) = shutdown::channel();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = ingest::run(&config, def, shutdown, move |addr| {
            let _ = tx.send(addr);
        })
        .await;
    });
    (rx.await.expect("ingest bound"), trigger)
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_202_means_the_record_is_on_the_topic_with_its_key_and_partition() {
    let dir = tempfile::tempdir().unwrap();
    let def = topology(6).await;
    let config = config(&def, None, dir.path(), "[ingest]\nlisten = \"127.0.0.1:0\"");
    let (addr, trigger) = start_ingest(config, def.clone()).await;

    let mut order_ids = Vec::new();
    for uid in [1_i64, 2, 3, 77, 123_456] {
        let (code, json) = call(addr, "GET", &format!("/order?uid={uid}&amount=5"), "").await;
        assert_eq!(code, 202, "{json}");
        order_ids.push((uid, json["order_id"].as_i64().unwrap()));
    }
    let (code, json) = call(
        addr,
        "POST",
        "/v1/users",
        r#"{"name":"Arpana","lname":"Sharma","credit_limit":10,"credit_balance":10}"#,
    )
    .await;
    assert_eq!(code, 202, "{json}");
    let uid = json["uid"].as_i64().unwrap();
    trigger.trigger();

    let orders = read_until(&def.inputs.orders, 6, WAIT, |r| r.len() >= order_ids.len());
    assert_eq!(orders.len(), order_ids.len());
    for (uid, order_id) in order_ids {
        let key = uid.to_string().into_bytes();
        let record = orders
            .iter()
            .find(|r| {
                serde_json::from_slice::<Order>(r.value.as_deref().unwrap())
                    .unwrap()
                    .order_id
                    == order_id
            })
            .expect("the acknowledged order is on the topic");
        assert_eq!(record.key.as_deref(), Some(&key[..]));
        // librdkafka's murmur2 (what Java clients use) and ours agree.
        assert_eq!(record.partition as u32, partition_for(&key, 6));
    }
    let commands = read_until(&def.inputs.user_commands, 6, WAIT, |r| !r.is_empty());
    assert_eq!(commands.len(), 1);
    match serde_json::from_slice::<UserCommand>(commands[0].value.as_deref().unwrap()).unwrap() {
        UserCommand::Create { user, .. } => assert_eq!(user.uid, uid),
        other => panic!("expected a create, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_reachable_broker_means_503_never_202() {
    let dir = tempfile::tempdir().unwrap();
    let def = creditstream::topology::definition::TopologyDefinition::builtin();
    let mut config = config(
        &def,
        None,
        dir.path(),
        "[ingest]\nlisten = \"127.0.0.1:0\"\nproduce_timeout_ms = 1500",
    );
    // Nothing listens there: the producer can never reach a broker.
    config.kafka.bootstrap_servers = format!("127.0.0.1:{}", free_port());
    let (addr, trigger) = start_ingest(config, def).await;
    let (code, json) = call(addr, "GET", "/order?uid=1&amount=5", "").await;
    assert_eq!(code, 503, "{json}");
    assert!(json["error"].as_str().unwrap().contains("unavailable"));
    let (code, _) = call(addr, "GET", "/readyz", "").await;
    assert_eq!(code, 503);
    let (code, _) = call(addr, "GET", "/healthz", "").await;
    assert_eq!(code, 200, "still alive and answering");
    trigger.trigger();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_calls_work_end_to_end_and_reads_return_what_the_sink_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let def = topology(6).await;
    let mysql = database().await;
    let mut config = config(&def, Some(&mysql), dir.path(), "[ingest]\nlisten = \"127.0.0.1:0\"");
    config.ingest.listen = "127.0.0.1:0".into();
    let (trigger, _) = shutdown::channel();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (c1, c2, c3) = (config.clone(), config.clone(), config.clone());
    let (d1, d2, d3) = (def.clone(), def.clone(), def.clone());
    let (t1, t2, t3) = (trigger.clone(), trigger.clone(), trigger.clone());
    let ingest = tokio::spawn(async move {
        ingest::run(&c1, d1, t1.subscribe(), move |addr| {
            let _ = tx.send(addr);
        })
        .await
    });
    let processor = tokio::spawn(async move { app::process(&c2, d2, &t2, false).await });
    let sink = tokio::spawn(async move { app::sink(&c3, d3, &t3, false).await });
    let addr = rx.await.unwrap();

    let (code, created) = call(
        addr,
        "GET",
        "/user?type=C&lname=Sharma&name=Arpana&credit_limit=100&credit_balance=100",
        "",
    )
    .await;
    assert_eq!(code, 202, "{created}");
    let uid = created["uid"].as_i64().unwrap();
    let (code, placed) = call(addr, "GET", &format!("/order?uid={uid}&amount=60"), "").await;
    assert_eq!(code, 202);
    let order_id = placed["order_id"].as_i64().unwrap();
    let (code, view) = call(addr, "GET", &format!("/v1/orders/{order_id}?wait_ms=20000"), "").await;
    assert_eq!(code, 200, "{view}");
    assert_eq!(view["status"], "Completed");
    assert_eq!(view["events"].as_array().unwrap().len(), 2);
    let (code, second) = call(addr, "POST", "/v1/orders", &format!(r#"{{"uid":{uid},"amount":50}}"#)).await;
    assert_eq!(code, 202);
    let (_, view) = call(
        addr,
        "GET",
        &format!("/v1/orders/{}?wait_ms=20000", second["order_id"]),
        "",
    )
    .await;
    assert_eq!(view["status"], "Declined");
    assert_eq!(
        view["events"][1]["order_notes"],
        "Insufficient Balance!! Order Declined"
    );

    let path = format!("/user?type=U&condition=%7B%27uid%27%3A{uid}%7D&new_val=%7B%27name%27%3A%27Asha%27%7D");
    assert_eq!(call(addr, "GET", &path, "").await.0, 202);
    let read_path = format!("/user?type=R&uid={uid}");
    let renamed = eventually(WAIT, || async {
        call(addr, "GET", &read_path, "").await.1[0]["name"] == "Asha"
    })
    .await;
    let (_, read) = call(addr, "GET", &read_path, "").await;
    assert!(renamed, "{read}");
    assert_eq!(read[0]["credit_balance"], 40);
    let user_path = format!("/v1/users/{uid}");
    let (_, one) = call(addr, "GET", &user_path, "").await;
    assert_eq!(one["lname"], "Sharma");
    assert_eq!(call(addr, "GET", &format!("/user?type=D&uid={uid}"), "").await.0, 202);
    assert!(eventually(WAIT, || async { call(addr, "GET", &user_path, "").await.0 == 404 }).await);
    // A write after this client's own delete is refused once the delete is applied, also
    // when there was nothing to delete: either way the user is gone.
    let (code, _) = call(addr, "PATCH", &user_path, r#"{"name":"Asha"}"#).await;
    assert_eq!(code, 404, "a write after an applied delete");
    let never = format!("/v1/users/{}", uid + 7919);
    assert_eq!(call(addr, "DELETE", &never, "").await.0, 202);
    let (code, body) = call(addr, "PATCH", &never, r#"{"name":"Asha"}"#).await;
    assert_eq!(
        code, 404,
        "a write after an applied delete of a user that never was: {body}"
    );

    trigger.trigger();
    ingest.await.unwrap().unwrap();
    processor.await.unwrap().unwrap();
    sink.await.unwrap().unwrap();
}

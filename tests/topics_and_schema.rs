//! `creditstream topics` and `creditstream schema` against the real broker and MariaDB:
//! right partitions, a compacted changelog, idempotent runs, and mismatches reported.

mod common;

use common::*;
use creditstream::runtime::admin::{self, AdminError};
use creditstream::sink;
use creditstream::topology::definition::TopologyDefinition;
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread")]
async fn topics_are_created_with_the_topology_partitions_and_a_compacted_changelog() {
    let mut def = TopologyDefinition::builtin().with_topic_prefix(&unique("t"));
    def.partitions = 4;
    let first = admin::ensure_topics(&kafka(), &def).await.unwrap();
    assert_eq!(first.len(), def.topics().len());
    assert!(first.iter().all(|t| t.created && t.partitions == 4));
    for topic in &first {
        let expected = if topic.name == def.store.changelog {
            "compact"
        } else {
            "delete"
        };
        assert_eq!(topic.cleanup_policy, expected, "{}", topic.name);
    }
    let metadata = {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .create()
            .unwrap();
        consumer
            .fetch_metadata(Some(&def.store.changelog), std::time::Duration::from_secs(10))
            .unwrap()
    };
    assert_eq!(metadata.topics()[0].partitions().len(), 4);

    // Idempotent: a second run creates nothing and succeeds.
    let second = admin::ensure_topics(&kafka(), &def).await.unwrap();
    assert!(second.iter().all(|t| !t.created));

    // A topology that disagrees with the broker is an error, not a silent repartition.
    let mut wider = def.clone();
    wider.partitions = 8;
    match admin::ensure_topics(&kafka(), &wider).await {
        Err(AdminError::PartitionMismatch {
            expected: 8, actual: 4, ..
        }) => {}
        other => panic!("expected a partition mismatch, got {other:?}"),
    }
    admin::delete_topics(&kafka(), &def).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replication_factor_beyond_the_brokers_is_refused_before_any_topic_is_created() {
    let def = TopologyDefinition::builtin().with_topic_prefix(&unique("t"));
    let mut kafka = kafka();
    kafka.replication_factor = 3;
    match admin::ensure_topics(&kafka, &def).await {
        Err(AdminError::TooFewBrokers {
            replication_factor: 3,
            brokers: 1,
        }) => {}
        other => panic!("expected a refusal naming 3 replicas and 1 broker, got {other:?}"),
    }
    kafka.replication_factor = 1;
    kafka.min_insync_replicas = 2;
    assert!(matches!(
        admin::ensure_topics(&kafka, &def).await,
        Err(AdminError::MinInsyncAboveReplication { .. })
    ));
    // Nothing was created by either refusal.
    kafka.min_insync_replicas = 1;
    let created = admin::ensure_topics(&kafka, &def).await.expect("a valid replication");
    assert!(created.iter().all(|t| t.created && t.replication_factor == 1));
    assert!(created
        .iter()
        .all(|t| t.min_insync_replicas == Some(1) && t.brokers_it_survives() == Some(0)));
    admin::delete_topics(&kafka, &def).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_is_created_and_applying_it_again_changes_nothing() {
    let mysql = database().await;
    let pool = sink::pool(&mysql).unwrap();
    assert_eq!(sink::schema::apply(&pool).await.unwrap(), sink::schema::SCHEMA_VERSION);
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_drop(
        "INSERT INTO `User` (uid, lname, name, credit_limit, credit_balance, version) VALUES (1, 'L', 'N', 10, 5, 1)",
    )
    .await
    .unwrap();
    drop(conn);
    assert_eq!(sink::schema::apply(&pool).await.unwrap(), sink::schema::SCHEMA_VERSION);
    let mut conn = pool.get_conn().await.unwrap();
    let users: Vec<(i64, i64)> = conn.query("SELECT uid, credit_balance FROM `User`").await.unwrap();
    assert_eq!(users, vec![(1, 5)], "re-applying kept the data");
    let columns: Vec<(String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'Order_details' ORDER BY ORDINAL_POSITION",
            (),
        )
        .await
        .unwrap();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "eventid",
            "orderid",
            "uid",
            "order_status",
            "event_timestamp",
            "order_amount",
            "order_notes"
        ]
    );
    assert!(columns
        .iter()
        .filter(|(n, _)| n.ends_with("id"))
        .all(|(_, t)| t == "bigint"));
    // The unique key per order event is what makes the writer idempotent.
    let dup = conn
        .query_drop("INSERT INTO `Order_details` (orderid, uid, order_status, event_timestamp, order_amount, order_notes) VALUES (1,1,'Initialised','t',1,'n'),(1,1,'Initialised','t',1,'n')")
        .await;
    assert!(dup.is_err());
    drop(conn);
    let _ = pool.disconnect().await;
}

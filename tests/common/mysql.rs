//! The `User` and `Order_details` tables as the tests read them.

use creditstream::config::MysqlConfig;
use std::time::{Duration, Instant};

/// `(uid, name, lname, credit_limit, credit_balance)` rows of `User`, by uid.
pub type UserRows = Vec<(i64, String, String, i64, i64)>;
/// `(eventid, orderid, uid, order_status, order_amount, order_notes)` rows of `Order_details`.
pub type OrderRows = Vec<(i64, i64, i64, String, i64, String)>;

pub async fn snapshot(mysql: &MysqlConfig) -> (UserRows, OrderRows) {
    use mysql_async::prelude::Queryable;
    let pool = mysql_async::Pool::new(mysql.url.as_str());
    let mut conn = pool.get_conn().await.expect("connect");
    let users: UserRows = conn
        .query("SELECT uid, name, lname, credit_limit, credit_balance FROM `User` ORDER BY uid")
        .await
        .unwrap_or_default();
    let orders: OrderRows = conn
        .query("SELECT eventid, orderid, uid, order_status, order_amount, order_notes FROM `Order_details` ORDER BY orderid, order_status")
        .await
        .unwrap_or_default();
    drop(conn);
    let _ = pool.disconnect().await;
    (users, orders)
}

/// Polls the tables until `done` holds for a snapshot, or `timeout` passes.
pub async fn snapshot_until(
    mysql: &MysqlConfig,
    timeout: Duration,
    done: impl Fn(&(UserRows, OrderRows)) -> bool,
) -> (UserRows, OrderRows) {
    let started = Instant::now();
    loop {
        let snap = snapshot(mysql).await;
        if done(&snap) || started.elapsed() > timeout {
            return snap;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

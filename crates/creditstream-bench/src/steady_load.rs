//! The steady order load of the elasticity runs: orders of the workload at a fixed rate,
//! uniform over the users, until stopped; never awaiting deliveries one by one.
//! Invariant: what it reports as sent was acknowledged by the broker.

use crate::error::BenchError;
use crate::uids::UidDistribution;
use crate::workload::Workload;
use creditstream::config::KafkaConfig;
use creditstream::runtime::client;
use rdkafka::producer::{BaseProducer, BaseRecord};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the load goes: the orders topic, its partition count, the users' count, and the
/// first order number (order ids are the number + 1).
pub struct Target {
    pub topic: String,
    pub partitions: u32,
    pub users: u64,
    pub first: u64,
}

pub struct SteadyLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicI64>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl SteadyLoad {
    pub fn start(kafka: &KafkaConfig, target: Target, rate: u64) -> Result<Self, BenchError> {
        let producer: BaseProducer = client::producer(kafka, 5).create()?;
        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicI64::new(0)));
        let Target {
            topic,
            partitions,
            users,
            first,
        } = target;
        let workload = Workload::new(users, users, UidDistribution::Uniform);
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = Duration::from_secs_f64(n as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let out = workload.order_record(first + n, partitions);
                    let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic)
                        .partition(out.partition)
                        .key(&out.key[..])
                        .payload(&out.value[..]);
                    client::send_waiting(&producer, record).map_err(|e| e.to_string())?;
                    producer.poll(Duration::ZERO);
                    n += 1;
                    sent.store(n as i64, Ordering::Relaxed);
                }
                client::flush(&producer, Duration::from_secs(60)).map_err(|e| e.to_string())
            })
        };
        Ok(Self {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    /// Stops sending; how many orders were sent (all acknowledged).
    pub fn stop(mut self) -> Result<i64, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result?,
            _ => return Err("the load thread panicked".into()),
        }
        Ok(self.sent.load(Ordering::Relaxed))
    }
}

impl Drop for SteadyLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

//! A test driver in the spirit of Kafka Streams' `TopologyTestDriver`: pipes records
//! through the credit-check topology with no broker, routing each by its key exactly as
//! the Kafka runtime would (murmur2, broadcast of condition commands), with one
//! in-memory store per partition. Tests read the output topics, the changelog and the
//! stores from it.

use super::codec::{encode_command, encode_order, InputTopic, RawRecord};
use super::credit_check::{CreditCheck, CreditOutput, DeadLetter};
use super::partition_group::{PartitionGroup, Pop};
use super::partitioner::partition_for;
use super::processor::{ProcessError, Processor, Progress, RecordMeta};
use super::record::{CommandOutcome, Decision, Order, Uid, UserChange, UserCommand, BROADCAST_KEY};
use super::state::{self, UserState};
use super::store::{ChangeLoggingStore, InMemoryStore, KeyValueStore, StoreChange};
use super::task_context::TaskContext;

struct DriverTask {
    store: InMemoryStore,
    changelog: Vec<StoreChange>,
    group: PartitionGroup,
    next_offset: [i64; 2],
}

/// Runs the credit-check processor over `partitions` in-memory tasks.
pub struct TestDriver {
    partitions: u32,
    tasks: Vec<DriverTask>,
    now_ms: i64,
    outputs: Vec<CreditOutput>,
    processor: CreditCheck,
    /// How often a record was handed in again after a part of its work.
    resumptions: usize,
}

impl TestDriver {
    /// A driver whose processor remembers order ids for `dedup_retention_ms`.
    pub fn with_dedup_retention(partitions: u32, dedup_retention_ms: i64) -> Self {
        let mut driver = Self::new(partitions);
        driver.processor = CreditCheck::new(dedup_retention_ms);
        driver
    }

    pub fn new(partitions: u32) -> Self {
        let partitions = partitions.max(1);
        let tasks = (0..partitions)
            .map(|_| DriverTask {
                store: InMemoryStore::new(),
                changelog: Vec::new(),
                group: PartitionGroup::new(),
                next_offset: [0, 0],
            })
            .collect();
        Self {
            partitions,
            tasks,
            now_ms: 1_700_000_000_000,
            outputs: Vec::new(),
            processor: CreditCheck::default(),
            resumptions: 0,
        }
    }

    /// Sets the wall clock the processor sees (and the timestamp of piped records).
    pub fn set_now_ms(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// Pipes a user command, routed by its uid or broadcast when it is by condition.
    pub fn pipe_command(&mut self, command: &UserCommand) -> Result<(), ProcessError> {
        let (key, value) = encode_command(command);
        self.pipe_keyed(InputTopic::UserCommands, key, value)
    }

    /// Pipes an order, routed by its uid.
    pub fn pipe_order(&mut self, order: &Order) -> Result<(), ProcessError> {
        let (key, value) = encode_order(order);
        self.pipe_keyed(InputTopic::Orders, key, value)
    }

    fn pipe_keyed(&mut self, topic: InputTopic, key: Vec<u8>, value: Vec<u8>) -> Result<(), ProcessError> {
        let now = self.now_ms;
        if key == BROADCAST_KEY {
            for partition in 0..self.partitions {
                self.enqueue(topic, partition, Some(key.clone()), Some(value.clone()), now);
            }
        } else {
            let partition = partition_for(&key, self.partitions);
            self.enqueue(topic, partition, Some(key), Some(value), now);
        }
        self.run()
    }

    /// Pipes raw bytes onto one partition of an input topic, as any producer could.
    pub fn pipe_raw(
        &mut self,
        topic: InputTopic,
        partition: u32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), ProcessError> {
        let now = self.now_ms;
        self.enqueue(
            topic,
            partition,
            key.map(<[u8]>::to_vec),
            value.map(<[u8]>::to_vec),
            now,
        );
        self.run()
    }

    /// Buffers a record without processing it, with an explicit timestamp; `run` then
    /// processes every buffered record in each task's timestamp order.
    pub fn enqueue(
        &mut self,
        topic: InputTopic,
        partition: u32,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp_ms: i64,
    ) {
        let Some(task) = self.tasks.get_mut(partition as usize) else {
            return;
        };
        let slot = topic.slot();
        let offset = task.next_offset[slot];
        task.next_offset[slot] += 1;
        task.group.push(RawRecord {
            topic,
            meta: RecordMeta {
                partition,
                offset,
                timestamp_ms,
            },
            key,
            value,
        });
    }

    /// Processes everything buffered.
    pub fn run(&mut self) -> Result<(), ProcessError> {
        for (partition, task) in self.tasks.iter_mut().enumerate() {
            // Everything piped is fetched: no input lags.
            while let Pop::Record(record) = task.group.pop(|_| false) {
                // A record whose work is done in parts is handed in again, as the runtime
                // does after committing each part.
                loop {
                    let mut ctx = TaskContext {
                        store: ChangeLoggingStore::new(&mut task.store, &mut task.changelog),
                        outputs: &mut self.outputs,
                        now_ms: self.now_ms,
                        partition: partition as u32,
                        partition_count: self.partitions,
                    };
                    match self.processor.process(&mut ctx, record.meta, &record)? {
                        Progress::Done => break,
                        Progress::Partial => self.resumptions += 1,
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs every task's scheduled work (the runtime's punctuation) at the driver's clock;
    /// returns how many state entries it expired.
    pub fn punctuate(&mut self) -> Result<usize, ProcessError> {
        let mut expired = 0;
        for (partition, task) in self.tasks.iter_mut().enumerate() {
            let mut ctx = TaskContext {
                store: ChangeLoggingStore::new(&mut task.store, &mut task.changelog),
                outputs: &mut self.outputs,
                now_ms: self.now_ms,
                partition: partition as u32,
                partition_count: self.partitions,
            };
            expired += self.processor.punctuate(&mut ctx)?;
        }
        Ok(expired)
    }

    /// How often a record was handed in again because its work was done in parts (each
    /// part is one transaction under the Kafka runtime).
    pub fn resumptions(&self) -> usize {
        self.resumptions
    }

    pub fn outputs(&self) -> &[CreditOutput] {
        &self.outputs
    }

    /// The decisions topic, in emission order.
    pub fn decisions(&self) -> Vec<&Decision> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                CreditOutput::Decision(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    /// The user-changes topic without the command outcomes, in emission order.
    pub fn user_changes(&self) -> Vec<&UserChange> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                CreditOutput::UserChange(UserChange::Outcome(_)) => None,
                CreditOutput::UserChange(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// The command outcomes on the user-changes topic, in emission order.
    pub fn outcomes(&self) -> Vec<&CommandOutcome> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                CreditOutput::UserChange(UserChange::Outcome(outcome)) => Some(outcome),
                _ => None,
            })
            .collect()
    }

    /// The dead-letter topic, in emission order.
    pub fn dead_letters(&self) -> Vec<&DeadLetter> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                CreditOutput::DeadLetter(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    /// The changelog of one partition's store.
    pub fn changelog(&self, partition: u32) -> &[StoreChange] {
        self.tasks
            .get(partition as usize)
            .map_or(&[], |t| t.changelog.as_slice())
    }

    /// The stored state of a user, read from the partition that owns it.
    pub fn user_state(&self, uid: Uid) -> Option<UserState> {
        let partition = partition_for(&super::partitioner::uid_key(uid), self.partitions);
        let bytes = self
            .tasks
            .get(partition as usize)?
            .store
            .get(&state::user_key(uid))
            .ok()??;
        state::decode(&bytes).ok()
    }

    /// Rebuilds a partition's store from its changelog alone, as a restore does.
    pub fn restored_store(&self, partition: u32) -> InMemoryStore {
        let mut store = InMemoryStore::new();
        for change in self.changelog(partition) {
            let _ = match &change.value {
                Some(v) => store.put(&change.key, v.clone()),
                None => store.delete(&change.key),
            };
        }
        store
    }

    /// The in-memory store of one partition.
    pub fn store(&self, partition: u32) -> Option<&InMemoryStore> {
        self.tasks.get(partition as usize).map(|t| &t.store)
    }
}

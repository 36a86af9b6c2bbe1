//! Database errors, classified: a transient one (connection lost, server restarting,
//! deadlock, lock timeout) is worth retrying; anything else (schema, syntax, access) is
//! fatal and says so.

use crate::sink::consumer::WriteFailure;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("transient database error: {0}")]
    Transient(String),
    #[error("fatal database error: {0}")]
    Fatal(String),
}

/// Server error codes that a retry can cure.
const TRANSIENT_SERVER_CODES: &[u16] = &[
    1040, // too many connections
    1053, // server shutdown in progress
    1205, // lock wait timeout
    1213, // deadlock
    1317, // query interrupted
    1927, // connection killed (MariaDB)
    2006, // server has gone away
    2013, // lost connection during query
    4031, // disconnected for inactivity
];

impl From<mysql_async::Error> for DbError {
    fn from(error: mysql_async::Error) -> Self {
        use mysql_async::{DriverError, Error};
        let text = error.to_string();
        match &error {
            Error::Io(_) => DbError::Transient(text),
            Error::Server(server) if TRANSIENT_SERVER_CODES.contains(&server.code) => DbError::Transient(text),
            Error::Server(_) | Error::Url(_) => DbError::Fatal(text),
            Error::Driver(
                DriverError::ConnectionClosed | DriverError::PoolDisconnected | DriverError::PacketOutOfOrder,
            ) => DbError::Transient(text),
            Error::Driver(_) => DbError::Fatal(text),
            Error::Other(_) => DbError::Transient(text),
        }
    }
}

impl WriteFailure for DbError {
    fn is_retriable(&self) -> bool {
        matches!(self, DbError::Transient(_))
    }
}

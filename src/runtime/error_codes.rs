//! The one table of Kafka error codes: what a code says about the cause, whichever client
//! met it. The ingest, the processor runtime and the sink each decide what to do from this
//! class (answer 400 or 503, roll back or stop, log or stop), so no component keeps a code
//! list of its own that could drift from the others.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What an error code says about its cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The deployment is wrong: credentials, permissions, configuration, a broker too old
    /// for what is asked. No retry can help.
    Deployment,
    /// This one record can never be written as it is (too large, invalid).
    Record,
    /// The broker that answered does not know the topic or partition: it is missing, or
    /// its metadata has not reached that broker yet, or its leader is moving.
    UnknownTopic,
    /// The broker, the network or a coordinator is away or moving: a retry can help.
    Transient,
}

/// The class of `code`.
pub fn class(code: RDKafkaErrorCode) -> Class {
    use RDKafkaErrorCode as C;
    match code {
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::DelegationTokenAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication
        | C::InvalidConfig
        | C::InvalidArgument
        | C::InvalidTransactionTimeout
        | C::InvalidSessionTimeout
        | C::UnsupportedVersion
        | C::UnsupportedForMessageFormat
        | C::UnsupportedFeature
        | C::InvalidReplicationFactor => Class::Deployment,
        C::MessageSizeTooLarge | C::InvalidRecord => Class::Record,
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => Class::UnknownTopic,
        _ => Class::Transient,
    }
}

/// The class of `error`: by its code, where it has one; a client that cannot be created or
/// configured is a deployment error; anything else is transient.
pub fn class_of(error: &KafkaError) -> Class {
    if matches!(error, KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..)) {
        return Class::Deployment;
    }
    error.rdkafka_error_code().map_or(Class::Transient, class)
}

/// Whether `code` says a request's answer did not come in time: the request itself may
/// still be on its way, or may have been applied by the broker.
pub fn timed_out(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(code, C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut)
}

/// Whether `code` says the connection a request went out on was lost before its answer
/// came: the broker may have applied it, but nothing more arrives on that connection.
pub fn connection_lost(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_and_configuration_are_the_deployment_outages_are_transient() {
        assert_eq!(class(RDKafkaErrorCode::TopicAuthorizationFailed), Class::Deployment);
        assert_eq!(class(RDKafkaErrorCode::InvalidSessionTimeout), Class::Deployment);
        assert_eq!(class(RDKafkaErrorCode::MessageSizeTooLarge), Class::Record);
        assert_eq!(class(RDKafkaErrorCode::UnknownTopicOrPartition), Class::UnknownTopic);
        assert_eq!(class(RDKafkaErrorCode::NotLeaderForPartition), Class::Transient);
        assert_eq!(class(RDKafkaErrorCode::NotCoordinator), Class::Transient);
        assert_eq!(class(RDKafkaErrorCode::OperationTimedOut), Class::Transient);
        assert_eq!(class_of(&KafkaError::ClientCreation("bad".into())), Class::Deployment);
        assert_eq!(class_of(&KafkaError::Canceled), Class::Transient);
    }
}

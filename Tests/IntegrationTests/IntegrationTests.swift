import Testing

/// Integration tests share one private PostgreSQL and one RabbitMQ, and some restart the
/// broker, so they run one at a time.
@Suite(.serialized) struct IntegrationTests {}

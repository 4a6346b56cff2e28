//! Where the outbox is relayed to: the brokers (NATS, Kafka) and the ITSM write-back.
use shipgate_domain::events::OutboxRow;

/// A broker the outbox is relayed to.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    fn name(&self) -> &'static str;
    /// Connects (and prepares the stream or topic) if not connected.
    async fn ready(&mut self) -> anyhow::Result<()>;
    /// Publishes `rows` in order; returns how many leading rows the broker acknowledged.
    async fn publish(&mut self, rows: &[OutboxRow]) -> (usize, Option<anyhow::Error>);
    /// Forgets the connection after a failure.
    fn reset(&mut self);
}

//! Group commit: creates queue here and one writer task records everything queued in one
//! transaction, so an fsync is shared by many requests. A request is answered only after the
//! transaction that holds it has committed.
use std::sync::Arc;

use shipgate_domain::CreateDeployment;
use shipgate_domain::time::Clock;
use shipgate_store::{Created, Store, StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::ApiError;

struct Job {
    cmd: CreateDeployment,
    reply: oneshot::Sender<StoreResult<Created>>,
}

#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
}

fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        other => StoreError::Internal(other.to_string()),
    }
}

impl Ingest {
    /// Starts the writer. It stops once every `Ingest` handle is dropped and the queue is
    /// drained, so no accepted request is lost on shutdown.
    pub fn spawn(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        max_batch: usize,
        depth: usize,
    ) -> (Ingest, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Job>(depth.max(1));
        let handle = tokio::spawn(async move {
            let max_batch = max_batch.max(1);
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                metrics::histogram!("shipgate_ingest_batch_size").record(jobs.len() as f64);
                let (cmds, replies): (Vec<_>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.cmd, j.reply)).unzip();
                match store.create_deployments(cmds, clock.now(), false).await {
                    Ok(results) => {
                        for (r, reply) in results.into_iter().zip(replies) {
                            let _ = reply.send(r);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "group commit failed");
                        for reply in replies {
                            let _ = reply.send(Err(copy_error(&e)));
                        }
                    }
                }
            }
        });
        (Ingest { tx }, handle)
    }

    pub async fn submit(&self, cmd: CreateDeployment) -> Result<Created, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Job { cmd, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => ApiError::Unavailable("shutting down".into()),
        })?;
        let r = rx
            .await
            .map_err(|_| ApiError::Unavailable("writer stopped".into()))?;
        Ok(r?)
    }
}

//! The trait impls of both backends, written once: each store method calls the function of
//! the same name in `crate::shared::{devices, runs, bulks, retention}` (written once for both
//! databases), each queue method the one in the backend's `queue` module (which shares what it
//! can through `crate::shared::queue`), with the store's or queue's pools (its `db` field)
//! first. So the method signatures are not repeated per backend.

/// Declares the store `$store` on the pools `$pools` (its `db` field) and implements the
/// four store traits (and so `RunStore`) for it (see the module docs).
macro_rules! run_store_by_concern {
    ($(#[$doc:meta])* $vis:vis struct $store:ident($pools:ty);) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        $vis struct $store {
            db: $pools,
        }

        #[async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl netauto_core::TokenStore for $store {
            async fn create_token(
                &self,
                token: netauto_core::NewApiToken,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::ApiToken> {
                crate::shared::tokens::create_token(&self.db, token, now).await
            }
            async fn tokens_of(
                &self,
                user: &str,
            ) -> netauto_core::Result<Vec<netauto_core::ApiToken>> {
                crate::shared::tokens::tokens_of(&self.db, user).await
            }
            async fn revoke_token(
                &self,
                id: i64,
                user: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::ApiToken> {
                crate::shared::tokens::revoke_token(&self.db, id, user, now).await
            }
            async fn use_token(
                &self,
                hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<Option<netauto_core::ApiToken>> {
                crate::shared::tokens::use_token(&self.db, hash, now).await
            }
        }

        #[async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl netauto_core::TeamStore for $store {
            async fn create_user(
                &self,
                user: netauto_core::NewUser,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::User> {
                crate::shared::team::create_user(&self.db, user, now).await
            }
            async fn user(&self, name: &str) -> netauto_core::Result<Option<netauto_core::User>> {
                crate::shared::team::user_named(&self.db, name).await
            }
            async fn users(&self) -> netauto_core::Result<Vec<netauto_core::User>> {
                crate::shared::team::users(&self.db).await
            }
            async fn set_user_role(
                &self,
                name: &str,
                role: netauto_core::Role,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::User> {
                crate::shared::team::set_user_role(&self.db, name, role, now).await
            }
            async fn set_user_password(
                &self,
                name: &str,
                hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::User> {
                crate::shared::team::set_user_password(&self.db, name, hash, now).await
            }
            async fn remove_user(
                &self,
                name: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::User> {
                crate::shared::team::remove_user(&self.db, name, now).await
            }
            async fn record_audit(
                &self,
                event: netauto_core::NewAuditEvent,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::AuditEvent> {
                crate::shared::team::record_audit(&self.db, event, now).await
            }
            async fn audit_events(
                &self,
                query: &netauto_core::AuditQuery,
            ) -> netauto_core::Result<Vec<netauto_core::AuditEvent>> {
                crate::shared::team::audit_events(&self.db, query).await
            }
            async fn prune_audit(
                &self,
                cutoff: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<u64> {
                crate::shared::team::prune_audit(&self.db, cutoff).await
            }
            async fn create_webhook(
                &self,
                webhook: netauto_core::NewWebhook,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::Webhook> {
                crate::shared::team::create_webhook(&self.db, webhook, now).await
            }
            async fn webhooks(&self) -> netauto_core::Result<Vec<netauto_core::Webhook>> {
                crate::shared::team::webhooks(&self.db).await
            }
            async fn delete_webhook(
                &self,
                id: i64,
            ) -> netauto_core::Result<netauto_core::Webhook> {
                crate::shared::team::delete_webhook(&self.db, id).await
            }
            async fn record_delivery(
                &self,
                delivery: netauto_core::NewWebhookDelivery,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::WebhookDelivery> {
                crate::shared::team::record_delivery(&self.db, delivery, now).await
            }
            async fn deliveries(
                &self,
                webhook_id: Option<i64>,
                limit: usize,
            ) -> netauto_core::Result<Vec<netauto_core::WebhookDelivery>> {
                crate::shared::team::deliveries(&self.db, webhook_id, limit).await
            }
        }

        #[async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl netauto_core::DeviceStore for $store {
            async fn create_device(
                &self,
                d: netauto_core::NewDevice,
            ) -> netauto_core::Result<netauto_core::Device> {
                crate::shared::devices::create_device(&self.db, d).await
            }
            async fn create_devices(
                &self,
                devices: Vec<netauto_core::NewDevice>,
            ) -> netauto_core::Result<Vec<netauto_core::Device>> {
                crate::shared::devices::create_devices(&self.db, devices).await
            }
            async fn device(
                &self,
                id: netauto_core::DeviceId,
            ) -> netauto_core::Result<netauto_core::Device> {
                crate::shared::devices::device(&self.db, id).await
            }
            async fn list_devices(&self) -> netauto_core::Result<Vec<netauto_core::Device>> {
                crate::shared::devices::list_devices(&self.db).await
            }
            async fn unknown_devices(
                &self,
                ids: &[netauto_core::DeviceId],
            ) -> netauto_core::Result<Vec<netauto_core::DeviceId>> {
                crate::shared::devices::unknown_devices(&self.db, ids).await
            }
            async fn update_device(
                &self,
                id: netauto_core::DeviceId,
                device: netauto_core::NewDevice,
            ) -> netauto_core::Result<netauto_core::Device> {
                crate::shared::devices::update_device(&self.db, id, device).await
            }
            async fn delete_device(&self, id: netauto_core::DeviceId) -> netauto_core::Result<u64> {
                crate::shared::devices::delete_device(&self.db, id).await
            }
        }

        #[async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl netauto_core::RunLog for $store {
            async fn create_run(
                &self,
                run: netauto_core::NewRun,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::Run> {
                crate::shared::runs::create_run(&self.db, run, now).await
            }
            async fn append_chunk(
                &self,
                run_id: netauto_core::RunId,
                stream: netauto_core::OutputStream,
                data: &[u8],
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::ChunkAppended> {
                crate::shared::runs::append_chunk(&self.db, run_id, stream, data, now).await
            }
            async fn request_run_cancel(
                &self,
                run_id: netauto_core::RunId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::Run> {
                crate::shared::runs::request_run_cancel(&self.db, run_id, now).await
            }
            async fn cancel_requests(
                &self,
                bulks: &[netauto_core::BulkRef],
                runs: &[netauto_core::RunId],
            ) -> netauto_core::Result<netauto_core::CancelRequests> {
                crate::shared::runs::cancel_requests(&self.db, bulks, runs).await
            }
            async fn finish_run(
                &self,
                run_id: netauto_core::RunId,
                finish: netauto_core::RunFinish,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::Run> {
                crate::shared::runs::finish_run(&self.db, run_id, finish, now).await
            }
            async fn run(
                &self,
                id: netauto_core::RunId,
            ) -> netauto_core::Result<netauto_core::Run> {
                crate::shared::runs::run(&self.db, id).await
            }
            async fn chunks(
                &self,
                run_id: netauto_core::RunId,
                from_seq: u64,
                limit: usize,
            ) -> netauto_core::Result<Vec<netauto_core::RunChunk>> {
                crate::shared::runs::chunks(&self.db, run_id, from_seq, limit).await
            }
            async fn device_runs(
                &self,
                device_id: netauto_core::DeviceId,
                limit: usize,
            ) -> netauto_core::Result<Vec<netauto_core::Run>> {
                crate::shared::runs::device_runs(&self.db, device_id, limit).await
            }
            async fn search_runs(
                &self,
                query: &netauto_core::search::SearchQuery,
            ) -> netauto_core::Result<Vec<netauto_core::Run>> {
                crate::shared::search::search_runs(&self.db, query).await
            }
        }

        #[async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl netauto_core::BulkStore for $store {
            async fn bulk_runs(
                &self,
                bulk_ref: &netauto_core::BulkRef,
                device_ids: &[netauto_core::DeviceId],
            ) -> netauto_core::Result<Vec<netauto_core::Run>> {
                crate::shared::runs::bulk_runs(&self.db, bulk_ref, device_ids).await
            }
            async fn create_bulk(
                &self,
                bulk: netauto_core::NewBulk,
                jobs: Vec<netauto_core::NewJob>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<(netauto_core::Bulk, Vec<netauto_core::Enqueued>)> {
                crate::shared::bulks::create_bulk(&self.db, bulk, jobs, now).await
            }
            async fn bulk(
                &self,
                bulk_ref: &netauto_core::BulkRef,
            ) -> netauto_core::Result<netauto_core::Bulk> {
                crate::shared::bulks::bulk(&self.db, bulk_ref).await
            }
            async fn list_bulks(
                &self,
                query: &netauto_core::BulkQuery,
            ) -> netauto_core::Result<Vec<netauto_core::BulkSummary>> {
                crate::shared::bulks::list_bulks(&self.db, query).await
            }
            async fn bulk_state(
                &self,
                bulk_ref: &netauto_core::BulkRef,
            ) -> netauto_core::Result<netauto_core::BulkState> {
                crate::shared::bulks::bulk_state(&self.db, bulk_ref).await
            }
            async fn device_outcomes(
                &self,
                bulk_ref: &netauto_core::BulkRef,
                device_ids: &[netauto_core::DeviceId],
            ) -> netauto_core::Result<Vec<netauto_core::DeviceOutcome>> {
                crate::shared::bulks::device_outcomes(&self.db, bulk_ref, device_ids).await
            }
            async fn cancel_bulk(
                &self,
                bulk_ref: &netauto_core::BulkRef,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::BulkCancelled> {
                crate::shared::bulks::cancel_bulk(&self.db, bulk_ref, now).await
            }
            async fn record_outcome(
                &self,
                bulk_ref: &netauto_core::BulkRef,
                outcome: netauto_core::DeviceOutcome,
            ) -> netauto_core::Result<netauto_core::OutcomeRecorded> {
                crate::shared::bulks::record_outcome(&self.db, bulk_ref, outcome).await
            }
        }

        #[async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl netauto_core::RetentionStore for $store {
            async fn device_totals(
                &self,
            ) -> netauto_core::Result<Vec<netauto_core::retention::DeviceTotal>> {
                crate::shared::retention::device_totals(&self.db).await
            }
            async fn device_footprints(
                &self,
                devices: &[netauto_core::DeviceId],
                after: Option<netauto_core::retention::FootprintCursor>,
                limit: usize,
            ) -> netauto_core::Result<Vec<netauto_core::retention::RunFootprint>> {
                crate::shared::retention::device_footprints(&self.db, devices, after, limit).await
            }
            async fn aged_footprints(
                &self,
                cutoff: chrono::DateTime<chrono::Utc>,
                after: Option<netauto_core::retention::FootprintCursor>,
                limit: usize,
            ) -> netauto_core::Result<Vec<netauto_core::retention::RunFootprint>> {
                crate::shared::retention::aged_footprints(&self.db, cutoff, after, limit).await
            }
            async fn delete_runs(
                &self,
                ids: &[netauto_core::RunId],
                guard: netauto_core::retention::DeleteGuard,
            ) -> netauto_core::Result<netauto_core::retention::DeletedRuns> {
                crate::shared::retention::delete_runs(&self.db, ids, guard).await
            }
        }
    };
}

/// Declares the queue `$queue` on the pools `$pools` (its `db` field) and implements
/// `JobQueue` for it (see the module docs).
macro_rules! job_queue_by_concern {
    ($(#[$doc:meta])* $vis:vis struct $queue:ident($pools:ty);) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        $vis struct $queue {
            db: $pools,
        }

        #[async_trait::async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl netauto_core::JobQueue for $queue {
            async fn enqueue(
                &self,
                job: netauto_core::NewJob,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::Enqueued> {
                queue::enqueue(&self.db, job, now).await
            }

            async fn enqueue_all(
                &self,
                jobs: Vec<netauto_core::NewJob>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<Vec<netauto_core::Enqueued>> {
                queue::enqueue_all(&self.db, jobs, now).await
            }

            async fn claim(
                &self,
                req: &netauto_core::ClaimRequest,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<Vec<netauto_core::Job>> {
                if req.limit == 0 {
                    return Ok(Vec::new());
                }
                queue::claim(&self.db, req, now).await
            }

            async fn heartbeat(
                &self,
                id: netauto_core::JobId,
                attempt: u32,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<()> {
                queue::heartbeat(&self.db, id, attempt, lease_until).await
            }

            async fn complete(
                &self,
                id: netauto_core::JobId,
                attempt: u32,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<()> {
                queue::complete(&self.db, id, attempt, now).await
            }

            async fn complete_many(
                &self,
                attempts: &[(netauto_core::JobId, u32)],
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<Vec<netauto_core::JobId>> {
                if attempts.is_empty() {
                    return Ok(Vec::new());
                }
                queue::complete_many(&self.db, attempts, now).await
            }

            async fn fail(
                &self,
                id: netauto_core::JobId,
                attempt: u32,
                error: &str,
                action: netauto_core::FailAction,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::JobState> {
                queue::fail(&self.db, id, attempt, error, action, now).await
            }

            async fn release(
                &self,
                id: netauto_core::JobId,
                attempt: u32,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<()> {
                queue::release(&self.db, id, attempt, now).await
            }

            async fn cancel(
                &self,
                id: netauto_core::JobId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::Job> {
                queue::cancel(&self.db, id, now).await
            }

            async fn rescue_expired(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<Vec<netauto_core::JobId>> {
                queue::rescue_expired(&self.db, now).await
            }

            async fn prune(
                &self,
                finished_before: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<u64> {
                queue::prune(&self.db, finished_before).await
            }

            async fn job(
                &self,
                id: netauto_core::JobId,
            ) -> netauto_core::Result<netauto_core::Job> {
                queue::job(&self.db, id).await
            }

            async fn list(
                &self,
                filter: &netauto_core::JobFilter,
            ) -> netauto_core::Result<Vec<netauto_core::Job>> {
                queue::list(&self.db, filter).await
            }

            async fn counts(&self) -> netauto_core::Result<Vec<netauto_core::JobCount>> {
                queue::counts(&self.db).await
            }

            async fn finished_since(
                &self,
                since: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<Vec<netauto_core::JobCount>> {
                queue::finished_since(&self.db, since).await
            }

            async fn pause_queue(
                &self,
                queue: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<()> {
                queue::pause_queue(&self.db, queue, now).await
            }

            async fn resume_queue(&self, queue: &str) -> netauto_core::Result<()> {
                queue::resume_queue(&self.db, queue).await
            }

            async fn paused_queues(&self) -> netauto_core::Result<Vec<netauto_core::QueuePause>> {
                queue::paused_queues(&self.db).await
            }

            async fn retry_job(
                &self,
                id: netauto_core::JobId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::Job> {
                queue::retry_job(&self.db, id, now).await
            }

            async fn discard_job(
                &self,
                id: netauto_core::JobId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> netauto_core::Result<netauto_core::Job> {
                queue::discard_job(&self.db, id, now).await
            }
        }
    };
}

pub(crate) use {job_queue_by_concern, run_store_by_concern};

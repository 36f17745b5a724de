//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas can run and
//! only one delivers.
//!
//! The protocol is the one client-go's leader election uses: the holder renews the Lease every
//! `retry_period`; a candidate takes it over when `renewTime + leaseDurationSeconds` has passed;
//! every write carries the Lease's `resourceVersion`, so two candidates cannot both win a
//! round. A leader that cannot renew within `renew_deadline` stops leading (the process exits
//! and is restarted, which is what controller-runtime does too), and a leader that shuts down
//! releases the Lease so a standby takes over at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Timings of the election (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone)]
pub struct LeaseTimings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate's handle on the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    pub timings: LeaseTimings,
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn to_chrono(t: &MicroTime) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.0.as_microsecond()).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round: takes the Lease if it is free or expired, renews it if held. True while this
    /// candidate leads.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let duration = self.timings.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(micro_now()),
                    renew_time: Some(micro_now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_us = holder == self.identity;
        if !held_by_us && !holder.is_empty() {
            let expires = spec
                .renew_time
                .as_ref()
                .map(to_chrono)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
                + chrono::Duration::seconds(i64::from(
                    spec.lease_duration_seconds.unwrap_or(duration),
                ));
            if expires > Utc::now() {
                return Ok(false);
            }
        }
        if !held_by_us {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(micro_now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(micro_now());
        spec.lease_duration_seconds = Some(duration);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "leader election: cannot read or write the Lease")
                }
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// Renews while leading; returns when the Lease could not be renewed within the renew
    /// deadline (leadership lost).
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timings.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(identity = %self.identity, "leader election: the Lease was taken over");
                    return;
                }
                Err(error) => tracing::warn!(%error, "leader election: cannot renew the Lease"),
            }
            if last_renewal.elapsed() > self.timings.renew_deadline {
                tracing::error!(identity = %self.identity, "leader election: renew deadline passed");
                return;
            }
        }
    }

    /// Gives the Lease up (if held) so a standby can take over without waiting for expiry.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(micro_now());
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

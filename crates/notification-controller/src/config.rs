//! The controller's settings: each a flag and an environment variable (flag wins).
//!
//! Secrets (webhook URLs, the HMAC key, SMTP and SMS credentials) come from Kubernetes Secrets,
//! either as environment variables or as files mounted from the Secret (`--…-file` / `…_FILE`);
//! a file is re-read only at start-up. They never come from the NotificationRequest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::channels::{ChannelSettings, SmsSettings, SmtpSettings};
use crate::leader::LeaseTimings;

/// `notification-controller run` options.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Data Storage base URL (the audit trail's destination).
    #[arg(long, env = "DATA_STORAGE_URL")]
    pub data_storage_url: String,
    /// Where the audit client spills records it cannot send yet. The default is relative to the
    /// working directory (`./audit-spill`); in a cluster give it a volume that outlives the
    /// container (the Deployment mounts one), or spilled records die with the pod.
    #[arg(long, env = "AUDIT_SPILL_DIR", default_value = "./audit-spill")]
    pub audit_spill_dir: PathBuf,
    /// How long shutdown waits for buffered audit records to be sent or spilled.
    #[arg(long, env = "AUDIT_CLOSE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub audit_close_timeout: Duration,
    /// The bearer token Data Storage authenticates the controller by: a file, re-read when it
    /// changes (the projected ServiceAccount token, issued for Data Storage's audience, or a
    /// static token). Unset: no token (Data Storage without authentication).
    #[arg(long, env = "AUDIT_TOKEN_FILE")]
    pub audit_token_file: Option<PathBuf>,
    /// The CA bundle (PEM) Data Storage's `https` certificate is verified against, besides the
    /// public web roots (the cluster's private CA).
    #[arg(long, env = "AUDIT_CA_FILE")]
    pub audit_ca_file: Option<PathBuf>,
    /// Address of `/health/live`, `/health/ready` and `/metrics`. The default listens on every
    /// interface, as the kubelet's probes and Prometheus need in a pod; outside one, use
    /// `127.0.0.1:8081` to keep it local.
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:8081")]
    pub metrics_listen: SocketAddr,
    /// Only watch this namespace (all namespaces when empty).
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,

    /// Elect a leader among replicas with a Lease.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(long, env = "LEASE_NAME", default_value = "notification-controller")]
    pub lease_name: String,
    /// Namespace of the Lease (the controller's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long one delivery may take.
    #[arg(long, env = "DELIVERY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,
    /// Consecutive failures that open a channel's circuit breaker.
    #[arg(long, env = "BREAKER_FAILURE_THRESHOLD", default_value_t = 5)]
    pub breaker_failure_threshold: u32,
    /// How long an open breaker refuses deliveries before one trial.
    #[arg(long, env = "BREAKER_COOLDOWN", default_value = "60s", value_parser = humantime::parse_duration)]
    pub breaker_cooldown: Duration,

    #[arg(long, env = "SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<String>,
    #[arg(long, env = "SLACK_WEBHOOK_URL_FILE")]
    pub slack_webhook_url_file: Option<PathBuf>,
    #[arg(long, env = "TEAMS_WEBHOOK_URL", hide_env_values = true)]
    pub teams_webhook_url: Option<String>,
    #[arg(long, env = "TEAMS_WEBHOOK_URL_FILE")]
    pub teams_webhook_url_file: Option<PathBuf>,
    /// Webhook destination when a recipient gives no `webhookURL`.
    #[arg(long, env = "WEBHOOK_DEFAULT_URL")]
    pub webhook_default_url: Option<String>,
    /// Key of the webhook's `X-Notification-Signature` (HMAC-SHA256 of the body).
    #[arg(long, env = "WEBHOOK_HMAC_SECRET", hide_env_values = true)]
    pub webhook_hmac_secret: Option<String>,
    #[arg(long, env = "WEBHOOK_HMAC_SECRET_FILE")]
    pub webhook_hmac_secret_file: Option<PathBuf>,

    /// SMTP relay host (email is disabled without it).
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,
    #[arg(long, env = "SMTP_PORT", default_value_t = 587)]
    pub smtp_port: u16,
    /// Require STARTTLS (on by default, so credentials and messages never cross the network in
    /// clear). A relay that offers no STARTTLS (a plain local relay on port 25, a test server)
    /// refuses every email until this is set to `false`; the failure is recorded per delivery.
    #[arg(long, env = "SMTP_STARTTLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub smtp_starttls: bool,
    #[arg(long, env = "SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,
    #[arg(long, env = "SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,
    #[arg(
        long,
        env = "SMTP_FROM",
        default_value = "Kubernaut <noreply@kubernaut.ai>"
    )]
    pub smtp_from: String,

    /// Base URL of the Twilio-compatible SMS API (SMS is disabled without an account SID).
    #[arg(long, env = "SMS_BASE_URL", default_value = "https://api.twilio.com")]
    pub sms_base_url: String,
    #[arg(long, env = "SMS_ACCOUNT_SID")]
    pub sms_account_sid: Option<String>,
    #[arg(long, env = "SMS_AUTH_TOKEN", hide_env_values = true)]
    pub sms_auth_token: Option<String>,
    #[arg(long, env = "SMS_AUTH_TOKEN_FILE")]
    pub sms_auth_token_file: Option<PathBuf>,
    #[arg(long, env = "SMS_FROM")]
    pub sms_from: Option<String>,

    /// Directory of the file channel (disabled without it).
    #[arg(long, env = "FILE_OUTPUT_DIR")]
    pub file_output_dir: Option<PathBuf>,
}

/// A secret given directly or as a file; the file's content is trimmed of surrounding space.
fn secret(
    name: &str,
    value: &Option<String>,
    file: &Option<PathBuf>,
) -> anyhow::Result<Option<String>> {
    match (value, file) {
        (Some(_), Some(_)) => bail!("set {name} or {name}_FILE, not both"),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {name}_FILE {}", path.display()))?;
            Ok(Some(text.trim().to_string()))
        }
        (None, None) => Ok(None),
    }
}

impl RunArgs {
    /// The channels' settings, with secrets read from their files.
    pub fn channel_settings(&self) -> anyhow::Result<ChannelSettings> {
        let smtp = match &self.smtp_host {
            Some(host) => Some(SmtpSettings {
                host: host.clone(),
                port: self.smtp_port,
                starttls: self.smtp_starttls,
                username: self.smtp_username.clone(),
                password: secret(
                    "SMTP_PASSWORD",
                    &self.smtp_password,
                    &self.smtp_password_file,
                )?,
                from: self.smtp_from.clone(),
            }),
            None => None,
        };
        let sms = match &self.sms_account_sid {
            Some(sid) => Some(SmsSettings {
                base_url: self.sms_base_url.clone(),
                account_sid: sid.clone(),
                auth_token: secret(
                    "SMS_AUTH_TOKEN",
                    &self.sms_auth_token,
                    &self.sms_auth_token_file,
                )?
                .context("SMS_ACCOUNT_SID is set but SMS_AUTH_TOKEN is not")?,
                from: self
                    .sms_from
                    .clone()
                    .context("SMS_ACCOUNT_SID is set but SMS_FROM is not")?,
            }),
            None => None,
        };
        Ok(ChannelSettings {
            slack_webhook_url: secret(
                "SLACK_WEBHOOK_URL",
                &self.slack_webhook_url,
                &self.slack_webhook_url_file,
            )?,
            teams_webhook_url: secret(
                "TEAMS_WEBHOOK_URL",
                &self.teams_webhook_url,
                &self.teams_webhook_url_file,
            )?,
            webhook_default_url: self.webhook_default_url.clone(),
            webhook_hmac_secret: secret(
                "WEBHOOK_HMAC_SECRET",
                &self.webhook_hmac_secret,
                &self.webhook_hmac_secret_file,
            )?,
            smtp,
            sms,
            file_dir: self.file_output_dir.clone(),
            timeout: self.delivery_timeout,
        })
    }

    /// The Lease timings (client-go's defaults).
    pub fn lease_timings(&self) -> LeaseTimings {
        LeaseTimings::default()
    }
}

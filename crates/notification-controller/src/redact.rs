//! Masks secrets in a notification's subject and body before any channel sees them.
//!
//! Notifications are often written from alert payloads and logs, which carry tokens, passwords
//! and keys. Whatever leaves the cluster (Slack, email, SMS, a file) gets the masked text; the CR
//! keeps the original. The patterns cover `key=value` style assignments of secret-sounding keys,
//! bearer tokens, credentials in URLs, PEM private keys, JWTs, and the well-known token formats
//! of AWS, Slack and GitHub.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// What a masked secret is replaced with.
pub const MASK: &str = "[REDACTED]";

struct Rule {
    pattern: Regex,
    /// The replacement, in `regex` syntax (`$name` keeps a captured group).
    replacement: &'static str,
}

fn rule(pattern: &str, replacement: &'static str) -> Rule {
    Rule {
        // The patterns are constants of this file; the tests compile every one of them.
        pattern: Regex::new(pattern).expect("redaction pattern compiles"),
        replacement,
    }
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        rule(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            MASK,
        ),
        rule(
            r"(?i)(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^\s:/@]+):[^\s/@]+@",
            "${scheme}${user}:[REDACTED]@",
        ),
        rule(
            r"(?i)\b(?P<kind>bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*",
            "${kind} [REDACTED]",
        ),
        rule(
            r#"(?i)(?P<key>\b[a-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)\b["']?\s*[:=]\s*)(?P<q>["']?)[^\s"',;&]+"#,
            "${key}${q}[REDACTED]",
        ),
        rule(
            r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+",
            MASK,
        ),
        rule(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", MASK),
        rule(r"\bxox[abposr]-[A-Za-z0-9-]{10,}", MASK),
        rule(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", MASK),
    ]
});

/// `text` with every secret the rules recognise masked.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for r in RULES.iter() {
        if let Cow::Owned(s) = r.pattern.replace_all(&out, r.replacement) {
            out = Cow::Owned(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_secrets_and_keeps_the_rest() {
        let cases = [
            (
                "db password=hunter2 on node-1",
                "db password=[REDACTED] on node-1",
            ),
            ("token: abc.def-123", "token: [REDACTED]"),
            (r#"{"api_key": "k-123"}"#, r#"{"api_key": "[REDACTED]"}"#),
            (
                "Authorization: Bearer eyJhbGciOi.x",
                "Authorization: Bearer [REDACTED]",
            ),
            (
                "dsn postgres://app:s3cret@db:5432/x",
                "dsn postgres://app:[REDACTED]@db:5432/x",
            ),
            ("key AKIAIOSFODNN7EXAMPLE leaked", "key [REDACTED] leaked"),
            ("slack xoxb-1234567890-abcdef", "slack [REDACTED]"),
            (
                "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "gh [REDACTED]",
            ),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_nature",
                "jwt [REDACTED]",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- done",
                "[REDACTED] done",
            ),
            (
                "Pod crashloop in namespace prod",
                "Pod crashloop in namespace prod",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn text_without_secrets_is_not_copied() {
        assert!(matches!(redact("all good"), Cow::Borrowed(_)));
    }
}

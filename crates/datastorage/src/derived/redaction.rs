//! The platform's PII redaction for exports shared outside (its `redact_pii`): e-mail
//! addresses, IP addresses and phone numbers masked, as its document's rules show them.
//!
//! `user@domain.com` → `u***@d***.com`; `192.168.1.1` → `192.***.*.***`;
//! `+1-555-1234` → `+1-***-****`. Applied to `event_data.user_email`, `.source_ip`,
//! `.phone_number` and to the exporter's name when it is an e-mail address; after the events
//! are verified, so the export's checks are of the stored content.

use serde_json::{Map, Value};

/// How a value is masked.
type Mask = fn(&str) -> String;

/// The `event_data` members the rules name, and how each is masked.
const MEMBERS: [(&str, Mask); 3] = [
    ("user_email", email),
    ("source_ip", ip),
    ("phone_number", phone),
];

/// `event_data` with the named members masked.
pub fn event_data(data: &Map<String, Value>) -> Map<String, Value> {
    let mut out = data.clone();
    for (member, mask) in MEMBERS {
        if let Some(Value::String(s)) = out.get(member) {
            let masked = mask(s);
            out.insert(member.to_string(), Value::String(masked));
        }
    }
    out
}

/// An e-mail address masked: the first character of the local part and of the domain's name
/// kept, the top-level domain kept. Anything else is returned as it is.
pub fn email(text: &str) -> String {
    let Some((local, domain)) = text.split_once('@') else {
        return text.to_string();
    };
    let (name, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    let tld = if tld.is_empty() {
        String::new()
    } else {
        format!(".{tld}")
    };
    format!("{}***@{}***{tld}", first(local), first(name))
}

/// An IPv4 address masked but for its first octet (`192.***.*.***`); an IPv6 address but for
/// its first group.
pub fn ip(text: &str) -> String {
    if let Some((first, _)) = text.split_once('.') {
        return format!("{first}.***.*.***");
    }
    match text.split_once(':') {
        Some((first, _)) => format!("{first}:****"),
        None => text.to_string(),
    }
}

/// A phone number masked but for its first group (the country code): every later digit is `*`.
pub fn phone(text: &str) -> String {
    let cut = text.find(['-', ' ']).unwrap_or(text.len().min(2));
    let (keep, rest) = text.split_at(cut);
    let masked: String = rest
        .chars()
        .map(|c| if c.is_ascii_digit() { '*' } else { c })
        .collect();
    format!("{keep}{masked}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documents_examples_are_masked_as_it_shows() {
        assert_eq!(email("user@domain.com"), "u***@d***.com");
        assert_eq!(ip("192.168.1.1"), "192.***.*.***");
        assert_eq!(phone("+1-555-1234"), "+1-***-****");
        assert_eq!(email("not an address"), "not an address");
        let data =
            json!({"user_email": "alice@example.org", "source_ip": "10.1.2.3", "other": "kept"});
        let masked = event_data(data.as_object().unwrap());
        assert_eq!(
            Value::Object(masked),
            json!({"user_email": "a***@e***.org", "source_ip": "10.***.*.***", "other": "kept"})
        );
    }
}

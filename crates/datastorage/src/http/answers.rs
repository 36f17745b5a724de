//! The two ways a write is answered: the platform's Data Storage API, or this service's own.
//!
//! They agree on most answers (this service's answers carry the platform's fields besides its
//! own) and truly differ in two: a batch (the platform takes it whole and answers 201
//! `{event_ids, message}`; the native API answers each item on its own) and a write of an event
//! already stored (201 on the platform, which knows no other success; 200 natively). The
//! deployment chooses the default (`api.write_answers`, `platform` unless set); a request may
//! ask for the other with `Prefer: answers=native` or `Prefer: answers=platform` (RFC 7240),
//! and the answer then says `Preference-Applied`. `docs/compatibility.md` has the details.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

use crate::http::AppState;

/// Which API's answers a write gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteAnswers {
    /// The platform's Data Storage API (their generated client's expectations).
    #[default]
    Platform,
    /// This service's own: per-item batch results, 200 for what was already stored.
    Native,
}

impl WriteAnswers {
    /// The setting's and the preference's spelling.
    pub fn name(self) -> &'static str {
        match self {
            WriteAnswers::Platform => "platform",
            WriteAnswers::Native => "native",
        }
    }

    pub fn from_name(name: &str) -> Option<WriteAnswers> {
        [WriteAnswers::Platform, WriteAnswers::Native]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }
}

/// The answers a request gets: what its `Prefer: answers=…` asks for, else the deployment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answers {
    pub kind: WriteAnswers,
    /// The request asked (the answer says `Preference-Applied`).
    pub asked: bool,
}

impl Answers {
    pub fn native(self) -> bool {
        self.kind == WriteAnswers::Native
    }

    /// Marks `response` with the preference it applied, when one was asked for.
    pub fn mark(self, mut response: Response) -> Response {
        if self.asked {
            let applied = HeaderValue::from_static(match self.kind {
                WriteAnswers::Platform => "answers=platform",
                WriteAnswers::Native => "answers=native",
            });
            response
                .headers_mut()
                .insert(HeaderName::from_static("preference-applied"), applied);
        }
        response
    }
}

/// The `answers` preference of `Prefer` headers (`token=value` pairs separated by commas; a
/// preference's parameters after `;` are ignored, as RFC 7240 allows). An unknown value is
/// ignored, as an unknown preference is.
fn preferred(parts: &Parts) -> Option<WriteAnswers> {
    parts
        .headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pref| {
            let pref = pref.split(';').next()?.trim();
            let (token, value) = pref.split_once('=')?;
            token
                .trim()
                .eq_ignore_ascii_case("answers")
                .then(|| WriteAnswers::from_name(value.trim().trim_matches('"')))
                .flatten()
        })
        .next()
}

impl FromRequestParts<AppState> for Answers {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(match preferred(parts) {
            Some(kind) => Answers { kind, asked: true },
            None => Answers {
                kind: state.write_answers,
                asked: false,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(prefer: &[&str]) -> Parts {
        let mut request = axum::http::Request::builder();
        for p in prefer {
            request = request.header("prefer", *p);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_answers_preference_is_read_among_others() {
        assert_eq!(preferred(&parts(&[])), None);
        assert_eq!(
            preferred(&parts(&["answers=native"])),
            Some(WriteAnswers::Native)
        );
        assert_eq!(
            preferred(&parts(&["respond-async, Answers = \"Platform\"; x=1"])),
            Some(WriteAnswers::Platform)
        );
        assert_eq!(
            preferred(&parts(&["wait=5", "answers=native"])),
            Some(WriteAnswers::Native)
        );
        assert_eq!(preferred(&parts(&["answers=other"])), None);
        assert_eq!(preferred(&parts(&["answersx=native"])), None);
    }
}

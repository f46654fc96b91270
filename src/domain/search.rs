//! What a search asks for: the words typed (Postgres `websearch_to_tsquery`
//! syntax: words, "quoted phrases", `-excluded`, `or`), and the last word
//! taken as a prefix while it is being typed ("interv" finds "interview").

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    ChatError,
    model::Message,
    text::{Padding, TextField},
};

/// One message found.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    /// The message (its `conversationId` and `seq` lead to it).
    pub message: Message,
    pub conversation: HitConversation,
    /// The part of the message around what matched, as plain text…
    pub snippet: String,
    /// …and where the matching words are in it: `[start, end)` in
    /// characters (Unicode scalar values), so a client can mark them without
    /// ever treating the text as markup.
    pub highlights: Vec<[usize; 2]>,
}

/// The display fields of a hit's conversation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HitConversation {
    pub id: Uuid,
    pub context_title: Option<String>,
    /// The other participant of a direct conversation (null in a thread).
    pub other_participant_id: Option<String>,
    pub other_participant_name: Option<String>,
}

/// Splits a snippet whose highlights are marked by `start` and `stop`
/// characters into its text and the ranges marked.
pub fn split_highlights(marked: &str, start: char, stop: char) -> (String, Vec<[usize; 2]>) {
    let mut text = String::with_capacity(marked.len());
    let mut ranges = Vec::new();
    let mut at = 0;
    let mut open = None;
    for c in marked.chars() {
        if c == start {
            open = Some(at);
        } else if c == stop {
            if let Some(from) = open.take() {
                ranges.push([from, at]);
            }
        } else {
            text.push(c);
            at += 1;
        }
    }
    (text, ranges)
}

/// A query: 1-200 characters as sent, something besides spaces, one line.
const QUERY: TextField = TextField {
    code: "invalid_query",
    message: "a search needs 1 to 200 characters on one line",
    max_chars: 200,
    required: true,
    multiline: false,
    padding: Padding::Trim,
};

/// The `q` of a search as the OpenAPI document states it.
pub fn query_schema() -> utoipa::openapi::Object {
    QUERY.schema()
}

/// A search query, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// Everything but the prefix, for `websearch_to_tsquery`.
    pub words: String,
    /// The last word when it is a plain word being typed (letters and
    /// digits only, outside quotes, not excluded), matched as a prefix.
    pub prefix: Option<String>,
}

impl SearchQuery {
    /// A query as [`QUERY`] allows (422 `invalid_query` otherwise); `None`
    /// when it holds no letter or digit, so nothing can match it.
    pub fn parse(raw: &str) -> Result<Option<Self>, ChatError> {
        let trimmed = QUERY.check(raw)?;
        if !trimmed.chars().any(char::is_alphanumeric) {
            return Ok(None);
        }
        let (head, last) = match trimmed.rsplit_once(char::is_whitespace) {
            Some((head, last)) => (head.trim_end(), last),
            None => ("", trimmed),
        };
        let quotes_balanced = head.matches('"').count() % 2 == 0;
        let plain = !last.is_empty() && last.chars().all(char::is_alphanumeric);
        let is_operator = last.eq_ignore_ascii_case("or");
        if plain && quotes_balanced && !is_operator {
            Ok(Some(Self {
                words: head.to_owned(),
                prefix: Some(last.to_lowercase()),
            }))
        } else {
            Ok(Some(Self {
                words: trimmed.to_owned(),
                prefix: None,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> (String, Option<String>) {
        let q = SearchQuery::parse(raw).unwrap().unwrap();
        (q.words, q.prefix)
    }

    #[test]
    fn the_last_plain_word_is_a_prefix() {
        assert_eq!(parsed("interv"), (String::new(), Some("interv".into())));
        assert_eq!(
            parsed("  Zürich  Intervi "),
            ("Zürich".into(), Some("intervi".into()))
        );
        assert_eq!(parsed("\"job offer\""), ("\"job offer\"".into(), None));
        assert_eq!(parsed("\"job offer"), ("\"job offer".into(), None));
        assert_eq!(parsed("offer -spam"), ("offer -spam".into(), None));
        assert_eq!(parsed("cv or"), ("cv or".into(), None));
    }

    #[test]
    fn highlights_become_ranges_of_plain_text() {
        let (text, ranges) =
            split_highlights("the \u{2}café\u{3} in \u{2}Zürich\u{3}", '\u{2}', '\u{3}');
        assert_eq!(text, "the café in Zürich");
        assert_eq!(ranges, vec![[4, 8], [12, 18]]);
        let chars: Vec<char> = text.chars().collect();
        assert_eq!(chars[12..18].iter().collect::<String>(), "Zürich");
    }

    #[test]
    fn empty_long_and_multiline_queries_are_refused_and_wordless_ones_find_nothing() {
        for bad in ["", "   ", &"a".repeat(201), "a\u{0}b", "a\nb"] {
            assert_eq!(
                SearchQuery::parse(bad).unwrap_err().code(),
                "invalid_query",
                "{bad:?}"
            );
        }
        assert!(SearchQuery::parse(&"a".repeat(200)).unwrap().is_some());
        assert_eq!(SearchQuery::parse("\"\" -").unwrap(), None);
    }
}

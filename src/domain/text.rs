//! Message text rules: what a body and a client message id may contain.
//!
//! A body is plain text, kept exactly as typed (line breaks normalised):
//! the server never reads it as markup, and every renderer escapes it. Each
//! short text field is a [`TextField`], whose one description both checks a
//! value and documents it in the OpenAPI document ([`TextField::schema`]).
//!
//! Lengths count Unicode scalar values (Postgres' `char_length` and JSON
//! Schema's `maxLength` count the same), so any script and emoji are welcome
//! up to the cap.

use super::ChatError;

/// Longest body, in characters, after stripping and trimming.
pub const MAX_BODY_CHARS: usize = 5_000;
/// Longest client message id, in characters.
pub const MAX_CLIENT_MESSAGE_ID_CHARS: usize = 128;

/// Validates and normalises a message body. A body is plain text, kept as
/// typed: line breaks become `\n` (CRLF and lone CR alike) and the
/// whitespace around it is trimmed, nothing else changes; the server never
/// reads it as markup (every renderer escapes it, so `<3`, `a<b`, code and
/// would-be scripts all stay harmless and intact). Refused: control
/// characters other than newline and tab, bidirectional overrides and
/// isolates (which make text display differently from what it is), bodies
/// with nothing visible, and more than 5,000 characters as sent.
pub fn sanitize_body(raw: &str) -> Result<String, ChatError> {
    if raw.chars().count() > MAX_BODY_CHARS {
        return Err(ChatError::invalid(
            "body_too_long",
            format!("the message body is longer than {MAX_BODY_CHARS} characters"),
        ));
    }
    let normalized = raw.replace("\r\n", "\n").replace('\r', "\n");
    if normalized
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ChatError::invalid(
            "control_characters",
            "the message body contains control characters",
        ));
    }
    if normalized.chars().any(is_bidi_control) {
        return Err(ChatError::invalid(
            "bidi_control",
            "the message body contains bidirectional override or isolate characters",
        ));
    }
    let trimmed = normalized.trim();
    if trimmed
        .chars()
        .all(|c| c.is_whitespace() || is_invisible(c))
    {
        return Err(ChatError::invalid(
            "empty_body",
            "the message body is empty",
        ));
    }
    Ok(trimmed.to_owned())
}

/// A message body as a JSON Schema string: what [`sanitize_body`] admits.
pub fn body_schema() -> utoipa::openapi::Object {
    let refused = class(&[CONTROLS, BIDI_CONTROLS], &['\n', '\t', '\r']);
    let unseen = class(&[CONTROLS, BIDI_CONTROLS, WHITESPACE, INVISIBLE], &[]);
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_BODY_CHARS))
        .pattern(Some(format!(
            "^[^{refused}]*[^{unseen}][^{refused}]*$"
        )))
        .description(Some(
            "Plain text, kept as typed (line breaks become \\n, surrounding whitespace is trimmed): \
             something visible, no control characters but newline and tab, no bidirectional controls",
        ))
        .build()
}

/// Bidirectional embeddings, overrides (U+202A–U+202E) and isolates
/// (U+2066–U+2069): `invoice\u{202e}gpj.exe` shows as `invoiceexe.jpg`.
/// Refused everywhere text is accepted.
pub fn is_bidi_control(c: char) -> bool {
    within(BIDI_CONTROLS, c)
}

/// The characters of [`is_bidi_control`], as ranges.
const BIDI_CONTROLS: &[(char, char)] = &[('\u{202A}', '\u{202E}'), ('\u{2066}', '\u{2069}')];
/// Control characters (`char::is_control`, Unicode `Cc`), as ranges.
const CONTROLS: &[(char, char)] = &[('\u{0}', '\u{1F}'), ('\u{7F}', '\u{9F}')];
/// What `str::trim` removes (`char::is_whitespace`, Unicode `White_Space`).
const WHITESPACE: &[(char, char)] = &[
    ('\u{9}', '\u{D}'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{A0}', '\u{A0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200A}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202F}', '\u{202F}'),
    ('\u{205F}', '\u{205F}'),
    ('\u{3000}', '\u{3000}'),
];
/// Characters that show nothing: zero-width spaces and joiners, word
/// joiner, byte-order mark, soft hyphen, Mongolian vowel separator.
const INVISIBLE: &[(char, char)] = &[
    ('\u{200B}', '\u{200D}'),
    ('\u{2060}', '\u{2060}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{AD}', '\u{AD}'),
    ('\u{180E}', '\u{180E}'),
];

fn within(ranges: &[(char, char)], c: char) -> bool {
    ranges
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// The inside of a regular-expression character class (ECMA-262, as JSON
/// Schema patterns are) naming `ranges` less the characters in `except`.
fn class(ranges: &[&[(char, char)]], except: &[char]) -> String {
    let mut runs: Vec<(char, char)> = Vec::new();
    let chars = ranges
        .iter()
        .flat_map(|ranges| ranges.iter())
        .flat_map(|&(first, last)| first..=last)
        .filter(|c| !except.contains(c));
    for c in chars {
        match runs.last_mut() {
            Some((_, last)) if *last as u32 + 1 == c as u32 => *last = c,
            _ => runs.push((c, c)),
        }
    }
    runs.iter()
        .map(|&(first, last)| {
            if first == last {
                format!("\\u{:04X}", first as u32)
            } else {
                format!("\\u{:04X}-\\u{:04X}", first as u32, last as u32)
            }
        })
        .collect()
}

/// Whether `c` shows nothing (see [`INVISIBLE`]).
fn is_invisible(c: char) -> bool {
    within(INVISIBLE, c)
}

/// What a short text field (an id, a name, a note) may hold. Every field
/// other than a message body is checked by [`TextField::check`], with its own
/// bounds and the error its callers expect.
#[derive(Clone, Copy, Debug)]
pub struct TextField {
    /// The error code when the value is refused, and its message.
    pub code: &'static str,
    pub message: &'static str,
    /// Longest value, in characters (after trimming, where it trims).
    pub max_chars: usize,
    /// Whether an empty value is refused.
    pub required: bool,
    /// Whether newlines and tabs are allowed (other control characters never are).
    pub multiline: bool,
    /// What to do with whitespace around the value.
    pub padding: Padding,
}

/// Whitespace around a field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Kept as given.
    Keep,
    /// Removed before checking (and from the returned value).
    Trim,
    /// Refused: identifiers must be exact.
    Refuse,
}

impl TextField {
    /// The checked value (trimmed when the field trims), or the field's error.
    /// The length is that of the value as sent, spaces included.
    pub fn check<'a>(&self, raw: &'a str) -> Result<&'a str, ChatError> {
        let value = match self.padding {
            Padding::Trim => raw.trim(),
            Padding::Keep | Padding::Refuse => raw,
        };
        let allowed = |c: char| {
            !is_bidi_control(c) && (!c.is_control() || (self.multiline && (c == '\n' || c == '\t')))
        };
        let ok = (!value.is_empty() || !self.required)
            && raw.chars().count() <= self.max_chars
            && raw.chars().all(allowed)
            && (self.padding != Padding::Refuse || value.trim() == value);
        if ok {
            Ok(value)
        } else {
            Err(ChatError::invalid(self.code, self.message))
        }
    }

    /// The field as a JSON Schema string: the same bounds, and a pattern
    /// that admits exactly the characters (and, for trimmed and exact fields,
    /// the placement of spaces) that [`TextField::check`] admits.
    pub fn schema(&self) -> utoipa::openapi::Object {
        let except: &[char] = if self.multiline { &['\n', '\t'] } else { &[] };
        let refused = class(&[CONTROLS, BIDI_CONTROLS], except);
        let spaced = class(&[CONTROLS, BIDI_CONTROLS, WHITESPACE], &[]);
        let pattern = match (self.padding, self.required) {
            (Padding::Keep, _) | (Padding::Trim, false) => format!("^[^{refused}]*$"),
            (Padding::Trim, true) => {
                format!("^[^{refused}]*[^{spaced}][^{refused}]*$")
            }
            (Padding::Refuse, required) => {
                let exact = format!("[^{spaced}](?:[^{refused}]*[^{spaced}])?");
                if required {
                    format!("^{exact}$")
                } else {
                    format!("^(?:{exact})?$")
                }
            }
        };
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(self.required.then_some(1))
            .max_length(Some(self.max_chars))
            .pattern(Some(pattern))
            .description(Some(self.message))
            .build()
    }
}

/// A client message id: 1–128 printable characters.
const CLIENT_MESSAGE_ID: TextField = TextField {
    code: "invalid_client_message_id",
    message: "clientMessageId must be 1-128 printable characters",
    max_chars: MAX_CLIENT_MESSAGE_ID_CHARS,
    required: true,
    multiline: false,
    padding: Padding::Keep,
};

/// A `clientMessageId` field, as the OpenAPI document states it.
pub fn client_message_id_schema() -> utoipa::openapi::Object {
    CLIENT_MESSAGE_ID.schema()
}

/// The same, where it may be left out or `null`.
pub fn optional_client_message_id_schema() -> utoipa::openapi::Object {
    super::schema::or_null(CLIENT_MESSAGE_ID.schema())
}

/// Validates a client message id: 1–128 printable characters.
pub fn validate_client_message_id(raw: &str) -> Result<(), ChatError> {
    CLIENT_MESSAGE_ID.check(raw).map(drop)
}

/// Most links recorded per message.
const MAX_LINKS: usize = 20;

/// The links in a message: `http(s)://…`, `www.…`, and bare domains such as
/// `bit.ly/x` (labels of letters, digits and hyphens ending in a 2–24 letter
/// top-level label). Recorded on every message; in a message request they are
/// flagged as not live, so clients show them as plain text.
pub fn find_links(body: &str) -> Vec<String> {
    body.split_whitespace()
        .map(|token| {
            token
                .trim_start_matches(['(', '[', '<', '"', '\''])
                .trim_end_matches(['.', ',', '!', '?', ';', ':', ')', ']', '>', '"', '\''])
        })
        .filter(|token| is_link(token))
        .take(MAX_LINKS)
        .map(str::to_owned)
        .collect()
}

fn is_link(token: &str) -> bool {
    let lower = token.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("www.") {
        return lower.len() > 7;
    }
    let host = lower.split(['/', '?', '#']).next().unwrap_or_default();
    let labels: Vec<&str> = host.split('.').collect();
    let (Some(tld), true) = (labels.last(), labels.len() >= 2) else {
        return false;
    };
    (2..=24).contains(&tld.len())
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_character_tables_are_the_standard_librarys_classes() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(within(CONTROLS, c), c.is_control(), "{c:?}");
            assert_eq!(within(WHITESPACE, c), c.is_whitespace(), "{c:?}");
        }
        assert_eq!(
            class(&[CONTROLS], &['\t', '\n']),
            "\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F"
        );
    }

    /// Each field's pattern and bounds admit exactly what its check admits.
    #[test]
    fn schemas_admit_exactly_what_checks_admit() {
        let samples = [
            "",
            " ",
            "a",
            " a",
            "a ",
            " a ",
            "a b",
            "a\nb",
            "a\tb",
            "\n",
            "a\n",
            "a\r\nb",
            "\u{0}",
            "a\u{7}",
            "\u{85}a",
            "\u{200B}",
            "\u{200B}x",
            "x\u{202E}y",
            "\u{2067}",
            "\u{3000}a\u{3000}",
            "<3 a<b",
            "abcde",
            "abcdef",
            " abcd",
            "abcd ",
        ];
        let fields = [
            (Padding::Keep, true, false),
            (Padding::Trim, true, false),
            (Padding::Trim, false, true),
            (Padding::Refuse, true, false),
            (Padding::Refuse, false, false),
        ];
        for (padding, required, multiline) in fields {
            let field = TextField {
                code: "c",
                message: "m",
                max_chars: 5,
                required,
                multiline,
                padding,
            };
            let schema = field.schema();
            let pattern = regex::Regex::new(schema.pattern.as_deref().unwrap()).unwrap();
            for sample in samples {
                let length = sample.chars().count();
                let by_schema =
                    pattern.is_match(sample) && length <= 5 && (!required || length >= 1);
                assert_eq!(
                    by_schema,
                    field.check(sample).is_ok(),
                    "{field:?} {sample:?}"
                );
            }
        }
        let body = body_schema();
        let pattern = regex::Regex::new(body.pattern.as_deref().unwrap()).unwrap();
        for sample in samples
            .iter()
            .copied()
            .chain(["\r", "a\rb", "\u{FEFF} \u{AD}"])
        {
            assert_eq!(
                pattern.is_match(sample),
                sanitize_body(sample).is_ok(),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn plain_text_in_any_script_is_kept() {
        assert_eq!(sanitize_body("  héllo 👋 世界  ").unwrap(), "héllo 👋 世界");
        assert_eq!(sanitize_body("R&D: 5 & 6").unwrap(), "R&D: 5 & 6");
        assert_eq!(
            sanitize_body("line one\r\nline\ttwo").unwrap(),
            "line one\nline\ttwo"
        );
    }

    #[test]
    fn a_body_is_plain_text_kept_as_typed() {
        for typed in [
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "if a<b and c>d then",
            "hello <!-- secret",
            "<b>bold</b> <script>alert(1)</script> <3",
            "fn main() { let x = a < b && c > d; }",
        ] {
            assert_eq!(sanitize_body(typed).unwrap(), typed);
        }
        assert_eq!(
            sanitize_body("one\rtwo\r\nthree").unwrap(),
            "one\ntwo\nthree"
        );
    }

    #[test]
    fn empty_invisible_and_direction_tricks_are_refused() {
        for empty in ["   \n\t ", "\u{200B}", " \u{FEFF}\u{200B}\u{2060} "] {
            assert_eq!(
                sanitize_body(empty).unwrap_err().code(),
                "empty_body",
                "{empty:?}"
            );
        }
        assert_eq!(
            sanitize_body("a\u{200B}b").unwrap(),
            "a\u{200B}b",
            "inside text it may stay"
        );
        for tricky in ["invoice\u{202E}gpj.exe", "\u{2066}x\u{2069}", "\u{202A}"] {
            assert_eq!(
                sanitize_body(tricky).unwrap_err().code(),
                "bidi_control",
                "{tricky:?}"
            );
        }
    }

    #[test]
    fn length_is_counted_in_characters_as_sent() {
        let max = "é".repeat(MAX_BODY_CHARS - 4);
        assert_eq!(sanitize_body(&format!("  {max}  ")).unwrap(), max);
        let padded = format!(" {} ", "é".repeat(MAX_BODY_CHARS - 1));
        assert_eq!(sanitize_body(&padded).unwrap_err().code(), "body_too_long");
        let over = "😀".repeat(MAX_BODY_CHARS + 1);
        assert_eq!(sanitize_body(&over).unwrap_err().code(), "body_too_long");
    }

    #[test]
    fn control_characters_are_refused() {
        for bad in ["nul\u{0}", "bell\u{7}", "esc\u{1b}[31m", "c1\u{85}"] {
            assert_eq!(
                sanitize_body(bad).unwrap_err().code(),
                "control_characters",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn links_are_found_in_their_common_shapes() {
        let body =
            "see https://example.com/jobs?id=1, www.site.org and bit.ly/x3 (or example.co.uk).";
        assert_eq!(
            find_links(body),
            vec![
                "https://example.com/jobs?id=1",
                "www.site.org",
                "bit.ly/x3",
                "example.co.uk"
            ]
        );
        assert!(find_links("e.g. 5.6 version 1.2.3 ok... end.").is_empty());
        assert_eq!(find_links(&"a.io ".repeat(50)).len(), MAX_LINKS);
    }

    #[test]
    fn text_fields_apply_their_own_options() {
        let note = TextField {
            code: "invalid_note",
            message: "bad note",
            max_chars: 5,
            required: false,
            multiline: true,
            padding: Padding::Trim,
        };
        assert_eq!(note.check(" a\nb\t").unwrap(), "a\nb");
        assert!(
            note.check("  a\nb\t ").is_err(),
            "the length is the value's as sent"
        );
        assert_eq!(note.check("").unwrap(), "");
        assert_eq!(note.check("123456").unwrap_err().code(), "invalid_note");
        assert!(note.check("bell\u{7}").is_err());
        assert!(
            note.check("a\u{202E}b").is_err(),
            "no direction tricks in any field"
        );
        let single = TextField {
            multiline: false,
            ..note
        };
        assert!(single.check("a\nb").is_err());
        let exact = TextField {
            padding: Padding::Refuse,
            required: true,
            ..single
        };
        assert!(exact.check(" a").is_err());
        assert!(exact.check("").is_err());
        assert_eq!(exact.check("abc").unwrap(), "abc");
    }

    #[test]
    fn client_message_ids_are_bounded() {
        assert!(validate_client_message_id("c-1").is_ok());
        assert!(validate_client_message_id("").is_err());
        assert!(validate_client_message_id(&"x".repeat(129)).is_err());
        assert!(validate_client_message_id("tab\there").is_err());
    }
}

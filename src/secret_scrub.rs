//! Keeping secrets out of text that leaves the service (logs, error
//! details), and refusing tokens that could never be sent as a header.

use crate::error::ApiError;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Known secrets shorter than this many characters are not replaced: they
/// would match ordinary words.
pub const MIN_SECRET_CHARS: usize = 9;
/// Characters after `r8_` that make a Replicate token.
pub const MIN_REPLICATE_TOKEN_TAIL: usize = 20;
/// The longest token accepted, in characters.
pub const MAX_TOKEN_CHARS: usize = 256;
/// The error of a malformed token.
pub const MALFORMED_TOKEN: &str = "Malformed token";

const REPLICATE_PREFIX: &[u8] = b"r8_";
const BEARER: &[u8] = b"bearer";

/// `text` with every occurrence of each of `secrets` (trimmed, at least
/// [`MIN_SECRET_CHARS`] characters, longest first), every Replicate-shaped
/// token (`r8_` and 20 or more ASCII letters and digits) and every value
/// after `Bearer ` (any case) replaced with [`REDACTED`]. A bearer value
/// runs up to whitespace, a quote, a backslash, `,`, `;`, `<` or `>`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut secrets: Vec<&str> =
        secrets.iter().map(|s| s.trim()).filter(|s| s.chars().count() >= MIN_SECRET_CHARS).collect();
    let mut text = text.to_owned();
    // Longest first (a few secrets at most: picked in turn, no sort).
    while let Some(longest) = (0..secrets.len()).max_by_key(|&i| secrets[i].len()) {
        let secret = secrets.swap_remove(longest);
        if text.contains(secret) {
            text = text.replace(secret, REDACTED);
        }
    }
    scrub_patterns(&text)
}

fn scrub_patterns(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut at) = (0, 0);
    // Only an `r` (of `r8_`) or a `b` or `B` (of `bearer`) can start a match:
    // the bytes between are skipped in one tight loop, not tried one by one
    // (a Replicate answer of about a kilobyte is scrubbed on every call).
    while let Some(skip) = bytes[at..].iter().position(|&b| b == b'r' || b | 0x20 == b'b') {
        at += skip;
        // Every match starts and ends next to an ASCII byte, so on char boundaries.
        let found = replicate_token(bytes, at).map(|end| (at, end)).or_else(|| bearer_value(bytes, at));
        match found {
            Some((start, end)) => {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = end;
                at = end;
            }
            None => at += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The end of a Replicate token starting at `at`.
fn replicate_token(bytes: &[u8], at: usize) -> Option<usize> {
    let tail = bytes.get(at..)?.strip_prefix(REPLICATE_PREFIX)?;
    let len = tail.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
    (len >= MIN_REPLICATE_TOKEN_TAIL).then_some(at + REPLICATE_PREFIX.len() + len)
}

/// Where the value of a `Bearer <value>` starting at `at` lies. `bearer`
/// must start a word and be followed by spaces or tabs.
fn bearer_value(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let word = bytes.get(at..at + BEARER.len())?;
    let starts_word = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
    if !starts_word || !word.eq_ignore_ascii_case(BEARER) {
        return None;
    }
    let after = at + BEARER.len();
    let spaces = bytes[after..].iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    let start = after + spaces;
    let len = bytes[start..].iter().take_while(|&&b| !ends_bearer_value(b)).count();
    (spaces > 0 && len > 0).then_some((start, start + len))
}

fn ends_bearer_value(b: u8) -> bool {
    b.is_ascii_whitespace() || b.is_ascii_control() || b"\"'`\\,;<>".contains(&b)
}

/// Why a token cannot be a credential. Messages say what is wrong and where,
/// never what the token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenShapeError {
    Empty,
    /// Longer than [`MAX_TOKEN_CHARS`]; carries the length in characters.
    TooLong(usize),
    /// A space or tab; carries its 1-based character position.
    Whitespace(usize),
    /// An ASCII control character (line breaks, NUL, DEL); carries its position.
    Control(usize),
    /// A character outside ASCII, such as a curly quote or an ellipsis left
    /// by copy and paste; carries its position.
    NonAscii(usize),
}

impl std::fmt::Display for TokenShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenShapeError::Empty => f.write_str("the token is empty"),
            TokenShapeError::TooLong(len) => {
                write!(f, "the token is {len} characters long; at most {MAX_TOKEN_CHARS} are allowed")
            }
            TokenShapeError::Whitespace(at) => write!(f, "the token contains whitespace at character {at}"),
            TokenShapeError::Control(at) => {
                write!(f, "the token contains a control character (such as a line break) at character {at}")
            }
            TokenShapeError::NonAscii(at) => write!(
                f,
                "the token contains a non-ASCII character (such as a curly quote or an ellipsis) at character {at}"
            ),
        }
    }
}

impl std::error::Error for TokenShapeError {}

impl From<TokenShapeError> for ApiError {
    fn from(e: TokenShapeError) -> Self {
        ApiError::bad_request(MALFORMED_TOKEN).with_details(e.to_string())
    }
}

/// Checks that `token` can be a credential: 1 to [`MAX_TOKEN_CHARS`]
/// characters, each printable ASCII (`!` to `~`). The first bad character
/// is reported before the length.
pub fn check_token_shape(token: &str) -> Result<(), TokenShapeError> {
    if token.is_empty() {
        return Err(TokenShapeError::Empty);
    }
    for (i, c) in token.chars().enumerate() {
        let at = i + 1;
        match c {
            '!'..='~' => {}
            ' ' | '\t' => return Err(TokenShapeError::Whitespace(at)),
            c if c.is_ascii_control() => return Err(TokenShapeError::Control(at)),
            _ => return Err(TokenShapeError::NonAscii(at)),
        }
    }
    match token.len() {
        len if len > MAX_TOKEN_CHARS => Err(TokenShapeError::TooLong(len)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "r8_Abcdefghijklmnopqrstuvwxyz0123456789";

    #[test]
    fn known_secrets_are_replaced_everywhere() {
        let auth = "service-auth-secret";
        let text = format!("auth={auth}; again {auth}, and {auth}!");
        assert_eq!(scrub(&text, &[auth]), "auth=[redacted]; again [redacted], and [redacted]!");
        // Surrounding whitespace of a configured secret is ignored.
        assert_eq!(scrub(&text, &[" service-auth-secret\n"]), scrub(&text, &[auth]));
    }

    #[test]
    fn short_and_blank_secrets_are_left_alone() {
        assert_eq!(scrub("the cat sat", &["cat", "12345678", "", "   "]), "the cat sat");
        assert_eq!(scrub("pass 123456789", &["123456789"]), "pass [redacted]");
    }

    #[test]
    fn the_longest_secret_wins() {
        let short = "abcdefghij";
        let long = "abcdefghij-and-more";
        assert_eq!(scrub("x abcdefghij-and-more y", &[short, long]), "x [redacted] y");
        assert_eq!(scrub("x abcdefghij-and-more y", &[long, short]), "x [redacted] y");
    }

    #[test]
    fn replicate_tokens_are_found_without_being_known() {
        assert_eq!(scrub(&format!("token {TOKEN} failed"), &[]), "token [redacted] failed");
        assert_eq!(scrub(&format!("?replicate_token={TOKEN}&prompt=x"), &[]), "?replicate_token=[redacted]&prompt=x");
        assert_eq!(scrub(&format!(r#"{{"replicate_token":"{TOKEN}"}}"#), &[]), r#"{"replicate_token":"[redacted]"}"#);
        assert_eq!(scrub(&format!("{TOKEN},{TOKEN}"), &[]), "[redacted],[redacted]");
        // Too short to be a token: r8_ and 19 characters.
        let short = "r8_abcdefghijklmnopqrs";
        assert_eq!(scrub(short, &[]), short);
        assert_eq!(scrub("r8_abcdefghijklmnopqrst", &[]), "[redacted]");
        assert_eq!(scrub("R8_ABCDEFGHIJKLMNOPQRSTUVWXYZ", &[]), "R8_ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    }

    /// The scan tried at every byte, as the skipping one must agree with.
    fn scrub_patterns_at_every_byte(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::new();
        let (mut copied, mut at) = (0, 0);
        while at < bytes.len() {
            match replicate_token(bytes, at).map(|end| (at, end)).or_else(|| bearer_value(bytes, at)) {
                Some((start, end)) => {
                    out.push_str(&text[copied..start]);
                    out.push_str(REDACTED);
                    (copied, at) = (end, end);
                }
                None => at += 1,
            }
        }
        out.push_str(&text[copied..]);
        out
    }

    #[test]
    fn skipping_to_candidates_finds_what_trying_every_byte_finds() {
        let pieces: Vec<&str> =
            "r|8|_|r8_|abcdefghij|r8_abcdefghijklmnopqrs|t|b|B|earer|Bearer |bEaReR\t| |\"|é|x1".split('|').collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        let mut redacted = 0;
        for _ in 0..5_000 {
            let mut text = String::new();
            for _ in 0..next(24) {
                text.push_str(pieces[next(pieces.len())]);
            }
            let expected = scrub_patterns_at_every_byte(&text);
            redacted += usize::from(expected.contains(REDACTED));
            assert_eq!(scrub_patterns(&text), expected, "{text:?}");
        }
        // The texts exercise both kinds of match, not only their absence.
        assert!(redacted > 100, "{redacted}");
    }

    #[test]
    fn bearer_values_are_replaced() {
        assert_eq!(scrub("Authorization: Bearer abc.def-ghi", &[]), "Authorization: Bearer [redacted]");
        assert_eq!(scrub("authorization: bearer abc", &[]), "authorization: bearer [redacted]");
        assert_eq!(scrub("BEARER\t\tabc rest", &[]), "BEARER\t\t[redacted] rest");
        assert_eq!(scrub(r#"{"Authorization":"Bearer xyz"}"#, &[]), r#"{"Authorization":"Bearer [redacted]"}"#);
        assert_eq!(scrub(r#"{\"a\":\"Bearer xyz\"}"#, &[]), r#"{\"a\":\"Bearer [redacted]\"}"#);
        assert_eq!(
            scrub("Bearer a, Bearer b; Bearer c", &[]),
            "Bearer [redacted], Bearer [redacted]; Bearer [redacted]"
        );
        assert_eq!(scrub("Bearer xyz\r\nNext: 1", &[]), "Bearer [redacted]\r\nNext: 1");
        assert_eq!(scrub("Bearer clé€", &[]), "Bearer [redacted]");
        // Not a bearer value: no value, no space, inside a word.
        for text in ["Bearer", "Bearer ", "Bearer\n", "Bearerxyz", "cardbearer xyz", "Bearer \"x\""] {
            assert_eq!(scrub(text, &[]), text);
        }
    }

    #[test]
    fn scrubbing_is_idempotent_and_keeps_other_text() {
        let text = format!("“quoted” … {TOKEN} Bearer s3cr3t-value ✨ end");
        let once = scrub(&text, &["s3cr3t-value"]);
        assert_eq!(once, "“quoted” … [redacted] Bearer [redacted] ✨ end");
        assert_eq!(scrub(&once, &["s3cr3t-value"]), once);
        assert_eq!(scrub("", &[TOKEN]), "");
        assert_eq!(scrub("nothing here", &[TOKEN]), "nothing here");
    }

    #[test]
    fn well_shaped_tokens_pass() {
        assert_eq!(check_token_shape(TOKEN), Ok(()));
        assert_eq!(check_token_shape("!"), Ok(()));
        assert_eq!(check_token_shape("~"), Ok(()));
        assert_eq!(check_token_shape(&"a".repeat(MAX_TOKEN_CHARS)), Ok(()));
        let printable: String = (0x21u8..=0x7e).map(char::from).collect();
        assert_eq!(check_token_shape(&printable), Ok(()));
    }

    #[test]
    fn malformed_tokens_are_refused_with_where() {
        let cases = [
            ("", TokenShapeError::Empty),
            ("“r8_abc”", TokenShapeError::NonAscii(1)),
            ("r8_abc”", TokenShapeError::NonAscii(7)),
            ("r8_abc…", TokenShapeError::NonAscii(7)),
            ("r8_\u{a0}abc", TokenShapeError::NonAscii(4)),
            ("r8_abc\r\n", TokenShapeError::Control(7)),
            ("r8_abc\n", TokenShapeError::Control(7)),
            ("r8_\0abc", TokenShapeError::Control(4)),
            ("r8_abc\u{7f}", TokenShapeError::Control(7)),
            (" r8_abc", TokenShapeError::Whitespace(1)),
            ("r8_ abc", TokenShapeError::Whitespace(4)),
            ("r8_abc\t", TokenShapeError::Whitespace(7)),
        ];
        for (token, expected) in cases {
            assert_eq!(check_token_shape(token), Err(expected), "{token:?}");
        }
        let long = "a".repeat(MAX_TOKEN_CHARS + 1);
        assert_eq!(check_token_shape(&long), Err(TokenShapeError::TooLong(257)));
        // A bad character is named before the length.
        assert_eq!(check_token_shape(&format!("{long}”")), Err(TokenShapeError::NonAscii(258)));
    }

    #[test]
    fn shape_errors_never_contain_the_token() {
        for token in ["“r8_secretvalue”", "r8_secretvalue\r\n", "r8_secret value", &"r8_secretvalue".repeat(30), ""]
        {
            let e = check_token_shape(token).unwrap_err();
            let api = ApiError::from(e);
            assert_eq!(api.status, 400);
            assert_eq!(api.error, MALFORMED_TOKEN);
            for text in [e.to_string(), format!("{e:?}"), api.body()] {
                assert!(!text.contains("secret"), "{text}");
                assert!(!text.contains("r8_"), "{text}");
            }
        }
    }
}

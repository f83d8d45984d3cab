//! Arbitrary bytes into `Token::parse`: as valid UTF-8 only, and as the
//! lossy UTF-8 string. It must never panic, and whatever it accepts must be
//! exactly the input, with a tag and an id that can be computed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit::store::Token;
use sessionkit::SessionId;

/// A token's length: an 8-character tag, a dot, a 43-character secret.
const TOKEN_LEN: usize = 52;

fn check(s: &str) {
    let Some(token) = Token::parse(s) else {
        return;
    };
    assert_eq!(token.as_str(), s);
    assert_eq!(s.len(), TOKEN_LEN);
    let id = token.id();
    assert_eq!(id.tag(), token.tag().as_str());
    assert_eq!(id.as_str().parse::<SessionId>().as_ref(), Ok(&id));
    assert!(!id.as_str().contains(&s[TOKEN_LEN - 43..]));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        check(s);
        let _ = s.parse::<SessionId>();
    }
    check(&String::from_utf8_lossy(data));
});

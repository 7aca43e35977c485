//! Username, email and password validation (Register, UpdateProfile, ChangePassword):
//! the input is the three fields, separated by newlines.
#![no_main]

use auth_service::domain::{Email, Password, Username, parse_profile_change, parse_registration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.splitn(3, '\n');
    let username = fields.next().unwrap_or_default();
    let email = fields.next().unwrap_or_default();
    let password = fields.next().unwrap_or_default();

    let user = Username::parse(username);
    if let Ok(valid) = &user {
        assert_eq!(valid.as_str(), username);
        assert!((3..=32).contains(&username.chars().count()), "{username:?}");
        assert!(
            username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            "{username:?}"
        );
    }
    let mail = Email::parse(email);
    if let Ok(valid) = &mail {
        assert_eq!(valid.as_str(), email);
        assert!((1..=254).contains(&email.chars().count()), "{email:?}");
        assert!(email.contains('@'), "{email:?}");
        // Stored in PostgreSQL text, which cannot hold NUL.
        assert!(!email.contains('\0'), "{email:?}");
    }
    let pass = Password::parse(password, Some(username));
    if pass.is_ok() {
        assert!((8..=1024).contains(&password.chars().count()));
    }
    let registration = parse_registration(username, email, password);
    assert_eq!(
        registration.is_ok(),
        user.is_ok() && mail.is_ok() && pass.is_ok(),
        "a registration is valid exactly when each field is"
    );
    if let Err(violations) = &registration {
        assert!(!violations.is_empty());
    }
    let change = parse_profile_change(Some(username), Some(email));
    assert_eq!(change.is_ok(), user.is_ok() && mail.is_ok());
    let _ = parse_profile_change(None, Some(email));
});

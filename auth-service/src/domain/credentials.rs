//! Username, email and password rules (docs/ARCHITECTURE.md, "The pair and its layers"). Lengths count Unicode code points.

use pair_common::status::FieldViolation;

use super::common_passwords;

const USERNAME_MIN: usize = 3;
const USERNAME_MAX: usize = 32;
const EMAIL_MAX: usize = 254;
const PASSWORD_MIN: usize = 8;
const PASSWORD_MAX: usize = 1024;

/// A username that satisfies the rules; compared case-insensitively by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let length = raw.chars().count();
        if !(USERNAME_MIN..=USERNAME_MAX).contains(&length) {
            return Err(format!(
                "must be {USERNAME_MIN} to {USERNAME_MAX} characters long (got {length})"
            ));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err("may contain only ASCII letters, digits, '.', '_' and '-'".into());
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err("must start with a letter or a digit".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A syntactically valid email address of at most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let length = raw.chars().count();
        if length == 0 {
            return Err("must not be empty".into());
        }
        if length > EMAIL_MAX {
            return Err(format!(
                "must be at most {EMAIL_MAX} characters long (got {length})"
            ));
        }
        // Display-name forms ("Ann <ann@example.com>") are addresses to the crate but not
        // to us: we store exactly what we would send mail to.
        if raw.contains(['<', '>']) || raw.trim() != raw {
            return Err("is not a valid email address".into());
        }
        match email_address::EmailAddress::parse_with_options(
            raw,
            email_address::Options::default().without_display_text(),
        ) {
            Ok(_) => Ok(Self(raw.to_owned())),
            Err(_) => Err("is not a valid email address".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that satisfies NIST SP 800-63B: length only, no composition rules, not a
/// commonly used password, not containing the username. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// Checks `raw` as the password of a user called `username` (if that is known).
    pub fn parse(raw: &str, username: Option<&str>) -> Result<Self, String> {
        let length = raw.chars().count();
        if length < PASSWORD_MIN {
            return Err(format!("must be at least {PASSWORD_MIN} characters long"));
        }
        if length > PASSWORD_MAX {
            return Err(format!("must be at most {PASSWORD_MAX} characters long"));
        }
        if common_passwords::is_common(raw) {
            return Err("is a commonly used password: choose another".into());
        }
        if let Some(username) = username
            && !username.is_empty()
            && raw.to_lowercase().contains(&username.to_lowercase())
        {
            return Err("must not contain the username".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What Register needs, every field checked.
#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub password: Password,
}

/// Checks a registration, reporting every bad field at once.
pub fn parse_registration(
    username: &str,
    email: &str,
    password: &str,
) -> Result<NewUser, Vec<FieldViolation>> {
    let username_result = Username::parse(username);
    let email_result = Email::parse(email);
    let password_result = Password::parse(password, Some(username));
    match (username_result, email_result, password_result) {
        (Ok(username), Ok(email), Ok(password)) => Ok(NewUser {
            username,
            email,
            password,
        }),
        (username, email, password) => {
            let mut violations = Vec::new();
            if let Err(why) = username {
                violations.push(FieldViolation::new("username", why));
            }
            if let Err(why) = email {
                violations.push(FieldViolation::new("email", why));
            }
            if let Err(why) = password {
                violations.push(FieldViolation::new("password", why));
            }
            Err(violations)
        }
    }
}

/// Checks an UpdateProfile request: at least one field, each one valid.
pub fn parse_profile_change(
    username: Option<&str>,
    email: Option<&str>,
) -> Result<(Option<Username>, Option<Email>), Vec<FieldViolation>> {
    if username.is_none() && email.is_none() {
        return Err(vec![
            FieldViolation::new("username", "set username, email or both"),
            FieldViolation::new("email", "set username, email or both"),
        ]);
    }
    let mut violations = Vec::new();
    let username = username
        .map(Username::parse)
        .transpose()
        .unwrap_or_else(|why| {
            violations.push(FieldViolation::new("username", why));
            None
        });
    let email = email.map(Email::parse).transpose().unwrap_or_else(|why| {
        violations.push(FieldViolation::new("email", why));
        None
    });
    if violations.is_empty() {
        Ok((username, email))
    } else {
        Err(violations)
    }
}

/// Longest username Login looks at (any stored name is far shorter): a longer one is
/// refused before any lookup or hash.
const LOGIN_USERNAME_MAX: usize = 254;

/// Checks a Login request: both fields present, neither longer than any stored value
/// could be, so an oversized guess costs no hash. The password is not checked against
/// the rules: they may have changed since it was set.
pub fn check_login(username: &str, password: &str) -> Result<(), Vec<FieldViolation>> {
    let mut violations = Vec::new();
    check_present(&mut violations, "username", username, LOGIN_USERNAME_MAX);
    check_present(&mut violations, "password", password, PASSWORD_MAX);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// Checks a ChangePassword request: the current password present and of a length a
/// password can have, the new one valid for `username`. Every bad field at once.
pub fn parse_password_change(
    current: &str,
    new: &str,
    username: &str,
) -> Result<Password, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    check_present(&mut violations, "current_password", current, PASSWORD_MAX);
    let new = Password::parse(new, Some(username))
        .map_err(|why| violations.push(FieldViolation::new("new_password", why)))
        .ok();
    match new {
        Some(new) if violations.is_empty() => Ok(new),
        _ => Err(violations),
    }
}

fn check_present(
    violations: &mut Vec<FieldViolation>,
    field: &'static str,
    value: &str,
    max: usize,
) {
    if value.is_empty() {
        violations.push(FieldViolation::new(field, "must not be empty"));
    } else if value.chars().count() > max {
        violations.push(FieldViolation::new(
            field,
            format!("must be at most {max} characters long"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_with_an_empty_or_oversized_field_names_each_bad_field() {
        assert_eq!(check_login("ann", "x"), Ok(()));
        let fields = |result: Result<(), Vec<FieldViolation>>| -> Vec<&'static str> {
            result.unwrap_err().iter().map(|v| v.field).collect()
        };
        assert_eq!(fields(check_login("", "")), ["username", "password"]);
        let long_name = "a".repeat(LOGIN_USERNAME_MAX + 1);
        let long_password = "p".repeat(PASSWORD_MAX + 1);
        assert_eq!(fields(check_login(&long_name, "x")), ["username"]);
        assert_eq!(fields(check_login("ann", &long_password)), ["password"]);
    }

    #[test]
    fn a_password_change_reports_the_current_and_the_new_password_together() {
        assert!(parse_password_change("old password", "a new long phrase", "ann").is_ok());
        let violations = parse_password_change("", "short", "ann").unwrap_err();
        let fields: Vec<_> = violations.iter().map(|v| v.field).collect();
        assert_eq!(fields, ["current_password", "new_password"]);
    }

    #[test]
    fn usernames_of_3_to_32_allowed_characters_are_accepted() {
        for ok in ["abc", "a.b", "Z_9", "1st-user", "x".repeat(32).as_str()] {
            assert!(Username::parse(ok).is_ok(), "{ok} was refused");
        }
    }

    #[test]
    fn usernames_too_short_too_long_or_with_other_characters_are_refused() {
        for bad in [
            "",
            "ab",
            &"x".repeat(33),
            "has space",
            "émile",
            "_lead",
            ".lead",
            "-lead",
            "a/b",
            "bob@",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn username_length_counts_characters_not_bytes() {
        // 3 code points but 6 bytes, and not ASCII: refused for the alphabet, not length.
        let why = Username::parse("ééé").unwrap_err();
        assert!(why.contains("ASCII"), "{why}");
    }

    #[test]
    fn valid_emails_are_accepted() {
        for ok in ["ann@example.com", "a.b+tag@sub.example.org", "x@y.io"] {
            assert!(Email::parse(ok).is_ok(), "{ok} was refused");
        }
    }

    #[test]
    fn malformed_or_overlong_emails_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "plain",
            "@example.com",
            "ann@",
            "Ann <ann@example.com>",
            " ann@example.com",
            long.as_str(),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn passwords_follow_length_rules_in_characters() {
        assert!(Password::parse("Tr0ub4dor&3x", None).is_ok());
        assert!(Password::parse("short1!", None).is_err());
        // 8 code points, 16 bytes.
        assert!(Password::parse("жжжжжжжж", None).is_ok());
        assert!(Password::parse(&"k".repeat(1024), None).is_ok());
        assert!(Password::parse(&"k".repeat(1025), None).is_err());
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        assert!(Password::parse("password", None).is_err());
        assert!(Password::parse("PASSWORD1", None).is_err());
        assert!(Password::parse("12345678", None).is_err());
    }

    #[test]
    fn a_password_containing_the_username_is_refused() {
        assert!(Password::parse("xxAlice2024xx", Some("alice")).is_err());
        assert!(Password::parse("correct horse battery", Some("alice")).is_ok());
    }

    #[test]
    fn a_password_is_never_printed_by_debug() {
        let password = Password::parse("correct horse battery", None).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn registration_reports_every_bad_field_at_once() {
        let violations = parse_registration("a", "nope", "short").unwrap_err();
        let fields: Vec<_> = violations.iter().map(|v| v.field).collect();
        assert_eq!(fields, ["username", "email", "password"]);
    }

    #[test]
    fn a_profile_change_must_set_a_field() {
        assert!(parse_profile_change(None, None).is_err());
        assert!(parse_profile_change(Some("newname"), None).is_ok());
        let violations = parse_profile_change(Some("x"), Some("bad")).unwrap_err();
        assert_eq!(violations.len(), 2);
    }
}

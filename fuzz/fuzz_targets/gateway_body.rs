//! The HTTP gateway's request bodies (JSON, and the login form): whatever the bytes,
//! the answer is the body or a 4xx, never a 500.
#![no_main]

use api_gateway::{
    error::ApiError,
    extract::{BodyFields, parse_body, parse_form},
    model::{LoginBody, NewPostBody, PasswordBody, PostPatchBody, ProfileBody, SignupBody},
};
use axum::response::IntoResponse as _;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn check<T: DeserializeOwned + BodyFields>(bytes: &[u8], form: bool) {
    let parsed: Result<T, ApiError> = if form {
        parse_form(bytes)
    } else {
        parse_body(bytes)
    };
    if let Err(error) = parsed {
        let status = error.into_response().status();
        assert!(status.is_client_error(), "{status}");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<SignupBody>(data, false);
    check::<LoginBody>(data, false);
    check::<LoginBody>(data, true);
    check::<ProfileBody>(data, false);
    check::<PasswordBody>(data, false);
    check::<NewPostBody>(data, false);
    check::<PostPatchBody>(data, false);
});

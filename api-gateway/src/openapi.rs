//! The OpenAPI 3.1 document, generated from the handlers' annotations; the answers every
//! route may give (401, 413, 415, 422, 5xx) are added here once.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        Content, HeaderBuilder, Ref, RefOr, ResponseBuilder,
        path::Operation,
        schema::{ObjectBuilder, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    error::{ErrorMessage, FieldError, ValidationErrors},
    routes::{auth, meta, posts},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "auth-blog REST API",
        description = "The homework's REST API over the auth-service + blog-service pair. \
            Errors are JSON `{\"detail\": …}`; validation errors (422) list one entry per \
            bad field, as FastAPI writes them."
    ),
    paths(
        auth::signup, auth::login, auth::refresh, auth::me, auth::update_me,
        auth::change_password, auth::logout, auth::logout_all, auth::sessions,
        auth::revoke_session, posts::list, posts::create, posts::get, posts::update,
        posts::delete, meta::openapi, meta::healthz, meta::jwks,
    ),
    components(schemas(ErrorMessage, ValidationErrors, FieldError)),
    modifiers(&CommonAnswers),
    tags(
        (name = "users", description = "Accounts, logins and sessions (auth-service)"),
        (name = "posts", description = "Blog posts (blog-service)"),
        (name = "meta", description = "Health, this document, the token keys"),
    )
)]
pub struct ApiDoc;

/// The document as JSON text.
pub fn document() -> anyhow::Result<String> {
    Ok(ApiDoc::openapi().to_json()?)
}

/// Adds the bearer scheme and the answers that do not depend on the route.
struct CommonAnswers;

fn error_answer(description: &str, schema: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name(schema))),
    )
}

fn add(operation: &mut Operation, status: u16, answer: ResponseBuilder) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(answer.build()));
}

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for (path, item) in &mut openapi.paths.paths {
            // Every route but the document itself calls a service.
            let calls_a_service = path != "/api/v1/openapi.json" && path != "/healthz";
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.security.is_some() {
                    add(
                        operation,
                        401,
                        error_answer(
                            "No token, or a token that is malformed, expired or revoked",
                            "ErrorMessage",
                        )
                        .header(
                            "WWW-Authenticate",
                            HeaderBuilder::new()
                                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                                .description(Some("Always `Bearer`"))
                                .build(),
                        ),
                    );
                }
                if operation.request_body.is_some() {
                    add(
                        operation,
                        413,
                        error_answer("The body is too large", "ErrorMessage"),
                    );
                    add(
                        operation,
                        415,
                        error_answer("The body is not declared as JSON", "ErrorMessage"),
                    );
                }
                let has_input = operation.request_body.is_some()
                    || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                if has_input {
                    add(
                        operation,
                        422,
                        error_answer(
                            "A field is missing, unknown or invalid: one entry per bad field",
                            "ValidationErrors",
                        ),
                    );
                }
                if calls_a_service {
                    add(
                        operation,
                        500,
                        error_answer("An unexpected error (the cause is logged)", "ErrorMessage"),
                    );
                    add(
                        operation,
                        503,
                        error_answer("A service or its store is unavailable", "ErrorMessage"),
                    );
                    add(
                        operation,
                        504,
                        error_answer("A service did not answer in time", "ErrorMessage"),
                    );
                }
                if path == "/.well-known/jwks.json" {
                    add(
                        operation,
                        501,
                        error_answer("auth-service does not list keys", "ErrorMessage"),
                    );
                }
            }
        }
    }
}

"""Errors with details, health and reflection, as generic gRPC tooling sees them."""

import grpc
import pytest
from auth.v1 import auth_pb2, auth_pb2_grpc
from blog.v1 import blog_pb2, blog_pb2_grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

from helpers import TIMEOUT, bearer, expect_code, unique_username

AUTH_SERVICES = {
    "auth.v1.AuthService",
    "auth.v1.IntrospectionService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
BLOG_SERVICES = {
    "blog.v1.BlogService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    """The field names of the google.rpc.BadRequest detail of an error."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no grpc-status-details-bin"
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            for violation in bad_request.field_violations:
                assert violation.description, f"{violation.field} has no description"
                fields.append(violation.field)
    return fields


def test_register_reports_every_bad_field_at_once(auth_channel):
    auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
    error = expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        auth.Register,
        auth_pb2.RegisterRequest(username="x", email="not an email", password="short"),
    )
    assert sorted(bad_request_fields(error)) == ["email", "password", "username"]


def test_create_post_reports_bad_fields(auth_channel, blog_channel):
    auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
    blog = blog_pb2_grpc.BlogServiceStub(blog_channel)
    username = unique_username()
    password = "correct horse battery staple"
    auth.Register(
        auth_pb2.RegisterRequest(
            username=username, email=f"{username}@example.com", password=password
        ),
        timeout=TIMEOUT,
    )
    tokens = auth.Login(
        auth_pb2.LoginRequest(username=username, password=password), timeout=TIMEOUT
    ).tokens
    error = expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        blog.CreatePost,
        blog_pb2.CreatePostRequest(title="   ", content=""),
        metadata=bearer(tokens.access_token),
    )
    assert sorted(bad_request_fields(error)) == ["content", "title"]
    auth.Logout(
        auth_pb2.LogoutRequest(), metadata=bearer(tokens.access_token), timeout=TIMEOUT
    )


@pytest.mark.parametrize(
    ("server", "service"),
    [
        ("auth", ""),
        ("auth", "auth.v1.AuthService"),
        ("auth", "auth.v1.IntrospectionService"),
        ("blog", ""),
        ("blog", "blog.v1.BlogService"),
    ],
)
def test_health_is_serving(request, server, service):
    channel = request.getfixturevalue(f"{server}_channel")
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_health_of_an_unknown_service_is_not_found(auth_channel):
    health = health_pb2_grpc.HealthStub(auth_channel)
    expect_code(
        grpc.StatusCode.NOT_FOUND,
        health.Check,
        health_pb2.HealthCheckRequest(service="no.such.Service"),
    )


@pytest.mark.parametrize(
    ("server", "expected"), [("auth", AUTH_SERVICES), ("blog", BLOG_SERVICES)]
)
def test_reflection_v1alpha_lists_every_service(request, server, expected):
    channel = request.getfixturevalue(f"{server}_channel")
    database = ProtoReflectionDescriptorDatabase(channel)
    assert set(database.get_services()) == expected
    # Each of our services resolves to its file, with its methods.
    for name in expected:
        if name.startswith(("auth.", "blog.")):
            file = database.FindFileContainingSymbol(name)
            assert any(f"{file.package}.{s.name}" == name for s in file.service)


@pytest.mark.parametrize(
    ("server", "expected"), [("auth", AUTH_SERVICES), ("blog", BLOG_SERVICES)]
)
def test_reflection_v1_lists_every_service(request, server, expected):
    # grpcio-reflection ships only v1alpha stubs; v1 has the same messages on the wire.
    channel = request.getfixturevalue(f"{server}_channel")
    info = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    responses = list(
        info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT)
    )
    assert len(responses) == 1
    names = {s.name for s in responses[0].list_services_response.service}
    assert names == expected

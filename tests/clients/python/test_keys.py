"""ListKeys: the tokens auth-service signs check out against the JWK Set it publishes, with
an independent JOSE implementation (joserfc), as a service verifying tokens offline does.

EXPECTED_TOKEN_ALG (set by with_pair.sh, whose pair signs with an Ed25519 key) says which
algorithm the pair under test must sign with; unset, either is accepted: a pair with
secrets only must publish an empty set.
"""

import base64
import json
import os

import pytest
from auth.v1 import auth_pb2, auth_pb2_grpc
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from helpers import PASSWORD, TIMEOUT, unique_username


def b64url_json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.fixture()
def signed_in(auth_channel):
    """A new user's login answer."""
    auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
    username = unique_username("jwks")
    auth.Register(
        auth_pb2.RegisterRequest(
            username=username, email=f"{username}@example.com", password=PASSWORD
        ),
        timeout=TIMEOUT,
    )
    return auth.Login(
        auth_pb2.LoginRequest(username=username, password=PASSWORD), timeout=TIMEOUT
    )


@pytest.fixture()
def jwks(auth_channel) -> dict:
    introspection = auth_pb2_grpc.IntrospectionServiceStub(auth_channel)
    answer = introspection.ListKeys(auth_pb2.ListKeysRequest(), timeout=TIMEOUT)
    return json.loads(answer.jwks)


# joserfc warns that RFC 9864 prefers the name "Ed25519" to "EdDSA"; EdDSA is what the
# pair (and RFC 8037) use.
@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
def test_tokens_verify_with_the_published_jwk_set(signed_in, jwks):
    tokens = signed_in.tokens
    header = b64url_json(tokens.access_token.split(".")[0])
    expected = os.environ.get("EXPECTED_TOKEN_ALG")
    if expected:
        assert header["alg"] == expected, header
    assert header.get("kid"), f"every token names its key: {header}"
    if header["alg"] == "HS256":
        assert jwks == {"keys": []}, "shared secrets are never published"
        return

    assert header["alg"] == "EdDSA"
    assert jwks["keys"], "the signing key is published"
    for key in jwks["keys"]:
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
        assert "d" not in key, "never the private half"
    key_set = KeySet.import_key_set(jwks)
    for key in key_set.keys:
        assert key.kid == key.thumbprint(), "kid is the RFC 7638 thumbprint"

    access = jwt.decode(tokens.access_token, key_set, algorithms=["EdDSA"])
    assert access.header["kid"] == header["kid"]
    assert access.header["typ"] == "at+jwt"
    assert access.claims["sub"] == signed_in.user.id
    assert access.claims["token_use"] == "access"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": "auth-service"},
        exp={"essential": True},
    ).validate(access.claims)
    refresh = jwt.decode(tokens.refresh_token, key_set, algorithms=["EdDSA"])
    assert refresh.claims["jti"] == access.claims["twin"]

    # The check is real: a token whose claims changed after signing fails it.
    head, payload, signature = tokens.access_token.split(".")
    claims = b64url_json(payload)
    claims["sub"] = "00000000-0000-7000-8000-000000000000"
    forged_payload = (
        base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    )
    with pytest.raises(BadSignatureError):
        jwt.decode(
            f"{head}.{forged_payload}.{signature}", key_set, algorithms=["EdDSA"]
        )

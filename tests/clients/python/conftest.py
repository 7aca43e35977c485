"""Generates the Python stubs from proto/ before any test module imports them.

The stubs go to gen/ beside this file (gitignored) and are made fresh on every run with
grpcio-tools, so they always match the .proto files of this checkout.
"""

import importlib.resources
import os
import shutil
import sys
from pathlib import Path

import grpc
import pytest
from grpc_tools import protoc

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parents[2] / "proto"
GEN = HERE / "gen"
PROTOS = ["auth/v1/auth.proto", "blog/v1/blog.proto"]


def _generate() -> None:
    shutil.rmtree(GEN, ignore_errors=True)
    GEN.mkdir(parents=True)
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={GEN}",
        f"--pyi_out={GEN}",
        f"--grpc_python_out={GEN}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"grpc_tools.protoc failed: {' '.join(args)}")


_generate()
sys.path.insert(0, str(GEN))


def _target(variable: str, default: str) -> str:
    """host:port of a server, from AUTH_ADDR / BLOG_ADDR (an http:// prefix is allowed)."""
    value = os.environ.get(variable, default)
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
    return value.rstrip("/")


@pytest.fixture(scope="session")
def auth_channel():
    with grpc.insecure_channel(_target("AUTH_ADDR", "127.0.0.1:50051")) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield channel


@pytest.fixture(scope="session")
def blog_channel():
    with grpc.insecure_channel(_target("BLOG_ADDR", "127.0.0.1:50052")) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield channel

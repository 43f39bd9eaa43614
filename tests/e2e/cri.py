"""A minimal CRI (runtime.v1) client: the calls kubelet makes to run and tear down a pod.

Messages come from cri_api_pb2, generated from the project's own cri_api.proto; each RPC is
`/runtime.v1.RuntimeService/<Name>` with <Name>Request and <Name>Response, so one generic call
covers them all without generated service stubs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cri_api_pb2 as api
import grpc


class RuntimeService:
    def __init__(self, socket: Path) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")

    def call(self, name: str, timeout: float = 120, **fields: Any) -> Any:
        request_type = getattr(api, f"{name}Request")
        response_type = getattr(api, f"{name}Response")
        method = self.channel.unary_unary(
            f"/runtime.v1.RuntimeService/{name}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return method(request_type(**fields), timeout=timeout)

    def wait_ready(self, timeout: float = 30) -> Any:
        """The runtime's Version, once its socket answers."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.call("Version", timeout=2, version="v1")
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self.channel.close()

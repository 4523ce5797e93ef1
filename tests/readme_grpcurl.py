"""Runs the README's grpcurl block as written, with Python's grpc client in grpcurl's place.

grpcurl is not a project dependency, so each line is read the way the shell and grpcurl would
read it (`shlex`, `-plaintext`, `-H`, `-d`, `list`, `describe`, `pkg.Service/Method`,
`NAME=$(... | jq -r .path)`) and carried out through server reflection, as grpcurl does: the
method and its message types come from the server, the request is parsed from the `-d` JSON, the
answer printed as grpcurl prints it (proto field names). Only the forms the README uses are
understood; anything else fails the test, so the block cannot grow a line nobody checked.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

_ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=\$\((.*)\)$")
_JQ_PATH = re.compile(r"^(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_VARIABLE = re.compile(r"\$([A-Z_][A-Z0-9_]*)")


def readme_block(readme: str, heading: str) -> str:
    """The first ```sh block after `heading`."""
    section = readme[readme.index(heading) :]
    start = section.index("```sh\n") + len("```sh\n")
    return section[start : section.index("```", start)]


def commands(block: str) -> list[str]:
    """Lines joined at trailing backslashes, without comments and blank lines."""
    joined = block.replace("\\\n", " ")
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@dataclass
class Step:
    command: str
    output: str


@dataclass
class Session:
    """One shell: variables persist from line to line. `ports` maps the README's default ports
    to where this stack listens."""

    ports: dict[int, int]
    variables: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def run(self, line: str) -> str:
        expanded = _VARIABLE.sub(lambda match: self.variables[match.group(1)], line)
        if assignment := _ASSIGNMENT.match(expanded):
            name, pipeline = assignment.groups()
            grpcurl_part, jq_part = (part.strip() for part in pipeline.split("|"))
            value = jq_raw(self.grpcurl(shlex.split(grpcurl_part)), shlex.split(jq_part))
            self.variables[name] = value
            output = value
        else:
            output = self.grpcurl(shlex.split(expanded))
        self.steps.append(Step(line, output))
        return output

    def grpcurl(self, argv: list[str]) -> str:
        if argv[0] != "grpcurl":
            raise AssertionError(f"not a grpcurl call: {argv}")
        metadata: list[tuple[str, str]] = []
        data: str | None = None
        positional: list[str] = []
        words = iter(argv[1:])
        for word in words:
            if word == "-plaintext":
                continue
            if word == "-H":
                name, _, value = next(words).partition(":")
                metadata.append((name.strip().lower(), value.strip()))
            elif word == "-d":
                data = next(words)
            elif word.startswith("-"):
                raise AssertionError(f"grpcurl flag this check does not know: {word}")
            else:
                positional.append(word)
        address, *rest = positional
        host, _, port = address.rpartition(":")
        if host != "localhost":
            raise AssertionError(f"the README should address localhost: {address}")
        target = f"127.0.0.1:{self.ports[int(port)]}"
        with grpc.insecure_channel(target) as channel:
            reflection = ProtoReflectionDescriptorDatabase(channel)
            pool = descriptor_pool.DescriptorPool(reflection)
            if rest == ["list"]:
                return "\n".join(sorted(reflection.get_services()))
            if len(rest) == 2 and rest[0] == "describe":
                service = pool.FindServiceByName(rest[1])
                return "\n".join(method.name for method in service.methods)
            [path] = rest
            return call(channel, pool, path, data, metadata)


def call(
    channel: grpc.Channel,
    pool: descriptor_pool.DescriptorPool,
    path: str,
    data: str | None,
    metadata: list[tuple[str, str]],
) -> str:
    service_name, _, method_name = path.partition("/")
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(data or "{}", request_type())  # grpcurl: protojson, the same
    stub = channel.unary_unary(
        f"/{service_name}/{method_name}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    response = stub(request, metadata=metadata, timeout=10)
    # grpcurl prints proto field names, int64 as strings, enums by name.
    return json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True))


def jq_raw(output: str, argv: list[str]) -> str:
    if argv[:2] != ["jq", "-r"] or len(argv) != 3 or not _JQ_PATH.match(argv[2]):
        raise AssertionError(f"jq form this check does not know: {argv}")
    value: Any = json.loads(output)
    for key in argv[2].lstrip(".").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return "null" if value is None else str(value)  # jq -r prints a missing value as null

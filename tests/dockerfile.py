"""The Dockerfile as the image-assembly test follows it: WORKDIR, COPY, ENV, USER and CMD of its one stage.

Forms the test could not follow (a second FROM, ADD, COPY with flags, ENV without `=`) are refused, so that a change
to the Dockerfile fails the test instead of passing unseen. RUN lines are left to the test, which does their work
itself (pip install, the data directory); `run_lines` lets it check they still say what it assumes.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str


@dataclass
class Image:
    workdir: str = "/"
    copies: list[Copy] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    user: str = "root"
    cmd: list[str] = field(default_factory=list)
    run_lines: list[str] = field(default_factory=list)


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped, as Docker reads them."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        yield keyword.upper(), arguments.strip()


def parse(path: Path) -> Image:
    image = Image()
    stages = 0
    for keyword, arguments in instructions(path.read_text()):
        if keyword == "FROM":
            stages += 1
            if stages > 1:
                raise ValueError("a multi-stage Dockerfile: the test assembles one stage")
        elif keyword == "WORKDIR":
            image.workdir = arguments
        elif keyword == "COPY":
            words = shlex.split(arguments)
            if any(word.startswith("--") for word in words) or words[0].startswith("["):
                raise ValueError(f"COPY {arguments}: only the plain `COPY source... destination` form is followed")
            image.copies.append(Copy(tuple(words[:-1]), words[-1]))
        elif keyword == "ENV":
            for word in shlex.split(arguments):
                name, equals, value = word.partition("=")
                if not equals:
                    raise ValueError(f"ENV {arguments}: only the NAME=value form is followed")
                image.env[name] = value
        elif keyword == "USER":
            image.user = arguments
        elif keyword == "CMD":
            image.cmd = json.loads(arguments)
        elif keyword == "RUN":
            image.run_lines.append(arguments)
        elif keyword == "ADD":
            raise ValueError("ADD: the test follows COPY only")
    return image

"""Artifact Registry v1 over REST JSON: the Docker images of the fleet's repositories, `dockerImages.list` and
`dockerImages.get` (https://cloud.google.com/artifact-registry/docs/reference/rest/v1/
projects.locations.repositories.dockerImages).

A DockerImage is `name` ("projects/P/locations/L/repositories/R/dockerImages/IMAGE@sha256:DIGEST": "registry_location,
project_id, repository_name and image id forms a unique image name"), `uri` (LOCATION-docker.pkg.dev/P/R/IMAGE@sha256:
DIGEST), `tags`, `imageSizeBytes` (int64, so a JSON string), `uploadTime` ("Time the image was uploaded"),
`buildTime`, `updateTime` and `mediaType`, as the discovery document's DockerImage schema has them. An image is named
by its digest: `get` takes that name, and a tag or a bare image name is not found (Google documents no other form);
a tag is found by listing. A tag names one image of a package at a time, so pushing a tag again (a new upload) moves
it from the image it named, whose `updateTime` moves too.

`list` pages: pageSize "The maximum number of artifacts to return. Maximum page size is 1,000." (ListDockerImages
Request), so more is capped there; 0 lets the server decide (here DEFAULT_PAGE_SIZE; Google publishes no figure).
pageToken is this sandbox's own, opaque. orderBy is "The field to order the results by.", no grammar given: this
sandbox takes AIP-132's (https://google.aip.dev/132#ordering), one of the image's time fields or `name`, optionally
followed by `desc`, and refuses anything else INVALID_ARGUMENT. Without it the order is the sandbox's own (by
digest), which promises nothing about time.

Access: each method needs its permission on the repository, checked before anything is looked up, so a caller without
it learns nothing of what exists: artifactregistry.dockerimages.list / .get, both in roles/artifactregistry.reader
(https://cloud.google.com/artifact-registry/docs/access-control#roles). A caller without a live access token gets 401
first (sandbox.access_tokens). What is not there is NOT_FOUND "Requested entity was not found.", Google's generic
message for it (its Artifact Registry wording is not published).

The images are those the world's services were seeded with and those the control API declares (`POST /images`), each
given a plausible upload time (settable there): CI pushed it before anyone deployed it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from google.cloud import artifactregistry_v1
from google.protobuf.message import Message

from sandbox.access_tokens import AccessTokens, authenticated
from sandbox.cloudrun import rfc3339
from sandbox.faults import Faults
from sandbox.google_errors import GoogleError, google_errors
from sandbox.google_json import respond
from sandbox.iam import Authorize, allow_all

METHODS = ("ListDockerImages", "GetDockerImage")
"""The ArtifactRegistry service's RPC names of the methods emulated, as `POST /faults` takes them."""

PERMISSIONS = {"ListDockerImages": "artifactregistry.dockerimages.list",
               "GetDockerImage": "artifactregistry.dockerimages.get"}

MAX_PAGE_SIZE = 1_000
DEFAULT_PAGE_SIZE = 100
MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
UPLOADED_BEFORE_DECLARED_S = 1_800.0
"""A declared image was pushed by CI half an hour before the control API named it, unless told otherwise."""
BUILD_BEFORE_UPLOAD_S = 180.0

_REFERENCE = re.compile(r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/(?P<repository>[^/]+)/"
                        r"(?P<image>[a-z0-9][a-z0-9._/-]*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$")
_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/repositories/(?P<repository>[^/]+)"
                   r"/dockerImages(?:/(?P<image>[^/]+))?$")
_ORDER = re.compile(r"^\s*(?P<field>upload_time|update_time|build_time|name)(?:\s+(?P<way>asc|desc))?\s*$")
_NOT_FOUND = "Requested entity was not found."


@dataclass
class DockerImage:
    location: str
    project: str
    repository: str
    image: str
    digest: str
    upload_time: float
    build_time: float
    update_time: float
    size: int
    tags: list[str] = field(default_factory=list)

    @property
    def repository_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/repositories/{self.repository}"

    @property
    def image_id(self) -> str:
        return f"{self.image}@{self.digest}"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"{self.repository_name}/dockerImages/{self.image_id}",
            "uri": f"{self.location}-docker.pkg.dev/{self.project}/{self.repository}/{self.image_id}",
            "imageSizeBytes": str(self.size),
            "uploadTime": rfc3339(self.upload_time),
            "mediaType": MEDIA_TYPE,
            "buildTime": rfc3339(self.build_time),
            "updateTime": rfc3339(self.update_time),
        }
        if self.tags:
            body["tags"] = list(self.tags)
        return body


class ArtifactRegistry:
    """The Docker images of every repository of the world, by repository name and image id."""

    def __init__(self, authorize: Authorize = allow_all, clock: Callable[[], float] = time.time) -> None:
        self.authorize = authorize
        self.clock = clock
        self.repositories: dict[str, dict[str, DockerImage]] = {}
        self.calls: list[tuple[str, str]] = []

    def push(self, reference: str, *, upload_time: float | None = None,
             build_time: float | None = None) -> DockerImage | None:
        """An image pushed as `reference` (LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE[:TAG]); None for a
        reference that is not Artifact Registry's. Naming a tag the registry has, with no upload time, is that image;
        with a new upload time it is a new push, which takes the tag over."""
        match = _REFERENCE.match(reference)
        if match is None:
            return None
        tag = match["tag"] or "latest"
        repository = self.repositories.setdefault(
            f"projects/{match['project']}/locations/{match['location']}/repositories/{match['repository']}", {})
        same = [i for i in repository.values() if i.image == match["image"]]
        tagged = next((i for i in same if tag in i.tags), None)
        if tagged is not None and (upload_time is None or upload_time == tagged.upload_time):
            if build_time is not None:
                tagged.build_time = build_time
            return tagged
        uploaded = self.clock() - UPLOADED_BEFORE_DECLARED_S if upload_time is None else upload_time
        seed = hashlib.sha256(f"{reference}@{uploaded}".encode()).hexdigest()
        for other in same:
            if tag in other.tags:
                other.tags.remove(tag)
                other.update_time = max(other.update_time, uploaded)
        pushed = DockerImage(match["location"], match["project"], match["repository"], match["image"],
                             f"sha256:{seed}", uploaded, uploaded - BUILD_BEFORE_UPLOAD_S if build_time is None
                             else build_time, uploaded, 40_000_000 + int(seed[:6], 16) * 20, [tag])
        repository[pushed.image_id] = pushed
        return pushed

    def find(self, reference: str) -> DockerImage | None:
        """The image a reference names now (by tag), for the control API's answers and for tests."""
        match = _REFERENCE.match(reference)
        if match is None:
            return None
        repository = self.repositories.get(
            f"projects/{match['project']}/locations/{match['location']}/repositories/{match['repository']}", {})
        tag = match["tag"] or "latest"
        return next((i for i in repository.values() if i.image == match["image"] and tag in i.tags), None)


_PROTO: dict[str, type[Message]] = {
    "DockerImage": type(artifactregistry_v1.DockerImage.pb(artifactregistry_v1.DockerImage())),
    "ListDockerImagesResponse": type(artifactregistry_v1.ListDockerImagesResponse.pb(
        artifactregistry_v1.ListDockerImagesResponse())),
}


def _method(request: web.Request) -> str:
    match = _PATH.match(request.raw_path.split("?", 1)[0])
    if match is None or request.method != "GET":
        return ""
    return "GetDockerImage" if match["image"] else "ListDockerImages"


def artifact_registry_app(registry: ArtifactRegistry, faults: Faults | None = None,
                          tokens: AccessTokens | None = None) -> web.Application:
    injected = faults or Faults()

    async def dispatch(request: web.Request) -> web.Response:
        called = _method(request)
        await injected.google(called)
        match = _PATH.match(request.raw_path.split("?", 1)[0])
        if match is None:
            raise web.HTTPNotFound()
        if not called:
            raise web.HTTPMethodNotAllowed(request.method, ["GET"])
        repository = f"projects/{match['project']}/locations/{match['location']}/repositories/{match['repository']}"
        registry.calls.append((called, request.path))
        registry.authorize(PERMISSIONS[called], repository)
        images = registry.repositories.get(repository)
        if images is None:
            raise GoogleError("NOT_FOUND", _NOT_FOUND)
        if match["image"]:
            found = images.get(unquote(match["image"]))
            if found is None:
                raise GoogleError("NOT_FOUND", _NOT_FOUND)
            return respond(request, _PROTO["DockerImage"], found.to_json())
        return respond(request, _PROTO["ListDockerImagesResponse"], _page(request, list(images.values())))

    checks = [authenticated(tokens, "artifactregistry.googleapis.com",
                            lambda request: f"google.devtools.artifactregistry.v1.ArtifactRegistry.{_method(request)}")
              ] if tokens is not None else []
    app = web.Application(middlewares=[google_errors, *checks])
    app.router.add_route("*", "/v1/{rest:.*}", dispatch)
    return app


def _page(request: web.Request, images: list[DockerImage]) -> dict[str, Any]:
    order = request.query.get("orderBy", "")
    if order:
        chosen = _ORDER.match(order)
        if chosen is None:
            raise GoogleError("INVALID_ARGUMENT", f"Invalid order_by \"{order}\": order by one of upload_time, "
                              "update_time, build_time or name, optionally followed by desc.")
        key: Callable[[DockerImage], Any] = {
            "upload_time": lambda i: i.upload_time, "update_time": lambda i: i.update_time,
            "build_time": lambda i: i.build_time, "name": lambda i: i.image_id}[chosen["field"]]
        images.sort(key=key, reverse=chosen["way"] == "desc")
    else:
        images.sort(key=lambda i: i.digest)
    token = request.query.get("pageToken", "")
    try:
        size = int(request.query.get("pageSize") or 0)
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise GoogleError("INVALID_ARGUMENT", "Invalid page_size or page_token.") from None
    if size < 0 or start < 0:
        raise GoogleError("INVALID_ARGUMENT", "page_size must not be negative.")
    size = min(size, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    page: dict[str, Any] = {}
    if images[start:start + size]:
        page["dockerImages"] = [image.to_json() for image in images[start:start + size]]
    if start + size < len(images):
        page["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return page

"""When an image was uploaded to Artifact Registry: where DORA's lead time starts.

Read with google-cloud-artifact-registry (REST transport): an image named by digest with `dockerImages.get`, one named
by tag by listing its repository's images (`dockerImages.list`, 1,000 a page, its maximum) and taking the one the tag
is on, since `get` names images by digest only (https://cloud.google.com/artifact-registry/docs/reference/rest/v1/
projects.locations.repositories.dockerImages). The bot's service account needs roles/artifactregistry.reader on the
repository.

Each image is read once: what was found is kept in the store (`image_uploads`) for good, so no figure reads the
registry twice for an image, and a tag moved since keeps the upload time it had when first read. An image the
registry does not have is asked again after NOT_FOUND_AGAIN; a refusal or an outage is not kept, so the next figure
tries again (without retries now: a figure does not wait on a registry that is down, and once one image is refused
or unanswered the rest of that figure's images are not asked). Whatever is not found or not readable leaves that
deploy's lead time unknown, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.api_core import exceptions
from google.cloud import artifactregistry_v1
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.adapters.google_clients import client_kwargs
from bot.adapters.store import Store
from bot.adapters.tables import ImageUploadRow
from bot.domain.permissions import grant_hint
from bot.environment import Environment

log = logging.getLogger(__name__)

NOT_FOUND_AGAIN = timedelta(hours=1)
PAGE_SIZE = 1_000
_REFERENCE = re.compile(r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/(?P<repository>[^/]+)/"
                        r"(?P<image>[^:@]+)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


@dataclass(frozen=True)
class Upload:
    """What the registry says of an image: its upload (and build) time, or why it is unknown."""

    image: str
    upload_time: datetime | None
    build_time: datetime | None = None
    why: str = ""


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else (moment if moment.tzinfo else moment.replace(tzinfo=UTC))


class Artifacts:
    def __init__(self, env: Environment, store: Store, *, timeout: float = 10.0) -> None:
        self._client = artifactregistry_v1.ArtifactRegistryClient(
            **client_kwargs(env.artifact_registry_endpoint, env))
        self._store = store
        self._timeout = timeout

    def read(self, image: str) -> Upload:
        """One image's upload time, from the registry itself (no cache)."""
        match = _REFERENCE.match(image)
        if match is None:
            return Upload(image, None, why="not an Artifact Registry image (LOCATION-docker.pkg.dev/...)")
        repository = (f"projects/{match['project']}/locations/{match['location']}/repositories/"
                      f"{match['repository']}")
        found: artifactregistry_v1.DockerImage | None
        try:
            if match["digest"]:
                found = self._client.get_docker_image(
                    name=f"{repository}/dockerImages/{match['image'].replace('/', '%2F')}@{match['digest']}",
                    retry=None, timeout=self._timeout)
            else:
                found = self._tagged(repository, match["image"], match["tag"] or "latest")
        except exceptions.NotFound:
            found = None
        except exceptions.Forbidden as exc:  # PERMISSION_DENIED; REST answers it as 403 Forbidden
            permission = (exc.metadata or {}).get("permission") or "artifactregistry.dockerimages.list"
            return Upload(image, None, why=f"Artifact Registry refused: {grant_hint(permission)}")
        except (exceptions.GoogleAPIError, OSError) as exc:
            log.warning("could not read %s from Artifact Registry: %s", image, exc)
            return Upload(image, None, why=f"Artifact Registry unavailable ({type(exc).__name__})")
        if found is None:
            return Upload(image, None, why="not in Artifact Registry")
        return Upload(image, _aware(found.upload_time), _aware(found.build_time) if found.build_time else None)

    def _tagged(self, repository: str, name: str, tag: str) -> artifactregistry_v1.DockerImage | None:
        request = artifactregistry_v1.ListDockerImagesRequest(parent=repository, page_size=PAGE_SIZE)
        for found in self._client.list_docker_images(request=request, retry=None, timeout=self._timeout):
            image_id = found.name.rpartition("/dockerImages/")[2].replace("%2F", "/")
            if image_id.rpartition("@")[0] == name and tag in found.tags:
                return found
        return None

    def uploads(self, images: Iterable[str], now: datetime | None = None) -> dict[str, Upload]:
        """Each image's upload, from the store when it was read before, else from the registry (then kept)."""
        wanted = sorted(set(images))
        now = now or datetime.now(UTC)
        with self._store.reading() as session:
            rows = {row.image: row for row in session.scalars(select(ImageUploadRow)
                                                              .where(ImageUploadRow.image.in_(wanted)))}
        known: dict[str, Upload] = {}
        failing = ""
        for image in wanted:
            row = rows.get(image)
            if row is not None and (row.upload_time is not None or now - row.read_at < NOT_FOUND_AGAIN):
                known[image] = Upload(image, row.upload_time, row.build_time,
                                      "" if row.upload_time else "not in Artifact Registry")
                continue
            if failing:  # refused or down for one image: the others would wait to be told the same
                known[image] = Upload(image, None, why=failing)
                continue
            read = self.read(image)
            if read.why.startswith(("Artifact Registry refused", "Artifact Registry unavailable")):
                failing = read.why
            known[image] = read
            if read.upload_time is not None or read.why == "not in Artifact Registry":
                self._keep(read, now)
        return known

    def _keep(self, read: Upload, now: datetime) -> None:
        """The first read that found the image stands; another instance's at the same time is dropped."""
        try:
            with self._store.writing() as session:
                row = session.get(ImageUploadRow, read.image)
                if row is None:
                    session.add(ImageUploadRow(image=read.image, upload_time=read.upload_time,
                                               build_time=read.build_time, read_at=now))
                elif row.upload_time is None:
                    row.upload_time, row.build_time, row.read_at = read.upload_time, read.build_time, now
        except IntegrityError:
            return

    async def upload_times(self, images: Iterable[str]) -> dict[str, Upload]:
        return await asyncio.to_thread(self.uploads, images)

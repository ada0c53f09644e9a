"""The model registry: immutable ``<name>/<version>/`` folders plus one index per model name.

Layout under the registry root (a directory, a PVC mount or ``s3://bucket/prefix``)::

    <name>/index.json                          versions, their digests and metadata, and aliases
    <name>/<version>/model.<format>            the artifact, written once
    <name>/<version>/model.<format>.metadata.json

Registering uploads the artifact and its metadata with create-only writes, then adds the version
to the index with an atomic read-modify-write (see :mod:`modeldeploy_runtime.packaging.registry_store`),
so concurrent registrations of different versions all land and a version is never replaced.
The index stores paths relative to the model's folder, so a copied registry keeps working.

A reference is ``NAME@VERSION`` or ``NAME@ALIAS``; an alias can never share a version's name.
``registry+<root>#NAME@VERSION`` names a registry too (see :func:`resolve_reference`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modeldeploy_runtime.artifact_uri import ArtifactNameError, check_file_name
from modeldeploy_runtime.files import sha256_bytes
from modeldeploy_runtime.package_layout import (
    METADATA_SUFFIX,
    ONNX_FORMAT,
    Package,
    PackagingError,
    check_identifier,
    utc_now,
)
from modeldeploy_runtime.packaging.registry_store import (
    ObjectExistsError,
    ObjectNotFoundError,
    RegistryStore,
    StoreError,
    open_store,
    sha256_of,
)

INDEX_FILE = "index.json"
REFERENCE_SCHEME = "registry+"


class RegistryError(Exception):
    """A registry operation failed; the message is one line naming the bad value."""


class VersionExistsError(RegistryError):
    pass


class ModelNotFoundError(RegistryError):
    pass


@dataclass(frozen=True)
class Reference:
    """``NAME@SELECTOR`` where the selector is a version or an alias; ``root`` when given in full."""

    name: str
    selector: str
    root: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.selector}"


@dataclass(frozen=True)
class RegisteredVersion:
    """One version as the index records it, with the artifact's full URI."""

    name: str
    version: str
    uri: str
    entry: dict[str, Any]
    aliases: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return str(self.entry["sha256"])

    @property
    def format(self) -> str:
        return str(self.entry["format"])

    @property
    def key(self) -> str:
        """The artifact's path below the registry root: ``<name>/<version>/<file>``."""
        return f"{self.name}/{self.entry['artifact']}"

    @property
    def onnx(self) -> dict[str, Any] | None:
        """The ONNX artifact's entry (``artifact``, ``sha256``, ...) when it was packaged with ``--onnx``."""
        found = self.entry.get(ONNX_FORMAT)
        return found if isinstance(found, dict) else None

    @property
    def formats(self) -> tuple[str, ...]:
        return (self.format, ONNX_FORMAT) if self.onnx is not None else (self.format,)

    def published_under(self, uri_prefix: str) -> RegisteredVersion:
        """The same version addressed through another root, e.g. ``pvc://claim/registry`` in a cluster."""
        return replace(self, uri=f"{uri_prefix.rstrip('/')}/{self.key}")

    def spec_model(self, model_format: str | None = None) -> dict[str, str]:
        """The ModelDeployment's ``spec.model`` block for this version, in its own or the ONNX format."""
        if model_format is None or model_format == self.format:
            return {"uri": self.uri, "version": self.version, "sha256": self.sha256, "format": self.format}
        onnx = self.onnx
        if model_format != ONNX_FORMAT or onnx is None:
            raise RegistryError(
                f"{self.name}@{self.version} has no {model_format!r} artifact: it has {', '.join(self.formats)}"
            )
        uri = f"{self.uri.rsplit('/', 1)[0]}/{onnx['artifact'].rsplit('/', 1)[-1]}"
        return {"uri": uri, "version": self.version, "sha256": str(onnx["sha256"]), "format": ONNX_FORMAT}


def parse_reference(text: str) -> Reference:
    """``NAME@VERSION``, ``NAME@ALIAS`` or ``registry+<root>#NAME@VERSION|ALIAS``."""
    root: str | None = None
    short = text
    if text.startswith(REFERENCE_SCHEME):
        root, separator, short = text[len(REFERENCE_SCHEME) :].partition("#")
        if not separator or not root:
            raise RegistryError(f"reference {text!r} is not valid: expected registry+<root>#NAME@VERSION")
    name, separator, selector = short.partition("@")
    if not separator:
        raise RegistryError(f"reference {text!r} is not valid: expected NAME@VERSION or NAME@ALIAS")
    try:
        check_identifier("model name", name)
        check_identifier("version or alias", selector)
    except PackagingError as error:
        raise RegistryError(f"reference {text!r}: {error}") from None
    return Reference(name=name, selector=selector, root=root)


def _empty_index(name: str) -> dict[str, Any]:
    return {"name": name, "versions": {}, "aliases": {}}


def _parse_index(store: RegistryStore, name: str, content: bytes) -> dict[str, Any]:
    where = store.uri(f"{name}/{INDEX_FILE}")
    try:
        document = json.loads(content)
    except ValueError as error:
        raise RegistryError(f"registry index {where} is not valid JSON: {error}") from None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("versions"), dict)
        or not isinstance(document.get("aliases"), dict)
    ):
        raise RegistryError(f"registry index {where} must be an object with 'versions' and 'aliases' objects")
    for version, entry in document["versions"].items():
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(key), str) for key in ("artifact", "sha256", "format")
        ):
            raise RegistryError(
                f"registry index {where}: version {version!r} lacks artifact, sha256 or format"
            )
        onnx = entry.get(ONNX_FORMAT)
        if onnx is not None and not (
            isinstance(onnx, dict) and all(isinstance(onnx.get(key), str) for key in ("artifact", "sha256"))
        ):
            raise RegistryError(
                f"registry index {where}: version {version!r} has an onnx entry without artifact or sha256"
            )
        for artifact in (entry["artifact"], *([onnx["artifact"]] if onnx is not None else [])):
            try:
                for segment in artifact.split("/"):
                    check_file_name(segment)
            except ArtifactNameError as error:
                raise RegistryError(
                    f"registry index {where}: version {version!r} has artifact {artifact!r}, "
                    f"not a path inside the model's folder: {error}"
                ) from None
    for alias, target in document["aliases"].items():
        if not isinstance(target, dict) or not isinstance(target.get("version"), str):
            raise RegistryError(f"registry index {where}: alias {alias!r} lacks a version")
    return document


def _encode_index(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def read_index(store: RegistryStore, name: str) -> dict[str, Any]:
    """The model's index; RegistryError when the model is not registered or the index is unreadable."""
    check_name(name)
    try:
        content = store.read(f"{name}/{INDEX_FILE}")
    except ObjectNotFoundError:
        raise ModelNotFoundError(f"no model named {name!r} in registry {store.root}") from None
    except StoreError as error:
        raise RegistryError(str(error)) from None
    return _parse_index(store, name, content)


def update_index(store: RegistryStore, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the model's index atomically; an exception from ``change`` aborts."""

    def apply(current: bytes | None) -> bytes:
        document = _empty_index(name) if current is None else _parse_index(store, name, current)
        change(document)
        return _encode_index(document)

    try:
        store.update(f"{name}/{INDEX_FILE}", apply)
    except StoreError as error:
        raise RegistryError(str(error)) from None


def check_name(name: str) -> str:
    try:
        return check_identifier("model name", name)
    except PackagingError as error:
        raise RegistryError(str(error)) from None


def _aliases_of(document: dict[str, Any], version: str) -> tuple[str, ...]:
    return tuple(
        sorted(alias for alias, target in document["aliases"].items() if target.get("version") == version)
    )


def _registered(store: RegistryStore, document: dict[str, Any], name: str, version: str) -> RegisteredVersion:
    entry = document["versions"][version]
    return RegisteredVersion(
        name=name,
        version=version,
        uri=store.uri(f"{name}/{entry['artifact']}"),
        entry=entry,
        aliases=_aliases_of(document, version),
    )


def _upload_once(store: RegistryStore, key: str, package_file: Path, expected_sha256: str) -> None:
    """Create ``key``; if it exists already with the same content (an interrupted registration), keep it."""
    try:
        store.create(key, package_file)
    except ObjectExistsError:
        if sha256_of(store, key) != expected_sha256:
            raise VersionExistsError(
                f"{store.uri(key)} already exists with different content; versions are never overwritten"
            ) from None


def _check_new_version(document: dict[str, Any], name: str, version: str) -> None:
    if version in document["versions"]:
        raise VersionExistsError(f"{name}@{version} is already registered; versions are never overwritten")
    if version in document["aliases"]:
        raise RegistryError(
            f"{name}@{version}: {version!r} is already an alias of {name}; pick another version"
        )


def register(store: RegistryStore, package: Package) -> RegisteredVersion:
    """Add a packaged model as a new version; VersionExistsError if that version is registered."""
    name, version = package.metadata["name"], package.metadata["version"]
    try:
        existing = read_index(store, name)
    except ModelNotFoundError:
        existing = None
    if existing is not None:  # checked again atomically below; failing here uploads nothing
        _check_new_version(existing, name, version)
    artifact = f"{version}/{package.artifact.name}"
    try:
        _upload_once(store, f"{name}/{artifact}", package.artifact, package.metadata["sha256"])
        metadata_bytes = package.metadata_path.read_bytes()
        _upload_once(
            store,
            f"{name}/{artifact}{METADATA_SUFFIX}",
            package.metadata_path,
            sha256_bytes(metadata_bytes),
        )
        onnx_file = package.onnx_artifact
        if onnx_file is not None:
            onnx_sha256 = package.metadata[ONNX_FORMAT]["sha256"]
            _upload_once(store, f"{name}/{version}/{onnx_file.name}", onnx_file, onnx_sha256)
    except StoreError as error:
        raise RegistryError(str(error)) from None
    except OSError as error:
        raise RegistryError(f"cannot read {package.metadata_path}: {error.strerror or error}") from None
    entry = {
        "artifact": artifact,
        "sha256": package.metadata["sha256"],
        "size_bytes": package.metadata.get("size_bytes"),
        "format": package.metadata["format"],
        "model_type": package.metadata.get("model_type"),
        "created_at": package.metadata.get("created_at"),
        "registered_at": utc_now(),
        "metadata": package.metadata.get("metadata", {}),
    }
    if package.onnx_artifact is not None:
        entry[ONNX_FORMAT] = {
            **package.metadata[ONNX_FORMAT],
            "artifact": f"{version}/{package.onnx_artifact.name}",
        }

    def add(document: dict[str, Any]) -> None:
        _check_new_version(document, name, version)
        document["versions"][version] = entry

    update_index(store, name, add)
    return RegisteredVersion(name=name, version=version, uri=store.uri(f"{name}/{artifact}"), entry=entry)


def resolve(store: RegistryStore, reference: Reference) -> RegisteredVersion:
    """The version a reference names: an exact version first, else the version an alias points to."""
    document = read_index(store, reference.name)
    version = reference.selector
    if version not in document["versions"]:
        target = document["aliases"].get(reference.selector)
        if not isinstance(target, dict) or target.get("version") not in document["versions"]:
            known = ", ".join(sorted(document["versions"])) or "none"
            raise RegistryError(
                f"{reference}: no such version or alias of {reference.name} (versions: {known})"
            )
        version = str(target["version"])
    return _registered(store, document, reference.name, version)


def list_versions(store: RegistryStore, name: str) -> list[RegisteredVersion]:
    document = read_index(store, name)
    return [
        _registered(store, document, name, version)
        for version in sorted(
            document["versions"], key=lambda v: document["versions"][v].get("registered_at", "")
        )
    ]


def list_models(store: RegistryStore) -> list[str]:
    try:
        return store.names()
    except StoreError as error:
        raise RegistryError(str(error)) from None


def promote(store: RegistryStore, reference: Reference, alias: str) -> tuple[str | None, RegisteredVersion]:
    """Point ``alias`` at the referenced version; returns the version it pointed at before (or None)."""
    try:
        check_identifier("alias", alias)
    except PackagingError as error:
        raise RegistryError(str(error)) from None
    target = resolve(store, reference)
    previous: list[str | None] = [None]

    def move(document: dict[str, Any]) -> None:
        if alias in document["versions"]:
            raise RegistryError(f"alias {alias!r} is a version of {reference.name}; pick another alias name")
        if target.version not in document["versions"]:
            raise RegistryError(f"{reference.name}@{target.version} is no longer in the index")
        old = document["aliases"].get(alias)
        previous[0] = old.get("version") if isinstance(old, dict) else None
        document["aliases"][alias] = {"version": target.version, "updated_at": utc_now()}

    update_index(store, reference.name, move)
    return previous[0], resolve(store, Reference(reference.name, target.version))


def verify(store: RegistryStore, reference: Reference) -> RegisteredVersion:
    """Re-read the stored artifact and check its sha256 against the index; RegistryError on mismatch."""
    registered = resolve(store, reference)
    onnx = registered.onnx
    artifacts = [(registered.key, registered.sha256)]
    if onnx is not None:
        artifacts.append((f"{registered.name}/{onnx['artifact']}", str(onnx["sha256"])))
    for key, expected in artifacts:
        try:
            actual = sha256_of(store, key)
        except StoreError as error:
            raise RegistryError(str(error)) from None
        if actual != expected:
            raise RegistryError(
                f"sha256 mismatch for {store.uri(key)}: the index records {expected}, "
                f"the stored artifact has {actual}; it was changed after registration"
            )
    return registered


def resolve_reference(text: str) -> RegisteredVersion:
    """Resolve ``registry+<root>#NAME@VERSION|ALIAS`` (e.g. for a runtime's ``--model-uri``)."""
    reference = parse_reference(text)
    if reference.root is None:
        raise RegistryError(f"reference {text!r} names no registry: expected registry+<root>#NAME@VERSION")
    try:
        store = open_store(reference.root)
    except StoreError as error:
        raise RegistryError(str(error)) from None
    return resolve(store, reference)

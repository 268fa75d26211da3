"""`router.yaml` -> a typed, validated `RouterConfig`: the router's only input file.

The file is what `render._router_context` and `workloadobjects.router_entry` write into the router's
ConfigMap, plus a few keys for local use (static `backends`, inline keys, limits for tests).
`parse` is pure (text in, config or every problem out, each as `FILE:LINE: field.path: message`);
`load` adds the file reads: the config file itself and the key files it names.

`endpoints` are what clients call (`POST /api/v1/endpoint/NAME/score`): each splits its traffic
over some of the `deployments` by integer weights (percents: they sum to 100, or are all 0 and
only the `azureml-model-deployment` header routes), may mirror a percentage of it to a
deployment that takes no live traffic, and has an `auth` of its own, shaped like a deployment's.

Keys in-cluster come from the deployment's or endpoint's Secret (`auth.secret`), read by
`router.incluster` when the config gives none of its own. Locally the config gives the keys
inline (`keys`, `signing_key`) or as files (`key_files`, `signing_key_file`, relative to the
config file's folder); likewise static `backends` are for local use, discovery fills the others
in-cluster.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.model import documents, endpoints, problems, workloads

DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024  # the original product's maximum payload
# Bodies up to this size are read before forwarding, so a request can be retried on another
# backend when the first one fails; larger ones stream through and cannot be retried.
DEFAULT_RETRY_BUFFER_BYTES = 1024 * 1024
DEFAULT_MAX_QUEUE_LENGTH = 1000
AUTH_MODES = ("key", "token", "none")

_TOP_KEYS = {
    "listen",
    "admin_listen",
    "tls",
    "cname",
    "deployments",
    "endpoints",
    "max_body_bytes",
    "retry_buffer_bytes",
    "overload_lag_ms",
}
# Event-loop lag above which the router starts refusing part of its scoring requests
# (`admission`); 0 turns admission control off.
DEFAULT_OVERLOAD_LAG_MS = 10
_DEPLOYMENT_KEYS = {
    "name",
    "backends",
    "namespace",
    "service",
    "port",
    "max_concurrent_requests_per_instance",
    "request_timeout_ms",
    "max_queue_wait_ms",
    "max_queue_length",
    "auth",
    "scale_settings",
}
_ENDPOINT_KEYS = {"name", "traffic", "mirror_traffic", "auth"}
_AUTH_KEYS = {"mode", "secret", "keys", "key_files", "signing_key", "signing_key_file"}
_SCALE_KEYS = {
    "type",
    "min_instances",
    "max_instances",
    "target_utilization_percentage",
    "polling_interval",
}


class ConfigError(Exception):
    """The config file is unusable; `problems` says every reason."""

    def __init__(self, found: Sequence[problems.Problem]) -> None:
        self.problems = list(found)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Tls:
    cert: str
    key: str


@dataclass(frozen=True)
class Auth:
    """How callers of one deployment authenticate, and the material to check them with."""

    mode: str = "none"
    secret: str | None = None  # the Kubernetes Secret the keys come from in-cluster
    keys: tuple[str, ...] = ()
    key_files: tuple[str, ...] = ()
    signing_key: str | None = None
    signing_key_file: str | None = None


@dataclass(frozen=True)
class ScaleSettings:
    """Autoscaling knobs, read by the autoscaler (not by the data path)."""

    type: str = "target_utilization"
    min_instances: int = 1
    max_instances: int = 1
    target_utilization_percentage: int = workloads.DEFAULT_TARGET_UTILIZATION
    polling_interval: int = workloads.DEFAULT_POLLING_INTERVAL


@dataclass(frozen=True)
class Deployment:
    name: str
    # Static backends; None means they are discovered (the deployment's Service in-cluster).
    backends: tuple[str, ...] | None = None
    namespace: str | None = None
    service: str | None = None
    port: int = 80
    max_concurrent_requests_per_instance: int = workloads.DEFAULT_MAX_CONCURRENT_REQUESTS
    request_timeout_ms: int = workloads.DEFAULT_REQUEST_TIMEOUT_MS
    max_queue_wait_ms: int = workloads.DEFAULT_MAX_QUEUE_WAIT_MS
    max_queue_length: int = DEFAULT_MAX_QUEUE_LENGTH
    auth: Auth = field(default_factory=Auth)
    scale_settings: ScaleSettings = field(default_factory=ScaleSettings)


@dataclass(frozen=True)
class Endpoint:
    """What clients call: a traffic split over deployments, mirror copies, its own auth."""

    name: str
    traffic: Mapping[str, int] = field(default_factory=dict)  # deployment -> weight (percent)
    mirror_traffic: Mapping[str, int] = field(default_factory=dict)  # deployment -> percent
    auth: Auth = field(default_factory=Auth)

    @property
    def members(self) -> frozenset[str]:
        """The deployments the `azureml-model-deployment` header may name."""
        return frozenset(self.traffic) | frozenset(self.mirror_traffic)


@dataclass(frozen=True)
class RouterConfig:
    host: str
    port: int
    deployments: tuple[Deployment, ...] = ()
    tls: Tls | None = None
    cname: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    retry_buffer_bytes: int = DEFAULT_RETRY_BUFFER_BYTES
    overload_lag_ms: int = DEFAULT_OVERLOAD_LAG_MS
    endpoints: tuple[Endpoint, ...] = ()
    # (host, port) of the admin port: /metrics and the load reports peers read, never on the
    # scoring port. None: not served (local use without `admin_listen`).
    admin: tuple[str, int] | None = None

    def deployment(self, name: str) -> Deployment | None:
        return next((d for d in self.deployments if d.name == name), None)

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)


def load(path: str | Path) -> RouterConfig:
    """Read and parse the config file, then read the key files it names."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([problems.Problem(str(path), 0, "", f"cannot read: {err}")]) from err
    parsed = parse(str(path), text)
    return _with_key_files(parsed, path)


def parse(file: str, text: str) -> RouterConfig:
    """The config in `text` (from `file`, for messages); ConfigError with every problem."""
    parsed = documents.parse(file, text)
    if parsed.problems:
        raise ConfigError(parsed.problems)
    if len(parsed.documents) != 1:
        raise ConfigError([problems.Problem(file, 0, "", "expected exactly one YAML document")])
    return _Parser(parsed.documents[0]).config()


def _with_key_files(config: RouterConfig, path: Path) -> RouterConfig:
    found: list[problems.Problem] = []
    deployments = tuple(
        dataclasses.replace(d, auth=_auth_with_files(d.auth, path, f"deployments[{i}]", found))
        for i, d in enumerate(config.deployments)
    )
    endpoints = tuple(
        dataclasses.replace(e, auth=_auth_with_files(e.auth, path, f"endpoints[{i}]", found))
        for i, e in enumerate(config.endpoints)
    )
    if found:
        raise ConfigError(found)
    return dataclasses.replace(config, deployments=deployments, endpoints=endpoints)


def _auth_with_files(auth: Auth, path: Path, owner: str, found: list[problems.Problem]) -> Auth:
    """`auth` with the keys of its key files added (read relative to the config's folder)."""
    keys = list(auth.keys)
    signing_key = auth.signing_key
    for i, name in enumerate(auth.key_files):
        text = _read_key(path.parent / name, str(path), f"{owner}.auth.key_files[{i}]", found)
        if text is not None:
            keys.append(text)
    if auth.signing_key_file is not None:
        where = f"{owner}.auth.signing_key_file"
        text = _read_key(path.parent / auth.signing_key_file, str(path), where, found)
        if text is not None:
            signing_key = text
    return dataclasses.replace(auth, keys=tuple(keys), signing_key=signing_key)


def _read_key(path: Path, file: str, where: str, found: list[problems.Problem]) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        # The error names the key file, never its content.
        found.append(problems.Problem(file, 0, where, f"cannot read key file {path}: {err}"))
        return None
    if not text:
        found.append(problems.Problem(file, 0, where, f"key file {path} is empty"))
        return None
    return text


class _Parser:
    """Walks one document, collecting problems instead of stopping at the first."""

    def __init__(self, document: documents.Document) -> None:
        self.doc = document
        self.found: list[problems.Problem] = []

    def problem(self, path: problems.FieldPath, message: str) -> None:
        self.found.append(self.doc.problem(path, message))

    def config(self) -> RouterConfig:
        data = self.doc.data
        if not isinstance(data, dict):
            self.problem((), "expected a mapping at the top level")
            raise ConfigError(self.found)
        self.unknown(data, (), _TOP_KEYS)
        host, port = self.listen(data)
        admin = None
        if "admin_listen" in data:
            admin = self.listen(data, "admin_listen")
            if admin[1] and admin[1] == port:
                self.problem(("admin_listen",), f"port {port} is listen's: use another one")
        tls = self.tls(data.get("tls"))
        cname = self.optional_str(data, (), "cname")
        max_body = self.integer(data, (), "max_body_bytes", DEFAULT_MAX_BODY_BYTES, minimum=1)
        retry_buffer = self.integer(
            data, (), "retry_buffer_bytes", DEFAULT_RETRY_BUFFER_BYTES, minimum=0
        )
        overload_lag = self.integer(
            data, (), "overload_lag_ms", DEFAULT_OVERLOAD_LAG_MS, minimum=0, maximum=10_000
        )
        deployments = self.deployments(data.get("deployments", []))
        endpoints = self.endpoints(data.get("endpoints", []), {d.name for d in deployments})
        if self.found:
            raise ConfigError(problems.sort_problems(self.found))
        return RouterConfig(
            host,
            port,
            deployments,
            tls,
            cname,
            max_body,
            retry_buffer,
            overload_lag,
            endpoints,
            admin,
        )

    def unknown(self, data: Mapping[str, Any], path: problems.FieldPath, known: set[str]) -> None:
        for key in data:
            if key not in known:
                hint = problems.did_you_mean(str(key), known)
                self.problem((*path, key), f"unknown field{hint}")

    def listen(self, data: Mapping[str, Any], key: str = "listen") -> tuple[str, int]:
        value = data.get(key)
        if not isinstance(value, str) or ":" not in value:
            self.problem((key,), "expected HOST:PORT, e.g. 0.0.0.0:8080")
            return "", 0
        host, _, port_text = value.rpartition(":")
        host = host.strip("[]")  # [::1]:8080
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            self.problem((key,), f"port {port_text!r} is not a number from 0 to 65535")
            return host, 0
        return host, int(port_text)

    def tls(self, value: Any) -> Tls | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(("tls",), "expected a mapping with cert and key")
            return None
        self.unknown(value, ("tls",), {"cert", "key"})
        cert, key = value.get("cert"), value.get("key")
        for name, item in (("cert", cert), ("key", key)):
            if not isinstance(item, str) or not item:
                self.problem(("tls", name), "expected the path of a PEM file")
        if isinstance(cert, str) and isinstance(key, str) and cert and key:
            return Tls(cert, key)
        return None

    def deployments(self, value: Any) -> tuple[Deployment, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(("deployments",), "expected a list")
            return ()
        found: list[Deployment] = []
        seen: set[str] = set()
        for index, item in enumerate(value):
            path: problems.FieldPath = ("deployments", index)
            deployment = self.deployment(item, path)
            if deployment is None:
                continue
            if deployment.name in seen:
                self.problem((*path, "name"), f"deployment {deployment.name!r} is listed twice")
            seen.add(deployment.name)
            found.append(deployment)
        return tuple(found)

    def deployment(self, item: Any, path: problems.FieldPath) -> Deployment | None:
        if not isinstance(item, dict):
            self.problem(path, "expected a mapping")
            return None
        self.unknown(item, path, _DEPLOYMENT_KEYS)
        name = item.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            self.problem((*path, "name"), "expected a non-empty name without '/'")
            return None
        defaults = Deployment(name)
        return Deployment(
            name=name,
            backends=self.backends(item.get("backends"), (*path, "backends")),
            namespace=self.optional_str(item, path, "namespace"),
            service=self.optional_str(item, path, "service"),
            port=self.integer(item, path, "port", defaults.port, minimum=1, maximum=65535),
            max_concurrent_requests_per_instance=self.integer(
                item,
                path,
                "max_concurrent_requests_per_instance",
                defaults.max_concurrent_requests_per_instance,
                minimum=1,
            ),
            request_timeout_ms=self.integer(
                item, path, "request_timeout_ms", defaults.request_timeout_ms, minimum=1
            ),
            max_queue_wait_ms=self.integer(
                item, path, "max_queue_wait_ms", defaults.max_queue_wait_ms, minimum=0
            ),
            max_queue_length=self.integer(
                item, path, "max_queue_length", defaults.max_queue_length, minimum=0
            ),
            auth=self.auth(item.get("auth"), (*path, "auth")),
            scale_settings=self.scale(item.get("scale_settings"), (*path, "scale_settings")),
        )

    def endpoints(self, value: Any, deployments: set[str]) -> tuple[Endpoint, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(("endpoints",), "expected a list")
            return ()
        found: list[Endpoint] = []
        seen: set[str] = set()
        for index, item in enumerate(value):
            path: problems.FieldPath = ("endpoints", index)
            endpoint = self.endpoint(item, path, deployments)
            if endpoint is None:
                continue
            if endpoint.name in seen:
                self.problem((*path, "name"), f"endpoint {endpoint.name!r} is listed twice")
            seen.add(endpoint.name)
            found.append(endpoint)
        return tuple(found)

    def endpoint(
        self, item: Any, path: problems.FieldPath, deployments: set[str]
    ) -> Endpoint | None:
        if not isinstance(item, dict):
            self.problem(path, "expected a mapping")
            return None
        self.unknown(item, path, _ENDPOINT_KEYS)
        name = item.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            self.problem((*path, "name"), "expected a non-empty name without '/'")
            return None
        traffic = self.weights(item, path, "traffic", deployments, 100)
        total = sum(traffic.values())
        if total not in (0, 100):
            self.problem(
                (*path, "traffic"), f"the percentages sum to {total}: expected 100 (or all 0)"
            )
        mirror = self.weights(
            item, path, "mirror_traffic", deployments, endpoints.MAX_MIRROR_PERCENT
        )
        for target in mirror:
            if traffic.get(target, 0) > 0:
                self.problem(
                    (*path, "mirror_traffic", target),
                    f"deployment {target!r} takes live traffic: only another one can mirror it",
                )
        return Endpoint(name, traffic, mirror, self.auth(item.get("auth"), (*path, "auth")))

    def weights(
        self,
        data: Mapping[str, Any],
        path: problems.FieldPath,
        key: str,
        deployments: set[str],
        maximum: int,
    ) -> dict[str, int]:
        """A {deployment: percent} mapping naming only known deployments."""
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem((*path, key), "expected a mapping of deployment names to percentages")
            return {}
        found: dict[str, int] = {}
        for target in value:
            where = (*path, key, target)
            if not isinstance(target, str) or target not in deployments:
                hint = problems.did_you_mean(str(target), deployments)
                self.problem(where, f"no deployment named {target!r} in deployments{hint}")
                continue
            percent = self.integer(value, (*path, key), target, -1, minimum=0, maximum=maximum)
            if percent >= 0:
                found[target] = percent
        return found

    def backends(self, value: Any, path: problems.FieldPath) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            self.problem(path, "expected a list of http:// URLs")
            return None
        found: list[str] = []
        for index, url in enumerate(value):
            message = backend_url_problem(url)
            if message:
                self.problem((*path, index), message)
            else:
                found.append(url)
        return tuple(dict.fromkeys(found))  # a URL listed twice is one backend

    def auth(self, value: Any, path: problems.FieldPath) -> Auth:
        if value is None:
            # The rendered file always says the mode; a hand-written one without auth is local.
            return Auth()
        if not isinstance(value, dict):
            self.problem(path, "expected a mapping with mode")
            return Auth()
        self.unknown(value, path, _AUTH_KEYS)
        mode = value.get("mode", "key")
        if mode not in AUTH_MODES:
            self.problem((*path, "mode"), f"expected one of {', '.join(AUTH_MODES)}")
            mode = "none"
        keys = self.strings(value, path, "keys")
        key_files = self.strings(value, path, "key_files")
        signing_key = self.optional_str(value, path, "signing_key")
        signing_key_file = self.optional_str(value, path, "signing_key_file")
        if mode != "key" and (keys or key_files):
            self.problem((*path, "keys"), f"keys are only used in key mode, not {mode}")
        if mode != "token" and (signing_key or signing_key_file):
            self.problem(
                (*path, "signing_key"), f"a signing key is only used in token mode, not {mode}"
            )
        return Auth(
            mode=mode,
            secret=self.optional_str(value, path, "secret"),
            keys=keys,
            key_files=key_files,
            signing_key=signing_key,
            signing_key_file=signing_key_file,
        )

    def scale(self, value: Any, path: problems.FieldPath) -> ScaleSettings:
        defaults = ScaleSettings()
        if value is None:
            return defaults
        if not isinstance(value, dict):
            self.problem(path, "expected a mapping")
            return defaults
        self.unknown(value, path, _SCALE_KEYS)
        kind = value.get("type", defaults.type)
        if kind not in ("target_utilization", "fixed"):
            self.problem((*path, "type"), "expected target_utilization or fixed")
            kind = defaults.type
        low = self.integer(value, path, "min_instances", defaults.min_instances, minimum=0)
        high = self.integer(value, path, "max_instances", max(low, 1), minimum=1)
        if high < low:
            self.problem((*path, "max_instances"), f"is below min_instances ({low})")
        return ScaleSettings(
            type=kind,
            min_instances=low,
            max_instances=high,
            target_utilization_percentage=self.integer(
                value,
                path,
                "target_utilization_percentage",
                defaults.target_utilization_percentage,
                minimum=1,
                maximum=100,
            ),
            polling_interval=self.integer(
                value, path, "polling_interval", defaults.polling_interval, minimum=1
            ),
        )

    def integer(
        self,
        data: Mapping[str, Any],
        path: problems.FieldPath,
        key: str,
        default: int,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = data.get(key, default)
        # bool is an int in Python, never in a config file.
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem((*path, key), f"expected an integer, got {value!r}")
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            self.problem((*path, key), f"expected {bounds}, got {value}")
            return default
        return value

    def optional_str(
        self, data: Mapping[str, Any], path: problems.FieldPath, key: str
    ) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            # Never echo the value: this may be a key.
            self.problem((*path, key), "expected a non-empty string")
            return None
        return value

    def strings(
        self, data: Mapping[str, Any], path: problems.FieldPath, key: str
    ) -> tuple[str, ...]:
        value = data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problem((*path, key), "expected a list of non-empty strings")
            return ()
        return tuple(value)


def backend_url_problem(url: Any) -> str | None:
    """Why `url` cannot be a backend (None when it can): plain http://HOST:PORT[/prefix]."""
    if not isinstance(url, str):
        return "expected an http:// URL"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        return f"{url!r}: only http:// backends are supported"
    try:
        port = parts.port
    except ValueError:
        return f"{url!r}: invalid port"
    if not parts.hostname:
        return f"{url!r}: no host"
    if parts.query or parts.fragment or parts.username or port == 0:
        return f"{url!r}: expected http://HOST[:PORT][/PATH] only"
    return None

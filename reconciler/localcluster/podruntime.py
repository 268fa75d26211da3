"""The local plane's pod runtime: this project's pods, run as local processes on loopback.

kwok makes pods Running without running anything, so on the local plane a model deployment
never answered a request. This runtime is the missing kubelet half for the pods whose
containers the project provides (`podspec.kind_of`): every `SYNC_SECONDS` it lists the pods
carrying the reconciler's managed-by label and, for each one kwok has made Running,

1. marks it not ready (the status a kubelet writes before the readiness probe passes: kwok
   marks pods ready at once); for a model pod whose conda file lists pip packages, installs
   them on top of the model server's environment in the background the first time
   (`condafile`, `modelserver.ensure_environment`; what the local plane leaves out of the file
   is written to the pod's log), the pod waiting meanwhile; lays out its volumes (ConfigMaps
   and Secrets as files, emptyDirs) under a folder of its own, runs its init containers (the
   model copied into the `model` volume by the pod's own `fetch-model` script) and starts its
   container on a free loopback port: a model pod's `azmlinfsrv` (`modelserver`,
   `AZUREML_MODEL_DIR` set as in the pod), a router pod's `reconciler router serve` in-cluster
   with a token of its service account;
2. probes it as its readiness probe says; once it answers, records `POD_IP:PORT ->
   127.0.0.1:LOCAL` in the pod network file (`router.podnetwork`: the router on this machine
   reaches pods through it) and marks the pod Ready, so its EndpointSlice makes it a backend;
3. when the readiness probe fails `failureThreshold` times, marks the pod not ready and drops
   it from the pod network file until it answers again; when the process exits (a crash, a
   kill) or its liveness probe fails `failureThreshold` times after `initialDelaySeconds` (a
   hung server: it is killed, SIGTERM then SIGKILL after LIVENESS_GRACE), does the same and
   starts it again after a backoff (1 s doubling to 30 s), counting `restartCount` as a kubelet
   does;
4. when the pod goes (scaled down, deleted) stops the process (SIGTERM, then SIGKILL) and
   removes its folder.

`runtime.json` in the work folder lists the pods run (kind, name, IP, local URL, a router's
admin URL, pid, ready) for `reconciler score` and `reconciler router top` to find the router;
a router's admin port is in the pod network file too (its peers read its load reports there).
In a real cluster none of this exists and nothing in the router changes: the pod network file
is named only in the environment of the routers this runtime starts.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler import kube, objects, podnetwork
from reconciler.localcluster import condafile, modelserver, podspec

log = logging.getLogger(__name__)

SYNC_SECONDS = 0.5
INIT_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0
# How long a server that failed its liveness probe gets between SIGTERM and SIGKILL. A kubelet
# gives the pod's terminationGracePeriodSeconds; this runtime tends every pod from one loop, and
# a hung server rarely acts on SIGTERM anyway.
LIVENESS_GRACE = 2.0
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
TOKEN_SECONDS = 24 * 3600
UNSUPPORTED_RETRY = 10.0  # seconds between tries of a pod that cannot run as it is
RUNTIME_FILE = "runtime.json"
NETWORK_FILE = "pod-network.json"
# Passed from this process's environment to the processes it starts (an image has its own).
BASE_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
ROUTER_VARIABLES = ("PYTHONPATH",)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Managed:
    """One pod this runtime runs, and where its process stands."""

    pod: objects.Object
    local: podspec.LocalPod | None = None
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False
    restarts: int = 0
    failures: int = 0  # consecutive failed readiness probes
    live_failures: int = 0  # consecutive failed liveness probes
    next_start: float = 0.0
    next_probe: float = 0.0
    next_liveness: float = 0.0
    problem: str | None = None
    status_ready: bool | None = None  # what was last written to the pod's status
    config_text: str | None = field(default=None, repr=False)
    # A router's (mounted router.yaml, the copy on its loopback port it reads).
    router_config: tuple[Path, Path] | None = None
    next_config_check: float = 0.0


class Runtime:
    """Runs this project's pods of one plane (optionally of one namespace) until stopped."""

    def __init__(
        self,
        cluster: kube.Cluster,
        work_dir: Path,
        model_server: Path,
        *,
        namespace: str = "",
        python: str = sys.executable,
    ) -> None:
        self.cluster = cluster
        self.work_dir = work_dir
        self.model_server = model_server
        self.namespace = namespace
        self.python = python
        self.pods: dict[str, Managed] = {}  # by uid
        self.network_file = work_dir / NETWORK_FILE
        self._stop = threading.Event()
        self._published: tuple[dict[str, str], list[dict[str, Any]]] | None = None
        # Conda files' environments by `condafile.Environment.key`, each installed by a
        # daemon thread: stopping the runtime never waits for a pip install.
        self._installs: dict[str, concurrent.futures.Future[Path]] = {}

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        podnetwork.write(self.network_file, {})
        where = f"namespace {self.namespace}" if self.namespace else "every namespace"
        log.info("pod runtime for %s", where)
        try:
            while not self._stop.is_set():
                try:
                    self.sync()
                except kube.KubeError as err:
                    log.warning("listing pods failed: %s", err)
                self._stop.wait(SYNC_SECONDS)
        finally:
            self._stop_all()

    def _stop_all(self) -> None:
        """Every pod's process stopped together: SIGTERM to all, then wait, as at a shutdown."""
        for managed in self.pods.values():
            managed.ready = False
            if managed.process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(managed.process.pid, signal.SIGTERM)
        self._publish()
        for uid in list(self.pods):
            self._forget(uid)

    def stop(self) -> None:
        self._stop.set()

    def sync(self) -> None:
        selector = f"{objects.MANAGED_BY_LABEL}={objects.MANAGED_BY}"
        listed = kube.list_objects(self.cluster, "v1", "Pod", self.namespace, selector)
        wanted = {
            pod["metadata"]["uid"]: pod
            for pod in listed
            if podspec.kind_of(pod) and podspec.runnable(pod)
        }
        for uid in [uid for uid in self.pods if uid not in wanted]:
            self._forget(uid)
        now = time.monotonic()
        for uid, pod in wanted.items():
            managed = self.pods.setdefault(uid, Managed(pod))
            managed.pod = pod
            try:
                self._tend(managed, now)
            except kube.KubeError as err:
                log.warning("pod %s: %s", _name(pod), err)
        self._publish()

    # -- one pod ------------------------------------------------------------------------------

    def _tend(self, managed: Managed, now: float) -> None:
        if managed.process is None:
            if now >= managed.next_start:
                self._start(managed)
        elif managed.process.poll() is not None:
            code = managed.process.returncode
            log.warning("pod %s: its server exited with %s", _name(managed.pod), code)
            self._kill(managed)
            self._restart_later(managed, now, f"the server exited with {code}")
        else:
            if now >= managed.next_probe:
                self._probe(managed, now)
            if now >= managed.next_liveness:
                self._check_liveness(managed, now)
        if managed.process is not None and managed.local is not None:
            self._refresh_router_config(managed)
        self._write_status(managed)

    def _start(self, managed: Managed) -> None:
        pod = managed.pod
        self._set_ready(managed, False)
        self._write_status(managed)  # not ready before anything runs
        try:
            local = self._plan(pod)
            notes = self._use_conda_environment(local)
            managed.router_config = self._router_config_paths(local)
            self._lay_out(local, managed)
            for step in local.init:
                self._run_init(local, step)
        except Installing as waiting:
            if managed.problem != str(waiting):
                log.info("pod %s: %s", _name(pod), waiting)
            managed.problem = str(waiting)
            managed.next_start = time.monotonic() + 1.0
            return
        except (podspec.Unsupported, InitFailed, OSError, kube.KubeError) as err:
            if managed.problem != str(err):
                log.warning("pod %s cannot run (trying again every %.0fs): %s",
                            _name(pod), UNSUPPORTED_RETRY, err)  # fmt: skip
            managed.problem = str(err)
            managed.next_start = time.monotonic() + UNSUPPORTED_RETRY
            return
        managed.problem = None
        managed.local = local
        assert local.main is not None
        logfile = self._log_path(local)
        with open(logfile, "ab") as out:
            out.writelines(f"--- {note}\n".encode() for note in notes)
            out.flush()
            managed.process = subprocess.Popen(
                local.main.argv,
                cwd=local.main.cwd,
                env=local.main.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill reaches all of it
                preexec_fn=_die_with_parent,
                close_fds=True,
            )
        started = time.monotonic()
        managed.failures = managed.live_failures = 0
        managed.next_probe = started + 0.2
        liveness = local.liveness
        managed.next_liveness = started + liveness.initial_delay if liveness else float("inf")
        log.info(
            "pod %s: %s serving %s on 127.0.0.1:%d (pid %d, log %s)",
            _name(pod),
            local.kind,
            local.key,
            local.local_port,
            managed.process.pid,
            logfile,
        )

    def _plan(self, pod: objects.Object) -> podspec.LocalPod:
        kind = podspec.kind_of(pod)
        names = (*BASE_VARIABLES, *(ROUTER_VARIABLES if kind == podspec.ROUTER else ()))
        base = {name: os.environ[name] for name in names if name in os.environ}
        if kind == podspec.ROUTER:
            base[podnetwork.VARIABLE] = str(self.network_file)
        config_names, secret_names = podspec.references(pod)
        namespace = pod["metadata"]["namespace"]
        config_maps = self._read("ConfigMap", namespace, config_names)
        secrets = self._read("Secret", namespace, secret_names)
        metadata = pod["metadata"]
        root = self.work_dir / "pods" / namespace / f"{metadata['name']}"
        # A home of its own, as a container has: gunicorn (in azmlinfsrv) puts its control
        # socket under $HOME, which every model server of the machine would otherwise share.
        base["HOME"] = str(root / "home")
        local = podspec.plan(
            pod,
            config_maps,
            secrets,
            root=str(root),
            local_port=free_port(),
            model_server=str(self.model_server),
            python=self.python,
            base_env=base,
            admin_local_port=free_port() if kind == podspec.ROUTER else 0,
        )
        local.directories.append(base["HOME"])
        if local.kind == podspec.ROUTER and local.main is not None:
            kubeconfig = root / "kubeconfig"
            local.files[str(kubeconfig)] = self._service_account_kubeconfig(local)
            local.main.argv.extend(["--in-cluster", "--kubeconfig", str(kubeconfig)])
        return local

    def _read(self, kind: str, namespace: str, names: set[str]) -> dict[str, objects.Object]:
        found = {}
        for name in sorted(names):
            metadata = {"name": name, "namespace": namespace}
            ref: objects.Object = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
            obj = kube.get(self.cluster, ref)
            if obj is not None:
                found[name] = obj
        return found

    def _service_account_kubeconfig(self, local: podspec.LocalPod) -> bytes:
        """A kubeconfig authenticating as the pod's service account (what its projected token
        volume would give it), so that the router works with exactly its Role."""
        token = kube.service_account_token(
            self.cluster, local.namespace, local.service_account, TOKEN_SECONDS
        )
        server, ca_file = kube.server_settings(self.cluster)
        cluster: dict[str, Any] = {"server": server}
        if ca_file:
            cluster["certificate-authority-data"] = _b64(Path(ca_file).read_bytes())
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": local.service_account, "user": {"token": token}}],
            "contexts": [
                {"name": "pod", "context": {"cluster": "local", "user": local.service_account}}
            ],
            "current-context": "pod",
        }
        return yaml.safe_dump(config).encode()

    def _lay_out(self, local: podspec.LocalPod, managed: Managed) -> None:
        root = Path(local.root)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, mode=0o700)
        for directory in local.directories:
            Path(directory).mkdir(parents=True, exist_ok=True)
        for path, content in local.files.items():
            file = Path(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(content)
            file.chmod(0o600)
        for link, volume in local.links.items():
            Path(volume).mkdir(parents=True, exist_ok=True)
            Path(link).parent.mkdir(parents=True, exist_ok=True)
            Path(link).symlink_to(volume)
        if local.kind == podspec.ROUTER:
            managed.config_text = None
            self._refresh_router_config(managed, local)

    def _use_conda_environment(self, local: podspec.LocalPod) -> list[str]:
        """Point a model pod's server at the environment its conda file asks for (raises
        Installing until it is installed, InitFailed when that failed); returns what of the
        file the local plane leaves out, for the pod's log."""
        text = podspec.conda_file(local) if local.kind == podspec.MODEL else None
        if text is None or local.main is None:
            return []
        try:
            wanted = condafile.read(text.decode(errors="replace"))
        except condafile.CondaFileError as err:
            raise InitFailed(f"its conda file: {err}") from err
        notes = [f"conda file, not installed on the local plane: {why}" for why in wanted.left_out]
        if not wanted.pip:
            return notes
        install = self._installs.get(wanted.key)
        if install is None:
            install = self._installs[wanted.key] = self._install(wanted)
        if not install.done():
            raise Installing(f"installing {' '.join(wanted.pip)} from its conda file")
        error = install.exception()
        if error is not None:
            del self._installs[wanted.key]  # tried again at the pod's next start
            raise InitFailed(f"installing its conda file's packages: {error}")
        local.main.argv.insert(0, str(install.result()))
        return [*notes, f"conda file: pip packages {' '.join(wanted.pip)} installed"]

    def _install(self, wanted: condafile.Environment) -> concurrent.futures.Future[Path]:
        installed: concurrent.futures.Future[Path] = concurrent.futures.Future()

        def run() -> None:
            try:
                installed.set_result(
                    modelserver.ensure_environment(self.model_server, wanted.pip, wanted.key)
                )
            except Exception as err:  # reported by the pod's next start
                installed.set_exception(err)

        threading.Thread(target=run, name=f"pip {wanted.key}", daemon=True).start()
        return installed

    def _router_config_paths(self, local: podspec.LocalPod) -> tuple[Path, Path] | None:
        """A router's (mounted router.yaml, the copy it reads here); its `--config` is pointed
        at the copy."""
        if local.kind != podspec.ROUTER or local.main is None:
            return None
        argv = local.main.argv
        if "--config" not in argv:
            return None
        index = argv.index("--config") + 1
        mounted = Path(argv[index])
        copy = Path(local.root) / f".local-{mounted.name}"
        argv[index] = str(copy)
        return mounted, copy

    def _refresh_router_config(
        self, managed: Managed, local: podspec.LocalPod | None = None
    ) -> None:
        """Keep a router's config copy on its loopback port, following its ConfigMap."""
        local = local or managed.local
        if local is None or managed.router_config is None:
            return
        mounted, copy = managed.router_config
        now = time.monotonic()
        if managed.process is not None:
            if now < managed.next_config_check:
                return
            self._follow_config_map(managed, local)
        managed.next_config_check = now + 2.0
        text = podspec.router_config(
            mounted.read_text(),
            local.local_port,
            podspec.mount_paths(managed.pod),
            local.root,
            local.admin[1] if local.admin is not None else 0,
        )
        if text != managed.config_text:
            partial = copy.with_name(copy.name + ".partial")
            partial.write_text(text)
            partial.replace(copy)  # the router reloads a changed file without a restart
            managed.config_text = text

    def _follow_config_map(self, managed: Managed, local: podspec.LocalPod) -> None:
        """Rewrite the mounted ConfigMap files from the live ConfigMaps (a kubelet does this
        for mounted ConfigMaps, within a minute; here within two seconds)."""
        config_names, secret_names = podspec.references(managed.pod)
        config_maps = self._read("ConfigMap", local.namespace, config_names)
        secrets = self._read("Secret", local.namespace, secret_names)
        try:
            fresh = podspec.plan(
                managed.pod,
                config_maps,
                secrets,
                root=local.root,
                local_port=local.local_port,
                model_server=str(self.model_server),
                python=self.python,
                base_env={},
                admin_local_port=local.admin[1] if local.admin is not None else 0,
            )
        except podspec.Unsupported:
            return
        for path, content in fresh.files.items():
            target = Path(path)
            if target.is_file() and target.read_bytes() != content:
                partial = target.with_name(target.name + ".partial")
                partial.write_bytes(content)
                partial.replace(target)

    def _run_init(self, local: podspec.LocalPod, step: podspec.Process) -> None:
        with open(self._log_path(local), "ab") as out:
            out.write(f"--- init container {step.name}\n".encode())
            out.flush()
            try:
                done = subprocess.run(
                    step.argv,
                    cwd=step.cwd,
                    env=step.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=INIT_TIMEOUT,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as err:
                raise InitFailed(f"init container {step.name}: {err}") from err
        if done.returncode != 0:
            raise InitFailed(f"init container {step.name} exited with {done.returncode}")

    def _probe(self, managed: Managed, now: float) -> None:
        local = managed.local
        assert local is not None
        probe = local.probe or podspec.Probe("/", "http", 1.0, 3)
        managed.next_probe = now + (min(probe.period, 1.0) if managed.ready else 0.2)
        if _answers(local, probe):
            managed.failures = 0
            if not managed.ready:
                self._set_ready(managed, True)
            return
        if not managed.ready:
            return  # still starting
        managed.failures += 1
        if managed.failures >= probe.failure_threshold:
            log.warning("pod %s: readiness probe failed %d times", _name(managed.pod),
                        managed.failures)  # fmt: skip
            self._set_ready(managed, False)

    def _check_liveness(self, managed: Managed, now: float) -> None:
        """The liveness probe, when due; a server that fails it `failureThreshold` times in a
        row is killed and started again, as a kubelet restarts the container."""
        local = managed.local
        assert local is not None and local.liveness is not None
        probe = local.liveness
        managed.next_liveness = now + probe.period
        if _answers(local, probe):
            managed.live_failures = 0
            return
        managed.live_failures += 1
        if managed.live_failures < probe.failure_threshold:
            return
        why = f"liveness probe failed {managed.live_failures} times"
        log.warning("pod %s: %s; killing its server", _name(managed.pod), why)
        self._set_ready(managed, False)  # out of the pod network before the kill's wait
        self._kill(managed, grace=LIVENESS_GRACE)
        self._restart_later(managed, now, why)

    def _restart_later(self, managed: Managed, now: float, why: str, count: bool = True) -> None:
        self._set_ready(managed, False)
        if count:
            managed.restarts += 1
        delay = BACKOFF_SECONDS[min(max(managed.restarts, 1), len(BACKOFF_SECONDS)) - 1]
        managed.next_start = now + delay
        log.info("pod %s: %s; starting again in %.0fs", _name(managed.pod), why, delay)

    def _set_ready(self, managed: Managed, ready: bool) -> None:
        managed.ready = ready
        self._publish()  # the pod network first: a Ready pod is always reachable

    def _write_status(self, managed: Managed) -> None:
        """Write Ready / not ready to the pod's status when it differs from what it says."""
        pod = managed.pod
        live = podspec.is_ready(pod)
        restarts = [c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", [])]
        if live == managed.ready and all(r == managed.restarts for r in restarts):
            managed.status_ready = live
            return
        status = podspec.ready_status(pod, managed.ready, managed.restarts, _now())
        try:
            managed.pod = kube.patch_pod_status(
                self.cluster, pod["metadata"]["namespace"], pod["metadata"]["name"], status
            )
        except kube.KubeError as err:
            if err.status != 404:  # gone meanwhile: the next sync forgets it
                raise
            return
        managed.status_ready = managed.ready
        log.info("pod %s: %s", _name(pod), "Ready" if managed.ready else "not ready")

    def _kill(self, managed: Managed, grace: float = STOP_TIMEOUT) -> None:
        process, managed.process = managed.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # what the leader left behind (its workers)

    def _forget(self, uid: str) -> None:
        managed = self.pods.pop(uid)
        managed.ready = False
        self._publish()
        self._kill(managed)
        if managed.local is not None:
            shutil.rmtree(managed.local.root, ignore_errors=True)
        log.info("pod %s: stopped", _name(managed.pod))

    # -- what others read ---------------------------------------------------------------------

    def _log_path(self, local: podspec.LocalPod) -> Path:
        folder = self.work_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{local.namespace}_{local.name}.log"

    def _publish(self) -> None:
        mapping: dict[str, str] = {}
        pods: list[dict[str, Any]] = []
        for managed in self.pods.values():
            local = managed.local
            if local is None:
                continue
            if managed.ready and managed.process is not None:
                mapping[local.key] = f"127.0.0.1:{local.local_port}"
                if local.admin is not None and local.admin_key is not None:
                    mapping[local.admin_key] = f"127.0.0.1:{local.admin[1]}"
            assert local.main is not None
            pods.append(
                {
                    "kind": local.kind,
                    "namespace": local.namespace,
                    "name": local.name,
                    "address": local.key,
                    "url": f"http://127.0.0.1:{local.local_port}",
                    # A router's metrics and load reports.
                    "admin_url": (
                        f"http://127.0.0.1:{local.admin[1]}" if local.admin is not None else None
                    ),
                    "pid": managed.process.pid if managed.process else None,
                    "ready": managed.ready,
                    "restarts": managed.restarts,
                    "service": local.main.env.get("ROUTER_SERVICE"),
                    "log": str(self._log_path(local)),
                }
            )
        pods.sort(key=lambda p: (p["namespace"], p["name"]))
        if self._published == (mapping, pods):
            return
        podnetwork.write(self.network_file, mapping)
        partial = self.work_dir / f".{RUNTIME_FILE}.partial"
        partial.write_text(json.dumps({"pods": pods}, indent=1))
        partial.replace(self.work_dir / RUNTIME_FILE)
        self._published = (mapping, pods)


class InitFailed(Exception):
    """An init container (or the install of its conda file) failed; tried again later."""


class Installing(Exception):
    """The pod's conda environment is being installed; the pod starts once it is."""


# A kubelet's HTTPS probe does not verify the server's certificate; neither does this one.
_PROBE_TLS = ssl.create_default_context()
_PROBE_TLS.check_hostname = False
_PROBE_TLS.verify_mode = ssl.CERT_NONE


def _answers(local: podspec.LocalPod, probe: podspec.Probe) -> bool:
    """Whether the pod's server answers the probe within its timeout (2xx / 3xx, as a kubelet
    counts an HTTP probe)."""
    url = f"{probe.scheme}://127.0.0.1:{local.local_port}{probe.path}"
    try:
        with urllib.request.urlopen(url, timeout=probe.timeout, context=_PROBE_TLS) as response:
            return 200 <= int(response.status) < 400
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _name(pod: objects.Object) -> str:
    metadata = pod.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


def read_pods(work_dir: Path) -> list[dict[str, Any]]:
    """The pods a runtime with this work folder runs, as it last recorded them."""
    try:
        data = json.loads((work_dir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return []
    pods = data.get("pods") if isinstance(data, dict) else None
    return [p for p in pods or [] if isinstance(p, dict)]


def serve(cluster: kube.Cluster, work_dir: Path, model_server: Path, namespace: str = "") -> None:
    """Run the runtime in this thread until SIGTERM / SIGINT."""
    runtime = Runtime(cluster, work_dir, model_server, namespace=namespace)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runtime.stop())
    runtime.run()

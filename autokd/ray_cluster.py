"""Joining a Ray cluster, for search and retrain alike.

- `probe_address`: a HOST:PORT is checked to be a Ray head within seconds, before anything is written: it must take a
  TCP connection and answer the HTTP/2 handshake (Ray's GCS is a gRPC server). `ray.init` on an open port that is
  not Ray retries for minutes with a warning every 5 s.
- `join`: `ray.init` once per process (a private instance unless an address or RAY_ADDRESS names a cluster), its
  errors as one-line user errors, and the shape of the cluster: the CPUs of each live node and the GPUs.
- `fit_trials`: threads per trial fitted to the biggest node (a task asking more CPUs than any node has waits
  forever) and the trials that fit at once, node by node.
- `lost_node`: whether a task's exception means its node (or its worker's owner) went away — the environment's
  failure, rerun elsewhere — rather than the trial's.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

from autokd.errors import UserError

MAX_LOST_RETRIES = 3  # reruns of one trial or sample after its node died; then it counts as the environment's failure
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # length 0, type SETTINGS (4), flags 0, stream 0
_SETTINGS_TYPE = 4
# ray.exceptions names that mean "the node (or the process that owned the task) is gone", not "the trial raised"
_LOST_NODE_ERRORS = ("NodeDiedError", "OwnerDiedError", "ObjectLostError", "ObjectFetchTimedOutError",
                     "ReferenceCountingAssertionError", "RaySystemError", "LocalRayletDiedError")


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a HOST:PORT or ray://HOST:PORT address; None for `auto` / `local`. Bad text: UserError."""
    if address in ("auto", "local"):
        return None
    text = address[6:] if address.startswith("ray://") else address
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address!r} is not HOST:PORT (or auto)")
    return host.strip("[]"), int(port)


def probe_address(address: str, timeout: float = 3.0) -> None:
    """Raise UserError within about `timeout` seconds when `address` cannot be reached or does not answer as Ray
    (HTTP/2, what a gRPC server speaks first). `auto` and `local` are left to `join`."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_PREFACE + _EMPTY_SETTINGS)
            head = sock.recv(9)
    except socket.timeout:
        head = b""
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it with "
                        f"`ray start --head` or fix --ray-address") from None
    if len(head) < 4 or head[3] != _SETTINGS_TYPE:
        raise UserError(f"{address} answers, but not as a Ray cluster (no gRPC handshake in {timeout:g}s); "
                        f"--ray-address takes the head's GCS port (`ray start --head` prints it; default 6379)")


@dataclass(frozen=True)
class ClusterShape:
    node_cpus: tuple[int, ...]  # logical CPUs of each live node
    gpus: float  # logical GPUs of the whole cluster

    @property
    def cpus(self) -> int:
        return sum(self.node_cpus)


def shape(dead: frozenset[str] = frozenset()) -> ClusterShape:
    """The live nodes' resources of the cluster this process has joined; `dead`: node ids known lost that Ray may
    still list as alive (its heartbeat timeout takes seconds)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("NodeID") not in dead]
    cpus = tuple(int(n.get("Resources", {}).get("CPU", 0)) for n in nodes)
    gpus = sum(float(n.get("Resources", {}).get("GPU", 0.0)) for n in nodes)
    return ClusterShape(cpus, gpus)


def join(address: str | None = None, num_cpus: int | None = None, num_gpus: float | None = None) -> ClusterShape:
    """Join the cluster at `address` (or RAY_ADDRESS); without either, start a private local instance — never the
    latest `ray start` cluster of this machine, which a bare ray.init() would join. `num_cpus` / `num_gpus` declare a
    private instance's resources (tests use logical GPUs on a CPU). Idempotent within a process."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        raise UserError("the ray executor needs the ray package: pip install ray") from None
    if not ray.is_initialized():
        if address:
            probe_address(address)
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        elif not os.environ.get("RAY_ADDRESS"):
            kwargs.update(address="local", num_cpus=num_cpus, num_gpus=num_gpus)
        where = address or os.environ.get("RAY_ADDRESS")
        with tempfile.TemporaryFile() as said:
            try:
                with _fd2_to(said):  # Ray's C++ client retries with a warning line a second: keep them off screen
                    ray.init(**kwargs)
            except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError, ValueError
                said.seek(0)
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if type(exc).__name__ == "AuthenticationError" or b"InvalidAuthToken" in said.read():
                    first = ("it uses token authentication: set RAY_AUTH_MODE=token and put its token in "
                             "~/.ray/auth_token or RAY_AUTH_TOKEN (or start every node with RAY_AUTH_MODE=disabled)")
                raise UserError(f"cannot join the Ray cluster at {where or 'this machine'}: {first}") from None
        _errors_to_log()
    return shape()


@contextlib.contextmanager
def _fd2_to(file: Any) -> Iterator[None]:
    """Send file descriptor 2 (where Ray's C++ core logs, below Python's sys.stderr) to `file` for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def fit_trials(cluster: ClusterShape, threads: int) -> tuple[int, int]:
    """(threads per trial, trials at once) on a CPU cluster: no trial asks for more CPUs than the biggest node has,
    and each node runs ⌊its CPUs / threads⌋ trials. UserError when no node has a CPU."""
    biggest = max(cluster.node_cpus, default=0)
    if biggest < 1:
        raise UserError("the Ray cluster has no node with a CPU; add one (`ray start --address ... --num-cpus N`)")
    fitted = max(1, min(int(threads), biggest))
    return fitted, sum(c // fitted for c in cluster.node_cpus)


def lost_node(exc: BaseException) -> bool:
    """True when a task failed because its node or owner went away (not because the trial raised)."""
    return any(t.__name__ in _LOST_NODE_ERRORS for t in type(exc).__mro__)


def lost_node_id(exc: BaseException) -> str | None:
    """The id of the dead node that a NodeDiedError names (Ray gives it only in the message)."""
    found = re.search(r"node ID: ([0-9a-f]{16,})", str(exc))
    return found.group(1) if found else None


def where_am_i() -> dict[str, str]:
    """The node of the current Ray worker: its id (short) and IP, for the journal."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    try:
        ip = ray.util.get_node_ip_address()
    except Exception:  # pragma: no cover - an old Ray
        ip = socket.gethostname()
    return {"node_id": str(node)[:12], "node_ip": str(ip)}


_ERROR_LOG: list[str] = []  # where Ray's cluster-error text goes (one path; empty: printed, as Ray does)


def log_errors_to(path: str | os.PathLike[str] | None) -> None:
    """Send the cluster errors Ray prints on the driver to the file `path` (appended) instead of the terminal."""
    _ERROR_LOG[:] = [os.fspath(path)] if path else []


def _errors_to_log() -> None:
    """Ray prints every cluster error it hears of (a node's death: ≈ 36 lines of raylet state) to the driver's
    stdout. autokd reports the failure itself in one line; Ray's text goes to the file of `log_errors_to` (a file in
    the run directory) or, without one, stays printed as before."""
    try:
        import ray._private.worker as ray_worker
    except ImportError:  # pragma: no cover
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_autokd", False):
        return

    def to_log(data: dict[str, Any], ignore_prefix: bool = False, *args: Any, **kwargs: Any) -> None:
        path = _ERROR_LOG[0] if _ERROR_LOG else None
        if data.get("pid") != "raylet" or not path:
            return original(data, ignore_prefix, *args, **kwargs)
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("\n".join(str(line) for line in data.get("lines", [])) + "\n")
        except OSError:
            return original(data, ignore_prefix, *args, **kwargs)
        return None

    to_log._autokd = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_log

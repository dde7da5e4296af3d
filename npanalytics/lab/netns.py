"""Safe primitives for the lab: network namespaces, links and commands run inside them.

Everything the lab does to the kernel goes through a :class:`LabSession`, which

- refuses any namespace whose name lacks the ``npa-lab-`` prefix and any address
  outside 198.18.0.0/15 (or inside the sub-ranges other test suites own),
- creates links only between lab namespaces (``ip -n A link add ... peer ... netns B``),
  so the root namespace never gets an interface, route, sysctl or netfilter rule,
- records every namespace, link and process it creates, and removes all of them
  in ``finally``, also when SIGINT or SIGTERM arrives while the session is open.

:func:`cleanup_leftovers` removes the ``npa-lab-*`` namespaces that a killed run
left behind (``npanalytics lab down``). :func:`check_environment` says, before
anything is built, what this machine lacks. IPVS is checked through
``/proc/net/ip_vs`` only: the lab never runs ``modprobe`` nor ``ipvsadm``
(which would try to load the module).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..exceptions import LabError

__all__ = [
    "NAMESPACE_PREFIX",
    "LAB_NETWORK",
    "RESERVED_NETWORKS",
    "PROXY_MODES",
    "LabSession",
    "check_namespace_name",
    "check_address",
    "check_environment",
    "cleanup_leftovers",
    "lab_namespaces",
    "run",
]

NAMESPACE_PREFIX = "npa-lab-"
LAB_NETWORK = ipaddress.ip_network("198.18.0.0/15")
#: Sub-ranges of 198.18.0.0/15 that other test suites use; the lab never touches them.
RESERVED_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("198.18.10.0/24", "198.18.20.0/24", "198.18.30.0/24")
)
PROXY_MODES = ("iptables-legacy", "iptables-nft", "nftables", "ipvs")

#: Binaries each proxy mode needs inside a node namespace (besides ``ip`` and ``conntrack``).
MODE_BINARIES = {
    "iptables-legacy": ("iptables-legacy-restore", "iptables-legacy-save"),
    "iptables-nft": ("iptables-nft-restore", "iptables-nft-save"),
    "nftables": ("nft",),
    "ipvs": ("ipvsadm",),
}
COMMON_BINARIES = ("ip", "conntrack", "sysctl")
#: Kernel features, as files that exist only when the feature is built in or loaded.
MODE_KERNEL_FILES = {
    "iptables-legacy": ("/proc/net/ip_tables_names", "ip_tables (legacy iptables)"),
    "ipvs": ("/proc/net/ip_vs", "ip_vs"),
}
NETNS_FILE = "/proc/self/ns/net"
CONNTRACK_FILE = "/proc/sys/net/netfilter/nf_conntrack_acct"

DEFAULT_TIMEOUT_SECONDS = 30.0
_MAX_NAME = 15  # IFNAMSIZ - 1


def check_namespace_name(name: str) -> str:
    """Return ``name`` if it is a lab namespace name, else raise :class:`LabError`."""
    if not isinstance(name, str) or not name.startswith(NAMESPACE_PREFIX) or name == NAMESPACE_PREFIX:
        raise LabError(
            f"refusing namespace {name!r}: lab namespaces must be named {NAMESPACE_PREFIX}<something>"
        )
    if not all(c.isalnum() or c in "-_." for c in name) or len(name) > 64:
        raise LabError(f"refusing namespace {name!r}: use letters, digits, '-', '_' or '.' (at most 64)")
    return name


def check_address(address: str) -> str:
    """Return ``address`` (``"a.b.c.d"`` or ``"a.b.c.d/len"``) if the lab may use it.

    Raises
    ------
    LabError
        When the address (or network) is not inside 198.18.0.0/15, or overlaps one
        of :data:`RESERVED_NETWORKS`.
    """
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError as exc:
        raise LabError(f"refusing address {address!r}: not an IPv4 address ({exc})") from None
    if iface.version != 4 or not iface.network.subnet_of(LAB_NETWORK):  # type: ignore[arg-type]
        raise LabError(f"refusing address {address!r}: the lab only uses {LAB_NETWORK}")
    for reserved in RESERVED_NETWORKS:
        if iface.ip in reserved or (
            "/" in str(address) and iface.network.overlaps(reserved)  # type: ignore[arg-type]
        ):
            raise LabError(f"refusing address {address!r}: {reserved} belongs to other test suites")
    return address


def _describe(args: Sequence[str]) -> str:
    return " ".join(str(a) for a in args)


def run(
    args: Sequence[str],
    *,
    namespace: str | None = None,
    input: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (list arguments, no shell), optionally inside a lab namespace.

    Parameters
    ----------
    args : sequence of str
        The command.
    namespace : str, optional
        Run it as ``ip netns exec <namespace> <args>``; the name must carry the lab prefix.
    input : str, optional
        Text fed on stdin.
    timeout : float
        Seconds before the command is killed.
    check : bool
        Raise :class:`LabError` on a non-zero exit status.
    env : mapping, optional
        Variables added to (not replacing) the environment.

    Returns
    -------
    subprocess.CompletedProcess
        With text ``stdout`` and ``stderr``.
    """
    full = [str(a) for a in args]
    if namespace is not None:
        full = ["ip", "netns", "exec", check_namespace_name(namespace), *full]
    try:
        proc = subprocess.run(
            full, input=input, capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError:
        raise LabError(f"command not found: {full[0]} (running {_describe(full)!r})") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"command timed out after {timeout} s: {_describe(full)!r}") from None
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed with status {proc.returncode}: {_describe(full)!r}: "
            f"{proc.stderr.strip()[:2000]}"
        )
    return proc


def lab_namespaces() -> list[str]:
    """Names of the existing network namespaces that carry the lab prefix."""
    out = run(["ip", "netns", "list"]).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(NAMESPACE_PREFIX))


def _kill_namespace_processes(name: str) -> None:
    """SIGKILL the processes living in lab namespace ``name`` (only lab processes live there)."""
    proc = run(["ip", "netns", "pids", name], check=False, timeout=10)
    for token in proc.stdout.split():
        try:
            os.kill(int(token), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass


def _delete_namespace(name: str) -> None:
    check_namespace_name(name)
    _kill_namespace_processes(name)
    run(["ip", "netns", "delete", name], check=False, timeout=10)


def cleanup_leftovers(prefix: str = NAMESPACE_PREFIX) -> list[str]:
    """Delete every ``npa-lab-*`` namespace (and the processes in it) that a crashed run left.

    Parameters
    ----------
    prefix : str
        Only namespaces whose name starts with it, e.g. ``"npa-lab-1a2b3c-"`` for one
        run; it must itself start with ``npa-lab-``.

    Returns
    -------
    list of str
        The namespaces removed. Namespaces without the lab prefix are never touched.
    """
    if not prefix.startswith(NAMESPACE_PREFIX):
        raise LabError(f"refusing prefix {prefix!r}: it must start with {NAMESPACE_PREFIX}")
    removed = []
    for name in lab_namespaces():
        if name.startswith(prefix):
            _delete_namespace(name)
            removed.append(name)
    remaining = set(lab_namespaces()) & set(removed)
    if remaining:
        raise LabError(f"could not delete lab namespaces: {sorted(remaining)}")
    return removed


def check_environment(proxy_modes: Iterable[str] = ("iptables-legacy",)) -> None:
    """Check that the lab can run here, for the given proxy modes.

    Raises
    ------
    LabError
        Not root; a needed binary is missing from PATH; the kernel lacks network
        namespaces, conntrack, legacy iptables, or (for ``"ipvs"``) the ``ip_vs``
        module. The IPVS check only looks at ``/proc/net/ip_vs``: no module is loaded.
    """
    modes = list(proxy_modes)
    for mode in modes:
        if mode not in PROXY_MODES:
            raise LabError(f"proxy_mode must be one of {', '.join(PROXY_MODES)}; got {mode!r}")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces); run it as root or with sudo")
    if not os.path.exists(NETNS_FILE):
        raise LabError(f"this kernel has no network namespaces ({NETNS_FILE} is missing)")
    for mode in modes:
        if mode in MODE_KERNEL_FILES:
            path, module = MODE_KERNEL_FILES[mode]
            if not os.path.exists(path):
                raise LabError(
                    f"proxy_mode {mode!r} needs the kernel module {module}, which is not loaded "
                    f"({path} is missing); the lab never loads modules: load it yourself or "
                    f"pick another proxy_mode"
                )
    needed = list(COMMON_BINARIES)
    for mode in modes:
        needed.extend(MODE_BINARIES[mode])
    missing = [b for b in dict.fromkeys(needed) if shutil.which(b) is None]
    if missing:
        raise LabError(f"the lab needs these binaries on PATH: {', '.join(missing)}")
    if not os.path.exists(CONNTRACK_FILE):
        raise LabError(f"this kernel has no connection tracking ({CONNTRACK_FILE} is missing)")


class LabSession:
    """Owns every namespace, link and process of one lab run; tears them down on exit.

    Use it as a context manager. While it is open, SIGINT and SIGTERM raise
    ``KeyboardInterrupt`` in the main thread so that the ``with`` block unwinds and
    the teardown runs; the previous handlers are restored afterwards. A second
    signal during teardown is ignored until the teardown is done.

    Commands run in a namespace get ``XTABLES_LOCKFILE`` pointing to a lock file of
    that namespace (in a private temporary folder): the default ``/run/xtables.lock``
    is shared by every namespace of the machine, so another suite loading large rule
    sets would otherwise stall (and distort the timing of) the lab's rule loads.

    Examples
    --------
    >>> with LabSession() as lab:                       # doctest: +SKIP
    ...     lab.add_namespace("npa-lab-node-a")
    ...     lab.exec("npa-lab-node-a", ["ip", "addr"])
    """

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.links: list[tuple[str, str, str, str]] = []
        self.processes: list[subprocess.Popen[Any]] = []
        self._old_handlers: dict[int, Any] = {}
        self._lock_dir: str | None = None
        self._tearing_down = False
        self._open = False

    # -- context management ---------------------------------------------------------------
    def __enter__(self) -> LabSession:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
        self._lock_dir = tempfile.mkdtemp(prefix="npa-lab-locks-")
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._tearing_down:
            return
        raise KeyboardInterrupt(f"lab interrupted by {signal.Signals(signum).name}")

    def close(self) -> None:
        """Stop the processes, delete the namespaces (and so their links), restore handlers."""
        self._tearing_down = True
        try:
            for proc in self.processes:
                if proc.poll() is None:
                    proc.kill()
            for proc in self.processes:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            for name in reversed(self.namespaces):
                _delete_namespace(name)
            self.namespaces.clear()
            self.links.clear()
            self.processes.clear()
            if self._lock_dir is not None:
                shutil.rmtree(self._lock_dir, ignore_errors=True)
                self._lock_dir = None
        finally:
            for signum, handler in self._old_handlers.items():
                signal.signal(signum, handler)
            self._old_handlers.clear()
            self._open = False
            self._tearing_down = False

    # -- building -------------------------------------------------------------------------
    def add_namespace(self, name: str) -> str:
        """Create network namespace ``name`` (lab prefix required) and bring its loopback up."""
        check_namespace_name(name)
        if name in lab_namespaces():
            raise LabError(
                f"namespace {name} already exists (a previous run?); run `npanalytics lab down`"
            )
        self.namespaces.append(name)  # recorded first: a signal right after the add still cleans it
        run(["ip", "netns", "add", name])
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``ip -n <namespace> <args>`` (iproute2 enters the namespace itself)."""
        self._own(namespace)
        for arg in args:
            if _looks_like_ipv4(arg):
                check_address(arg)
        return run(["ip", "-n", namespace, *args])

    def add_veth(self, namespace_a: str, name_a: str, namespace_b: str, name_b: str) -> None:
        """Create a veth pair with one end in each lab namespace (never in the root namespace)."""
        self._own(namespace_a)
        self._own(namespace_b)
        for n in (name_a, name_b):
            if len(n) > _MAX_NAME:
                raise LabError(f"interface name {n!r} is longer than {_MAX_NAME} characters")
        run(["ip", "-n", namespace_a, "link", "add", name_a, "type", "veth",
             "peer", "name", name_b, "netns", namespace_b])
        self.links.append((namespace_a, name_a, namespace_b, name_b))

    def add_bridge(self, namespace: str, name: str) -> None:
        """Create and bring up a bridge inside a lab namespace."""
        self.ip(namespace, "link", "add", name, "type", "bridge")
        self.links.append((namespace, name, "", ""))
        self.ip(namespace, "link", "set", name, "up")

    def sysctl(self, namespace: str, key: str, value: str | int) -> None:
        """Set a sysctl inside a lab namespace (``ip netns exec X sysctl -w key=value``)."""
        self.exec(namespace, ["sysctl", "-q", "-w", f"{key}={value}"])

    def exec(
        self,
        namespace: str,
        args: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a lab namespace this session created; see :func:`run`."""
        self._own(namespace)
        return run(args, namespace=namespace, input=input, timeout=timeout, check=check,
                   env=self._env(namespace))

    def _env(self, namespace: str) -> dict[str, str]:
        if self._lock_dir is None:
            return {}
        return {"XTABLES_LOCKFILE": os.path.join(self._lock_dir, f"xtables-{namespace}.lock")}

    def timed_exec(
        self, namespace: str, args: Sequence[str], *, input: str | None = None
    ) -> tuple[subprocess.CompletedProcess[str], float]:
        """Like :meth:`exec`, also returning the wall-clock seconds the command took."""
        start = time.perf_counter()
        proc = self.exec(namespace, args, input=input)
        return proc, time.perf_counter() - start

    def spawn(self, namespace: str, args: Sequence[str]) -> subprocess.Popen[str]:
        """Start a long-running command inside a lab namespace; it is killed at teardown.

        stdout is a pipe (text, line buffered), stderr is captured too.
        """
        self._own(namespace)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *[str(a) for a in args]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.processes.append(proc)
        return proc

    def _own(self, namespace: str) -> None:
        check_namespace_name(namespace)
        if namespace not in self.namespaces:
            raise LabError(f"namespace {namespace} was not created by this lab session")


def _looks_like_ipv4(arg: str) -> bool:
    head = arg.split("/", 1)[0]
    parts = head.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)

"""Safety primitives of the lab: names, addresses, environment checks, teardown."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from npanalytics.exceptions import LabError
from npanalytics.lab import netns
from npanalytics.lab.netns import (
    LabSession,
    check_address,
    check_environment,
    check_namespace_name,
    cleanup_leftovers,
    lab_namespaces,
)


@pytest.mark.parametrize("name", ["npa-other", "lab-x", "", "npa-lab-", "default", "npa-lab-a b"])
def test_namespace_name_without_lab_prefix_is_refused(name):
    with pytest.raises(LabError, match="refusing namespace"):
        check_namespace_name(name)


def test_namespace_name_with_lab_prefix_is_accepted():
    assert check_namespace_name("npa-lab-n-node-a") == "npa-lab-n-node-a"


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.1/24", "198.20.0.1", "198.16.0.0/14",
                                     "127.0.0.1", "0.0.0.0/0"])
def test_address_outside_lab_network_is_refused(address):
    with pytest.raises(LabError, match=r"only uses 198\.18\.0\.0/15"):
        check_address(address)


@pytest.mark.parametrize("address", ["198.18.10.5", "198.18.20.0/24", "198.18.30.7/32", "198.18.0.0/16"])
def test_address_in_other_suites_ranges_is_refused(address):
    with pytest.raises(LabError, match="belongs to other test suites"):
        check_address(address)


def test_address_not_ipv4_is_refused():
    with pytest.raises(LabError, match="not an IPv4 address"):
        check_address("node-a")


@pytest.mark.parametrize("address", ["198.18.0.11/24", "198.19.0.10", "198.18.64.10", "198.18.200.10/32"])
def test_lab_addresses_are_accepted(address):
    assert check_address(address) == address


def test_check_environment_refuses_non_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        check_environment(["iptables-legacy"])


def test_check_environment_names_missing_binary(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: True if p.startswith("/proc") else real_exists(p))
    monkeypatch.setattr(shutil, "which", lambda b: None if b == "conntrack" else f"/usr/sbin/{b}")
    with pytest.raises(LabError, match="binaries on PATH: conntrack"):
        check_environment(["iptables-legacy"])


def test_check_environment_with_empty_path(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: True if p.startswith("/proc") else real_exists(p))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LabError, match="ip, conntrack, sysctl, nft"):
        check_environment(["nftables"])


def test_check_environment_ipvs_without_proc_file_names_ip_vs(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if p == "/proc/net/ip_vs" else real_exists(p))
    called = []
    monkeypatch.setattr(shutil, "which", lambda b: called.append(b) or f"/usr/sbin/{b}")
    with pytest.raises(LabError, match=r"kernel module ip_vs.*never loads modules"):
        check_environment(["ipvs"])
    assert "ipvsadm" not in called  # decided before any binary is even looked up


def test_check_environment_unknown_mode():
    with pytest.raises(LabError, match="proxy_mode must be one of"):
        check_environment(["ebpf"])


def test_session_refuses_foreign_namespace():
    with LabSession() as lab:
        with pytest.raises(LabError, match="refusing namespace"):
            lab.add_namespace("npa-ct-x")
        with pytest.raises(LabError, match="not created by this lab session"):
            lab.exec("npa-lab-nobody", ["true"])


def test_session_restores_signal_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with LabSession():
        assert signal.getsignal(signal.SIGTERM) != before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_run_failure_names_command_and_stderr():
    with pytest.raises(LabError, match=r"status 2: 'ls /nonexistent-npa': .*No such file"):
        netns.run(["ls", "/nonexistent-npa"])


def test_run_missing_command():
    with pytest.raises(LabError, match="command not found: npa-no-such-binary"):
        netns.run(["npa-no-such-binary"])


def test_run_timeout():
    with pytest.raises(LabError, match="timed out after 0.2 s"):
        netns.run(["sleep", "5"], timeout=0.2)


def _exists(name: str) -> bool:
    return name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_session_refuses_address_outside_lab(need_root):
    with LabSession() as lab:
        lab.add_namespace("npa-lab-t-addr")
        with pytest.raises(LabError, match="only uses"):
            lab.ip("npa-lab-t-addr", "addr", "add", "10.1.2.3/24", "dev", "lo")
    assert not _exists("npa-lab-t-addr")


def test_exception_mid_run_tears_everything_down(need_root):
    with pytest.raises(RuntimeError, match="injected"):
        with LabSession() as lab:
            lab.add_namespace("npa-lab-t-a")
            lab.add_namespace("npa-lab-t-b")
            lab.add_veth("npa-lab-t-a", "x0", "npa-lab-t-b", "x1")
            proc = lab.spawn("npa-lab-t-a", ["sleep", "30"])
            assert _exists("npa-lab-t-a") and _exists("npa-lab-t-b")
            raise RuntimeError("injected")
    assert proc.poll() is not None
    assert not [n for n in lab_namespaces() if n.startswith("npa-lab-t-")]


def test_cleanup_leftovers_removes_leaked_namespace(need_root):
    subprocess.run(["ip", "netns", "add", "npa-lab-leaked"], check=True)
    try:
        assert "npa-lab-leaked" in lab_namespaces()
        removed = cleanup_leftovers("npa-lab-leaked")
        assert removed == ["npa-lab-leaked"]
        assert not _exists("npa-lab-leaked")
    finally:
        subprocess.run(["ip", "netns", "delete", "npa-lab-leaked"], capture_output=True)


def test_cleanup_leftovers_leaves_other_namespaces(need_root):
    subprocess.run(["ip", "netns", "add", "npa-labx-keep"], check=True)
    subprocess.run(["ip", "netns", "add", "npa-lab-keep-me"], check=True)
    try:
        assert cleanup_leftovers("npa-lab-keep-x") == []  # a prefix that matches nothing
        assert cleanup_leftovers("npa-lab-keep-") == ["npa-lab-keep-me"]
        assert _exists("npa-labx-keep")
    finally:
        subprocess.run(["ip", "netns", "delete", "npa-labx-keep"], check=True)
        subprocess.run(["ip", "netns", "delete", "npa-lab-keep-me"], capture_output=True)


def test_cleanup_leftovers_refuses_foreign_prefix():
    with pytest.raises(LabError, match="refusing prefix 'npa-'"):
        cleanup_leftovers("npa-")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_lab_up_leaves_nothing_behind(need_root, signum):
    proc = subprocess.Popen(
        [sys.executable, "-m", "npanalytics.lab.cli", "up", "two-nodes-local", "--max-seconds", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        end = time.monotonic() + 60
        while time.monotonic() < end:
            line = proc.stdout.readline()
            lines.append(line)
            if not line or line.startswith("lab is up"):
                break
        assert lines[-1].startswith("lab is up"), lines
        (run_id,) = [ln.split()[2] for ln in lines if ln.startswith("run id:")]
        ours = [n for n in lab_namespaces() if n.startswith(f"npa-lab-{run_id}-")]
        assert f"npa-lab-{run_id}-n-node-a" in ours and len(ours) == 7  # fabric, 2 nodes, 3 pods, clients
        proc.send_signal(signum)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    leftovers = [n for n in lab_namespaces() if n.startswith(f"npa-lab-{run_id}-")]
    if leftovers:
        cleanup_leftovers(f"npa-lab-{run_id}-")
    assert proc.returncode == 130
    assert f"interrupted by {signal.Signals(signum).name}" in proc.stderr.read()
    assert leftovers == []


def test_rule_loads_do_not_wait_for_the_machine_wide_xtables_lock(need_root, need_binary):
    import fcntl

    need_binary("iptables-legacy-restore")
    # hold the machine-wide lock in this process (released in finally, at the latest
    # when the process ends) for as short a time as the check takes
    with open("/run/xtables.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with LabSession() as lab:
                lab.add_namespace("npa-lab-t-lock")
                proc, seconds = lab.timed_exec(
                    "npa-lab-t-lock", ["iptables-legacy-restore"], input="*nat\nCOMMIT\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    assert proc.returncode == 0
    assert seconds < 5  # with the shared lock it would wait until the finally above

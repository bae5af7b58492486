"""scripts/platform.sh on the running platform: status and addresses, idempotent `up`, a taken port
named, every listening socket on loopback."""
from __future__ import annotations

import re
import subprocess

from tests.cluster.conftest import ROOT

PLATFORM_SH = ["bash", str(ROOT / "scripts" / "platform.sh")]


def platform_sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PLATFORM_SH, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_status_names_every_part_and_the_jdbc_url(platform):
    done = platform_sh("status")
    assert done.returncode == 0, done.stdout + done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == ["postgres", "spark-master", "spark-worker-1", "spark-worker-2", "thrift-server"]
    assert all(line.split()[1] == "running" for line in done.stdout.splitlines())
    assert "jdbc:hive2://127.0.0.1:10000" in done.stdout and "spark://127.0.0.1:7077" in done.stdout


def test_up_again_leaves_the_running_parts_alone(platform):
    pids = {part.name: platform.read_pid(part.name) for part in platform.parts()}
    done = platform_sh("up")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(re.findall(r"already running", done.stdout)) == len(pids), done.stdout
    assert {part.name: platform.read_pid(part.name) for part in platform.parts()} == pids


def test_a_port_held_by_another_process_fails_naming_the_part(platform, tmp_path):
    # Another platform root has no pid files: PostgreSQL's port is taken by a process it did not start.
    done = platform_sh("up", "--set", f"platform.root={tmp_path / 'other'}")
    assert done.returncode == 2
    assert "postgres: port 55432 on 127.0.0.1 is taken by another process" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def listening_sockets(pids: set[int]) -> list[tuple[str, int]]:
    """(local address, pid) of every TCP socket in LISTEN state owned by ``pids``."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    sockets = []
    for line in out.splitlines():
        fields = line.split()
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in pids:
                sockets.append((fields[3], pid))
    return sockets


def off_loopback(sockets: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(address, pid) for address, pid in sockets
            if not re.match(r"^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|\[::1\]):\d+$", address)]


def test_every_platform_socket_listens_on_loopback_only(platform):
    pids = {platform.read_pid(part.name) for part in platform.parts()}
    sockets = listening_sockets(pids)
    assert {pid for _, pid in sockets} == pids  # each part listens on something
    assert off_loopback(sockets) == []


def test_the_loopback_check_catches_a_wildcard_bind():
    assert off_loopback([("*:4040", 7), ("0.0.0.0:10000", 8), ("127.0.0.1:7077", 9)]) == [("*:4040", 7),
                                                                                         ("0.0.0.0:10000", 8)]

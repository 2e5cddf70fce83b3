"""The private Ray instance `spell` starts (engine.ray_address=local) listens on loopback only."""

import ipaddress
import os
import subprocess
import sys
import time

import psutil
import pytest

from tests.procs import short_tmp

pytestmark = [pytest.mark.ray]

START = (
    "from spell.engine.ray_policy import connect; connect('local'); print('up', flush=True); "
    "import time; time.sleep(120)"
)


def _loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or ip).is_loopback


def test_private_ray_binds_loopback_only():
    tmp = str(short_tmp())
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-c", START], env={**env, "SPELL_RAY_TMP": tmp}, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "up"
        time.sleep(2)  # let every Ray process open its ports
        mine = [proc.pid] + [
            p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"]) if tmp in " ".join(p.info["cmdline"] or [])
        ]
        listening = set()
        for pid in set(mine):
            try:
                conns = psutil.Process(pid).net_connections(kind="inet")
            except psutil.Error:
                continue
            listening |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
        assert listening, "found no listening socket of the Ray instance"
        outside = {a for a in listening if not _loopback(a)}
        assert not outside, f"Ray listens beyond loopback: {outside}"
    finally:
        proc.kill()
        subprocess.run(["pkill", "-9", "-f", tmp], check=False)

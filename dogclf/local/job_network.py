"""A private network for one training job's hosts: algo-1, algo-2, ... on a loopback of their own.

SageMaker names each host of a job `algo-N` (resourceconfig.json) and the names resolve on the
job's network; the PyTorch container's torchrun path always meets on `algo-1:7777`
(sagemaker_training/torch_distributed.py, MASTER_PORT). Here the hosts are processes on one
machine, so one unprivileged user + mount + network namespace per job (`unshare --user
--map-root-user --mount --net`, no root needed) gives them:
- a loopback of their own, so port 7777 never collides with another job or program;
- an /etc/hosts, bind-mounted inside the namespace only, naming every host 127.0.0.1: glibc's
  `files` lookup reads it, for Python's resolver and for torch's C++ one (getaddrinfo in
  TCPStore and gloo) alike. (glibc's HOSTALIASES only rewrites names sent to DNS: no use.)

`python -m dogclf.local.job_network HOSTS_FILE` is the namespace's first process: it brings
`lo` up, mounts the file, prints its pid and holds the namespace until its stdin closes. Each
host's launcher joins it with `nsenter`.

Where unprivileged user namespaces are off (Ubuntu 24.04's AppArmor default, Docker's
seccomp profile), a single host without torchrun still runs, on this machine's network
(`HostNetwork`), with the toolkit's own switch for hosts whose name does not resolve
(SM_STUDIO_LOCAL_MODE, which skips its wait for `algo-1` to resolve); a job that needs
host names (several hosts, or torchrun's `--master_addr algo-1`) says what to enable.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from dogclf.errors import DogclfError

_UNSHARE = ["unshare", "--user", "--map-root-user", "--mount", "--net"]
_MS_BIND = 4096  # <sys/mount.h>
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1  # <linux/sockios.h>, <net/if.h>


def hosts_file_text(hosts: list[str]) -> str:
    # This machine's own name too: gloo resolves gethostname() to pick its address.
    names = ["localhost", *hosts, socket.gethostname()]
    return "".join(f"127.0.0.1 {name}\n" for name in dict.fromkeys(names))


def namespaces_available() -> bool:
    """Whether this user may create a user + mount + network namespace here."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    probe = subprocess.run([*_UNSHARE, "true"], capture_output=True, check=False)
    return probe.returncode == 0


class HostNetwork:
    """One host on this machine's own network: the fallback without namespaces."""

    # sagemaker_training/entry_point.py and sagemaker_pytorch_container/training.py skip
    # their blocking DNS wait for every host when this is "true" (Studio local mode).
    env: ClassVar[dict[str, str]] = {"SM_STUDIO_LOCAL_MODE": "true"}

    def __enter__(self) -> HostNetwork:
        return self

    def enter(self, command: list[str]) -> list[str]:
        return command

    def __exit__(self, *exc: object) -> None:
        return None


class JobNetwork:
    """The namespace of one job (a context manager); `enter` prefixes a host's command."""

    env: ClassVar[dict[str, str]] = {}

    def __init__(self, hosts: list[str], folder: Path) -> None:
        self.hosts_file = folder / "hosts"
        self.hosts_file.write_text(hosts_file_text(hosts), encoding="utf-8")
        self._holder: subprocess.Popen[str] | None = None
        self.pid = 0

    def __enter__(self) -> JobNetwork:
        missing = [tool for tool in ("unshare", "nsenter") if shutil.which(tool) is None]
        if missing:
            raise DogclfError(
                f"the emulated training hosts need {' and '.join(missing)} (util-linux)",
                "install util-linux, or train on this host with `dogclf train-ec2`",
            )
        self._holder = subprocess.Popen(
            [*_UNSHARE, sys.executable, "-m", __name__, str(self.hosts_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._holder.stdout is not None and self._holder.stderr is not None
        ready = self._holder.stdout.readline().strip()
        if not ready.isdigit():
            reason = (self._holder.stderr.read().strip().splitlines() or ["no reason given"])[-1]
            self.__exit__(None, None, None)
            raise DogclfError(
                f"could not give the training hosts a network of their own: {reason}",
                "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; "
                "on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0), or use train-ec2",
            )
        self.pid = int(ready)
        return self

    def enter(self, command: list[str]) -> list[str]:
        """`command` run inside the namespace (as the namespace's root: the caller's uid)."""
        target = ["nsenter", f"--target={self.pid}", "--user", "--mount", "--net"]
        return [*target, "--preserve-credentials", "--", *command]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        holder, self._holder = self._holder, None
        if holder is None:
            return
        if holder.stdin is not None:
            holder.stdin.close()  # the holder's cue to exit
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()


def network_for(hosts: list[str], folder: Path, *, torchrun: bool) -> JobNetwork | HostNetwork:
    """The job's own network where namespaces work; else this machine's, if the job can."""
    if len(hosts) == 1 and not torchrun and not namespaces_available():
        return HostNetwork()
    return JobNetwork(hosts, folder)


def _bring_loopback_up() -> None:
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def _bind_mount(source: str, target: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), None, _MS_BIND, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount --bind {source} {target}: {os.strerror(errno)}")


def _hold(hosts_file: str) -> None:
    """Inside the fresh namespace: loopback up, the hosts file in place, then wait."""
    _bring_loopback_up()
    _bind_mount(hosts_file, "/etc/hosts")
    print(os.getpid(), flush=True)
    sys.stdin.read()  # until the job ends and closes our stdin


if __name__ == "__main__":
    _hold(sys.argv[1])

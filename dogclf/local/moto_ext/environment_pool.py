"""Warm Lambda execution environments, reused between invokes as Lambda reuses them.

An environment serves one invoke at a time; a concurrent invoke of the same function gets a
new one, as on Lambda. Environments are filed under the function version they run ("family":
its ARN) and the exact setup they were started from: once the code, the configuration or the
emulator's runtime settings change, the family's idle environments are torn down and the
next invoke starts afresh. `close_all` tears everything down (moto's reset, the emulator's
stop, interpreter exit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from dogclf.local.moto_ext.execution_environment import ExecutionEnvironment

Key = tuple[str, Hashable]  # (family, setup)


class EnvironmentPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[Key, list[ExecutionEnvironment]] = {}
        self._all: set[ExecutionEnvironment] = set()

    def acquire(self, key: Key, start: Callable[[], ExecutionEnvironment]) -> ExecutionEnvironment:
        """An idle environment for exactly this key, else a new one from `start`."""
        with self._lock:
            stale = [k for k in self._idle if k[0] == key[0] and k != key]
            retired = [env for k in stale for env in self._idle.pop(k)]
            idle = self._idle.get(key)
            env = idle.pop() if idle else None
        for old in retired:
            self._forget(old)
        if env is None:
            env = start()
            with self._lock:
                self._all.add(env)
        return env

    def release(self, key: Key, env: ExecutionEnvironment) -> None:
        """Back to the idle list if it survived the invoke; closed for good otherwise."""
        if not env.alive:
            self._forget(env)
            return
        with self._lock:
            if env in self._all:  # not torn down by close_all meanwhile
                self._idle.setdefault(key, []).append(env)
                return
        env.close()

    def close_all(self) -> None:
        with self._lock:
            doomed, self._all, self._idle = self._all, set(), {}
        for env in doomed:
            env.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._all)

    def _forget(self, env: ExecutionEnvironment) -> None:
        with self._lock:
            self._all.discard(env)
        env.close()


POOL = EnvironmentPool()

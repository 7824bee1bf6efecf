"""Starting NeMo Gym's servers for a run, and stopping exactly what was started.

When no head server answers on ``nemo_gym_head_port``, ftcore runs NeMo Gym's CLI from
``nemo_gym_dir`` (``ng_run "+config_paths=[...]" "+skip_venv_if_present=true"
"++head_server.port=<port>"``) in a process group of its own, streams its output to
``<output_dir>/nemo_gym_servers.log``, and waits (with a progress bar) until the head server and
every resources server answer. At the end of the run, or when it fails, that process group is
terminated (killed after 10 s); servers it did not start are left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from ftcore.errors import FtcoreError
from ftcore_nemo_gym.discovery import GymServers, discover

log = logging.getLogger("ftcore")
GYM_REPOSITORY = "https://github.com/NVIDIA-NeMo/Gym.git"


def gym_command(gym_dir: Path, cfg: Any) -> list[str]:
    executable = gym_dir / ".venv" / "bin" / "ng_run"
    if not executable.exists():
        raise FtcoreError(
            f"no NeMo Gym CLI at {executable}; set up its venv in {gym_dir} (uv venv && uv sync), "
            "or start the servers yourself and set nemo_gym_auto_start: false"
        )
    paths = ",".join(cfg.nemo_gym_config_paths)
    return [str(executable), f"+config_paths=[{paths}]", "+skip_venv_if_present=true",
            f"++head_server.port={cfg.nemo_gym_head_port}"]  # fmt: skip


class GymServersProcess:
    """The servers of one run: found running, or started (and later stopped) by ftcore."""

    def __init__(self, cfg: Any, log_path: Path):
        self.cfg = cfg
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    def ensure(self) -> GymServers:
        from ftcore.dist import is_main_process

        cfg = self.cfg
        try:
            return discover(cfg.nemo_gym_head_host, cfg.nemo_gym_head_port, timeout=2.0)
        except FtcoreError:
            if not cfg.nemo_gym_auto_start:
                raise
        if not is_main_process():
            return self.wait()  # the main process starts the servers; the others wait for them
        if not cfg.nemo_gym_config_paths:
            raise FtcoreError(
                "no NeMo Gym head server answers and nemo_gym_config_paths is empty: list the "
                "server configs to start, or start the servers yourself"
            )
        self.start(self.checkout())
        return self.wait()

    def checkout(self) -> Path:
        gym_dir = Path(self.cfg.nemo_gym_dir).expanduser()
        if gym_dir.is_dir():
            return gym_dir
        if not self.cfg.nemo_gym_auto_clone:
            raise FtcoreError(
                f"nemo_gym_dir {gym_dir} does not exist; clone {GYM_REPOSITORY} there"
            )
        log.info("ftcore: cloning NeMo Gym into %s", gym_dir)
        result = subprocess.run(["git", "clone", "--depth", "1", GYM_REPOSITORY, str(gym_dir)],
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode:
            raise FtcoreError(
                f"could not clone NeMo Gym into {gym_dir}: {result.stderr.strip()[-300:]}"
            )
        return gym_dir

    def start(self, gym_dir: Path) -> None:
        command = gym_command(gym_dir, self.cfg)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info(
            "ftcore: starting NeMo Gym servers: %s (log: %s)", " ".join(command), self.log_path
        )
        with self.log_path.open("ab") as output:
            self.process = subprocess.Popen(command, cwd=gym_dir, stdout=output,
                                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def wait(self) -> GymServers:
        from tqdm.auto import tqdm

        cfg = self.cfg
        deadline = time.monotonic() + cfg.nemo_gym_server_timeout
        with tqdm(
            total=cfg.nemo_gym_server_timeout, desc="Waiting for NeMo Gym servers", unit="s"
        ) as bar:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    self.stop()  # whatever the CLI had started in its group goes with it
                    raise FtcoreError(
                        f"the NeMo Gym servers exited with status {self.returncode} while "
                        f"starting; see {self.log_path}:\n{self._log_tail()}"
                    )
                try:
                    servers = discover(cfg.nemo_gym_head_host, cfg.nemo_gym_head_port, timeout=2.0)
                    if all(_answers(servers.url(n)) for n in servers.names("resources_servers")):
                        return servers
                except FtcoreError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise FtcoreError(
                        f"the NeMo Gym servers did not answer within {cfg.nemo_gym_server_timeout} s; "
                        f"see {self.log_path}, or raise nemo_gym_server_timeout"
                    )
                time.sleep(1.0)
                bar.update(1)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the process group this object started (nothing else), even if its leader exited."""
        process, self.process = self.process, None
        if process is None:
            return
        self.returncode = process.poll()
        log.info("ftcore: stopping the NeMo Gym servers started for this run")
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.5)  # the group's other processes get their grace too
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
        self.returncode = process.returncode


def _signal_group(pid: int, signal_number: int) -> None:
    try:
        os.killpg(pid, signal_number)
    except ProcessLookupError:
        pass  # the whole group is gone already


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/", timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False

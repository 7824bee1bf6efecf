"""``ftcore train --nproc N``: start the run under torchrun (``torch.distributed.run``).

torchrun starts one process per GPU, sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``, and each process
runs ``python -m ftcore train`` with the same arguments; accelerate then sets up DDP, FSDP2 or
DeepSpeed from the config. On one node the rendezvous is local (``--standalone``, a free port);
across nodes every node runs the same command with its ``--node-rank`` and the address and port of
node 0 (default port 29500). torchrun runs as ``python -m ftcore.launch`` (:func:`main`), which
leaves out its traceback when Ctrl-C stops the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from ftcore.errors import FtcoreError


@dataclass(frozen=True)
class Launch:
    """Where the processes of a run go."""

    nproc: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    def check(self) -> None:
        if self.nproc < 1 or self.nnodes < 1:
            raise FtcoreError("--nproc and --nnodes must be at least 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise FtcoreError(f"--node-rank must be in 0..{self.nnodes - 1}, got {self.node_rank}")
        if self.nnodes > 1 and not self.master_addr:
            raise FtcoreError(
                "--nnodes > 1 needs --master-addr: the address of node 0, which every node reaches"
            )
        if "LOCAL_RANK" in os.environ:
            raise FtcoreError(
                "this process was already started by torchrun or accelerate launch; drop --nproc"
            )

    def cli_arguments(self) -> list[str]:
        """The ``ftcore train`` options that give this launch."""
        arguments = ["--nproc", str(self.nproc)]
        if self.nnodes != 1:
            arguments += ["--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank)]
        if self.master_addr:
            arguments += ["--master-addr", self.master_addr]
        if self.master_port is not None:
            arguments += ["--master-port", str(self.master_port)]
        return arguments

    def torchrun_arguments(self) -> list[str]:
        arguments = [f"--nproc-per-node={self.nproc}", f"--nnodes={self.nnodes}"]
        if self.nnodes == 1 and self.master_port is None:
            return [*arguments, "--standalone"]  # a free local port
        return [
            *arguments,
            f"--node-rank={self.node_rank}",
            f"--master-addr={self.master_addr or '127.0.0.1'}",
            f"--master-port={self.master_port or 29500}",
        ]


def torchrun_command(launch: Launch, command: list[str]) -> list[str]:
    """The command line that runs ``python -m ftcore <command>`` in every process, through
    torchrun (by way of :func:`main`)."""
    return [
        sys.executable,
        "-m",
        "ftcore.launch",
        *launch.torchrun_arguments(),
        "-m",
        "ftcore",
        *command,
    ]


#: Set in the processes this launcher starts: they leave the Ctrl-C message to it.
LAUNCHED = "FTCORE_LAUNCHED"


def run_under_torchrun(launch: Launch, command: list[str]) -> int:
    """Run ``ftcore <command>`` in ``launch.nproc`` processes on this node; their exit status.

    On Ctrl-C, torchrun (which got it too) stops the processes; this waits for that, then
    re-raises, so that nothing they print comes after the caller's message.
    """
    launch.check()
    process = subprocess.Popen(torchrun_command(launch, command), env={**os.environ, LAUNCHED: "1"})
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.wait()
        raise


def main() -> None:
    """torchrun, minus its traceback on Ctrl-C: it stops the processes and exits with 130."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    try:
        torchrun(sys.argv[1:])
    except SignalException as exc:  # raised once the processes are stopped
        sys.exit(128 + int(exc.sigval))


if __name__ == "__main__":
    main()

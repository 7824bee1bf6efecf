"""Read what a SwanLab run wrote to disk (offline mode), to check what was logged."""

from __future__ import annotations

from pathlib import Path


def run_files(log_dir: Path) -> list[Path]:
    return sorted(Path(log_dir).glob("run-*/run-*.swanlab"))


def read_scalars(run_file: Path) -> dict[str, list[tuple[int, float]]]:
    from swanlab.proto.swanlab.record.v1 import record_pb2
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    reader = DataStoreReader()
    reader.open(str(run_file))
    scalars: dict[str, list[tuple[int, float]]] = {}
    for item in reader:
        record = record_pb2.Record()
        record.ParseFromString(item)
        if record.WhichOneof("record_type") == "scalar":
            scalars.setdefault(record.scalar.key, []).append(
                (record.scalar.step, record.scalar.value.number)
            )
    return scalars

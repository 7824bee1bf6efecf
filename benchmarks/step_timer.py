"""A local plugin for benchmarks: CUDA-synchronised step times and peak memory, written to JSON.

``plugins: [benchmarks.step_timer]``; ``BENCH_WARMUP`` steps are left out; rank 0 writes the
result to ``BENCH_OUT``. Under several processes, tokens/s counts every process's tokens and peak
memory is rank 0's GPU. Neither the trained model nor the checkpoint the Trainer writes after the
last step is saved: the steps are what is measured, and a moe-qwen3 model alone is 6 GB.
``BENCH_PROFILE=1`` also records the GPU kernels of the last warm-up step (the 20 costliest, and
the step's total), where it cannot skew the timed steps.
"""

from __future__ import annotations

import json
import os
import time

from ftcore import hookimpl


@hookimpl
def ftcore_callbacks(cfg, model):
    """Time every optimizer step after the warm-up."""
    import torch
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.warmup = int(os.environ.get("BENCH_WARMUP", "5"))
            self.times: list[float] = []
            self.start = 0.0
            self.last_loss = None
            self.profiler = None
            self.kernels: dict | None = None
            self.startup_s = 0.0  # process start to the first step: imports, data, model, trainer
            self.warmup_s = 0.0  # the warm-up steps: compilation and autotuning land here

        def on_train_begin(self, args, state, control, **kwargs):
            import psutil

            self.startup_s = time.time() - psutil.Process().create_time()

        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            if state.global_step == self.warmup and cuda:
                torch.cuda.reset_peak_memory_stats()
            if state.global_step == self.warmup - 1 and cuda and os.environ.get("BENCH_PROFILE"):
                from torch.profiler import ProfilerActivity, profile

                self.profiler = profile(activities=[ProfilerActivity.CUDA])
                self.profiler.__enter__()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            if state.global_step > self.warmup:
                self.times.append(time.perf_counter() - self.start)
            else:
                self.warmup_s += time.perf_counter() - self.start
            if state.global_step >= state.max_steps:
                control.should_save = False  # transformers saves after the last step by default
            if self.profiler is not None:
                self.profiler.__exit__(None, None, None)
                self.kernels = top_kernels(self.profiler)
                self.profiler = None
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.last_loss = float(logs["loss"])

        def on_train_end(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            processes = int(os.environ.get("WORLD_SIZE", "1"))
            tokens = cfg.micro_batch_size * cfg.gradient_accumulation_steps * cfg.sequence_len
            median = sorted(self.times)[len(self.times) // 2]
            result = {
                "processes": processes,
                "steps_timed": len(self.times),
                "median_step_s": median,
                "tokens_per_s": processes * tokens / median,
                "tokens_per_s_per_gpu": tokens / median,
                "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
                "last_loss": self.last_loss,
                "startup_s": round(self.startup_s, 1),
                "warmup_s": round(self.warmup_s, 1),
            }
            if self.kernels is not None:
                result["profiled_step"] = self.kernels
            with open(os.environ["BENCH_OUT"], "w", encoding="utf-8") as handle:
                json.dump(result, handle)

    return [StepTimer()]


def costliest_kernels(profiler) -> list:
    """The GPU kernels a torch profiler saw, costliest first (one entry per kernel name)."""
    events = [event for event in profiler.key_averages() if event.self_device_time_total > 0]
    return sorted(events, key=lambda event: event.self_device_time_total, reverse=True)


def top_kernels(profiler, count: int = 20) -> dict:
    """The ``count`` costliest GPU kernels of one profiled step, and the step's GPU total."""
    events = costliest_kernels(profiler)
    return {
        "gpu_ms": sum(event.self_device_time_total for event in events) / 1000,
        "kernels": [
            {
                "kernel": event.key[:120],
                "calls": event.count,
                "ms": event.self_device_time_total / 1000,
            }
            for event in events[:count]
        ],
    }


@hookimpl
def ftcore_save_model(cfg, trainer, output_dir):
    """Skip the final save: nothing reads a benchmark's model."""
    return True

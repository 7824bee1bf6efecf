"""ftcore-swanlab: SwanLab tracking, Lark notifications, completion tables and profiling."""

__version__ = "0.2.1"

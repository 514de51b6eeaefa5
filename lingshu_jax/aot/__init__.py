"""Ahead-of-time compilation of the trainer's program for TPU slices (or cpu / gpu) without the hardware:
per-device memory, collectives, FLOPs and an estimated step time (`report.fit_report`)."""

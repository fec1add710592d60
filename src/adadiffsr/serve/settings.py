"""What ``adadiffsr serve`` is started with: address, queue, limits and who may use the page."""

from __future__ import annotations

from dataclasses import dataclass

# The page refuses larger inputs by default (the CLI's limit is MAX_INPUT_PIXELS, 64 MP): a 1920x1080
# input (an 8K output) takes about 3.5 min on a 2-core CPU, and one job holds the page's queue.
PAGE_MAX_PIXELS = 1920 * 1080
JOB_SECONDS = 600.0  # a job running longer is stopped with a plain message (checked between sampler steps)


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 7860
    concurrency: int = 1  # jobs at once; 1 on a CPU (more on a GPU with memory to spare)
    queue_size: int = 16  # jobs waiting beyond this are refused with "queue is full"
    max_pixels: int = PAGE_MAX_PIXELS  # larger inputs are refused on the page
    max_file_size: str = "100mb"  # larger uploads are refused by the page before they reach the model
    max_files: int = 16  # uploads per job
    job_seconds: float | None = JOB_SECONDS  # None: no time limit
    auth: tuple[tuple[str, str], ...] = ()  # (user, password) pairs; empty: no login (Gradio's auth)

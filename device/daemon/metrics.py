"""The daemon's state in the Prometheus text exposition format (version 0.0.4)."""
from __future__ import annotations

from device.daemon.loop import Daemon

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(daemon: Daemon) -> str:
    health = daemon.health()
    age = daemon.frame_age()
    counters = daemon.counters
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    metric("bloomkit_frames_total", "counter", "Frames received from the source.", [("", daemon.frames.received)])
    metric("bloomkit_frames_dropped_total", "counter", "Frames replaced by a newer one before inference took them.",
           [("", daemon.frames.dropped)])
    metric("bloomkit_inferences_total", "counter", "Frames classified.", [("", counters.inferences)])
    buckets, count, total_s = counters.latency.snapshot()
    metric("bloomkit_inference_latency_seconds", "histogram", "Time to classify one frame.",
           [(f'_bucket{{le="{le}"}}', observed) for le, observed in buckets]
           + [("_sum", total_s), ("_count", count)])
    metric("bloomkit_inferences_per_second", "gauge", "Inference rate over the last seconds.",
           [("", counters.rate.per_second())])
    metric("bloomkit_frame_age_seconds", "gauge", "Seconds since the newest frame (NaN before the first).",
           [("", float("nan") if age is None else age)])
    metric("bloomkit_healthy", "gauge", "1 while frames flow and a model is loaded.",
           [("", 1 if health["status"] == "ok" else 0)])
    metric("bloomkit_model_reloads_total", "counter", "Models swapped in after their file changed.",
           [("", daemon.models.reloads)])
    metric("bloomkit_model_reload_failures_total", "counter", "Changed model files that failed to load.",
           [("", daemon.models.failed_reloads)])
    jsonl = daemon.jsonl
    metric("bloomkit_jsonl_records_lost_total", "counter", "Results --jsonl could not write (a full disk, a closed pipe).",
           [("", jsonl.lost if jsonl else 0)])
    metric("bloomkit_jsonl_rotations_total", "counter", "Times the --jsonl file reached --jsonl-max-mb and was rotated.",
           [("", jsonl.rotations if jsonl else 0)])
    metric("bloomkit_http_disconnects_total", "counter", "HTTP clients that went away before their answer was sent.",
           [("", daemon.counters.http_disconnects.value)])
    model = health["model"]
    info = ",".join(f'{key}="{_escape(str(model[key]))}"' for key in ("name", "version", "sha256", "path"))
    metric("bloomkit_model_info", "gauge", "The model in use.", [(f"{{{info}}}", 1)])
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

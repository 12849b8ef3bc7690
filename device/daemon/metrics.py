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
    mqtt = health.get("mqtt")
    if mqtt is not None:
        metric("bloomkit_mqtt_connected", "gauge", "1 while connected to the MQTT broker.", [("", int(mqtt["connected"]))])
        metric("bloomkit_mqtt_queued_messages", "gauge", "Messages waiting for the broker.", [("", mqtt["queued"])])
        metric("bloomkit_mqtt_dropped_messages_total", "counter", "Oldest messages dropped from a full queue.",
               [("", mqtt["dropped"])])
        metric("bloomkit_mqtt_published_messages_total", "counter", "Messages the broker acknowledged.",
               [("", mqtt["published"])])
    model = health["model"]
    info = ",".join(f'{key}="{_escape(str(model[key]))}"' for key in ("name", "version", "sha256", "path"))
    metric("bloomkit_model_info", "gauge", "The model in use.", [(f"{{{info}}}", 1)])
    _labels_and_samples(daemon.stats(), metric)
    return "\n".join(lines) + "\n"


def summary(daemon: Daemon) -> dict:
    """The daemon's numbers as JSON, for the MQTT `metrics` topic."""
    health = daemon.health()
    _, count, total_s = daemon.counters.latency.snapshot()
    return {
        "fps": health["fps"],
        "latency_ms": round(1000.0 * total_s / count, 2) if count else None,
        "frames": health["frames"],
        "frames_dropped": daemon.frames.dropped,
        "inferences": daemon.counters.inferences,
        "uptime_s": health["uptime_s"],
        "status": health["status"],
        "model": {key: health["model"][key] for key in ("name", "version", "sha256")},
    }


def _labels_and_samples(stats: dict, metric) -> None:
    """Drift (per label over the rolling window) and sample collection (kept, dropped, evicted, disk)."""
    window = f"{stats['window_s'] / 60:g} minutes"
    labels = stats["labels"]
    metric("bloomkit_label_frames", "gauge", f"Frames each label topped in the last {window}.",
           [(f'{{label="{_escape(label)}"}}', entry["count"]) for label, entry in labels.items()])
    metric("bloomkit_label_mean_top_score", "gauge", f"Mean top score of each label's frames in the last {window}.",
           [(f'{{label="{_escape(label)}"}}', entry["mean_top_score"]) for label, entry in labels.items()])
    collect = stats["collect"]
    if collect is None:
        return
    for kind, help_text in (("kept", "Samples written, by the first reason they were kept for."),
                            ("dropped", "Samples the policy picked but not written, by reason."),
                            ("evicted", "Samples deleted to stay within the budget.")):
        metric(f"bloomkit_samples_{kind}_total", "counter", help_text,
               [(f'{{reason="{reason}"}}', count) for reason, count in sorted(collect[kind].items())])
    metric("bloomkit_samples_bytes", "gauge", "Bytes of samples on disk.", [("", collect["bytes"])])
    metric("bloomkit_samples", "gauge", "Samples on disk.", [("", collect["samples"])])
    metric("bloomkit_samples_budget_bytes", "gauge", "The samples folder's size limit.",
           [("", collect["budget_bytes"])])
    paused = collect["reason"]
    metric("bloomkit_collect_paused", "gauge", "1 while collection is paused (a full disk, an unwritable folder).",
           [(f'{{reason="{_escape(paused)}"}}' if paused else "", 1 if paused else 0)])


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

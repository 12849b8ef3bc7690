"""`device run`: classify camera frames live, with a live page, JSON Lines, and hot model reload."""
from __future__ import annotations

import argparse

from device.daemon.config import add_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="classify camera frames live (the service fab deploy installs)",
        description="Classify the newest camera frame over and over; serve a live page, /api/latest, /healthz "
                    "and /metrics; reload the model when its file is replaced. SIGTERM stops it cleanly.")
    add_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import contextlib
    import functools
    import logging
    import signal
    import sys

    from device.classifier import Classifier
    from device.daemon.config import resolve
    from device.daemon.loop import Daemon
    from device.daemon import metrics
    from device.daemon.models import ModelWatcher
    from device.daemon.reporter import build_reporter
    from device.daemon.server import LiveServer
    from device.daemon.sources import open_source

    settings = resolve(args)
    logging.basicConfig(format="device run: %(message)s", level=logging.INFO, stream=sys.stderr)
    log = logging.getLogger("device.daemon")
    load = functools.partial(Classifier, labels_file=settings.labels, threads=settings.threads, top_k=settings.top_k,
                             score_threshold=settings.threshold, allow=settings.allow, deny=settings.deny)
    models = ModelWatcher(settings.model, load)
    with contextlib.ExitStack() as cleanup:  # undone in reverse: server, then capture and outputs, then camera
        reporter = build_reporter(settings.events, settings.data_dir, models.classifier,  # checks its options first
                                  metrics=lambda: metrics.summary(daemon))
        source = open_source(settings.source, models.classifier.input_size,
                             settings.source_fps, settings.loop)
        cleanup.callback(source.close)
        daemon = Daemon(settings, source, models, reporter)
        cleanup.callback(daemon.close)
        reporter.start()
        cleanup.callback(reporter.close)
        if reporter.mqtt:
            log.info("publishing to %s under %s/", reporter.mqtt.broker, reporter.topics.prefix)
        if settings.http_address:
            server = LiveServer(settings.http_address, daemon)
            server.start()
            cleanup.callback(server.close)
            log.info("live page on %s", server.url)
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, lambda *_: daemon.stop())
        log.info("classifying %s with %s (sha256 %s)", source.name, settings.model, models.classifier.model_sha256[:12])
        daemon.run()
    log.info("stopped")
    return 0

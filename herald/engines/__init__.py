"""Engines that run the daily plan's stages somewhere else than in this process.

The local engine is :mod:`herald.pipeline` itself.  :mod:`herald.engines.spark` runs the same
stage functions (ingest, de-duplicate, route, render, write) as Apache Spark tasks
(``herald run --engine spark``; docs/spark.md); the driver still does messages, ledger, audit and
summary exactly as the local plan does.
"""

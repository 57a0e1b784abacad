"""The dense suite's task kinds as data (registry `DENSE_KINDS`, benchmark/data/dense_sources.py), one file each:
where each source keeps a kind's images and raw targets, and the target dict a raw target becomes."""

from benchmark.data.dense_kinds import classification, detection, segmentation, tagging  # noqa: F401

"""The path of one run: its loop, plugins and evaluation, scenarios, feature cache, summary.json."""

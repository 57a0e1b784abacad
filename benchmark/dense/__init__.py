"""The dense suite's schedule, shared by its data sources and its stream (the kinds themselves: benchmark/tasks)."""

KIND_ORDER = ("segmentation", "detection", "classification")  # task ids 0, 1, 2, as the dense suite's document orders

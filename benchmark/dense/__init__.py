"""Per-kind logic of the dense suite (segmentation, detection, classification): packing, losses, KD, metrics."""

KIND_ORDER = ("segmentation", "detection", "classification")  # seed 004's schedule: task ids 0, 1, 2

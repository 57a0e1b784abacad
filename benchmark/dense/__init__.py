"""Per-kind logic of the dense suite (segmentation, detection, classification): packing, losses, KD, metrics."""

"""The machine a run computes on: device and dtype, paired randomness, plugins' checkpoint state, library warnings."""

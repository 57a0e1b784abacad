"""The machine a run computes on: device and dtype, paired randomness, library warnings."""

"""Many runs: the batch over a profile's grid, and the executors that carry it out (local, Ray)."""

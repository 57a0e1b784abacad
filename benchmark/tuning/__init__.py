"""Hyperparameter search on validation data (`hatswap tune`): spaces declared beside each knob (space.py), one trial
= one continual run on the stream's validation split reporting after every experience (trial.py), Optuna's TPE
with asynchronous successive halving in this process or on Ray Tune (search.py), the continual protocol of Delange
et al. 2021 (continual.py; its per-experience values applied by experience_knobs.py), and the record that `--tuned`
applies (record.py)."""

from benchmark.runtime.library_warnings import quiet_library_warnings

quiet_library_warnings()  # a Ray worker imports this package first (to unpickle a trial): before avalanche loads

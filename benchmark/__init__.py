"""hatswap: how much does each continual-learning strategy forget, and what does it cost?

`benchmark.load_run(folder)`: the final model of a run written with --save-model, ready for inference
(benchmark/harness/model_export.py)."""

__version__ = "0.1.0"
__all__ = ["load_run"]


def __getattr__(name: str):
    if name == "load_run":  # on first use: `import benchmark` stays light (no torch) for the CLI's startup
        from benchmark.harness.model_export import load_run

        return load_run
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")

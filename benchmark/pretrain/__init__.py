"""Self-supervised pretraining of a registered ViT backbone with the DINO objective (Caron et al. 2021).

    objective.py   the loss, centering, teacher EMA and the schedules (formulas in the docstrings)
    head.py        the DINO projection head and the backbone + head network
    multicrop.py   2 global + N local views per image, batched, for 28/32 px grey or colour images
    config.py      PretrainConfig and `hatswap pretrain`'s parser (a profile's "pretrain" section)
    train.py       the training loop, with per-epoch checkpoint and resume
    artifact.py    where a recipe's weights live, the cache hit, safetensors + manifest written atomically
    evaluation.py  k-NN and linear-probe accuracy vs random-init features and raw pixels
    pipeline.py    one call: cached weights, or train → export → evaluate → manifest
    batch.py       a profile's "pretrain" section in `hatswap batch` (registered with the grid runner)

The output is a timm-format state dict that `--backbone vit_tiny --backbone-weights FILE` loads
(docs/dino-pretraining.md).
"""

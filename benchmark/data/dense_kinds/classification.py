"""Classification: ImageFolder on the offline scenes' classification folder, or Imagenette-160 (10 classes); the raw
target is the class index, {"label": int}."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import ImageFolder, Imagenette

from benchmark.data.dense_sources import DENSE_KINDS, DenseKind, RawSplit
from benchmark.data.source import network_timeout
from benchmark.errors import UserError


@DENSE_KINDS.register("classification")
class Classification(DenseKind):
    short = "cls"

    def scenes(self, folder: Path, vsplit: str, names: list[str]) -> RawSplit:
        ds = ImageFolder(str(folder / "classification" / vsplit), allow_empty=True)  # "00_t-shirt-top".."09_…"
        return RawSplit(ds, names, {"loader": "torchvision.datasets.ImageFolder"})

    def real(self, root: Path, vsplit: str, download: bool) -> RawSplit:
        folder = root / "imagenette2-160"
        fix = (f"Imagenette not found under {folder}; download "
               f"{Imagenette._ARCHIVES['160px'][0]} and extract it in {root} (or pass --data-root)")
        try:
            if not folder.is_dir() and not download:
                raise UserError(fix)
            with network_timeout(20):
                ds = Imagenette(str(root), split=vsplit, size="160px", download=download)
        except (OSError, RuntimeError) as e:
            raise UserError(f"{fix} (download failed: {str(e).splitlines()[0][:120]})") from None
        return RawSplit(ds, [names[0] for names in ds.classes], {
            "source": "imagenette", "loader": "torchvision.datasets.Imagenette", "path": str(folder.resolve())})

    def target(self, raw, size: int, scale: tuple[float, float], label_map) -> dict:
        return {"label": int(raw)}

    def spec_params(self, classes: list[str], cfg) -> dict:
        return {"num_classes": len(classes)}

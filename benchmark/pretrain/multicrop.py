"""DINO's multi-crop views (Caron et al. 2021, §3.1; Caron et al. 2020 for multi-crop), batched, for 28/32 px.

Per image: 2 global views (`global_size`, area scale U(0.4, 1)) and N local views (`local_size`, area scale
U(0.05, 0.4)), each a random resized crop (aspect ratio log-uniform in [3/4, 4/3], as torchvision's
RandomResizedCrop) then:

    flip          horizontal, p = 0.5
    colour jitter p = 0.8: brightness ×U(0.6, 1.4), contrast ×U(0.6, 1.4) around the image mean, and on colour
                  images saturation ×U(0.8, 1.2) around the grey image (DINO: ColorJitter(0.4, 0.4, 0.2, 0.1); the
                  hue shift is left out)
    greyscale     colour images only, p = 0.2
    solarize      the second global view, p = 0.2: p ← 1 − p where p ≥ 0.5

Adapted to small images: DINO's Gaussian blur (σ ∈ [0.1, 2] px at 224 px) is below a quarter of a pixel at 28 px and
is left out, as solo-learn's CIFAR recipes do; crop sizes are the image size and about 3/7 of it (DINO: 224 and
96), rounded to the ViT's patch size. Every random draw comes from one torch.Generator, so a resumed run replays
the same views. Input and output pixels are in the streams' convention x = (p − 0.5) / 0.5, p ∈ [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align


@dataclass(frozen=True)
class CropRecipe:
    global_size: int
    local_size: int
    local_crops: int
    colour: bool  # 3-channel images get saturation jitter and random greyscale
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def random_boxes(n: int, height: int, width: int, scale: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """n×4 boxes (x0, y0, x1, y1) in pixel coordinates: area s·H·W with s ~ U(scale), aspect ratio r with
    log r ~ U(log 3/4, log 4/3), sides clipped to the image, position uniform."""
    area = _uniform(n, *scale, gen) * height * width
    ratio = torch.exp(_uniform(n, math.log(3 / 4), math.log(4 / 3), gen))
    w = torch.sqrt(area * ratio).clamp(max=width)
    h = torch.sqrt(area / ratio).clamp(max=height)
    x0, y0 = torch.rand(n, generator=gen) * (width - w), torch.rand(n, generator=gen) * (height - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def resized_crops(p: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """B×C×H×W, B×4 boxes → B×C×size×size: bilinear samples averaged over each output cell (roi_align's adaptive
    sampling, so a downscale is antialiased)."""
    rois = torch.cat([torch.arange(len(p), dtype=p.dtype).unsqueeze(1), boxes.to(p.dtype)], dim=1)
    return roi_align(p, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def _per_image(n: int, prob: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen) < prob).view(n, 1, 1, 1)


def _grey(p: torch.Tensor) -> torch.Tensor:
    if p.shape[1] == 1:
        return p
    w = torch.tensor([0.299, 0.587, 0.114], dtype=p.dtype).view(1, 3, 1, 1)  # ITU-R 601 luma, as torchvision
    return (p * w).sum(dim=1, keepdim=True)


def photometric(p: torch.Tensor, colour: bool, solarize: float, gen: torch.Generator) -> torch.Tensor:
    """Flip, colour jitter, greyscale, solarize (module docstring) on B×C×h×w pixels in [0, 1]."""
    n = len(p)
    p = torch.where(_per_image(n, 0.5, gen), p.flip(-1), p)
    jitter = _per_image(n, 0.8, gen)
    bright = _uniform(n, 0.6, 1.4, gen).view(n, 1, 1, 1)
    contrast = _uniform(n, 0.6, 1.4, gen).view(n, 1, 1, 1)
    q = (p * bright).clamp(0, 1)
    mean = _grey(q).mean(dim=(1, 2, 3), keepdim=True)
    q = (mean + contrast * (q - mean)).clamp(0, 1)
    if colour:
        sat = _uniform(n, 0.8, 1.2, gen).view(n, 1, 1, 1)
        q = (_grey(q) + sat * (q - _grey(q))).clamp(0, 1)
    p = torch.where(jitter, q, p)
    if colour:
        p = torch.where(_per_image(n, 0.2, gen), _grey(p).expand_as(p), p)
    if solarize:
        p = torch.where(_per_image(n, solarize, gen), torch.where(p >= 0.5, 1 - p, p), p)
    return p


def _view(p: torch.Tensor, scale: tuple[float, float], size: int, colour: bool, solarize: float,
          gen: torch.Generator) -> torch.Tensor:
    """Pixels in [0, 1] → one random resized crop with its photometric jitter, in the stream's [-1, 1]."""
    crop = resized_crops(p, random_boxes(len(p), p.shape[-2], p.shape[-1], scale, gen), size)
    return (photometric(crop, colour, solarize, gen) - 0.5) / 0.5


def multicrop(x: torch.Tensor, recipe: CropRecipe, gen: torch.Generator) -> list[torch.Tensor]:
    """B×C×H×W stream images → [global 1, global 2, local 1..N], each B×C×s×s in the stream's convention."""
    p = x * 0.5 + 0.5
    return [_view(p, recipe.global_scale, recipe.global_size, recipe.colour, 0.2 if k == 1 else 0.0, gen) if k < 2
            else _view(p, recipe.local_scale, recipe.local_size, recipe.colour, 0.0, gen)
            for k in range(2 + recipe.local_crops)]


def global_view(x: torch.Tensor, recipe: CropRecipe, gen: torch.Generator) -> torch.Tensor:
    """B×C×H×W stream images → one global view (as multicrop's first), B×C×s×s: the supervised bound's input."""
    return _view(x * 0.5 + 0.5, recipe.global_scale, recipe.global_size, recipe.colour, 0.0, gen)

"""Small generated datasets in the dogImages layout, for tests, benchmarks and `demo`.

Each class has its own colour and stripe pattern, drawn with random placement, jitter and
noise, so a small network can learn to separate them in a few epochs, but not trivially
from one pixel. No real photos, no downloads.
"""

from __future__ import annotations

import colorsys
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

BREEDS = (
    "Affenpinscher",
    "Afghan_hound",
    "Airedale_terrier",
    "Akita",
    "Alaskan_malamute",
    "American_eskimo_dog",
    "American_foxhound",
    "American_staffordshire_terrier",
    "American_water_spaniel",
    "Anatolian_shepherd_dog",
    "Australian_cattle_dog",
    "Australian_shepherd",
    "Australian_terrier",
    "Basenji",
    "Basset_hound",
    "Beagle",
)
SPLIT_SHARE = {"train": 0.7, "valid": 0.15, "test": 0.15}


def class_folder(index: int, name: str) -> str:
    return f"{index + 1:03d}.{name}"


def _draw(cls: int, n_classes: int, size: tuple[int, int], rng: random.Random) -> Image.Image:
    width, height = size
    hue = (cls / n_classes + rng.uniform(-0.03, 0.03)) % 1.0
    fg = tuple(
        int(255 * c) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1), rng.uniform(0.6, 1))
    )
    bg_hue = (hue + 0.5 + rng.uniform(-0.1, 0.1)) % 1.0
    bg = tuple(
        int(255 * c)
        for c in colorsys.hsv_to_rgb(bg_hue, rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.9))
    )
    image = Image.new("RGB", size, bg)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(image)
    # Stripes whose spacing depends on the class: a shape cue beside the colour cue.
    spacing = max(4, int(min(size) / (3 + cls % 5)))
    offset = rng.randrange(spacing)
    vertical = cls % 2 == 0
    for pos in range(offset, width if vertical else height, spacing):
        box = (
            [pos, 0, pos + spacing // 3, height]
            if vertical
            else [0, pos, width, pos + spacing // 3]
        )
        draw.rectangle(box, fill=fg)  # type: ignore[arg-type]
    # A "dog": an ellipse of the class colour somewhere in the frame.
    ew, eh = rng.randint(width // 4, width // 2), rng.randint(height // 4, height // 2)
    x, y = rng.randint(0, width - ew), rng.randint(0, height - eh)
    draw.ellipse([x, y, x + ew, y + eh], fill=fg, outline=(0, 0, 0))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def make_dataset(
    root: Path | str,
    *,
    classes: int = 4,
    per_class: int = 20,
    size_range: tuple[int, int] = (64, 128),
    seed: int = 0,
    quality: int = 90,
) -> Path:
    """Write root/{train,valid,test}/NNN.Breed/*.jpg; returns root.

    `per_class` images per class in all, split 70/15/15 (at least one per split).
    """
    if not 1 <= classes <= len(BREEDS):
        raise ValueError(f"classes must be 1..{len(BREEDS)}")
    if per_class < 3:
        raise ValueError("per_class must be >= 3 (one image per split at least)")
    root = Path(root)
    rng = random.Random(seed)
    n_valid = max(1, round(per_class * SPLIT_SHARE["valid"]))
    n_test = max(1, round(per_class * SPLIT_SHARE["test"]))
    counts = {"train": per_class - n_valid - n_test, "valid": n_valid, "test": n_test}
    for cls in range(classes):
        folder = class_folder(cls, BREEDS[cls])
        for split, count in counts.items():
            target = root / split / folder
            target.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                size = (rng.randint(*size_range), rng.randint(*size_range))
                image = _draw(cls, classes, size, rng)
                image.save(target / f"{BREEDS[cls]}_{split}_{i:04d}.jpg", quality=quality)
    return root

"""Image decoding and the eval transform: one definition for training, serving and predict.

STANDALONE FILE: it is copied into model.tar.gz as `code/preprocess.py` and imported by
`code/inference.py` inside the SageMaker PyTorch container, so it may import only the
standard library, torch, torchvision and Pillow, never `dogclf` (simplejpeg only where
installed: decode_pixels).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Eval: resize the short side to image_size * 256/224, then center-crop image_size (the
# torchvision recipe the ImageNet weights were trained for).
RESIZE_RATIO = 256 / 224
DEFAULT_MAX_PIXELS = 40_000_000
# Resizing the short side up to ~256 px makes a 1x20000 image (a 141-byte PNG) 5 billion
# pixel bytes: refuse shapes no photo has rather than let them exhaust memory.
MAX_ASPECT_RATIO = 20
# What Image.open may try: photo formats only (EPS would run Ghostscript, for one).
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes MPO (phones)
# to_pixels wraps Pillow's bytes without a copy; torch warns (once) that they are read-only.
# A filter set once, not catch_warnings: that swaps the global filters, unsafe in threads.
warnings.filterwarnings("ignore", "The given buffer is not writable", UserWarning)


class ImageDecodeError(ValueError):
    """The bytes are not an image we can classify; the message says why (HTTP 400)."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than allowed: a decompression bomb or simply too big (413)."""


def resize_size(image_size: int) -> int:
    return round(image_size * RESIZE_RATIO)


class Normalize:
    """uint8 (..., C, H, W) pixels -> float32 ImageNet-normalised, in one pass.

    (x / 255 - mean) / std as one multiply-add, x * (1 / (255 std)) - mean / std: ToDtype
    plus Normalize take four passes over the batch (0.48 vs 0.19 ms an image on one core).
    The two differ by float rounding only (about 1e-7).
    """

    def __init__(self) -> None:
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -torch.tensor(IMAGENET_MEAN).view(3, 1, 1) / std

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, pixels.to(torch.float32), self.scale)


def normalize() -> Normalize:
    return Normalize()


def resize_crop(image_size: int = 224) -> T.Compose:
    """The geometric half of the eval transform, on uint8 (C, H, W) pixels: short side to
    resize_size, centre crop.

    On a tensor, torchvision resizes with torch's vectorised uint8 antialiased bilinear,
    within one level of Pillow's resize on 0.04% of the values and 2.5x as fast as it (the
    serve bench's 300-700 px JPEGs, one core: 0.85 ms with the copy into a tensor, against
    2.18 ms); the crop is a view. `dogclf serve`'s decode threads run it
    (torch releases the GIL); the batch is normalised in the model thread.
    """
    return T.Compose([T.Resize(resize_size(image_size), antialias=True), T.CenterCrop(image_size)])


def to_pixels(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> uint8 (C, H, W) tensor: a read-only view of one (H, W, C) copy, the bytes
    Pillow gives (channels_last). Nothing writes to it: every later step makes a new tensor.
    A writable copy would double the transient memory of a 40-megapixel PNG (+120 MB)."""
    width, height = image.size
    flat = torch.frombuffer(image.tobytes(), dtype=torch.uint8)
    return flat.view(height, width, 3).permute(2, 0, 1)


def eval_transform(image_size: int = 224) -> T.Compose:
    """PIL RGB image -> normalised float (C, H, W) tensor.

    Exactly to_pixels, resize_crop, then normalize: serving runs the same pieces, split
    between the request thread and the batch.
    """
    return T.Compose([to_pixels, *resize_crop(image_size).transforms, normalize()])


def train_transform(image_size: int = 224) -> T.Compose:
    """Augmentation for training: random resized crop and horizontal flip."""
    return T.Compose(
        [
            to_pixels,
            T.RandomResizedCrop(image_size, antialias=True),
            T.RandomHorizontalFlip(),
            normalize(),
        ]
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (L, P, CMYK, RGBA, I;16, ...) to RGB.

    In place: without it, exif_transpose copies every image that has nothing to turn (a
    quarter of a JPEG's decode time, and a second full-size copy of a big one)."""
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than clipping to white.
        image = image.point(lambda v: v / 256).convert("L")  # type: ignore[arg-type, return-value]
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparency onto white, as a viewer shows it.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Bytes -> RGB PIL image, refusing non-images and decompression bombs.

    `draft_size`: for JPEGs, let libjpeg decode at a reduced scale (1/2, 1/4, 1/8) that is
    still at least this many pixels on the short side: much faster for large photos and
    lossless for a 224-pixel model.
    """
    with _refusals():
        return _load_rgb(_open(data, max_pixels), draft_size)


def decode_pixels(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> torch.Tensor:
    """Bytes -> uint8 (C, H, W) RGB pixels: to_pixels(decode_image(...)), the same values.

    A JPEG in RGB or greyscale without an EXIF turn (most photos sent to an endpoint) is
    decoded by simplejpeg (libjpeg-turbo's TurboJPEG API, as Pillow's decoder, the same
    IDCT: the same pixels, tests) straight into an array the tensor wraps, without Pillow's
    decoder loop and the copy out of its buffer: 0.39 against 0.64 ms of CPU an image on the
    serve bench's JPEGs. Pillow's draft still picks the reduced scale (1/2, 1/4, 1/8) of a
    large photo; simplejpeg decodes at it. Anything else, anything libjpeg refuses, and a
    host without simplejpeg (the SageMaker PyTorch image) go through Pillow, with
    decode_image's checks and error messages."""
    with _refusals():
        image = _open(data, max_pixels)
        _draft(image, draft_size)  # sets image.size to what a decode at that scale gives
        plain = (
            image.format == "JPEG"
            and image.mode in ("RGB", "L")
            and image.getexif().get(EXIF_ORIENTATION, 1) == 1
        )
        if plain and (pixels := _turbojpeg(data, image.size)) is not None:
            return pixels
        return to_pixels(_load_rgb(image, None))  # drafted above already


EXIF_ORIENTATION = 0x0112


def _turbojpeg(data: bytes, size: tuple[int, int]) -> torch.Tensor | None:
    """uint8 (C, H, W) of `size` (width, height: the full size or a reduced scale's), a view
    of simplejpeg's (H, W, C) array; None where simplejpeg is not installed, libjpeg refuses
    the bytes (decode_image then says what is wrong) or it would decode at another size."""
    try:
        import simplejpeg
    except ImportError:
        return None
    try:
        # The smallest of libjpeg's scales that gives at least `size`: the draft's own.
        array = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=size[0], min_height=size[1]
        )
    except ValueError:
        return None
    if array.shape[:2] != (size[1], size[0]):
        return None
    return torch.from_numpy(array).permute(2, 0, 1)


def _draft_scale(image: Image.Image, draft_size: int | None) -> float:
    """How many times the short side is over `draft_size` (0: no reduced-scale decode)."""
    return min(image.size) / draft_size if draft_size else 0.0


def _load_rgb(image: Image.Image, draft_size: int | None) -> Image.Image:
    _draft(image, draft_size)
    image.load()
    return to_rgb(image)


def _draft(image: Image.Image, draft_size: int | None) -> None:
    """A JPEG whose short side is at least twice `draft_size` is set to decode at libjpeg's
    reduced scale (image.size shrinks; nothing is decoded yet)."""
    if image.format in ("JPEG", "MPO") and (scale := _draft_scale(image, draft_size)) >= 2:
        width, height = image.size
        image.draft("RGB", (int(width / scale) + 1, int(height / scale) + 1))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Pillow's view of the header (nothing decoded yet), refused unless it is a photo; in
    _refusals, where the bomb warning is an error."""
    if not data:
        raise ImageDecodeError("empty image: the request body has no bytes")
    image = Image.open(io.BytesIO(data), formats=FORMATS)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height:,} pixels, above the "
            f"limit of {max_pixels:,}"
        )
    if width < 1 or height < 1:
        raise ImageDecodeError("image has no pixels")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageDecodeError(
            f"image is {width}x{height}: a side more than {MAX_ASPECT_RATIO} times "
            "the other is not a photo this model can classify"
        )
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # animated GIF/WebP/PNG: classify the first frame
    return image


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Pillow's many exceptions on hostile bytes -> ImageDecodeError / ImageTooLargeError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image refused as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(
            "not an image Pillow can read (JPEG, PNG, WebP, GIF, BMP, TIFF)"
        ) from None
    except MemoryError:
        raise ImageTooLargeError("image needs more memory to decode than this host has") from None
    except Exception as exc:  # OSError, SyntaxError, struct.error...: Pillow on hostile bytes
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None


def load_image_file(path: Any, **kwargs: Any) -> Image.Image:
    with open(path, "rb") as handle:
        return decode_image(handle.read(), **kwargs)

"""Images are untrusted: every one is decoded by Pillow with its decompression-bomb guard on,
re-encoded (PNG, or JPEG for photographs), its metadata (EXIF, GPS, comments, ICC profiles)
dropped, and scaled so its longer side is at most MAX_SIDE. What a page or a judge sees is the
re-encoded copy, never the bytes as uploaded."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from rubrics.files.sniff import FileRefused

MAX_PIXELS = 40_000_000  # Pillow refuses larger images (its DecompressionBombError)
MAX_SIDE = 2048  # the longer side after scaling, in pixels
THUMB_SIDE = 640  # previews on pages


@dataclass(frozen=True)
class Reencoded:
    data: bytes
    mime: str
    width: int
    height: int


def reencode(data: bytes, *, name: str = "image", max_side: int = MAX_SIDE) -> Reencoded:
    """The image decoded, scaled to `max_side` and saved again without metadata; FileRefused
    when it is not an image Pillow reads, or is larger than MAX_PIXELS."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in ("PNG", "JPEG", "WEBP"):
                    raise FileRefused(f"'{name}' is a {img.format} image; send PNG, JPEG or WebP.")
                img.load()
                frame = img.convert("RGBA" if _has_alpha(img) else "RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FileRefused(
            f"'{name}' is larger than {MAX_PIXELS:,} pixels; images that large are refused."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FileRefused(f"'{name}' is not a readable image ({exc}).") from None
    # convert() copies the source's info (comments, EXIF, ICC), which save() writes back out:
    # nothing of it is kept.
    frame.info = {}
    frame.thumbnail((max_side, max_side))
    out = io.BytesIO()
    if frame.mode == "RGBA":
        frame.save(out, format="PNG", compress_level=6)  # optimize=True cost 100+ ms an image
        mime = "image/png"
    else:
        frame.save(out, format="JPEG", quality=88)
        mime = "image/jpeg"
    return Reencoded(out.getvalue(), mime, frame.width, frame.height)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)

"""Colour-keyed recolouring: the corruption behind the `gan.recolour` training signal.

The matching half of a batch teaches G nothing about following text when its input already shows what the
caption says (G(x, t) = x is the identity). With one region of x given another image's colour first,
G(x', t) = x asks G to repaint a region whose colour disagrees with its caption back to what the caption
names: the skill an edit needs, learned from pixels rather than from a critic.

The region is keyed by colour, not drawn as a shape: every pixel close in colour to a randomly picked pixel
on the object shifts by the difference to a pixel of another image in the batch. Parts of birds and flowers
are close to uniform in colour, so this recolours whole parts with colours that occur in the data, and x'
looks like a real image that its caption does not match, as the source of an edit does.
"""

from __future__ import annotations

import torch


def recolour_keyed(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    tolerance: float = 0.25,
    candidates: int = 4,
) -> torch.Tensor:
    """images [B, 3, H, W] in [-1, 1] -> the same with one colour-keyed region recoloured per image.

    tolerance: RGB distance (in [-1, 1] units) at which a pixel is half inside the region. The new colour
    comes from the central area of another image of the batch (rolled by one); key and new colour are each the
    one of `candidates` random central pixels that is least like the image's border. No host synchronisation.
    """
    b, _, h, w = images.shape
    dev = images.device
    rows = torch.arange(b, device=dev)

    # The background is what the border shows; of a few central pixels, the one least like it is on the
    # object.
    edges = [images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]]
    border = torch.cat(edges, dim=2).mean(dim=2)  # [B, 3]

    def object_pixel() -> torch.Tensor:  # [B, 3]
        y = torch.randint(h // 4, h - h // 4, (b, candidates), device=dev, generator=generator)
        x = torch.randint(w // 4, w - w // 4, (b, candidates), device=dev, generator=generator)
        pixels = images[rows[:, None], :, y, x]  # [B, candidates, 3]
        best = (pixels - border[:, None]).pow(2).sum(2).argmax(1)
        return pixels[rows, best]

    key = object_pixel()
    target = object_pixel().roll(1, dims=0)
    dist = (images - key[:, :, None, None]).pow(2).sum(1, keepdim=True).sqrt()  # [B, 1, H, W]
    region = torch.sigmoid((tolerance - dist) * (8 / tolerance))
    return (images + region * (target - key)[:, :, None, None]).clamp(-1, 1)

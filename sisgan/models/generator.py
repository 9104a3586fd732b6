"""The SISGAN generator: encode the source image, fuse a text condition, decode the edited image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sisgan.config import GANConfig
from sisgan.errors import ConfigError
from sisgan.pixels import to_uint8, to_unit
from sisgan.models.attention import WordAttention, WordPaint, WordReader
from sisgan.models.blocks import ResidualBlock, TextResidualBlock, ch, init_weights, tile

# How G's last layer forms the output image: "direct" (the paper: tanh of the decoder), "mask" (a repaint
# layer blended into the source by a predicted mask, as GANimation does for faces) or "paint" (the same blend,
# with the repaint colours read from the caption's words: sisgan.models.attention.WordPaint). Improvements.
OUTPUTS = ("direct", "mask", "paint")
# How the text condition enters: "concat" (the paper: tiled and concatenated once, before the residual
# blocks) or "film" (also modulating every residual block; an improvement).
CONDITIONINGS = ("concat", "film")
MASK_INIT_BIAS = -3.0
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvEncoder(nn.Module):
    """Trainable encoder: [B, 3, S, S] in [-1, 1] -> [B, 512w, S/4, S/4]."""

    def __init__(self, width: float) -> None:
        super().__init__()
        c1, c2, c3 = ch(128, width), ch(256, width), ch(512, width)
        self.net = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, c3, 4, 2, 1, bias=False),
            nn.BatchNorm2d(c3),
            nn.ReLU(inplace=True),
        )
        self.out_channels = c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VGGEncoder(nn.Module):
    """Frozen ImageNet VGG16-BN up to conv4_3 at stride 4: [B, 3, S, S] -> [B, 512, S/4, S/4].

    The third max-pool is dropped and conv4_1..conv4_3 are dilated by 2 to keep their receptive field.
    The reference implementation set the dilation on indices 24/27/30, which in VGG16-BN are BatchNorm
    layers (so nothing was dilated); here the dilation is put on the conv layers themselves.
    """

    def __init__(self, weights: str | Path | None) -> None:
        super().__init__()
        from torchvision.models import vgg16_bn

        from sisgan.text.image_encoder import load_local_weights

        vgg = vgg16_bn()
        if weights is not None:
            vgg.load_state_dict(load_local_weights(weights, "gan.vgg_weights", "vgg16_bn-6c64b313.pth"))
        layers = list(vgg.features.children())[:33]  # up to relu4_3; index 23 is the third max-pool
        del layers[23]
        for conv in [m for m in layers[23:] if isinstance(m, nn.Conv2d)]:
            conv.dilation, conv.padding = (2, 2), (2, 2)
        self.net = nn.Sequential(*layers)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.out_channels = 512

    def train(self, mode: bool = True) -> VGGEncoder:
        super().train(mode)
        self.net.eval()  # frozen: BN uses ImageNet statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(((x + 1) / 2 - self.mean) / self.std)


class ConditioningAugmentation(nn.Module):
    """φ(t) [B, T] -> c [B, C], μ [B, C], log σ [B, C] with c = μ + σ·ε (StackGAN's trick)."""

    def __init__(self, text_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(text_dim, cond_dim, bias=False), nn.LeakyReLU(0.2, inplace=True))
        self.log_sigma = nn.Sequential(nn.Linear(text_dim, cond_dim, bias=False), nn.LeakyReLU(0.2, inplace=True))

    def forward(self, text: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.mu(text), self.log_sigma(text)
        return mu + log_sigma.exp() * noise, mu, log_sigma


class Generator(nn.Module):
    """(image [B, 3, S, S] in [-1, 1], φ(t) [B, T], noise [B, C]) -> (image [B, 3, S, S], μ, log σ)."""

    def __init__(
        self,
        image_size: int = 64,
        text_dim: int = 300,
        width: float = 1.0,
        encoder: str = "conv",
        vgg_weights: str | None = None,
        load_vgg: bool = True,
        output: str = "direct",
        conditioning: str = "concat",
        attention: bool = False,
        vocab_size: int = 0,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ConfigError(f"gan.output = {output!r} is unknown; choose one of {', '.join(OUTPUTS)}.")
        if conditioning not in CONDITIONINGS:
            raise ConfigError(
                f"gan.conditioning = {conditioning!r} is unknown; choose one of {', '.join(CONDITIONINGS)}."
            )
        self.output, self.conditioning = output, conditioning
        if image_size % 16 or image_size < 16:
            raise ConfigError(f"gan.image_size = {image_size} must be a multiple of 16 (16, 32, 48, 64, ...).")
        self.image_size, self.text_dim, self.width = image_size, text_dim, width
        if encoder == "conv":
            self.encoder: nn.Module = ConvEncoder(width)
        elif encoder == "vgg16bn":
            self.encoder = VGGEncoder((vgg_weights or "") if load_vgg else None)
        else:
            raise ConfigError(f"gan.encoder = {encoder!r} is unknown; choose 'conv' or 'vgg16bn'.")
        feat, c = self.encoder.out_channels, ch(512, width)
        self.cond_dim = ch(128, width)
        self.ca = ConditioningAugmentation(text_dim, self.cond_dim)
        self.fuse = nn.Sequential(nn.Conv2d(feat + self.cond_dim, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        if conditioning == "film":
            self.blocks = nn.ModuleList([TextResidualBlock(c, self.cond_dim) for _ in range(4)])
        else:
            self.blocks = nn.ModuleList([ResidualBlock(c) for _ in range(4)])
        c2, c3 = ch(256, width), ch(128, width)
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c2, c3, 3, padding=1, bias=False),
            nn.BatchNorm2d(c3),
            nn.ReLU(inplace=True),
        )
        # The last 3x3 conv. "mask" and "paint" also see the source pixels (a skip connection: the decoder works
        # from S/4 features, and a mask has to follow the parts' edges at full resolution) and add a mask channel.
        self.masked = output in ("mask", "paint")
        self.to_rgb = nn.Conv2d(c3 + 3 * self.masked, 3 + self.masked, 3, padding=1)
        # Word-level conditioning (sisgan.models.attention): G reads the caption's token ids with its own
        # word reader; positions at S/4 and S/2 attend to the words, and "paint" takes each pixel's colour
        # from them.
        self.attention = attention
        self.reader: WordReader | None = None
        if attention or output == "paint":
            if vocab_size < 2:
                raise ConfigError("a generator that reads words needs the text encoder's vocabulary size.")
            self.reader = WordReader(vocab_size)
            words = self.reader.out_dim
            if attention:
                self.attend = nn.ModuleList([WordAttention(c, words), WordAttention(c2, words)])
        self.paint = WordPaint(c3 + 3, self.reader.out_dim) if output == "paint" else None
        self.apply(init_weights)
        if self.masked:
            # The mask starts almost closed (sigmoid(-3) = 0.05): G begins close to the identity.
            nn.init.constant_(self.to_rgb.bias[3:], MASK_INIT_BIAS)

    @property
    def reads_words(self) -> bool:
        """Whether forward needs the caption's token ids (attention or the paint output)."""
        return self.reader is not None

    @property
    def vocab_size(self) -> int:
        """The vocabulary its word reader embeds (0: it reads no words)."""
        return 0 if self.reader is None else self.reader.embed.num_embeddings

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        noise: torch.Tensor,
        tokens: torch.Tensor | None = None,
        with_attention: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """tokens [B, L] int64: the caption's token ids (0 = padding), needed when reads_words.
        -> (image, μ, log σ), and with_attention (output "paint"): the repaint's word attention [B, S·S, L]."""
        if with_attention and self.paint is None:
            raise ValueError(f"a generator with output {self.output!r} paints without word attention")
        words = word_mask = None
        if self.reader is not None:
            if tokens is None:
                raise ValueError("this generator reads the caption's words: pass its token ids")
            words, word_mask = self.reader(tokens), tokens > 0  # [B, L, D], [B, L]
        feat = self.encoder(image)  # [B, 512w, S/4, S/4]
        cond, mu, log_sigma = self.ca(text, noise)  # [B, C]
        x = self.fuse(torch.cat([feat, tile(cond, feat.shape[-1]).to(feat.dtype)], dim=1))
        for block in self.blocks:  # [B, 512w, S/4, S/4]; FiLM blocks also read the condition
            x = block(x, cond)
        if self.attention:
            x = self.attend[0](x, words, word_mask)
        x = self.decoder[:4](x)  # [B, 256w, S/2, S/2]
        if self.attention:
            x = self.attend[1](x, words, word_mask)
        x = self.decoder[4:](x)  # [B, 128w, S, S]
        if not self.masked:
            return torch.tanh(self.to_rgb(x)), mu, log_sigma  # [B, 3, S, S] in [-1, 1]
        x = torch.cat([x, image.to(x.dtype)], dim=1)
        y = self.to_rgb(x)  # [B, 4, S, S]
        mask = torch.sigmoid(y[:, 3:])  # [B, 1, S, S]: where to repaint
        if self.paint is None:
            return mask * torch.tanh(y[:, :3]) + (1 - mask) * image, mu, log_sigma
        paint, weights = self.paint(x, words, word_mask)
        out = mask * paint + (1 - mask) * image
        return (out, mu, log_sigma, weights) if with_attention else (out, mu, log_sigma)

    def layers(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        noise: torch.Tensor,
        tokens: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two layers a "mask" or "paint" generator blends: (mask [B, 1, S, S] in [0, 1], repaint
        [B, 3, S, S] in [-1, 1]); forward's image is mask * repaint + (1 - mask) * image. Taken from forward's
        own last layers (forward hooks: forward is unchanged); tests check the blend against forward."""
        if not self.masked:
            raise ValueError(f"a generator with output {self.output!r} has no mask and repaint layers")
        seen: dict[str, torch.Tensor] = {}
        hooks = [self.to_rgb.register_forward_hook(lambda _m, _i, y: seen.__setitem__("rgb", y))]
        if self.paint is not None:
            hooks.append(self.paint.register_forward_hook(lambda _m, _i, y: seen.__setitem__("paint", y[0])))
        try:
            self(image, text, noise, tokens)
        finally:
            for hook in hooks:
                hook.remove()
        y = seen["rgb"]  # [B, 4, S, S]
        return torch.sigmoid(y[:, 3:]), seen["paint"] if self.paint is not None else torch.tanh(y[:, :3])


def generator_from_config(
    cfg: GANConfig, text_dim: int, load_vgg: bool = True, vocab_size: int = 0
) -> Generator:
    """The generator `gan:` describes (training builds it with the VGG weights, inference without);
    vocab_size: the text encoder's, for a generator that reads words."""
    return Generator(
        cfg.image_size,
        text_dim,
        cfg.width,
        cfg.encoder,
        cfg.vgg_weights,
        load_vgg=load_vgg,
        output=cfg.output,
        conditioning=cfg.conditioning,
        attention=cfg.attention,
        vocab_size=vocab_size,
    )


def text_inputs(generator: Generator, text_model: Any, texts: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """What `generator` reads of texts: (φ [M, T],) from the frozen text model or, when it reads words,
    (φ, token ids [M, L]) — edit_images' text arguments."""
    phi = text_model.encode_texts(texts)
    return (phi, text_model.tokens(texts)[0]) if generator.reads_words else (phi,)


@torch.no_grad()
def edit_images(
    generator: Generator,
    images: np.ndarray,
    texts: torch.Tensor,
    tokens: torch.Tensor | None = None,
    batch_size: int = 128,
) -> np.ndarray:
    """G over uint8 images [N, S, S, 3] with φ(t) [N, T] (and, for a generator that reads words, their
    token ids [N, L]), in batches: uint8 [N, S, S, 3].

    ε = 0 (the mean condition), and in whatever mode the caller left G (eval for inference).
    """
    device = next(generator.parameters()).device
    outs = []
    for i in range(0, len(images), batch_size):
        rows = slice(i, i + batch_size)
        x = to_unit(images[rows], device)
        noise = torch.zeros(len(x), generator.cond_dim, device=device)
        per_word = (tokens[rows].to(device),) if tokens is not None else ()
        outs.append(to_uint8(generator(x, texts[rows].to(device), noise, *per_word)[0]))
    return np.concatenate(outs)

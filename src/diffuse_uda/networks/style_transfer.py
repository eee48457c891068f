"""Feature-disentangling style transfer (GLUA's synthesis subnet, 2D).

An image is split into a *content* map shared by both domains and a *style* that is one learned code
per domain (not per image): an MLP turns the one-hot domain label into the affine parameters of every
AdaIN layer. Encoder and decoder are both conditioned this way (the paper writes ``G_E(x, d)`` and
``G_D(c, d)``), so translating source -> target is ``decode(encode(x, source), target)``.

A PatchGAN ("Markovian") discriminator with a shared body and one output channel per domain judges
whether an image is a real image of the domain it is asked about.

Channel widths default to a quarter of the paper's (16 instead of 64 base channels) so the stage
runs on a CPU; every width and depth is a constructor argument.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SOURCE, TARGET = 0, 1


def fitting_downsamplings(size: int, limit: int, min_size: int = 2) -> int:
    """How many stride-2 halvings (at most ``limit``, at least 1) keep ``size`` >= ``min_size``.

    Small images (tests, thumbnails) would otherwise shrink to nothing in a fixed-depth PatchGAN.
    """
    return max(1, min(limit, int(math.floor(math.log2(max(size, 1) / min_size)))))


def domain_one_hot(domain: torch.Tensor | int, batch: int, num_domains: int, device: torch.device) -> torch.Tensor:
    """(B, num_domains) one-hot rows for a per-sample label tensor (B,) or one label for the whole batch."""
    if isinstance(domain, int):
        domain = torch.full((batch,), domain, dtype=torch.long, device=device)
    return nn.functional.one_hot(domain.long().to(device), num_domains).float()


class AdaIN(nn.Module):
    """Instance normalisation whose scale and shift are given per sample (no own affine parameters)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.norm = nn.InstanceNorm2d(channels, affine=False)

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        gamma, beta = params.chunk(2, dim=1)
        # 1 + gamma: a zero style code is plain instance norm, which keeps the first steps stable.
        return self.norm(x) * (1.0 + gamma[..., None, None]) + beta[..., None, None]


class ConvAdaIN(nn.Module):
    """Conv (or transposed conv for exact 2x upsampling) -> AdaIN -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, transpose: bool = False) -> None:
        super().__init__()
        if transpose:
            self.conv: nn.Module = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding=stride - 1)
        else:
            self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.norm = AdaIN(cout)
        self.n_style = 2 * cout

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x), params))


class ResAdaIN(nn.Module):
    """Residual block: x + AdaIN(conv(ReLU(AdaIN(conv(x)))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm1, self.norm2 = AdaIN(channels), AdaIN(channels)
        self.n_style = 4 * channels

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        p1, p2 = params.split(2 * self.norm1.channels, dim=1)
        h = torch.relu(self.norm1(self.conv1(x), p1))
        return x + self.norm2(self.conv2(h), p2)


class StyleCode(nn.Module):
    """Domain label -> AdaIN parameters of a whole stack: FC-ReLU-FC-ReLU-FC on the one-hot label.

    With ``conditional=False`` the code ignores the domain (one learned vector), i.e. plain instance
    norm with learned affine parameters, for an unconditioned content encoder.
    """

    def __init__(self, num_domains: int, n_style: int, hidden: int, conditional: bool = True) -> None:
        super().__init__()
        self.num_domains = num_domains
        self.conditional = conditional
        if conditional:
            self.mlp: nn.Module = nn.Sequential(nn.Linear(num_domains, hidden), nn.ReLU(inplace=True),
                                                nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                                nn.Linear(hidden, n_style))
        else:
            self.code = nn.Parameter(torch.zeros(n_style))

    def forward(self, domain: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
        if not self.conditional:
            return self.code.expand(batch, -1)
        return self.mlp(domain_one_hot(domain, batch, self.num_domains, device))


def _run_styled(layers: nn.ModuleList, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Feed each layer its own slice of the stacked AdaIN parameter vector."""
    offset = 0
    for layer in layers:
        x = layer(x, params[:, offset:offset + layer.n_style])
        offset += layer.n_style
    return x


class ContentEncoder(nn.Module):
    """Conv 7x7 -> ``n_down`` stride-2 convs (channels double) -> ``n_res`` residual blocks, all AdaIN."""

    def __init__(self, in_channels: int, base: int = 16, n_down: int = 2, n_res: int = 4, num_domains: int = 2,
                 mlp_hidden: int = 256, conditional: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvAdaIN(in_channels, base, 7, 1, 3)]
        ch = base
        for _ in range(n_down):
            layers.append(ConvAdaIN(ch, 2 * ch, 3, 2, 1))
            ch *= 2
        layers += [ResAdaIN(ch) for _ in range(n_res)]
        self.layers = nn.ModuleList(layers)
        self.out_channels = ch
        self.style = StyleCode(num_domains, sum(m.n_style for m in layers), mlp_hidden, conditional)

    def forward(self, x: torch.Tensor, domain: torch.Tensor | int) -> torch.Tensor:
        return _run_styled(self.layers, x, self.style(domain, x.shape[0], x.device))


class StyleDecoder(nn.Module):
    """``n_res`` residual blocks -> ``n_down`` transposed convs (2x each) -> conv 7x7 -> sigmoid, all AdaIN.

    Sigmoid (not the paper's ReLU + tanh) because the toolkit's images live in [0, 1].
    """

    def __init__(self, out_channels: int, base: int = 16, n_down: int = 2, n_res: int = 4, num_domains: int = 2,
                 mlp_hidden: int = 256) -> None:
        super().__init__()
        ch = base * 2**n_down
        layers: list[nn.Module] = [ResAdaIN(ch) for _ in range(n_res)]
        for _ in range(n_down):
            layers.append(ConvAdaIN(ch, ch // 2, 3, 2, 1, transpose=True))
            ch //= 2
        self.layers = nn.ModuleList(layers)
        self.final = nn.Conv2d(ch, out_channels, 7, 1, 3)
        self.style = StyleCode(num_domains, sum(m.n_style for m in layers), mlp_hidden)

    def forward(self, content: torch.Tensor, domain: torch.Tensor | int) -> torch.Tensor:
        h = _run_styled(self.layers, content, self.style(domain, content.shape[0], content.device))
        return torch.sigmoid(self.final(h))


class StyleTransferNet(nn.Module):
    """Shared content encoder + style decoder; ``translate(x, src, dst)`` swaps the domain style."""

    def __init__(self, in_channels: int = 1, base: int = 16, n_down: int = 2, n_res: int = 4,
                 num_domains: int = 2, mlp_hidden: int = 256, conditional_encoder: bool = True) -> None:
        super().__init__()
        self.n_down = n_down
        self.encoder = ContentEncoder(in_channels, base, n_down, n_res, num_domains, mlp_hidden, conditional_encoder)
        self.decoder = StyleDecoder(in_channels, base, n_down, n_res, num_domains, mlp_hidden)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this for the decoder to restore the exact size."""
        return 2**self.n_down

    def encode(self, x: torch.Tensor, domain: torch.Tensor | int) -> torch.Tensor:
        return self.encoder(x, domain)

    def decode(self, content: torch.Tensor, domain: torch.Tensor | int) -> torch.Tensor:
        return self.decoder(content, domain)

    def translate(self, x: torch.Tensor, source: torch.Tensor | int, target: torch.Tensor | int) -> torch.Tensor:
        return self.decode(self.encode(x, source), target)

    def forward(self, x: torch.Tensor, source: torch.Tensor | int, target: torch.Tensor | int) -> torch.Tensor:
        return self.translate(x, source, target)


class PatchDiscriminator(nn.Module):
    """Markovian image discriminator: shared conv body, one real/fake logit map per domain.

    ``n_down`` stride-2 4x4 convs (widths ``base``, 2 base, ...; instance norm after the first),
    one stride-1 conv, then a head with ``num_domains`` channels; ``forward(x, domain)`` returns the
    (B, 1, h, w) map of each sample's own domain. Stride-1 convs are 3x3 so tiny images keep a map.
    """

    def __init__(self, in_channels: int = 1, base: int = 16, n_down: int = 3, num_domains: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        ch = base
        for _ in range(n_down - 1):
            layers += [nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.InstanceNorm2d(2 * ch), nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        layers += [nn.Conv2d(ch, 2 * ch, 3, 1, 1), nn.InstanceNorm2d(2 * ch), nn.LeakyReLU(0.2, inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(2 * ch, num_domains, 3, 1, 1)
        self.num_domains = num_domains

    def all_domains(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_domains, h, w): every domain's branch."""
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor, domain: torch.Tensor | int) -> torch.Tensor:
        out = self.all_domains(x)
        if isinstance(domain, int):
            return out[:, domain:domain + 1]
        index = domain.long().to(x.device).view(-1, 1, 1, 1).expand(-1, 1, *out.shape[2:])
        return out.gather(1, index)

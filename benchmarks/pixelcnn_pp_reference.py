"""A plain, hand-written PyTorch PixelCNN++ (Salimans et al. 2017), for benchmarks only: never imported by arblocks.

Same architecture and the same weight layout as specs/pixelcnn_pp.json (weight-normalized convolutions with a gain per
output channel and a bias, concat_elu, dropout, two-pass U-Net with skips), written the way a researcher would write it
by hand, so that the spec-built model can be timed against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def wn_conv(cin, cout, kernel, stride=1, transposed=False):
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    return weight_norm(cls(cin, cout, kernel, stride=stride), dim=1 if transposed else 0)


def concat_elu(x):
    return F.elu(torch.cat([x, -x], dim=1))


def down_shift(x):
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def right_shift(x):
    return F.pad(x, (1, 0))[:, :, :, :-1]


class DownShiftedConv(nn.Module):
    def __init__(self, cin, cout, kernel=(2, 3), stride=1):
        super().__init__()
        self.pad = (kernel[1] // 2, kernel[1] // 2, kernel[0] - 1, 0)
        self.conv = wn_conv(cin, cout, kernel, stride)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class DownRightShiftedConv(nn.Module):
    def __init__(self, cin, cout, kernel=(2, 2), stride=1):
        super().__init__()
        self.pad = (kernel[1] - 1, 0, kernel[0] - 1, 0)
        self.conv = wn_conv(cin, cout, kernel, stride)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class Deconv(nn.Module):
    def __init__(self, cin, cout, kernel, centred):
        super().__init__()
        self.kernel, self.centred = kernel, centred
        self.conv = wn_conv(cin, cout, kernel, 2, transposed=True)

    def forward(self, x):
        h, w = x.shape[2] * 2, x.shape[3] * 2
        y = self.conv(x, output_size=[h + self.kernel[0] - 1, w + self.kernel[1] - 1])
        left = (self.kernel[1] - 1) // 2 if self.centred else 0
        return y[:, :, :h, left : left + w]


class GatedResnet(nn.Module):
    def __init__(self, filters, conv_cls, aux_channels=0, dropout=0.5):
        super().__init__()
        self.conv1 = conv_cls(2 * filters, filters)
        self.nin = wn_conv(2 * aux_channels, filters, 1) if aux_channels else None
        self.conv2 = conv_cls(2 * filters, 2 * filters)
        self.dropout = dropout

    def forward(self, x, aux=None):
        c1 = self.conv1(concat_elu(x))
        if aux is not None:
            c1 = c1 + self.nin(concat_elu(aux))
        c1 = F.dropout(concat_elu(c1), self.dropout, self.training)
        a, b = self.conv2(c1).chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class PixelCNNpp(nn.Module):
    def __init__(self, nr_resnet=5, nr_filters=160, nr_mix=10, dropout=0.5, channels=3):
        super().__init__()
        f = nr_filters
        self.u_init = DownShiftedConv(channels + 1, f, (2, 3))
        self.ul_init_above = DownShiftedConv(channels + 1, f, (1, 3))
        self.ul_init_left = DownRightShiftedConv(channels + 1, f, (2, 1))
        self.up_u, self.up_ul, self.down_u, self.down_ul = (nn.ModuleList() for _ in range(4))
        self.downsample_u, self.downsample_ul, self.upsample_u, self.upsample_ul = (nn.ModuleList() for _ in range(4))
        for scale in range(3):
            self.up_u.append(nn.ModuleList(GatedResnet(f, DownShiftedConv, 0, dropout) for _ in range(nr_resnet)))
            self.up_ul.append(nn.ModuleList(GatedResnet(f, DownRightShiftedConv, f, dropout) for _ in range(nr_resnet)))
            if scale < 2:
                self.downsample_u.append(DownShiftedConv(f, f, (2, 3), stride=2))
                self.downsample_ul.append(DownRightShiftedConv(f, f, (2, 2), stride=2))
        for scale in range(3):
            n = nr_resnet if scale == 0 else nr_resnet + 1
            self.down_u.append(nn.ModuleList(GatedResnet(f, DownShiftedConv, f, dropout) for _ in range(n)))
            self.down_ul.append(nn.ModuleList(GatedResnet(f, DownRightShiftedConv, 2 * f, dropout) for _ in range(n)))
            if scale < 2:
                self.upsample_u.append(Deconv(f, f, (2, 3), centred=True))
                self.upsample_ul.append(Deconv(f, f, (2, 2), centred=False))
        self.out = wn_conv(f, nr_mix * (1 + 3 * channels), 1)

    def forward(self, x):  # x: float image in [-1, 1], [B, C, H, W]
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        u_list = [down_shift(self.u_init(x))]
        ul_list = [down_shift(self.ul_init_above(x)) + right_shift(self.ul_init_left(x))]
        for scale in range(3):
            for gu, gul in zip(self.up_u[scale], self.up_ul[scale]):
                u_list.append(gu(u_list[-1]))
                ul_list.append(gul(ul_list[-1], u_list[-1]))
            if scale < 2:
                u_list.append(self.downsample_u[scale](u_list[-1]))
                ul_list.append(self.downsample_ul[scale](ul_list[-1]))
        u, ul = u_list.pop(), ul_list.pop()
        for scale in range(3):
            if scale > 0:
                u, ul = self.upsample_u[scale - 1](u), self.upsample_ul[scale - 1](ul)
            for gu, gul in zip(self.down_u[scale], self.down_ul[scale]):
                u = gu(u, u_list.pop())
                ul = gul(ul, torch.cat([u, ul_list.pop()], dim=1))
        return self.out(F.elu(ul))

    def execution_order(self) -> list[nn.Module]:
        """Modules in the order the spec's blocks run, to copy weights between the two."""
        order = [self.u_init, self.ul_init_above, self.ul_init_left]
        for scale in range(3):
            for gu, gul in zip(self.up_u[scale], self.up_ul[scale]):
                order += [gu, gul]
            if scale < 2:
                order += [self.downsample_u[scale], self.downsample_ul[scale]]
        for scale in range(3):
            if scale > 0:
                order += [self.upsample_u[scale - 1], self.upsample_ul[scale - 1]]
            for gu, gul in zip(self.down_u[scale], self.down_ul[scale]):
                order += [gu, gul]
        return order + [self.out]


def discretized_mix_logistic_loss(x, l, nr_mix):
    """The usual port of PixelCNN++'s loss (x in [-1, 1], [B, 3, H, W]; l: [B, 10 * nr_mix, H, W]); sum over the batch."""
    x = x.permute(0, 2, 3, 1)
    l = l.permute(0, 2, 3, 1)
    xs = list(x.shape)
    logit_probs = l[..., :nr_mix]
    l = l[..., nr_mix:].reshape(xs + [nr_mix * 3])
    means = l[..., :nr_mix]
    log_scales = torch.clamp(l[..., nr_mix : 2 * nr_mix], min=-7.0)
    coeffs = torch.tanh(l[..., 2 * nr_mix : 3 * nr_mix])
    x = x.unsqueeze(-1) + torch.zeros(xs + [nr_mix], device=x.device)
    m2 = means[..., 1, :] + coeffs[..., 0, :] * x[..., 0, :]
    m3 = means[..., 2, :] + coeffs[..., 1, :] * x[..., 0, :] + coeffs[..., 2, :] * x[..., 1, :]
    means = torch.stack([means[..., 0, :], m2, m3], dim=3)
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    plus_in = inv_stdv * (centered + 1.0 / 255.0)
    min_in = inv_stdv * (centered - 1.0 / 255.0)
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    log_cdf_plus = plus_in - F.softplus(plus_in)
    log_one_minus_cdf_min = -F.softplus(min_in)
    mid_in = inv_stdv * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
    inner = torch.where(cdf_delta > 1e-5, torch.log(torch.clamp(cdf_delta, min=1e-12)), log_pdf_mid - torch.log(torch.tensor(127.5)))
    log_probs = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, inner))
    log_probs = log_probs.sum(dim=3) + F.log_softmax(logit_probs, dim=-1)
    return -torch.logsumexp(log_probs, dim=-1).sum()

"""A PyTorch YOLO11 with a VanillaNet backbone, written from Ultralytics 8.3's module
definitions (ultralytics/nn/modules/conv.py, block.py, head.py and cfg/models/11/yolo11.yaml):
the same modules, sizes and state_dict names ("model.{i}...."), with the backbone replaced by
vanillanet_ref.VanillaNet's stage features at strides 8, 16, 32. Detect returns its training
output (per level, cat of box distribution logits and class logits on channels).
Used by gen_yolo.py; the framework never runs Python.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vanillanet_ref import VanillaNet


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, g=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = act

    def forward(self, x):
        y = self.bn(self.conv(x))
        return F.silu(y) if self.act else y


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, k=(3, 3), e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0], 1)
        self.cv2 = Conv(c_, c2, k[1], 1)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3k(nn.Module):
    def __init__(self, c1, c2, n=2, shortcut=True, e=0.5, k=3):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, (k, k), 1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2(nn.Module):
    def __init__(self, c1, c2, n=1, c3k=False, e=0.5, shortcut=True):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(C3k(self.c, self.c, 2, shortcut) if c3k else
                               Bottleneck(self.c, self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Attention(nn.Module):
    def __init__(self, dim, num_heads, attn_ratio=0.5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x):
        b, c, h, w = x.shape
        n = h * w
        q, k, v = self.qkv(x).view(b, self.num_heads, 2 * self.key_dim + self.head_dim, n).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2)
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)
        y = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(y)


class PSABlock(nn.Module):
    def __init__(self, c, num_heads):
        super().__init__()
        self.attn = Attention(c, num_heads, 0.5)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.ffn(x)


class C2PSA(nn.Module):
    def __init__(self, c1, n=1, e=0.5):
        super().__init__()
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, self.c // 64) for _ in range(n)))

    def forward(self, x):
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


def DWConv(c1, c2, k=1, s=1):
    return Conv(c1, c2, k, s, g=math.gcd(c1, c2))


class Detect(nn.Module):
    def __init__(self, nc, ch, reg_max=16):
        super().__init__()
        self.nc, self.reg_max = nc, reg_max
        c2 = max(16, ch[0] // 4, reg_max * 4)
        c3 = max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3),
                                               nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch)
        self.cv3 = nn.ModuleList(nn.Sequential(nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                                               nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                                               nn.Conv2d(c3, nc, 1)) for x in ch)

    def forward(self, xs):
        return [torch.cat((self.cv2[i](x), self.cv3[i](x)), 1) for i, x in enumerate(xs)]


class Backbone(VanillaNet):
    """VanillaNet whose forward returns the last feature at strides 8, 16 and 32."""

    def __init__(self, dims, strides, act_num):
        super().__init__(num_classes=1, dims=dims, strides=strides, act_num=act_num)
        del self.cls1, self.cls2
        s, self.levels = 4, {}
        for i, st in enumerate(strides):
            s *= st
            if s in (8, 16, 32):
                self.levels[s] = i

    def forward(self, x):
        x = self.stem1(x)
        x = F.leaky_relu(x, self.act_learn)
        x = self.stem2(x)
        out = {}
        for i in range(self.depth):
            x = self.stages[i](x)
            for s, j in self.levels.items():
                if j == i:
                    out[s] = x
        return [out[8], out[16], out[32]]


def make_divisible(x, d=8):
    return int(math.ceil(x / d) * d)


class YoloVanilla(nn.Module):
    def __init__(self, dims, strides, act_num=3, nc=80, depth=0.5, width=0.25, max_ch=1024,
                 c3k=False, reg_max=16):
        super().__init__()
        ch = lambda c: make_divisible(min(c, max_ch) * width, 8)
        n2 = max(round(2 * depth), 1)
        bb = Backbone(dims, strides, act_num)
        f = [dims[bb.levels[s] + 1] for s in (8, 16, 32)]
        c1024, c512, c256 = ch(1024), ch(512), ch(256)
        self.model = nn.ModuleList([
            bb,                                               # 0
            SPPF(f[2], c1024, 5),                             # 1
            C2PSA(c1024, n2),                                 # 2
            nn.Upsample(None, 2, "nearest"),                  # 3
            nn.Identity(),                                    # 4 Concat
            C3k2(c1024 + f[1], c512, n2, c3k),                # 5
            nn.Upsample(None, 2, "nearest"),                  # 6
            nn.Identity(),                                    # 7 Concat
            C3k2(c512 + f[0], c256, n2, c3k),                 # 8
            Conv(c256, c256, 3, 2),                           # 9
            nn.Identity(),                                    # 10 Concat
            C3k2(c256 + c512, c512, n2, c3k),                 # 11
            Conv(c512, c512, 3, 2),                           # 12
            nn.Identity(),                                    # 13 Concat
            C3k2(c512 + c1024, c1024, n2, True),              # 14
            Detect(nc, (c256, c512, c1024), reg_max),         # 15
        ])

    def forward(self, x):
        m = self.model
        p3, p4, p5 = m[0](x)
        l2 = m[2](m[1](p5))
        l5 = m[5](torch.cat((m[3](l2), p4), 1))
        l8 = m[8](torch.cat((m[6](l5), p3), 1))
        l11 = m[11](torch.cat((m[9](l8), l5), 1))
        l14 = m[14](torch.cat((m[12](l11), l2), 1))
        return m[15]([l8, l11, l14])

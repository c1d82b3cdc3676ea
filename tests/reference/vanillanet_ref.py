"""A PyTorch VanillaNet written from the paper and the official model's published structure,
with the same module names (so the same state_dict keys), initialisation, change_act and
switch_to_deploy. Used by the reference scripts and the weight round-trip check; the
framework never runs Python.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def trunc_normal_(t, std=0.02):
    # timm's trunc_normal_(std=.02) truncates at absolute bounds -2, 2.
    return nn.init.trunc_normal_(t, mean=0.0, std=std, a=-2.0, b=2.0)


class activation(nn.ReLU):
    def __init__(self, dim, act_num=3, deploy=False):
        super().__init__()
        self.act_num = act_num
        self.deploy = deploy
        self.dim = dim
        self.weight = nn.Parameter(torch.randn(dim, 1, act_num * 2 + 1, act_num * 2 + 1))
        if deploy:
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.bias = None
            self.bn = nn.BatchNorm2d(dim, eps=1e-6)
        trunc_normal_(self.weight)

    def forward(self, x):
        x = F.conv2d(super().forward(x), self.weight, self.bias, padding=self.act_num,
                     groups=self.dim)
        return x if self.deploy else self.bn(x)

    def switch_to_deploy(self):
        std = (self.bn.running_var + self.bn.eps).sqrt()
        t = (self.bn.weight / std).reshape(-1, 1, 1, 1)
        self.weight.data = self.weight * t
        self.bias = nn.Parameter(self.bn.bias - self.bn.running_mean * self.bn.weight / std)
        del self.bn
        self.deploy = True


def fuse_bn(conv, bn):
    std = (bn.running_var + bn.eps).sqrt()
    t = (bn.weight / std).reshape(-1, 1, 1, 1)
    return conv.weight * t, bn.bias + (conv.bias - bn.running_mean) * bn.weight / std


class Block(nn.Module):
    def __init__(self, dim, dim_out, act_num=3, stride=2, deploy=False, ada_pool=None):
        super().__init__()
        self.act_learn = 1
        self.deploy = deploy
        if deploy:
            self.conv = nn.Conv2d(dim, dim_out, kernel_size=1)
        else:
            self.conv1 = nn.Sequential(nn.Conv2d(dim, dim, kernel_size=1),
                                       nn.BatchNorm2d(dim, eps=1e-6))
            self.conv2 = nn.Sequential(nn.Conv2d(dim, dim_out, kernel_size=1),
                                       nn.BatchNorm2d(dim_out, eps=1e-6))
        if not ada_pool:
            self.pool = nn.Identity() if stride == 1 else nn.MaxPool2d(stride)
        else:
            self.pool = nn.Identity() if stride == 1 else nn.AdaptiveMaxPool2d((ada_pool, ada_pool))
        self.act = activation(dim_out, act_num, deploy=deploy)

    def forward(self, x):
        if self.deploy:
            x = self.conv(x)
        else:
            x = self.conv1(x)
            x = F.leaky_relu(x, self.act_learn)
            x = self.conv2(x)
        x = self.pool(x)
        return self.act(x)

    def switch_to_deploy(self):
        k1, b1 = fuse_bn(self.conv1[0], self.conv1[1])
        k2, b2 = fuse_bn(self.conv2[0], self.conv2[1])
        self.conv = nn.Conv2d(k1.shape[1], k2.shape[0], 1)
        self.conv.weight.data = torch.matmul(k2.transpose(1, 3), k1.squeeze(3).squeeze(2)).transpose(1, 3)
        self.conv.bias.data = b2 + (b1.view(1, -1, 1, 1) * k2).sum(3).sum(2).sum(1)
        del self.conv1, self.conv2
        self.act.switch_to_deploy()
        self.deploy = True


class VanillaNet(nn.Module):
    def __init__(self, in_chans=3, num_classes=1000, dims=(96, 192, 384, 768), drop_rate=0,
                 act_num=3, strides=(2, 2, 2, 1), deploy=False, ada_pool=None):
        super().__init__()
        self.deploy = deploy
        stride, padding = (4, 0) if not ada_pool else (3, 1)
        if deploy:
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=stride, padding=padding),
                activation(dims[0], act_num, deploy=True))
        else:
            self.stem1 = nn.Sequential(
                nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=stride, padding=padding),
                nn.BatchNorm2d(dims[0], eps=1e-6))
            self.stem2 = nn.Sequential(
                nn.Conv2d(dims[0], dims[0], kernel_size=1, stride=1),
                nn.BatchNorm2d(dims[0], eps=1e-6),
                activation(dims[0], act_num))
        self.act_learn = 1
        self.stages = nn.ModuleList()
        for i in range(len(strides)):
            ap = None if not ada_pool else ada_pool[i]
            self.stages.append(Block(dims[i], dims[i + 1], act_num, strides[i], deploy, ap))
        self.depth = len(strides)
        if deploy:
            self.cls = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout(drop_rate),
                                     nn.Conv2d(dims[-1], num_classes, 1))
        else:
            self.cls1 = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout(drop_rate),
                                      nn.Conv2d(dims[-1], num_classes, 1),
                                      nn.BatchNorm2d(num_classes, eps=1e-6))
            self.cls2 = nn.Sequential(nn.Conv2d(num_classes, num_classes, 1))
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight)
            nn.init.constant_(m.bias, 0)

    def change_act(self, m):
        for i in range(self.depth):
            self.stages[i].act_learn = m
        self.act_learn = m

    def switch_to_deploy(self):
        self.stem2[2].switch_to_deploy()
        k1, b1 = fuse_bn(self.stem1[0], self.stem1[1])
        k2, b2 = fuse_bn(self.stem2[0], self.stem2[1])
        conv = self.stem1[0]
        conv.weight.data = torch.einsum('oi,icjk->ocjk', k2.squeeze(3).squeeze(2), k1)
        conv.bias.data = b2 + (b1.view(1, -1, 1, 1) * k2).sum(3).sum(2).sum(1)
        self.stem = nn.Sequential(conv, self.stem2[2])
        del self.stem1, self.stem2
        for i in range(self.depth):
            self.stages[i].switch_to_deploy()
        k1, b1 = fuse_bn(self.cls1[2], self.cls1[3])
        w2, bias2 = self.cls2[0].weight.data, self.cls2[0].bias.data
        conv = self.cls1[2]
        conv.weight.data = torch.matmul(w2.transpose(1, 3), k1.squeeze(3).squeeze(2)).transpose(1, 3)
        conv.bias.data = bias2 + (b1.view(1, -1, 1, 1) * w2).sum(3).sum(2).sum(1)
        self.cls = nn.Sequential(*self.cls1[0:3])
        del self.cls1, self.cls2
        self.deploy = True

    def forward(self, x):
        if self.deploy:
            x = self.stem(x)
        else:
            x = self.stem1(x)
            x = F.leaky_relu(x, self.act_learn)
            x = self.stem2(x)
        for i in range(self.depth):
            x = self.stages[i](x)
        if self.deploy:
            x = self.cls(x)
        else:
            x = self.cls1(x)
            x = F.leaky_relu(x, self.act_learn)
            x = self.cls2(x)
        return x.view(x.size(0), -1)


def randomize(model, seed):
    """Random weights and non-trivial BN statistics, so merges are really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                t.fill_(3)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.25)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
            elif t.dim() == 1:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) / fan_in ** 0.5)

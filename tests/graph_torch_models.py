"""Torch models with residual connections, max pooling and concatenation for the graph loader tests."""
import torch, torch.nn as nn, torch.nn.functional as F

class LeNet(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv2d(1, 3, 5, padding=2); s.c2 = nn.Conv2d(3, 4, 5)
        s.f1 = nn.Linear(4*5*5, 20); s.f2 = nn.Linear(20, 10)
    def forward(s, x):
        x = F.max_pool2d(F.relu(s.c1(x)), 2)
        x = nn.functional.max_pool2d(torch.tanh(s.c2(x)), 2)
        x = torch.flatten(x, 1)
        return s.f2(F.relu(s.f1(x)))

class ResMLP(nn.Module):
    def __init__(s, n=6, h=8, blocks=2):
        super().__init__()
        s.inp = nn.Linear(n, h)
        s.blocks = nn.ModuleList([nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h)) for _ in range(blocks)])
        s.out = nn.Linear(h, 3)
    def forward(s, x):
        x = F.relu(s.inp(x))
        for b in s.blocks:
            x = F.relu(x + b(x))
        return s.out(x)

class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = nn.BatchNorm2d(cout)
        s.proj = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(s, x):
        y = s.b2(s.c2(F.relu(s.b1(s.c1(x)))))
        return F.relu(y + (x if s.proj is None else s.proj(x)))

class ResNetCNN(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Conv2d(1, 4, 3, padding=1)
        s.pool = nn.MaxPool2d(3, 2, 1)
        s.l1 = Block(4, 4, 1); s.l2 = Block(4, 6, 2)
        s.gap = nn.AdaptiveAvgPool2d(1); s.fc = nn.Linear(6, 5)
    def forward(s, x):
        x = s.pool(F.relu(s.stem(x)))
        x = s.l2(s.l1(x))
        return s.fc(torch.flatten(s.gap(x), 1))

class CatNet(nn.Module):
    def __init__(s):
        super().__init__()
        s.a = nn.Conv2d(2, 3, 3, padding=1); s.b = nn.Conv2d(2, 2, 1)
        s.fc = nn.Linear(5*3*3, 4)
    def forward(s, x):
        y = torch.cat([F.relu(s.a(x)), torch.sigmoid(s.b(x))], 1)
        y = F.max_pool2d(y, 3, 2, 1)
        return s.fc(y.view(y.size(0), -1))

def randomize(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
    return m.eval().double()

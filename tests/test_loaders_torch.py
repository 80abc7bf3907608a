"""PyTorch loader: every supported layer gives the same forward values and gradients as torch."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # optional extra: lipopt[torch]
nn = torch.nn
F = torch.nn.functional

from lipopt.errors import InvalidInputError  # noqa: E402
from lipopt.model import ACTIVATIONS, Network, load  # noqa: E402
from lipopt.model.conv import ACTIVATION_TYPES, avgpool_matrix, conv_matrix  # noqa: E402
from lipopt.model.torch_loader import from_torch  # noqa: E402

# torch's own notice about padding="same" with an even kernel (tested on purpose)
# and about torch.jit being deprecated (TorchScript files are still read)
pytestmark = [pytest.mark.filterwarnings("ignore:Using padding='same'"),
              pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:DeprecationWarning")]


def _build(factory, in_shape, seed=0):
    """Model from ``factory`` with fixed seeds, lazy layers initialised, random batch-norm statistics,
    float64, eval mode."""
    torch.manual_seed(seed)
    model = factory().eval()
    with torch.no_grad():
        model(torch.zeros(1, *in_shape))  # initialises LazyLinear (it becomes an nn.Linear)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-1, 1)
    return model.double().eval()


def assert_same(model, in_shape, net=None, n=5, seed=1):
    """net.forward == model(x) and net.gradient(x, c) == d(c . model(x))/dx, both to 1e-6."""
    if net is None:
        net = from_torch(model, input_shape=in_shape)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *in_shape, generator=g, dtype=torch.float64, requires_grad=True)
    y = model(x).reshape(n, -1)
    xf = x.detach().reshape(n, -1).numpy()
    assert net.widths[0] == xf.shape[1] and net.widths[-1] == y.shape[1]
    assert np.allclose(net.forward(xf), y.detach().numpy(), atol=1e-6, rtol=0)
    c = torch.randn(y.shape[1], generator=g, dtype=torch.float64)
    (y @ c).sum().backward()
    assert np.allclose(net.gradient(xf, c.numpy()), x.grad.reshape(n, -1).numpy(), atol=1e-6, rtol=0)
    return net


# name -> (factory, input shape, expected depth of the Network or None)
MODELS = {
    "linear": (lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), (6,), 1),
    "nested_sequential_no_bias": (lambda: nn.Sequential(
        nn.Sequential(nn.Linear(5, 7, bias=False), nn.ReLU()),
        nn.Sequential(nn.Linear(7, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))), (5,), 2),
    "linear_linear_composed": (lambda: nn.Sequential(
        nn.Linear(5, 6), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3), nn.Linear(3, 2)), (5,), 1),
    "conv1d": (lambda: nn.Sequential(
        nn.Conv1d(2, 4, 3, stride=2, padding=1, dilation=2, groups=2), nn.ReLU(),
        nn.Conv1d(4, 3, 2, bias=False), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)), (2, 13), 2),
    "conv2d_stride_padding_dilation_groups": (lambda: nn.Sequential(
        nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, bias=False),
        nn.ReLU(), nn.Conv2d(6, 3, 1, groups=3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)), (4, 9, 8), 2),
    "conv2d_padding_modes": (lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Conv2d(3, 3, 3, padding=2, padding_mode="circular"), nn.ReLU(),
        nn.Conv2d(3, 2, 4, padding="same"), nn.ReLU(),
        nn.Conv2d(2, 2, 3, padding=(0, 1), padding_mode="replicate"), nn.Flatten(), nn.LazyLinear(3)),
        (2, 7, 6), 3),
    "avgpool1d": (lambda: nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.AvgPool1d(3, stride=2, padding=1), nn.ReLU(),
        nn.AvgPool1d(2, ceil_mode=True, count_include_pad=False), nn.Flatten(), nn.LazyLinear(2)), (2, 11), 2),
    "avgpool2d": (lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), nn.ReLU(),
        nn.AvgPool2d((2, 3), stride=(1, 2), padding=(1, 0), divisor_override=5), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(), nn.LazyLinear(2)), (2, 10, 9), 3),
    "adaptive_avgpool": (lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d((2, None)), nn.ReLU(), nn.Conv2d(3, 2, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)), (1, 7, 9), 2),
    "batchnorm1d_folded": (lambda: nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 4), nn.ReLU(),
        nn.Linear(4, 2), nn.BatchNorm1d(2, affine=False)), (6,), 2),
    "batchnorm2d_folded": (lambda: nn.Sequential(
        nn.BatchNorm2d(2), nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.BatchNorm2d(3),
        nn.Conv2d(3, 2, 2, stride=2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)), (2, 8, 8), 2),
    "batchnorm_first_then_activation": (lambda: nn.Sequential(
        nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)), (5,), 1),
    "dropout_identity_flatten": (lambda: nn.Sequential(
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(12, 6), nn.Identity(), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(6, 2)), (3, 4), 1),
    "unflatten_then_conv": (lambda: nn.Sequential(
        nn.Unflatten(1, (1, 5, 5)), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 2)), (25,), 1),
    "leading_and_final_activation": (lambda: nn.Sequential(
        nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.ReLU(), nn.Linear(5, 3), nn.ReLU()), (4,), 4),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_layer_matches_torch(name):
    factory, in_shape, depth = MODELS[name]
    model = _build(factory, in_shape)
    net = assert_same(model, in_shape)
    if depth is not None:
        assert net.depth == depth
    for W in net.weights:
        assert W.nnz == np.count_nonzero(W.data)  # no stored zeros


@pytest.mark.parametrize("kind", ["LeakyReLU", "ELU", "Tanh", "Sigmoid", "Softplus"])
def test_other_activations_via_table(kind):
    """Accepted exactly when the table's name is in ACTIVATIONS; otherwise one clear error."""
    model = _build(lambda: nn.Sequential(nn.Linear(4, 6), getattr(nn, kind)(), nn.Linear(6, 2)), (4,))
    name = ACTIVATION_TYPES[kind.lower()][0]
    if name in ACTIVATIONS:
        assert_same(model, (4,))
    else:
        with pytest.raises(InvalidInputError, match=f"1 \\({kind}\\).*{name}"):
            from_torch(model)


def test_non_default_activation_parameter_rejected():
    # leaky slopes travel with the activation now (test_activations_new); softplus' threshold cannot
    model = nn.Sequential(nn.Linear(3, 3), nn.Softplus(threshold=5.0), nn.Linear(3, 1))
    with pytest.raises(InvalidInputError, match="Softplus.*threshold"):
        from_torch(model)


class _Traced(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc1 = nn.Linear(3 * 5 * 5, 6)
        self.fc2 = nn.Linear(6, 2)
        self.register_buffer("mean", torch.tensor([0.5, -0.2]).reshape(2, 1, 1))

    def forward(self, x):
        x = (x - self.mean) / 2.0
        x = F.relu(self.bn(self.conv(x)))
        x = x.view(x.size(0), -1)
        x = torch.relu(self.fc1(x))
        x = F.dropout(x, 0.1, training=self.training)
        return self.fc2(x) * 0.5 + 1


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        return torch.flatten(F.relu(self.lin(x)), 1)


def test_fx_traced_module():
    model = _build(_Traced, (2, 5, 5))
    net = assert_same(model, (2, 5, 5))
    assert net.depth == 2


def test_custom_module_inside_sequential_is_traced():
    model = _build(lambda: nn.Sequential(nn.Linear(4, 6), _Block(), nn.Linear(6, 2)), (4,))
    assert assert_same(model, (4,)).depth == 1


def test_input_shape_inferred_from_linear():
    conv1d = _build(lambda: nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)), (2, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = from_torch(conv1d)  # unique length: no warning
    assert_same(conv1d, (2, 6), net=net)
    conv2d = _build(lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)),
                    (1, 6, 6))
    with pytest.warns(UserWarning, match="square"):
        net = from_torch(conv2d)
    assert_same(conv2d, (1, 6, 6), net=net)


def test_input_shape_required_without_linear():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 3))
    with pytest.raises(InvalidInputError, match="input_shape"):
        from_torch(model)
    model = _build(lambda: model, (1, 6, 7))
    assert_same(model, (1, 6, 7))


def test_wrong_input_shape_names_layer():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    with pytest.raises(InvalidInputError, match=r"3 \(Linear\)"):
        from_torch(model, input_shape=(1, 7, 7))


def test_unsupported_layers_listed_in_one_line():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2),
                          nn.Mish())
    with pytest.raises(InvalidInputError) as info:
        from_torch(model, input_shape=(1, 6, 6))
    msg = str(info.value)
    assert "\n" not in msg
    assert "1 (MaxPool2d)" in msg and "5 (Mish)" in msg


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)
        self.pool = nn.MaxPool1d(2)

    def forward(self, x):
        y = self.fc2(torch.relu(self.fc1(x))) + x
        return self.pool(y.unsqueeze(1)).flatten(1)


def test_residual_and_maxpool_rejected():
    with pytest.raises(InvalidInputError) as info:
        from_torch(_Residual())
    msg = str(info.value)
    assert "\n" not in msg
    assert "add" in msg and "residual" in msg and "pool (MaxPool1d)" in msg


def test_batchnorm_training_mode_and_untraceable_rejected():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)).train()
    with pytest.raises(InvalidInputError, match=r"1 \(BatchNorm1d\).*eval"):
        from_torch(model)

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(InvalidInputError, match="traced"):
        from_torch(Branchy())


def test_conv_matrix_stays_sparse_under_pruning():
    rng = np.random.default_rng(0)
    K = rng.standard_normal((4, 3, 3, 3))
    mask = rng.random(K.shape) < 0.3
    W, b, out = conv_matrix(K * mask, (3, 8, 8), stride=1, padding=1)
    support, _, _ = conv_matrix(mask.astype(float), (3, 8, 8), stride=1, padding=1)
    assert out == (4, 8, 8) and W.shape == (4 * 64, 3 * 64)
    assert W.nnz == support.nnz == np.count_nonzero(W.toarray())
    assert W.nnz < 0.5 * conv_matrix(K, (3, 8, 8), padding=1)[0].nnz
    x = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)))
    ref = F.conv2d(x, torch.from_numpy(K * mask), padding=1).reshape(2, -1).numpy()
    assert np.allclose((W @ x.reshape(2, -1).numpy().T).T, ref, atol=1e-12)
    P, _, pout = avgpool_matrix((3, 8, 8), 2)
    assert pout == (3, 4, 4) and P.nnz == 3 * 64


# ------------------------------------------------------------------------------------------------ files

def _conv_model():
    return _build(lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Sequential(nn.Flatten(), nn.Linear(8, 3))), (1, 8, 8))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_file(tmp_path, how):
    model = _conv_model()
    example = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    ts = torch.jit.script(model) if how == "script" else torch.jit.trace(model, example)
    path = tmp_path / "model.pt"
    torch.jit.save(ts, str(path))
    with pytest.raises(InvalidInputError, match="trust"):  # TorchScript runs code when loaded
        load(path, input_shape=(1, 8, 8))
    with pytest.warns(UserWarning, match="trust_code=True: torch.jit.load runs the TorchScript code"):
        net = load(path, input_shape=(1, 8, 8), trust_code=True)
    assert_same(model, (1, 8, 8), net=net)


def test_torchscript_custom_module_rejected(tmp_path):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(_Block()), str(path))
    with pytest.warns(UserWarning, match="trust_code"), \
            pytest.raises(InvalidInputError, match="only TorchScript nn.Sequential"):
        load(path, trust_code=True)


def test_state_dict_and_pickle(tmp_path, monkeypatch):
    model = _conv_model()
    sd_path, pickle_path = tmp_path / "sd.pth", tmp_path / "full.pt"
    torch.save(model.state_dict(), sd_path)
    torch.save(model, pickle_path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    with pytest.raises(InvalidInputError, match="state dict"):
        load(sd_path)
    with pytest.raises(InvalidInputError, match=r"pickled Python objects.*--trust-code \(CLI\) or "
                                                 r"trust_code=True \(API\)"):
        load(pickle_path)
    assert calls and all(c is True for c in calls)  # never weights_only=False without trust_code
    with pytest.warns(UserWarning, match="trust_code=True: unpickling"):
        net = load(pickle_path, input_shape=(1, 8, 8), trust_code=True)
    assert calls[-1] is False
    assert_same(model, (1, 8, 8), net=net)
    n = len(calls)
    with pytest.warns(DeprecationWarning, match="allow_pickle"), pytest.warns(UserWarning, match="unpickling"):
        net = load(pickle_path, input_shape=(1, 8, 8), allow_pickle=True)  # deprecated alias of trust_code
    assert calls[n:] == [True, False]
    assert_same(model, (1, 8, 8), net=net)


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(InvalidInputError, match="bad.pt"):
        load(bad)
    ts = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(2, 2))), str(ts))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ts.read_bytes()[:200])
    with pytest.raises(InvalidInputError):
        load(truncated)
    with pytest.raises(InvalidInputError):
        load(truncated, trust_code=True)
    with pytest.raises(InvalidInputError, match="no such file"):
        load(tmp_path / "missing.pth")
    with pytest.raises(InvalidInputError, match="unsupported model file type"):
        load(tmp_path / "model.h5")


def test_load_dispatch_module_and_network():
    model = _build(MODELS["linear"][0], (6,))
    net = load(model)
    assert isinstance(net, Network) and load(net) is net
    assert_same(model, (6,), net=net)
    conv = _conv_model()
    assert_same(conv, (1, 8, 8), net=load(conv, input_shape=(1, 8, 8)))

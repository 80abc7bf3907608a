"""ONNX loader: models exported from torch (and hand-written graphs) match torch and onnxruntime."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")  # optional extras: onnx for loading, torch/onnxruntime for references
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from lipopt.errors import InvalidInputError  # noqa: E402
from lipopt.model import ACTIVATIONS, load  # noqa: E402
from lipopt.model.conv import ACTIVATION_TYPES  # noqa: E402
from lipopt.model.onnx_loader import load_onnx  # noqa: E402

# torch.onnx.export(dynamo=False) is the legacy exporter; its deprecation notice is expected here
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _build(factory, in_shape, seed=0):
    torch.manual_seed(seed)
    model = factory().eval()
    with torch.no_grad():
        model(torch.zeros(1, *in_shape))  # initialises LazyLinear
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
    return model


def _export(model, in_shape, path, dynamic=True, batch=2):
    kwargs = dict(input_names=["x"], output_names=["y"])
    if dynamic:
        kwargs["dynamic_axes"] = {"x": {0: "N"}, "y": {0: "N"}}
    torch.onnx.export(model, (torch.zeros(batch, *in_shape),), str(path), dynamo=False, **kwargs)
    return path


def _ort(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


def assert_matches(model, in_shape, path, n=4, seed=1):
    """Loaded ONNX model == torch (float64, 1e-6, values and gradients) == onnxruntime (float32)."""
    net = load(path)
    g = torch.Generator().manual_seed(seed)
    x32 = torch.randn(n, *in_shape, generator=g)
    ref = model.double()
    x = x32.double().requires_grad_(True)
    y = ref(x).reshape(n, -1)
    xf = x.detach().reshape(n, -1).numpy()
    out = net.forward(xf)
    assert np.allclose(out, y.detach().numpy(), atol=1e-6, rtol=0)
    assert np.allclose(out, _ort(path, x32.numpy()).reshape(n, -1), atol=1e-4, rtol=1e-4)
    c = torch.randn(y.shape[1], generator=g, dtype=torch.float64)
    (y @ c).sum().backward()
    assert np.allclose(net.gradient(xf, c.numpy()), x.grad.reshape(n, -1).numpy(), atol=1e-6, rtol=0)
    return net


class _ViewNet(nn.Module):
    """x.view(x.size(0), -1) exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        x = torch.relu(self.conv((x - 0.5) * 2.0))
        return self.fc(x.view(x.size(0), -1))


MODELS = {
    "conv2d_bn_avgpool": (lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2), nn.BatchNorm2d(4),
        nn.ReLU(), nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), nn.ReLU(),
        nn.AvgPool2d(2, ceil_mode=True), nn.Flatten(), nn.LazyLinear(5), nn.ReLU(), nn.Linear(5, 3)),
        (2, 9, 8), 3),
    "conv1d_avgpool1d": (lambda: nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1, dilation=2), nn.ReLU(), nn.AvgPool1d(2), nn.Conv1d(3, 2, 1, bias=False),
        nn.ReLU(), nn.Flatten(), nn.LazyLinear(2)), (2, 10), 2),
    "mlp_batchnorm_gemm": (lambda: nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 8, bias=False),
        nn.ReLU(), nn.Linear(8, 2)), (6,), 2),
    "view_flatten_and_constants": (_ViewNet, (2, 8, 8), 1),
    "global_avgpool_same_padding": (lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3, padding="same"), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)),
        (1, 6, 7), 1),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_exported_model_matches(tmp_path, name):
    factory, in_shape, depth = MODELS[name]
    model = _build(factory, in_shape)
    path = _export(model, in_shape, tmp_path / f"{name}.onnx")
    net = assert_matches(model, in_shape, path)
    assert net.depth == depth


def test_static_batch_export(tmp_path):
    """Batch size 1 baked in: Reshape to (1, -1) is read per sample."""
    model = _build(_ViewNet, (2, 8, 8))
    path = _export(model, (2, 8, 8), tmp_path / "static.onnx", dynamic=False, batch=1)
    net = load_onnx(path)
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    assert np.allclose(net.forward(x.reshape(1, -1)), _ort(path, x), atol=1e-5)
    ref = model.double()(torch.from_numpy(x).double()).detach().numpy()
    assert np.allclose(net.forward(x.reshape(1, -1)), ref, atol=1e-6)


@pytest.mark.parametrize("kind", ["LeakyReLU", "ELU", "Tanh", "Sigmoid", "Softplus"])
def test_other_activations_via_table(tmp_path, kind):
    model = _build(lambda: nn.Sequential(nn.Linear(4, 5), getattr(nn, kind)(), nn.Linear(5, 2)), (4,))
    path = _export(model, (4,), tmp_path / "act.onnx")
    name = ACTIVATION_TYPES[kind.lower()][0]
    if name in ACTIVATIONS:
        assert_matches(model, (4,), path)
    else:
        with pytest.raises(InvalidInputError, match=f"'{name}' is not supported yet"):
            load(path)


def _graph_model(nodes, inits, in_dims, out_dims, path):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_handwritten_gemm_matmul_and_constants(tmp_path):
    """Gemm (alpha, beta, transB), MatMul + Add, Mul/Div/Sub by constants, Dropout, Identity."""
    rng = np.random.default_rng(0)
    inits = {"B": rng.standard_normal((5, 6)), "C": rng.standard_normal((1, 6)),
             "Mt": rng.standard_normal((4, 6)), "a": rng.standard_normal(4), "s": np.float32(2.0),
             "d": rng.uniform(1, 2, 4), "B2": rng.standard_normal((3, 4)), "off": rng.standard_normal(3)}
    nodes = [
        helper.make_node("Identity", ["x"], ["x0"]),
        helper.make_node("Gemm", ["x0", "B", "C"], ["h1"], alpha=0.5, beta=2.0),  # transB=0
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Dropout", ["r1"], ["r1d"]),
        helper.make_node("Transpose", ["Mt"], ["M"], perm=[1, 0]),  # folded: constants only
        helper.make_node("MatMul", ["r1d", "M"], ["h2"]),
        helper.make_node("Add", ["a", "h2"], ["h3"]),
        helper.make_node("Mul", ["h3", "s"], ["h4"]),
        helper.make_node("Div", ["h4", "d"], ["h5"]),
        helper.make_node("Relu", ["h5"], ["r2"]),
        helper.make_node("Gemm", ["r2", "B2"], ["h6"], transB=1),
        helper.make_node("Sub", ["off", "h6"], ["y"]),
    ]
    path = _graph_model(nodes, inits, ["N", 5], ["N", 3], tmp_path / "hand.onnx")
    net = load(path)
    assert net.depth == 2
    x = rng.standard_normal((7, 5)).astype(np.float32)
    assert np.allclose(net.forward(x), _ort(path, x), atol=1e-5)
    W = {k: np.asarray(v, np.float32).astype(np.float64) for k, v in inits.items()}
    W["M"] = W["Mt"].T
    h = np.maximum(0.5 * x @ W["B"] + 2.0 * W["C"], 0)
    h = np.maximum((h @ W["M"] + W["a"]) * W["s"] / W["d"], 0)
    assert np.allclose(net.forward(x), W["off"] - h @ W["B2"].T, atol=1e-9)
    c = rng.standard_normal(3)
    D1 = (0.5 * x @ W["B"] + 2.0 * W["C"] > 0)
    D2 = ((np.maximum(0.5 * x @ W["B"] + 2.0 * W["C"], 0) @ W["M"] + W["a"]) * W["s"] / W["d"] > 0)
    grad = ((((-c @ W["B2"]) * D2) * W["s"] / W["d"]) @ W["M"].T * D1) @ (0.5 * W["B"].T)
    assert np.allclose(net.gradient(x, c), grad, atol=1e-9)


def test_unsupported_nodes_listed_in_one_line(tmp_path):
    """Max pooling and residual Adds load (as graphs); what still cannot is named, each once, in one line:
    a broadcasting Add of branches of different sizes and a LayerNorm."""
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.ln = nn.LayerNorm(18)
            self.fc = nn.Linear(2 * 3 * 3, 2)

        def forward(self, x):
            y = torch.relu(self.conv(x)) + x  # 2 channels + 1 channel: broadcast
            return self.fc(self.ln(self.pool(y).flatten(1)))

    path = _export(Bad().eval(), (1, 6, 6), tmp_path / "bad.onnx")
    with pytest.raises(InvalidInputError) as info:
        load(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "(LayerNormalization)" in msg and "(Add)" in msg and "broadcasting" in msg
    assert msg.count("(Add)") == 1 and "MaxPool" in msg.split("(supported:")[1]


def test_malformed_files(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xfe" * 10)
    with pytest.raises(InvalidInputError, match="garbage.onnx"):
        load(garbage)
    good = _export(_build(MODELS["mlp_batchnorm_gemm"][0], (6,)), (6,), tmp_path / "good.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InvalidInputError, match="truncated.onnx"):
        load(truncated)
    dangling = _graph_model([helper.make_node("Relu", ["nowhere"], ["y"])], {}, ["N", 3], ["N", 3],
                            tmp_path / "dangling.onnx")
    with pytest.raises(InvalidInputError, match="not a valid ONNX model"):
        load(dangling)
    with pytest.raises(InvalidInputError, match="no such file"):
        load(tmp_path / "missing.onnx")


def test_input_shape_argument(tmp_path):
    model = _build(MODELS["conv1d_avgpool1d"][0], (2, 10))
    path = _export(model, (2, 10), tmp_path / "c.onnx")
    assert load(path, input_shape=(2, 10)).widths[0] == 20
    with pytest.raises(InvalidInputError, match="differs"):
        load(path, input_shape=(2, 12))


def test_symbolic_spatial_size_needs_input_shape(tmp_path):
    """H and W symbolic: 27x27 and 28x28 inputs both fit the Linear, so the loader asks instead of guessing."""
    model = _build(lambda: nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(2 * 13 * 13, 3)), (1, 28, 28))
    path = tmp_path / "spatial.onnx"
    torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}})
    with pytest.raises(InvalidInputError, match="input_shape"):
        load(path)
    net = load(path, input_shape=(1, 28, 28))
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    assert np.allclose(net.forward(x.reshape(3, -1)), _ort(path, x), atol=1e-5)

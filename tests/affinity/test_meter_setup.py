"""AffinityMeter with other optimizers, frozen layers, bf16 weights, compiled and sparse modules: supported,
or refused when the meter is made, naming the argument and the fix (digits data, CPU)."""

import copy

import numpy as np
import pytest
import torch
from test_meter import TASKS, Net, digits_labels, shared_losses
from torch import nn

from taskaffinity import AffinityMeter
from taskaffinity.errors import TaskAffinityError


@pytest.fixture(scope="module")
def data():
    return digits_labels()


def rows_of(step, size=40):
    return torch.arange(step * size, step * size + size)


OPTIMIZERS = {
    "RAdam": lambda ps: torch.optim.RAdam(ps, lr=1e-2, weight_decay=0.01),
    "NAdam": lambda ps: torch.optim.NAdam(ps, lr=1e-2),
    "RMSprop": lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.9),
    "Adagrad": lambda ps: torch.optim.Adagrad(ps, lr=0.05),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_optimizer_rule_takes_other_optimizers_real_step(data, name):
    """RAdam, NAdam, RMSprop and Adagrad were accepted and failed at the first recorded step. Now Δ_i is
    the optimizer's own step for g_i alone: the streamed −Δ_i·g_j / L_j and the probe's exact lookahead
    equal a real step on copies of model and optimizer; the optimizer's state is never written."""
    x, labels = data
    make = OPTIMIZERS[name]
    net = Net(seed=2)
    optimizer = make(net.parameters())
    meter = AffinityMeter(net, net.trunk, tasks=TASKS, optimizer=optimizer, window=1)
    for step in range(2):  # the optimizer has state
        optimizer.zero_grad()
        meter.backward(shared_losses(net, x, labels, rows_of(step)))
        optimizer.step()
    state = copy.deepcopy(optimizer.state_dict())
    losses = shared_losses(net, x, labels, rows_of(2))
    trunk = list(net.trunk.parameters())
    g = {t: torch.autograd.grad(losses[t], trunk, retain_graph=True) for t in TASKS}
    real = {}
    for t in TASKS:  # a real step with g_t alone, on copies
        twin = copy.deepcopy(net)
        opt = make(twin.parameters())
        opt.load_state_dict(copy.deepcopy(state))
        for p, gp in zip(twin.trunk.parameters(), g[t]):
            p.grad = gp.clone()
        opt.step()
        real[t] = torch.cat([(q.detach() - p.detach()).reshape(-1) for p, q in zip(trunk, twin.trunk.parameters())])
    flat = {t: torch.cat([v.reshape(-1) for v in g[t]]) for t in TASKS}
    want = np.array([[float(-real[i] @ flat[j]) / float(losses[j]) for j in TASKS] for i in TASKS])
    optimizer.zero_grad()
    meter.backward(losses)
    got = meter.store.matrix("stream_first_order_optimizer", window=(3, 3)).loc[TASKS, TASKS].to_numpy()
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-9)
    assert all(
        torch.equal(v, optimizer.state_dict()["state"][k][s])
        for k, st in state["state"].items()
        for s, v in st.items()
        if torch.is_tensor(v)
    )
    frames = meter.probe(lambda m: shared_losses(m, x, labels, rows_of(3, 100)), rules=["optimizer"], lookahead="exact")
    assert np.isfinite(frames["lookahead_optimizer"].to_numpy()).all()


def test_an_optimizer_the_rule_cannot_take_is_refused_when_the_meter_is_made(data):
    net = Net()
    with pytest.raises(
        TaskAffinityError,
        match="the optimizer rule cannot use LBFGS: its step needs a closure.*"
        "estimators= without stream_first_order_optimizer",
    ):
        AffinityMeter(net, net.trunk, tasks=TASKS, optimizer=torch.optim.LBFGS(net.parameters(), lr=0.1))
    meter = AffinityMeter(
        net, net.trunk, tasks=TASKS, optimizer=torch.optim.LBFGS(net.parameters(), lr=0.1), estimators=["stream_gram"]
    )  # the rule left out: fine, lr from the optimizer
    assert meter.lr == 0.1
    heads_only = torch.optim.AdamW(net.heads.parameters(), lr=1e-2)
    with pytest.raises(TaskAffinityError, match="shared parameter 'trunk.0.weight' is not in the optimizer"):
        AffinityMeter(net, net.trunk, tasks=TASKS, optimizer=heads_only, lr=0.1)


def test_a_frozen_layer_of_the_trunk_is_left_out_of_the_shared_parameters(data):
    """A trunk with a frozen first layer (the optimizer over trainable parameters only) got 'lr got None',
    a raw torch error from probe and advice to start recording after unfreezing. Now θ_s is the trainable
    part: the records equal a meter given those parameters, the probe runs, and a later change of what is
    frozen is refused by name."""
    x, labels = data
    net = Net(seed=3)
    net.trunk[0].requires_grad_(False)
    reference = copy.deepcopy(net)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    ref_optimizer = torch.optim.AdamW([p for p in reference.parameters() if p.requires_grad], lr=1e-2)
    meter = AffinityMeter(net, net.trunk, tasks=TASKS, optimizer=optimizer, window=1)
    ref = AffinityMeter(
        reference, list(reference.trunk[2].parameters()), tasks=TASKS, optimizer=ref_optimizer, window=1
    )
    assert meter.lr == 1e-2 and [n for n, _ in meter.shared] == ["trunk.2.weight", "trunk.2.bias"]
    for m, n, o in ((meter, net, optimizer), (ref, reference, ref_optimizer)):
        o.zero_grad()
        m.backward(shared_losses(n, x, labels, rows_of(0)))
        m.probe(lambda model: shared_losses(model, x, labels, rows_of(1, 100)))
    np.testing.assert_allclose(meter.store.records["value"], ref.store.records["value"], rtol=1e-5, atol=1e-9)
    assert meter.store.metadata["frozen_shared_left_out"] == ["trunk.0.weight", "trunk.0.bias"]
    net.trunk[0].requires_grad_(True)
    with pytest.raises(TaskAffinityError, match="'trunk.0.weight' was frozen when the meter was made"):
        meter.backward(shared_losses(net, x, labels, rows_of(2)))


def test_bf16_weights_stream_in_float32_and_the_exact_probe_refuses_clearly(data):
    """The first-order probe (products of float32 gradients) works on bf16 weights; the exact lookahead,
    whose θ_s + Δ_i would round Δ_i away in bf16, is refused with the fix."""
    x, labels = data
    net = Net(seed=4).to(torch.bfloat16)
    xb = x.to(torch.bfloat16)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    meter = AffinityMeter(net, net.trunk, tasks=TASKS, optimizer=optimizer, window=1)
    meter.backward(shared_losses(net, xb, labels, rows_of(0)))
    assert np.isfinite(meter.store.records["value"]).all()
    with pytest.raises(
        TaskAffinityError,
        match="shared parameter 'trunk.0.weight' is torch.bfloat16: .*rounding "
        "noise. Keep float32 weights.*lookahead='first_order'",
    ):
        meter.probe(lambda m: shared_losses(m, xb, labels, rows_of(1, 100)), lookahead="exact")
    frames = meter.probe(lambda m: shared_losses(m, xb, labels, rows_of(1, 100)))
    assert set(frames) == {"gram", "cosine", "first_order_sgd", "first_order_optimizer"}
    assert all(np.isfinite(f.to_numpy()).all() for f in frames.values())


class Tokens(nn.Module):
    """A bag-of-tokens trunk (an embedding, sparse or not) with two heads."""

    def __init__(self, sparse: bool):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.ModuleDict({"embed": nn.Embedding(30, 8, sparse=sparse), "mix": nn.Linear(8, 8)})
        self.heads = nn.ModuleDict({t: nn.Linear(8, 2) for t in ("a", "b", "c")})

    def losses(self, ids, y):
        z = torch.tanh(self.trunk["mix"](self.trunk["embed"](ids).mean(1)))
        return {t: nn.functional.cross_entropy(head(z), y[:, k]) for k, (t, head) in enumerate(self.heads.items())}


def test_sparse_embedding_gradients_are_recorded_like_dense_ones():
    """An nn.Embedding(sparse=True) in the trunk failed at the first recorded step; its gradients are now made
    dense for the estimators (records equal a dense twin's) and .grad stays sparse for the optimizer."""
    gen = torch.Generator().manual_seed(1)
    ids, y = torch.randint(0, 30, (64, 5), generator=gen), torch.randint(0, 2, (64, 3), generator=gen)
    stores = []
    for sparse in (True, False):
        model = Tokens(sparse)
        meter = AffinityMeter(model, model.trunk, tasks=["a", "b", "c"], lr=0.1, window=1)
        meter.backward(model.losses(ids, y))
        meter.probe(lambda m: m.losses(ids, y))
        assert model.trunk["embed"].weight.grad.is_sparse == sparse
        stores.append(meter.store.records)
    np.testing.assert_allclose(stores[0]["value"], stores[1]["value"], rtol=1e-5, atol=1e-9)
    model = Tokens(True)
    with pytest.raises(TaskAffinityError, match="shared module 'trunk.embed' has sparse gradients.*vmap=False"):
        AffinityMeter(model, model.trunk, tasks=["a", "b", "c"], lr=0.1, vmap=True)


@pytest.fixture
def donated_buffer():
    import torch._functorch.config as config

    before = config.donated_buffer
    yield config
    config.donated_buffer = before


def test_a_compiled_model_is_refused_when_made_unless_its_backward_keeps_buffers(data, donated_buffer):
    """torch.compile'd modules donate their backward's buffers, which forbids backpropagating each task's loss
    through the kept graph: a raw torch error at the first recorded step after a plain one. Refused when the
    meter is made, with the fix; with the fix, the records equal the eager model's."""
    x, labels = data
    donated_buffer.donated_buffer = True
    eager = Net(seed=6)
    compiled = copy.deepcopy(eager)
    compiled.trunk = torch.compile(compiled.trunk, backend="aot_eager")
    with pytest.raises(TaskAffinityError, match="'trunk' is compiled.*torch._functorch.config.donated_buffer = False"):
        AffinityMeter(compiled, compiled.trunk, tasks=TASKS, lr=0.1)
    donated_buffer.donated_buffer = False
    meters = [AffinityMeter(m, m.trunk, tasks=TASKS, lr=0.1, window=1, start=2) for m in (compiled, eager)]
    for step in range(3):  # a plain backward first, then recorded ones
        for meter, model in zip(meters, (compiled, eager)):
            model.zero_grad()
            meter.backward(shared_losses(model, x, labels, rows_of(step)))
    meters[0].probe(lambda m: shared_losses(m, x, labels, rows_of(4, 100)))
    meters[1].probe(lambda m: shared_losses(m, x, labels, rows_of(4, 100)))
    np.testing.assert_allclose(meters[0].store.records["value"], meters[1].store.records["value"], rtol=1e-4, atol=1e-8)


def test_a_compiled_function_the_meter_cannot_see_is_named_at_its_first_recorded_step(data, donated_buffer):
    """A compiled function (not a module: nothing to find when the meter is made) fails at the first per-task
    pass after a plain backward: that raw torch error becomes one naming the fix, before .grad is written."""
    x, labels = data
    donated_buffer.donated_buffer = True
    net = Net(seed=7)
    trunk = torch.compile(lambda inputs: net.trunk(inputs), backend="aot_eager")

    def losses(rows):
        z = trunk(x[rows])
        return {t: nn.functional.cross_entropy(net.heads[t](z), labels[t][rows]) for t in TASKS}

    meter = AffinityMeter(net, net.trunk, tasks=TASKS, lr=0.1, window=1, start=2)
    meter.backward(losses(rows_of(0)))  # plain: compiles the backward with donated buffers
    net.zero_grad()
    with pytest.raises(TaskAffinityError, match="donates its backward's buffers.*donated_buffer = False"):
        meter.backward(losses(rows_of(1)))
    assert all(p.grad is None for p in net.parameters())

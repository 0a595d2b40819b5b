"""Your own Flower app taking part in OTM, with a model that is not otm-flower's WAE.

A ClientApp with a custom torch model (a tied-weight linear autoencoder) answers
OTM's messages through :mod:`clients.otm_messages`; a ServerApp runs
:class:`strategies.OTMStrategy` (with a :class:`otm_flower.code_mixer.CodeMixer`)
like any Flower strategy. Each agent holds one view of UCI Handwritten. Run it
with ``python examples/custom_model/app.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from torch import nn

from clients.otm_messages import answer_train, evaluate_reply, round_config
from otm_flower.code_mixer import CodeMixer
from otm_flower.data import AgentData, MultiViewDataset, load_dataset, make_agents
from otm_flower.metrics import clustering_scores
from otm_flower.training import MixTargets, otm_loss_terms
from strategies import OTMStrategy

LATENT_DIM = 8
VIEWS = (1, 2)  # UCI Handwritten's Fourier (76-d) and Karhunen-Loeve (64-d) views
RESULTS: dict[str, Any] = {}  # filled by the ServerApp (in-process simulation)


class TiedAutoencoder(nn.Module):
    """A user's model: tanh(x W) to encode, z W^T to decode."""

    def __init__(self, input_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(input_dim, latent_dim) * 0.1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.weight)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T


def my_agent_data(partition_id: int) -> AgentData:
    """The data this node holds (here: one view of Handwritten, unaligned)."""
    full = load_dataset("handwritten")
    data = MultiViewDataset(
        "handwritten-2",
        [full.views[v] for v in VIEWS],
        full.labels,
        [full.view_names[v] for v in VIEWS],
    )
    return make_agents(data, seed=0)[partition_id]


def my_model(agent: AgentData, context: Context) -> TiedAutoencoder:
    torch.manual_seed(agent.agent_id)
    model = TiedAutoencoder(agent.input_dim, LATENT_DIM)
    if "model" in context.state.array_records:
        model.load_state_dict(
            context.state.array_records["model"].to_torch_state_dict()
        )
    return model


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    agent = my_agent_data(int(context.node_config["partition-id"]))
    model = my_model(agent, context)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.as_tensor(agent.x_train)

    def local_training(targets: MixTargets | None) -> dict[str, float]:
        for _ in range(30):  # full-batch steps on the agent's own data
            loss = F.mse_loss(model.decode(model.encode(x)), x)
            if targets is not None:  # OTM: learn from the other modalities' codes
                terms = otm_loss_terms(
                    model.encode,
                    model.decode,
                    x[targets.rows],
                    torch.as_tensor(targets.mixed),
                    None
                    if targets.barycenter is None
                    else torch.as_tensor(targets.barycenter),
                )
                loss = loss + 0.1 * sum(terms.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return {"loss": float(loss)}

    reply = answer_train(
        msg,
        context,
        train=local_training,
        encode_rows=lambda rows: model.encode(x[rows]).detach().numpy(),
        n_train=agent.n_train,
        agent_id=agent.agent_id,
        rng=np.random.default_rng(
            [agent.agent_id, int(round_config(msg)["server-round"])]
        ),
    )
    context.state.array_records["model"] = ArrayRecord(model.state_dict())
    return reply


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    agent = my_agent_data(int(context.node_config["partition-id"]))
    model = my_model(agent, context)
    with torch.no_grad():
        codes = model.encode(torch.as_tensor(agent.x_test)).numpy()
    scores = clustering_scores(codes, agent.y_test, n_clusters=10)
    return evaluate_reply(msg, {"agent-id": agent.agent_id, **scores})


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    strategy = OTMStrategy(
        mixer=CodeMixer(alpha=0.5),
        min_available_nodes=2,
        mix_batch_size=128,
        latent_dim=LATENT_DIM,
    )
    strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=3)
    RESULTS["agent_metrics"] = strategy.state.agent_metrics
    RESULTS["rejected"] = strategy.state.rejected


if __name__ == "__main__":
    from flwr.simulation import run_simulation

    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=2)
    for agent_id, metrics in sorted(RESULTS["agent_metrics"][3].items()):
        print(f"agent {agent_id}: ACC {metrics['acc']:.3f}  NMI {metrics['nmi']:.3f}")

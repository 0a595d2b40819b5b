"""A corrupted modality: one agent's features drowned in Gaussian noise.

:class:`CorruptAgent` is a data wrapper: given the agents that
:func:`otm_flower.agent.load_agents` builds, it returns them with one agent's
features (train and test) replaced by noisy ones. Use it directly on a list of
agents, around any code that loads agents
(``with transformed_agents(CorruptAgent(2, 3.0)): ...``), or in a simulation
through the client mod :class:`CorruptAgentMod`, which applies it while each
agent's ClientApp handles a message (so it also works in Ray workers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

from otm_flower.agent import AgentsTransform, transformed_agents
from otm_flower.data import AgentData

__all__ = ["CorruptAgent", "CorruptAgentMod", "corrupt", "replace_agent"]


def corrupt(agent: AgentData, noise: float, seed: int) -> AgentData:
    """The agent with Gaussian noise of std ``noise`` added to all its features.

    A robustness experiment: one modality made nearly useless, train and test
    alike (features are standardised, so ``noise`` is in units of their std).
    """
    rng = np.random.default_rng([seed, agent.agent_id, 31])
    return dataclasses.replace(
        agent,
        x_train=(agent.x_train + noise * rng.normal(size=agent.x_train.shape)).astype(
            np.float32
        ),
        x_test=(agent.x_test + noise * rng.normal(size=agent.x_test.shape)).astype(
            np.float32
        ),
    )


def replace_agent(
    agents: Sequence[AgentData],
    agent: int,
    change: Callable[[AgentData], AgentData],
    what: str,
) -> tuple[AgentData, ...]:
    """The agents with agent ``agent`` replaced by ``change`` of it.

    Raises
    ------
    ValueError
        When there is no agent ``agent`` (the message names ``what``).
    """
    if agent >= len(agents):
        raise ValueError(f"{what} {agent} out of range: {len(agents)} agents")
    out = list(agents)
    out[agent] = change(out[agent])
    return tuple(out)


@dataclass(frozen=True)
class CorruptAgent:
    """Data wrapper: agent ``agent`` gets :func:`corrupt` noise of std ``noise``.

    Parameters
    ----------
    agent : int
        Index (agent id) of the agent to corrupt, ``>= 0``.
    noise : float
        Noise std in units of the feature std, ``>= 0`` (0: no change).
    """

    agent: int
    noise: float

    def __post_init__(self) -> None:
        if self.agent < 0:
            raise ValueError(f"corrupt-agent must be >= 0, got {self.agent}")
        if self.noise < 0:
            raise ValueError(f"corrupt-noise must be >= 0, got {self.noise}")

    def __call__(self, agents: Sequence[AgentData], seed: int) -> tuple[AgentData, ...]:
        """The agents, agent ``agent`` corrupted with the run's ``seed``.

        Raises
        ------
        ValueError
            When there is no agent ``agent``.
        """
        if self.noise == 0:
            return replace_agent(agents, self.agent, lambda a: a, "corrupt-agent")
        return replace_agent(
            agents, self.agent, lambda a: corrupt(a, self.noise, seed), "corrupt-agent"
        )


@dataclass(frozen=True)
class CorruptAgentMod:
    """Client mod: the ClientApp loads its agents through ``wrapper``.

    Parameters
    ----------
    wrapper : AgentsTransform
        A hashable data wrapper, e.g. :class:`CorruptAgent`.
    """

    wrapper: AgentsTransform

    def __call__(
        self, msg: Message, context: Context, call_next: ClientAppCallable
    ) -> Message:
        """Handle ``msg`` with the agents' data passed through the wrapper."""
        with transformed_agents(self.wrapper):
            return call_next(msg, context)

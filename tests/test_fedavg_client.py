"""The FedAvg baseline's client decodes the server's arrays safely."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

from clients.fedavg import _load_global
from otm_flower import protocol as P
from otm_flower.training import LocalTrainer

from .fuzz_arrays import allocation_peak, forged


def _trainer() -> LocalTrainer:
    x = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32)
    return LocalTrainer(x, None, latent_dim=3, hidden_dim=8, seed=0)


def _message(arrays: ArrayRecord) -> Message:
    content = RecordDict({P.ARRAYS_RECORD: arrays, P.CONFIG_RECORD: ConfigRecord()})
    return Message(content, dst_node_id=1, message_type="train")


def test_global_layers_load_and_a_lying_header_is_refused_without_allocating() -> None:
    trainer = _trainer()
    state = {k: v.numpy() + 1.0 for k, v in trainer.model.shared_state().items()}
    honest = {k: Array(v) for k, v in state.items()}
    _load_global(_message(ArrayRecord(honest)), trainer)
    for key, value in trainer.model.shared_state().items():
        np.testing.assert_allclose(value.numpy(), state[key])
    key, value = next(iter(state.items()))
    lying = ArrayRecord({**honest, key: forged(value, (2**40, *value.shape[1:]))})
    with allocation_peak() as memory, pytest.raises(P.ProtocolError, match="header"):
        _load_global(_message(lying), trainer)
    assert memory["peak"] < 2**20

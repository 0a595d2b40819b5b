"""Studies and one-off experiments around otm-flower, kept out of the product.

Nothing in ``otm_flower``, ``strategies``, ``clients`` or ``simulations`` imports
this package, and the wheel does not ship it. Each study runs from the repository
root as a module (``python -m research.matching_study --help``):

* :mod:`research.matching` and :mod:`research.matching_study`: how well label-free
  couplings of two agents' clouds agree with the classes;
* :mod:`research.stream_noise`: the score spread that perturbing only an agent's
  random stream causes;
* :mod:`research.robustness`: a hostile agent, a corrupted modality and random
  dropouts, through the experiment switches :mod:`research.dropout` (a client
  mod) and :mod:`research.corruption` (a data wrapper);
* :mod:`research.hostile` and :mod:`research.hostile_study`: hostile parties
  that pass the screening (look-alike noise codes, forged linked-record ids,
  flipped labels) and the defences against them.
"""

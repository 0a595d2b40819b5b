"""Barycenter engine and its solvers.

* :mod:`.engine`: the support-update loop and the result, for any solver.
* :mod:`.validation`: input checks, constants, error type.
* :mod:`.utils`: math shared by the solvers (scales, support updates,
  the explicit objective).
* :mod:`.exact`: POT's conditional gradient (the reference solver).
* :mod:`.fast`: entropic conditional gradient in torch, with
  :mod:`.lowrank` (geometry) and :mod:`.linear_steps` (linear steps).
* :mod:`.anchored`: plans pinned at shared record ids, with
  :mod:`.anchor_ids` and :mod:`.profiles`.
* :mod:`.fgw`: the label-free barycenter that picks the exact or fast solver.

The public entry points are re-exported by :mod:`otm_flower.mixer`,
:mod:`otm_flower.fast_fgw` and :mod:`otm_flower.anchored`.
"""

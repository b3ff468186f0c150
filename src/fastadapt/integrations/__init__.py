"""Adapters that let other libraries' evaluation code drive a fastadapt
:class:`~fastadapt.algorithms.agent.Agent`: :mod:`fastadapt.integrations.metaworld`
(Meta-World 3.x's ``MetaLearningAgent`` protocol). Each is imported on its own, so that
importing this package needs none of those libraries."""

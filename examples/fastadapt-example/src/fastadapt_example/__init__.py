"""A fastadapt plugin: the task family :class:`~fastadapt_example.family.GoalLine` and the
algorithm :class:`~fastadapt_example.algorithm.Reptile`.

Installed (``pip install -e examples/fastadapt-example``), both are found through the entry
points in its ``pyproject.toml``. Without installing it, name its modules instead:
``fastadapt train CONFIG --plugin fastadapt_example.family --plugin
fastadapt_example.algorithm`` (with ``src/`` on ``PYTHONPATH``), or ``plugins:`` in the config;
importing the modules registers both.
"""

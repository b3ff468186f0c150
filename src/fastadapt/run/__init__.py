"""Running an algorithm: the one trainer (:mod:`.trainer`), the run directory and its
format (:mod:`.rundir`, :mod:`.format_0_1`), config files (:mod:`.config_loading`,
:mod:`.yaml_config`), checkpoints, metrics, progress and the device."""

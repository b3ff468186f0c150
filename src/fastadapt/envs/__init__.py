"""Task families: the contracts (:mod:`.base`, checked by :mod:`.contract`), one file per
family, wrappers (the oracle's) and the registry of names (:mod:`.registry`)."""

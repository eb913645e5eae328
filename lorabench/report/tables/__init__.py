"""The report's tables, one module each (or a few related ones); every module registers its
tables with `registry.register_table` when imported, and the registry imports them all."""

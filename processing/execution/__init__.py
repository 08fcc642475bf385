"""Execution without Swift: the live scheduler (:mod:`.scheduler`, :mod:`.sources`), chunked runs honouring each
processor's split kind (:mod:`.chunks`), offline and Dask runs, the shared thread pool (:mod:`.parallel`), provenance."""

"""netdumplings benchmarks: ``python -m bench {kitchen,live,hub,all}`` (see bench/README.md)."""

"""Wiresens benchmarks: ``python -m benchmarks`` runs all, ``wiresens bench TOPIC`` one."""

"""The fault harness: devices, a relay and its database under faults, and a checker.

``python -m tests.faults.harness`` runs the table (``make faults``);
``tests/faults/test_faults.py`` runs one short trial of each fault (``make test``).
"""

"""A witness for transparency logs (c2sp.org/tlog-witness).

Run beside a mission, or by a third party, it cosigns a relay's checkpoints.
"""
